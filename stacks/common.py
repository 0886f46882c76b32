"""The cloud-agnostic half of every stack: namespace, service accounts, RBAC and Airflow.

A cloud stack builds its database, broker, DAG volume and identities, then calls `compose()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from components.airflow import Airflow, AirflowArgs, DagSource
from components.airflow.keda import KedaTarget
from components.airflow.roster import Roster
from components.endpoints import BrokerEndpoint, DatabaseEndpoint, RemoteLogs
from components.ingress import UiIngress
from components.keda import KedaInstall, admit_operator_to_database
from components.keda import ca_file as keda_ca_file
from components.namespace import AirflowNamespace
from components.pgbouncer import COMPONENT as COMPONENT_PGBOUNCER
from components.pgbouncer import PgBouncer
from components.postgres import COMPONENT as POSTGRES_COMPONENT
from components.postgres import PORT as POSTGRES_PORT
from stacks.config import StackConfig

INSTANCE = "airflow"


def roster(cfg: StackConfig, git_writer: bool) -> Roster:
    """Which Airflow components this stack has and what each may do (components/airflow/roster.py)."""
    return Roster.of(cfg.airflow, git_writer, pgbouncer=cfg.pgbouncer_enabled, log_claim=cfg.log_volume)


def db_clients(cfg: StackConfig, git_writer: bool) -> list[str] | None:
    """The components that connect to the database server itself: with PgBouncer, PgBouncer and the
    Jobs that bypass it (roster.py's Job rows); without it, None (every Airflow pod)."""
    if not cfg.pgbouncer_enabled:
        return None
    r = roster(cfg, git_writer)
    return [COMPONENT_PGBOUNCER, *(c for c in r.components if r.is_job(c))]


def compose(
    cfg: StackConfig,
    *,
    provider: pulumi.ProviderResource,
    database: DatabaseEndpoint,
    broker: BrokerEndpoint | None,
    dags: DagSource,
    namespace: AirflowNamespace,
    remote_logs: RemoteLogs | None = None,
    log_claim: pulumi.Input[str] | None = None,
    pod_labels: Mapping[str, Mapping[str, str]] | None = None,
    worker_storage_class: str | None = None,
    worker_storage_ready: Sequence[pulumi.Resource] = (),
) -> Airflow:
    """The Airflow component in the stack's namespace (made first with `make_namespace`, so the
    cloud pieces that need its service accounts can be built in between); PgBouncer between it and
    the database when `pgbouncer` is on (the migration Jobs still connect to `database` directly)."""
    k = cfg.kubernetes
    ns = namespace
    direct: DatabaseEndpoint | None = None
    if cfg.pgbouncer_enabled:
        pool = PgBouncer(
            "pgbouncer",
            namespace=ns.namespace,
            instance=INSTANCE,
            server=database,
            settings=cfg.pgbouncer,
            network_policy=k.network_policies,
            opts=pulumi.ResourceOptions(providers=[provider], depends_on=[ns]),
        )
        direct, database = database, pool.endpoint
    return Airflow(
        "airflow",
        AirflowArgs(
            namespace=ns.namespace,
            instance=INSTANCE,
            settings=cfg.airflow,
            database=database,
            broker=broker,
            dags=dags,
            service_accounts=ns.service_accounts,
            remote_logs=remote_logs,
            log_claim=log_claim,
            pod_labels=pod_labels or {},
            task_namespace=ns.task_namespace,
            network_policies=k.network_policies,
            worker_storage_class=worker_storage_class,
            worker_storage_ready=worker_storage_ready,
            ui_url=f"https://{cfg.ui.host}/" if cfg.ui.host else None,
            keda=keda_target(cfg, provider=provider, database=direct or database, namespace=ns),
            direct_database=direct,
            log_retention_days=k.log_retention_days,
            log_claim_access_mode=k.log_volume_access_mode,
        ),
        opts=pulumi.ResourceOptions(providers=[provider], depends_on=[ns]),
    )


def keda_target(
    cfg: StackConfig, *, provider: pulumi.ProviderResource, database: DatabaseEndpoint, namespace: AirflowNamespace
) -> KedaTarget | None:
    """The KEDA that scales autoscaled worker groups: installed here, or the cluster's own."""
    a = cfg.airflow
    if not a.autoscaled:
        return None
    if cfg.database.mode == "inCluster" and cfg.cloud == "local" and cfg.kubernetes.network_policies:
        admit_operator_to_database(
            "airflow",
            namespace=namespace.namespace,
            instance=INSTANCE,
            database_component=POSTGRES_COMPONENT,
            port=POSTGRES_PORT,
            keda_namespace=a.keda.namespace,
            operator_labels=a.keda.operator_labels,
            opts=pulumi.ResourceOptions(provider=provider, depends_on=[namespace]),
        )
    if a.keda.source == "existing":
        return KedaTarget(ca_file=a.keda.database_ca_file)
    install = KedaInstall(
        "keda", namespace=a.keda.namespace, instance=INSTANCE, database_ca=database.ca,
        opts=pulumi.ResourceOptions(providers=[provider]),
    )  # fmt: skip
    return KedaTarget(ready=install.ready, ca_file=keda_ca_file(database.ca))


def make_namespace(
    cfg: StackConfig,
    provider: pulumi.ProviderResource,
    git_writer: bool,
    annotations: Mapping[str, Mapping[str, pulumi.Input[str]]] | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> AirflowNamespace:
    r = roster(cfg, git_writer)
    return AirflowNamespace(
        "namespace",
        namespace=cfg.kubernetes.namespace,
        instance=INSTANCE,
        components=r.components,
        pod_launchers=r.pod_launchers,
        task_pod_launchers=r.task_pod_launchers,
        pod_log_readers=r.pod_log_readers,
        pod_cleaners=r.pod_cleaners,
        task_pod_cleaners=r.task_pod_cleaners,
        task_namespace=cfg.kubernetes.pod_namespace(r.conditions.pod_operator),
        task_pod_security=cfg.kubernetes.task_pod_security,
        annotations=annotations,
        namespace_labels=namespace_labels,
        opts=pulumi.ResourceOptions(providers=[provider]),
    )


def expose_ui(
    cfg: StackConfig,
    airflow: Airflow,
    *,
    provider: pulumi.ProviderResource,
    class_name: pulumi.Input[str],
    annotations: Mapping[str, pulumi.Input[str]] | None = None,
    tls_secret: pulumi.Input[str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
) -> UiIngress | None:
    """The UI at https://<ui.host>/ through the cloud's (or the cluster's) ingress controller, when
    `ui.host` is set. `depends_on` is what the controller needs to be running (so a destroy deletes
    the Ingress, and with it the controller's load balancer, while the controller still runs)."""
    host = cfg.ui.host
    if not host:
        return None
    return UiIngress(
        "ui",
        namespace=airflow.namespace,
        instance=INSTANCE,
        host=host,
        service_name=airflow.api_service_name,
        service_port=airflow.api_port,
        class_name=class_name,
        annotations=annotations,
        tls_secret=tls_secret,
        depends_on=[airflow.api_service, *depends_on],
        opts=pulumi.ResourceOptions(providers=[provider], parent=airflow),
    )


def outputs(
    cfg: StackConfig,
    *,
    namespace: AirflowNamespace,
    airflow: Airflow,
    database: DatabaseEndpoint,
    broker: BrokerEndpoint | None,
    ui_access: pulumi.Input[str],
    dag_volume: pulumi.Input[str] | None,
    log_location: pulumi.Input[str],
    kubeconfig: pulumi.Output[str] | None = None,
    ui: UiIngress | None = None,
    ui_url: str | None = None,
) -> dict[str, Any]:
    """The stack outputs, under the same names for every cloud (None values are not exported)."""

    def endpoint(host: pulumi.Input[str], port: pulumi.Input[int]) -> pulumi.Output[str]:
        return pulumi.Output.concat(host, ":", pulumi.Output.from_input(port).apply(str))

    return {
        "namespace": namespace.namespace,
        # The URL a person opens: the Ingress's (ui_url: the azure stack's Gateway's), else the
        # port-forward `uiAccess` prints.
        "uiUrl": ui.url
        if ui is not None
        else ui_url
        if ui_url is not None
        else "http://localhost:8080"
        if cfg.airflow.api_server.service_type == "ClusterIP"
        else airflow.api_url,
        "uiAccess": ui_access,
        # The generated admin, where it is created (not with SSO's keepLocalAdmin false).
        "adminUser": cfg.airflow.auth.admin_user
        if cfg.airflow.auth.local_admin or cfg.airflow.auth.manager == "simple"
        else None,
        "adminPassword": airflow.secrets.admin_password
        if cfg.airflow.auth.local_admin or cfg.airflow.auth.manager == "simple"
        else None,
        # Flower's basic auth, when it runs (port-forward to the airflow-flower Service).
        "flowerUser": cfg.airflow.flower.user if airflow.secrets.flower_password is not None else None,
        "flowerPassword": airflow.secrets.flower_password,
        "kubeconfig": kubeconfig,
        "databaseEndpoint": endpoint(database.host, database.port),
        "brokerEndpoint": endpoint(broker.host, broker.port) if broker else None,
        "dagVolume": dag_volume,
        "logLocation": log_location,
    }
