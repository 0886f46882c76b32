"""Shared Kubernetes building blocks: labels, hardened security contexts, resources, spreading.

Every pod this project makes goes through `pod_security()` and
`container_security()`, so the production defaults live in one place.
"""

from __future__ import annotations

from typing import Any

PART_OF = "airflow-k8s"

# A Kubernetes object, or a part of one, as a manifest: camelCase, as the API and `kubectl` spell it.
# pulumi-kubernetes takes manifests as inputs, but its TypedDicts spell the keys in snake_case, so a
# type checker cannot check manifests: they are typed Any here, and the tests validate every rendered
# object strictly against the Kubernetes schemas instead.
Manifest = Any


def labels(instance: str, component: str) -> dict[str, str]:
    """Recommended labels; `component` + `instance` are the selector."""
    return {
        "app.kubernetes.io/name": "airflow",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(instance: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": instance, "app.kubernetes.io/component": component}


def pod_security(uid: int, gid: int, fs_group: int | None = None) -> dict[str, Any]:
    """Pod-level securityContext: non-root, fixed ids, seccomp RuntimeDefault."""
    ctx: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        ctx["fsGroup"] = fs_group
        ctx["fsGroupChangePolicy"] = "OnRootMismatch"
    return ctx


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    """Container securityContext: no privilege escalation, all capabilities dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(r: Any) -> dict[str, Any]:
    """A config `Resources` model as a Kubernetes ResourceRequirements object."""
    limits: dict[str, str] = {"memory": r.memory_limit}
    if r.cpu_limit:
        limits["cpu"] = r.cpu_limit
    return {"requests": {"cpu": r.cpu_request, "memory": r.memory_request}, "limits": limits}


def spread(instance: str, component: str) -> list[dict[str, Any]]:
    """Spread replicas over nodes and zones when the cluster has them; never block scheduling."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(instance, component)},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


# A claim's requested size is replace-forcing in pulumi-kubernetes (provider/pkg/provider/diff.go):
# a changed size would delete the claim, and a static volume's claim cannot bind again after that.
# Claims keep the size they were made with; grow one in place with `kubectl patch pvc` where its
# StorageClass allows expansion (an EFS or Azure Files volume is limited elsewhere).
CLAIM_SIZE = ["spec.resources"]


def static_claim(volume_name: Any, size: str) -> Manifest:
    """The spec of a ReadWriteMany claim bound to one static PersistentVolume: no StorageClass, so
    nothing is provisioned dynamically and nothing exists outside Pulumi's state."""
    return {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "",
        "volumeName": volume_name,
        "resources": {"requests": {"storage": size}},
    }
