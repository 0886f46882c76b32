"""`airflow.extraObjects`: Kubernetes objects the stack applies in Airflow's namespace beside its own.

Each becomes the pulumi-kubernetes resource of its kind (a ConfigMap a `core/v1:ConfigMap`, so the
provider's own await and diff rules apply), or a CustomResource for a kind outside Kubernetes' own
groups. Its Pulumi name is `<name>-extra-<group>-<kind>-<object name>`, made of what identifies the
object, not of its place in the list: reordering or removing another object never renames it. Its
namespace is the Namespace resource's output, so it is created after the namespace and deleted before
it (`pulumi destroy` leaves nothing behind). A Secret's data and stringData are Pulumi secrets.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.settings import ExtraObject


def _module(api_version: str) -> tuple[str, str] | None:
    """pulumi-kubernetes' module and version for a Kubernetes API group, None for other groups."""
    group, _, version = api_version.rpartition("/")
    if not group:
        return "core", version
    if "." not in group:
        return group, version  # apps, batch, policy, autoscaling
    if group.endswith(".k8s.io"):
        return group.split(".")[0], version  # networking.k8s.io, rbac.authorization.k8s.io, ...
    return None


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def resource_name(name: str, obj: ExtraObject) -> str:
    group = obj.api_version.rpartition("/")[0] or "core"
    return f"{name}-extra-{group}-{obj.kind.lower()}-{obj.metadata.name}"


def extra_objects(
    parent: pulumi.Resource, name: str, namespace: pulumi.Input[str], objects: list[ExtraObject]
) -> list[pulumi.CustomResource]:
    out: list[pulumi.CustomResource] = []
    for obj in objects:
        meta: dict[str, Any] = obj.metadata.model_dump(by_alias=True, exclude_none=True)
        meta["namespace"] = namespace
        body: dict[str, Any] = obj.body
        if obj.kind == "Secret" and obj.api_version == "v1":
            body = {k: pulumi.Output.secret(v) if k in ("data", "stringData") else v for k, v in body.items()}
        opts = pulumi.ResourceOptions(parent=parent)
        rname = resource_name(name, obj)
        where = _module(obj.api_version)
        cls = None
        if where is not None:
            module = getattr(k8s, where[0], None)
            cls = getattr(getattr(module, where[1], None), obj.kind, None)
        if cls is None:
            out.append(
                k8s.apiextensions.CustomResource(
                    rname, api_version=obj.api_version, kind=obj.kind, metadata=meta, opts=opts, **body
                )
            )
            continue
        try:
            out.append(cls(rname, metadata=meta, opts=opts, **{_snake(k): v for k, v in body.items()}))
        except TypeError as e:
            raise ValueError(f"airflow.extraObjects {obj.kind} {obj.metadata.name!r}: {e}") from None
    return out
