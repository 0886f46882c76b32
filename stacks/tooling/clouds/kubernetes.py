"""Kubernetes (`kubernetes:` types): what the offline tooling knows about the objects every stack makes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacks.tooling.clouds.facts import CloudFacts, CreationTime, DestroyView, Severity, estimate

if TYPE_CHECKING:
    from stacks.tooling.engine import Resource

PREFIX = "kubernetes:"
# A Helm release is one resource whose inputs are a chart and its values, not an object: what it
# installs is rendered by Helm in the cluster, so no manifest of it exists offline.
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def is_object(type_: str) -> bool:
    """Whether a resource type is a Kubernetes object (its inputs are a manifest)."""
    return type_.startswith(PREFIX) and type_ != HELM_RELEASE


# Kinds that make cloud resources the Pulumi state does not hold (a Service only of type LoadBalancer).
_CLOUD_MAKERS = ("Service", "Ingress", "Gateway")


def mock_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """An object's name defaults to the resource name (Pulumi auto-names it; here without a suffix)."""
    if "metadata" not in state:
        return {}
    meta = dict(state.get("metadata") or {})
    meta.setdefault("name", name)
    if state.get("kind") == "Ingress":
        # What the controller writes and pulumi-kubernetes waits for on create: the load balancer's name.
        return {"metadata": meta, "status": {"loadBalancer": {"ingress": [{"hostname": f"{name}.lb.mock"}]}}}
    if state.get("kind") == "Gateway":
        # What the Gateway controller writes once its load balancer has a frontend (Gateway API status).
        return {"metadata": meta, "status": {"addresses": [{"type": "IPAddress", "value": "10.50.0.100"}]}}
    return {"metadata": meta}


def destroy_checks(r: Resource, view: DestroyView) -> Iterator[tuple[Severity, str]]:
    if not r.is_kubernetes:
        return
    i = r.inputs
    kind = i.get("kind")
    spec = i.get("spec") or {}
    if kind in _CLOUD_MAKERS and (kind != "Service" or spec.get("type") == "LoadBalancer"):
        before = view.ancestors(r.urn)
        late = [n.name for n in view.network if n.urn not in before]
        if late:
            yield (
                "blocks",
                (
                    f"{kind} makes a cloud load balancer but is not ordered before {', '.join(late)}: "
                    "their deletion can fail on its leftovers"
                ),
            )
        else:
            yield (
                "note",
                (
                    f"{kind} makes a cloud load balancer outside the state; it is deleted before the "
                    "cluster and network it lives in"
                ),
            )
    if kind == "Ingress":
        yield from _ingress_controller_checks(r, view)
    if kind == "PersistentVolumeClaim":
        if spec.get("storageClassName") != "" and not spec.get("volumeName"):
            yield (
                "note",
                (
                    "dynamically provisioned: its volume follows the StorageClass reclaim policy "
                    "(Delete on the usual defaults)"
                ),
            )
    if kind == "StatefulSet" and spec.get("volumeClaimTemplates"):
        policy = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted", "Retain")
        if policy != "Delete":
            yield "leaves", "volume claims are retained when the StatefulSet is deleted"


# Helm charts that install an Ingress controller making cloud resources: chart -> the value that names
# its IngressClass, and what it makes for an Ingress. The AWS Load Balancer Controller (v3.5.0) holds
# each Ingress with its finalizer `ingress.k8s.aws/resources` until it has deleted the ALB, its
# frontend security group, target group and listener rules, and its shared backend security group once
# nothing uses it (pkg/ingress/finalizer.go, pkg/networking/backend_sg_provider.go); it tags them
# `elbv2.k8s.aws/cluster: <cluster>`. pulumi-kubernetes deletes an Ingress and waits until it is gone
# (provider/pkg/await/await.go `Deletion`, 10 minutes by default): the controller must still run.
_CONTROLLER_CHARTS = {
    "aws-load-balancer-controller": (
        "ingressClass",
        "an ALB, its security groups and target group (tag elbv2.k8s.aws/cluster)",
    ),
}


