"""What `pulumi destroy` would do to a rendered stack: the order it removes resources in, and every
reason it could be blocked or leave something behind.

    python -m stacks.render STACK --teardown
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stacks.tooling import engine

Severity = Literal["blocks", "leaves", "note"]
# Kubernetes objects that make cloud resources the Pulumi state does not hold.
_CLOUD_MAKERS = ("Service", "Ingress")
_NETWORK_AND_CLUSTER = ("aws:ec2/subnet:Subnet", "aws:ec2/vpc:Vpc", "aws:eks/cluster:Cluster",
                        "azure-native:network:Subnet", "azure-native:containerservice:ManagedCluster")


@dataclass(frozen=True)
class Finding:
    severity: Severity
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.resource}: {self.message}"


def _edges(r: engine.Resource) -> list[str]:
    return [*r.dependencies, *([r.provider] if r.provider else []), *([r.parent] if r.parent else [])]


def destroy_order(run: engine.Run) -> list[engine.Resource]:
    """Dependents before what they depend on (a resource goes only after everything that needs it)."""
    by_urn = {r.urn: r for r in run.resources}
    needed_by: dict[str, set[str]] = {u: set() for u in by_urn}
    for r in run.resources:
        for dep in _edges(r):
            if dep in needed_by:
                needed_by[dep].add(r.urn)
    order: list[engine.Resource] = []
    done: set[str] = set()
    pending = list(by_urn)
    while pending:
        ready = [u for u in pending if needed_by[u] <= done]
        if not ready:  # a cycle cannot happen in a Pulumi graph; keep going rather than hang
            ready = pending[:1]
        for u in sorted(ready):
            order.append(by_urn[u])
            done.add(u)
        pending = [u for u in pending if u not in done]
    return order


def ancestors(run: engine.Run, urn: str) -> set[str]:
    """Everything `urn` depends on, transitively (dependencies, provider, parent)."""
    by_urn = {r.urn: r for r in run.resources}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        r = by_urn.get(todo.pop())
        for dep in _edges(r) if r else []:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def findings(run: engine.Run) -> list[Finding]:
    out: list[Finding] = []
    log_groups = {r.inputs.get("name") for r in run.by_type("aws:cloudwatch/logGroup:LogGroup")}
    network = [r for r in run.resources if r.type in _NETWORK_AND_CLUSTER]
    for r in run.resources:
        i = r.inputs
        if r.options.get("protect"):
            out.append(Finding("blocks", r.urn, "protected: destroy refuses until `pulumi state unprotect`"))
        if r.options.get("retainOnDelete"):
            out.append(Finding("leaves", r.urn, "retainOnDelete: removed from the state, kept in the cloud"))
        if r.type == "aws:rds/instance:Instance":
            if i.get("deletionProtection"):
                out.append(Finding("blocks", r.urn, "RDS deletion protection is on"))
            if not i.get("skipFinalSnapshot"):
                out.append(Finding("leaves", r.urn, f"final snapshot {i.get('finalSnapshotIdentifier')!r} is kept "
                                   "(and a second destroy of a recreated stack would collide with it)"))
        if r.type == "aws:s3/bucket:Bucket" and not i.get("forceDestroy"):
            out.append(Finding("blocks", r.urn, "bucket is not force_destroy: a non-empty bucket cannot be deleted"))
        if r.type == "aws:eks/cluster:Cluster" and i.get("enabledClusterLogTypes"):
            name = f"/aws/eks/{i.get('name')}/cluster"
            if name not in log_groups:
                out.append(Finding("leaves", r.urn, f"EKS creates log group {name} outside the state"))
        if r.type == "azure-native:authorization:ManagementLockByScope":
            out.append(Finding("blocks", r.urn, "management lock"))
        if r.is_kubernetes and i.get("kind") in _CLOUD_MAKERS:
            kind = i["kind"]
            if kind == "Service" and (i.get("spec") or {}).get("type") != "LoadBalancer":
                continue
            before = ancestors(run, r.urn)
            late = [n.name for n in network if n.urn not in before]
            if late:
                out.append(Finding("blocks", r.urn, f"{kind} makes a cloud load balancer but is not ordered before "
                                   f"{', '.join(late)}: their deletion can fail on its leftovers"))
            else:
                out.append(Finding("note", r.urn, f"{kind} makes a cloud load balancer outside the state; it is "
                                   "deleted before the cluster and network it lives in"))
        if r.is_kubernetes and i.get("kind") == "PersistentVolumeClaim":
            spec = i.get("spec") or {}
            if spec.get("storageClassName") != "" and not spec.get("volumeName"):
                out.append(Finding("note", r.urn, "dynamically provisioned: its volume follows the StorageClass "
                                   "reclaim policy (Delete on the usual defaults)"))
        if r.is_kubernetes and i.get("kind") == "StatefulSet":
            spec = i.get("spec") or {}
            if spec.get("volumeClaimTemplates"):
                policy = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted", "Retain")
                if policy != "Delete":
                    out.append(Finding("leaves", r.urn, "volume claims are retained when the StatefulSet is deleted"))
    return out


def report(run: engine.Run) -> str:
    lines = ["destroy order (first to last):"]
    lines += [f"  {n:3d}. {r.type}  {r.name}" for n, r in enumerate(destroy_order(run), 1)]
    found = findings(run)
    lines.append("")
    lines.append("what could block destroy or leave something behind:" if found else "nothing blocks destroy.")
    lines += [f"  {f}" for f in sorted(found, key=lambda f: ("blocks", "leaves", "note").index(f.severity))]
    blocking = sum(f.severity == "blocks" for f in found)
    lines.append(f"\n{blocking} blocking, {sum(f.severity == 'leaves' for f in found)} left behind, "
                 f"{sum(f.severity == 'note' for f in found)} notes")
    return "\n".join(lines)
