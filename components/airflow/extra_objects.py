"""`airflow.extraObjects`: Kubernetes objects the stack applies in Airflow's namespace beside its own.

Each becomes the pulumi-kubernetes resource of its kind (a ConfigMap a `core/v1:ConfigMap`, so the
provider's own await and diff rules apply), or a CustomResource for a kind outside Kubernetes' own
groups. Its Pulumi name is `<name>-extra-<group>-<kind>-<object name>`, made of what identifies the
object, not of its place in the list: reordering or removing another object never renames it. Its
namespace is the Namespace resource's output, so it is created after the namespace and deleted before
it (`pulumi destroy` leaves nothing behind). A Secret's data and stringData are Pulumi secrets.
"""

from __future__ import annotations

import inspect
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


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def kubernetes_class(api_version: str, kind: str) -> Any:
    """The pulumi-kubernetes resource class (a CustomResource subclass) of a Kubernetes kind, None for a group outside
    Kubernetes' own (a custom resource). Raises ValueError for a kind or version Kubernetes' own
    group does not have."""
    where = _module(api_version)
    if where is None:
        return None
    module = getattr(getattr(k8s, where[0], None), where[1], None)
    cls = getattr(module, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, pulumi.CustomResource)):
        raise ValueError(f"{api_version} has no kind {kind}")
    return cls


def body_fields(cls: Any) -> list[str]:
    """The body fields (camelCase) a kind's pulumi-kubernetes class takes, besides apiVersion, kind
    and metadata."""
    params = inspect.signature(cls._internal_init).parameters
    skip = {"__self__", "resource_name", "opts", "__props__", "api_version", "kind", "metadata"}
    return sorted(_camel(p) for p in params if p not in skip)


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
        cls = kubernetes_class(obj.api_version, obj.kind)  # the config checked kind and fields
        if cls is None:
            out.append(
                k8s.apiextensions.CustomResource(
                    rname, api_version=obj.api_version, kind=obj.kind, metadata=meta, opts=opts, **body
                )
            )
            continue
        out.append(cls(rname, metadata=meta, opts=opts, **{_snake(k): v for k, v in body.items()}))
    return out