def _ingress_controller_checks(ingress: Resource, view: DestroyView) -> Iterator[tuple[Severity, str]]:
    """An Ingress served by a controller the stack installs must be deleted before that controller."""
    class_name = (ingress.inputs.get("spec") or {}).get("ingressClassName")
    before = view.ancestors(ingress.urn)
    for release in view.run.by_type(HELM_RELEASE):
        chart = _CONTROLLER_CHARTS.get(str(release.inputs.get("chart")))
        values = release.inputs.get("values") or {}
        if chart is None or values.get(chart[0]) != class_name:
            continue
        if release.urn not in before:
            yield (
                "blocks",
                f"its controller {release.name} is not ordered after it: deleted first, nothing removes the "
                f"Ingress's finalizer (its delete times out) and {chart[1]} are left in the VPC",
            )
        else:
            cluster = values.get("clusterName")
            yield (
                "note",
                f"the controller {release.name} makes {chart[1]} outside the state; deleting the Ingress first, "
                "Pulumi waits until the controller has deleted them. Leftovers after a failed destroy: `aws "
                f"resourcegroupstaggingapi get-resources --tag-filters Key=elbv2.k8s.aws/cluster,Values={cluster}`",
            )


# ---- `pulumi up` timing (stacks/tooling/critpath.py) -------------------------------------------------

