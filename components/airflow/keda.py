"""KEDA objects that scale autoscaled Celery worker groups: one ScaledObject per group, one
TriggerAuthentication and the Secret it reads (the metadata DB's connection string, nothing else).

What a ScaledObject does (KEDA v2.20.2; the Airflow Helm chart's worker-kedaautoscaler.yaml does
the same for its one worker Deployment): every `pollingInterval` KEDA's operator runs the query on
the metadata DB with the postgresql scaler; the HPA it makes wants ceil(value / targetQueryValue)
replicas. The query returns ceil(queued and running task instances of the group's queues /
concurrency) and the target is 1, so a group runs exactly the replicas its work fills. Running
tasks stay counted until they finish, so a scale-down never asks for fewer slots than are busy;
the replicas it removes stop with Celery's warm shutdown (the row's 600 s grace, roster.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.settings import AirflowSettings, WorkerGroup
from components.endpoints import DatabaseEndpoint
from components.k8s import Manifest, labels

API_VERSION = "keda.sh/v1alpha1"
# The TriggerAuthentication's parameter and the Secret key holding it: the postgresql scaler's
# `connection` (a libpq connection string; pkg/scalers/postgresql_scaler.go reads it from authParams).
CONNECTION = "connection"
# What the ScaledObject asks of each replica: the query already divides by the group's concurrency.
TARGET_QUERY_VALUE = "1"
# The names Airflow accepts for the KubernetesExecutor in a task's `executor` (its alias and path).
KUBERNETES_EXECUTOR_NAMES = (
    "KubernetesExecutor",
    "airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor",
)


@dataclass(frozen=True)
class KedaTarget:
    """The KEDA that acts on this instance's ScaledObjects.

    Attributes:
        ready: what must exist before a ScaledObject is applied (the installed chart: its CRDs).
        ca_file: the DB's CA file inside KEDA's operator (`sslrootcert`), for a verified DB whose CA
            is shipped; None: the operator image's own trust store (or no verification).
    """

    ready: Sequence[pulumi.Resource] = field(default_factory=tuple)
    ca_file: str | None = None


def _value(v: str) -> str:
    """A libpq keyword/value string's value, quoted where it must be (pgx parses it the same way)."""
    if v and not any(c.isspace() or c in "'\\" for c in v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connection_string(
    host: str, port: int, name: str, user: str, password: str, sslmode: str, ca_file: str | None
) -> str:
    """The scaler's `connection`: the same server, login and TLS as Airflow's own URLs."""
    parts = {"host": host, "port": str(port), "dbname": name, "user": user, "password": password, "sslmode": sslmode}
    if ca_file:
        parts["sslrootcert"] = ca_file
    return " ".join(f"{k}={_value(v)}" for k, v in parts.items())


def query(group: WorkerGroup, settings: AirflowSettings) -> str:
    """Replicas the group's queued and running task instances fill, `concurrency` each. Queue names
    are literals: the settings allow only [A-Za-z0-9_.:-] in them, so no quoting is needed."""
    queues = ", ".join(f"'{q}'" for q in group.queues)
    where = f"state IN ('queued', 'running') AND queue IN ({queues})"
    if "KubernetesExecutor" in settings.executors:
        # Under both executors a task picks one with `executor`; the KubernetesExecutor's run in pods.
        names = ", ".join(f"'{n}'" for n in KUBERNETES_EXECUTOR_NAMES)
        where += f" AND (executor IS NULL OR executor NOT IN ({names}))"
    return f"SELECT ceil(COUNT(*)::decimal / {group.concurrency}) FROM task_instance WHERE {where}"


def scaled_object(
    group: WorkerGroup,
    settings: AirflowSettings,
    namespace: pulumi.Input[str],
    instance: str,
    target: pulumi.Input[str],
    auth: str,
) -> Manifest:
    a = group.settings.autoscaling
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": f"{instance}-{group.component}", "namespace": namespace,
                     "labels": labels(instance, group.component)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": target},
            "pollingInterval": a.polling_interval,
            # Only the step from 1 replica to 0 waits for this (KEDA's docs, ScaledObject spec).
            "cooldownPeriod": a.cooldown_period,
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": a.scale_down_stabilization_seconds}},
                },
            },
            "triggers": [{
                "type": "postgresql",
                "metadata": {"query": query(group, settings), "targetQueryValue": TARGET_QUERY_VALUE},
                "authenticationRef": {"name": auth},
            }],
        },
    }  # fmt: skip


def trigger_authentication(namespace: pulumi.Input[str], instance: str, secret: pulumi.Input[str]) -> Manifest:
    name = f"{instance}-keda-db"
    return {
        "apiVersion": API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(instance, "keda")},
        "spec": {"secretTargetRef": [{"parameter": CONNECTION, "name": secret, "key": CONNECTION}]},
    }


def scaled_objects(
    parent: pulumi.Resource,
    name: str,
    instance: str,
    namespace: pulumi.Input[str],
    settings: AirflowSettings,
    database: DatabaseEndpoint,
    keda: KedaTarget | None,
    workloads: Mapping[str, pulumi.CustomResource],
) -> list[pulumi.CustomResource]:
    """The ScaledObjects of the autoscaled worker groups, with their TriggerAuthentication and Secret."""
    groups = [g for g in settings.worker_groups() if g.autoscaled]
    if not groups:
        return []
    if keda is None:
        raise ValueError("an autoscaled worker group needs a KedaTarget (airflow.keda)")
    ca_file = keda.ca_file
    conn = pulumi.Output.all(database.host, database.port, database.name, database.user, database.password).apply(
        lambda a: connection_string(str(a[0]), int(a[1]), str(a[2]), str(a[3]), str(a[4]), database.sslmode, ca_file)
    )
    child = pulumi.ResourceOptions(parent=parent)
    secret = k8s.core.v1.Secret(
        f"{name}-keda-db",
        metadata={"name": f"{instance}-keda-db", "namespace": namespace, "labels": labels(instance, "keda")},
        type="Opaque",
        string_data={CONNECTION: pulumi.Output.secret(conn)},
        opts=child,
    )
    auth_manifest = trigger_authentication(namespace, instance, secret.metadata["name"])
    auth = k8s.apiextensions.CustomResource(
        f"{name}-keda-db-auth",
        api_version=API_VERSION,
        kind="TriggerAuthentication",
        metadata=auth_manifest["metadata"],
        spec=auth_manifest["spec"],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(keda.ready)),
    )
    out: list[pulumi.CustomResource] = []
    for g in groups:
        workload = workloads[g.component]  # a StatefulSet
        target = workload.metadata["name"]  # pyright: ignore[reportAttributeAccessIssue]
        m = scaled_object(g, settings, namespace, instance, target, auth_manifest["metadata"]["name"])
        out.append(
            k8s.apiextensions.CustomResource(
                f"{name}-{g.component}-scaler",
                api_version=API_VERSION,
                kind="ScaledObject",
                metadata=m["metadata"],
                spec=m["spec"],
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[workload, auth, *keda.ready]),
            )
        )
    return out
