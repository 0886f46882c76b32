"""Kubernetes (`kubernetes:` types): what the offline tooling knows about the objects every stack makes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacks.tooling.clouds.facts import CloudFacts, DestroyView, Severity

if TYPE_CHECKING:
    from stacks.tooling.engine import Resource

PREFIX = "kubernetes:"
# Kinds that make cloud resources the Pulumi state does not hold (a Service only of type LoadBalancer).
_CLOUD_MAKERS = ("Service", "Ingress")


def mock_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """An object's name defaults to the resource name (Pulumi auto-names it; here without a suffix)."""
    if "metadata" not in state:
        return {}
    meta = dict(state.get("metadata") or {})
    meta.setdefault("name", name)
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
)