NAMESPACE, SERVICE_ACCOUNT, SECRET, CONFIG_MAP, SERVICE = (
    "kubernetes:core/v1:Namespace",
    "kubernetes:core/v1:ServiceAccount",
    "kubernetes:core/v1:Secret",
    "kubernetes:core/v1:ConfigMap",
    "kubernetes:core/v1:Service",
)
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
GATEWAY, HTTP_ROUTE = (
    "kubernetes:gateway.networking.k8s.io/v1:Gateway",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
)
VOLUME, CLAIM, JOB = (
    "kubernetes:core/v1:PersistentVolume",
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:batch/v1:Job",
)
POD_WORKLOADS = frozenset(
    {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet", JOB}
)
_AWAIT = (
    "pulumi-kubernetes 4.34.2 waits until it is ready (docstrings of apps/v1/Deployment.py, "
    "StatefulSet.py, batch/v1/Job.py: rollout Available / Job Complete, 10 min timeout)"
)
_ROLLOUT = estimate(90, "image pull and readiness; " + _AWAIT)

CREATION_TIMES: dict[str, CreationTime] = {
    **{w: _ROLLOUT for w in POD_WORKLOADS - {JOB}},
    JOB: estimate(
        90,
        "image pull and the pod's run; `airflow db migrate` on an empty PostgreSQL took 9 s on "
        "loopback here (Airflow 3.3.2); " + _AWAIT,
    ),
    HELM_RELEASE: estimate(
        90,
        "`helm install` waiting for the chart's workloads to be ready (helm/v3/Release.py docstring, "
        "`skip_await`): the AWS Load Balancer Controller's two pods, like a workload's rollout",
    ),
    INGRESS: estimate(
        30,
        "pulumi-kubernetes waits until the controller writes the load balancer's name into "
        "status.loadBalancer (provider/pkg/await/ingress.go), which the AWS controller does once "
        "CreateLoadBalancer returns, before the ALB is active",
    ),
    # pulumi-kubernetes has no await logic of its own for custom resources: the UI's Gateway carries
    # `pulumi.com/waitFor: condition=Programmed` (its proxy's rollout and its load balancer's address,
    # like a LoadBalancer Service's wait); its route is done once the API server accepts it.
    GATEWAY: estimate(60, "the Gateway's Programmed condition: the add-on's proxy rollout and its load balancer"),
    HTTP_ROUTE: estimate(2, "a custom resource without a waitFor annotation: accepted by the API server"),
    SERVICE: estimate(
        10,
        "pulumi-kubernetes waits for ready endpoints (core/v1/Service.py docstring), which come with "
        "the selected workload's rollout and end with it",
    ),
}


def runs_pods(r: Resource) -> bool:
    return r.type in POD_WORKLOADS


def _pod_spec(r: Resource) -> dict[str, Any]:
    return ((r.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}


def mounts_claim(r: Resource) -> bool:
    """Whether a workload's pods mount a PersistentVolumeClaim (and so need its volume's driver)."""
    volumes = _pod_spec(r).get("volumes") or []
    return bool((r.inputs.get("spec") or {}).get("volumeClaimTemplates")) or any(
        isinstance(v, dict) and "persistentVolumeClaim" in v for v in volumes
    )


def migrates(job: Resource) -> bool:
    """Whether a Job runs `airflow db migrate`: the one Job every workload must wait for."""
    containers = _pod_spec(job).get("containers") or []
    words = [str(w) for c in containers for w in [*(c.get("command") or []), *(c.get("args") or [])]]
    return "db migrate" in " ".join(words)


def syncs_fab_roles(job: Resource) -> bool:
    """Whether a Job runs `airflow users create`: like the api-server's FAB auth manager at start
    (`FabAuthManager.init_flask_resources` -> `sync_roles`), it writes FAB's roles and permissions,
    and two writers at once race on the same unique rows."""
    containers = _pod_spec(job).get("containers") or []
    words = [str(w) for c in containers for w in [*(c.get("command") or []), *(c.get("args") or [])]]
    return "users create" in " ".join(words)


def physical_rule(dependent: Resource, prereq: Resource) -> bool | None:
    if prereq.type == JOB and runs_pods(dependent):
        # No workload on an unmigrated database (DESIGN.md). The admin-user Job must finish before
        # the one other writer of FAB's roles (the api-server) starts; other workloads need not wait.
        if syncs_fab_roles(prereq):
            return dependent.name.endswith("api-server")
        return migrates(prereq)
    return None


_API = frozenset({"@kubernetes-api", NAMESPACE})
PHYSICAL: dict[str, frozenset[str]] = {
    # Every object needs the API server (through its provider) and its namespace; objects carrying
    # values need where the values come from; a static volume what its handle names; a claim its
    # volume. A pod workload needs its nodes, the add-ons its pods need, what its pods reference
    # (service account, secrets, config maps, claims), the in-cluster servers it connects to (the
    # local stack's PostgreSQL and Redis), and the migration Job (`physical_rule`).
    NAMESPACE: frozenset({"@kubernetes-api"}),
    **{t: _API | {"@value", "@generated"} for t in (SERVICE_ACCOUNT, SECRET, CONFIG_MAP)},
    VOLUME: frozenset({"@kubernetes-api", "@volume"}),
    CLAIM: _API | {VOLUME},
    **{
        w: _API
        | POD_WORKLOADS
        | {
            "@kubernetes-nodes",
            "@pod-addon",
            "@value",
            "@generated",
            SERVICE_ACCOUNT,
            SECRET,
            CONFIG_MAP,
            CLAIM,
            SERVICE,
        }
        for w in POD_WORKLOADS
    },
    # A chart's controller runs pods (nodes, their add-ons) with its cloud rights (a pod gets them
    # only if its identity exists when it starts). An Ingress needs its backend Service, the
    # controller that makes its load balancer, and the rights the controller makes it with.
    HELM_RELEASE: _API | {"@kubernetes-nodes", "@pod-addon", "@pod-identity"},
    INGRESS: _API | {SERVICE, HELM_RELEASE, "@pod-identity"},
    # A Gateway whose certificate the add-on syncs as a service account with cloud rights: the account
    # and its rights exist first. Its route needs it and the backend Service.
    GATEWAY: _API | {SERVICE, SERVICE_ACCOUNT, "@pod-identity"},
    HTTP_ROUTE: _API | {GATEWAY, SERVICE},
}


FACTS = CloudFacts(
    prefix=PREFIX,
    mock_outputs=mock_outputs,
    # metadata.name/namespace always replace an object; claims and volumes have immutable specs.
    stateful={
        "kubernetes:core/v1:PersistentVolume": ("metadata.name", "spec"),
        "kubernetes:core/v1:PersistentVolumeClaim": (
            "metadata.name",
            "metadata.namespace",
            "spec.storageClassName",
            "spec.volumeName",
            "spec.accessModes",
        ),
        "kubernetes:core/v1:Namespace": ("metadata.name",),
        "kubernetes:apps/v1:StatefulSet": ("metadata.name", "metadata.namespace", "spec.volumeClaimTemplates"),
    },
    destroy_checks=destroy_checks,
    creation_times=CREATION_TIMES,
    default_creation=estimate(2, "one API call; pulumi-kubernetes 4.34.2 awaits only workloads, Jobs and Services"),
    physical=PHYSICAL,
    # Other objects (Service, Role, RoleBinding, NetworkPolicy, PodDisruptionBudget, ...) need the API
    # and their namespace only.
    default_physical=_API,
    physical_rule=physical_rule,
)
