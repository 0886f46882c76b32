"""Run the real program under Pulumi mocks and record the whole resource graph.

This is the engine behind `python -m stacks.render` and every test: a `MockMonitor` subclass keeps
each RegisterResource request whole (type, name, parent, dependencies, provider, options) and its
inputs as the provider would get them (camelCase, secrets still marked), so a render can mask them.
What a provider would compute (outputs, invoke results) each cloud's facts say (stacks/tooling/clouds/).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict
from pulumi.runtime import config as rconfig
from pulumi.runtime import mocks as rmocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as rsettings
from pulumi.runtime import stack as rstack

from stacks.tooling import clouds
from stacks.tooling.clouds import kubernetes

SECRET = "[secret]"
UNKNOWN = "[unknown]"
_SECRET_SIG = rpc._special_secret_sig
_RESOURCE_SIG = rpc._special_resource_sig
_UNKNOWN = rpc.UNKNOWN


class StackMocks(pulumi.runtime.Mocks):
    """Outputs a real provider would compute, made deterministic: each cloud's facts say which."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        state = dict(args.inputs)
        facts = clouds.facts_for(args.typ)
        if facts is not None:
            state.update(facts.mock_outputs(args.typ, args.name, state))
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]]]:
        """An invoke's mock result and no check failures (the SDK iterates the list: never None)."""
        facts = clouds.facts_for(args.token)
        invoke = facts.mock_invokes.get(args.token) if facts is not None else None
        return (invoke(args.args) if invoke is not None else {}), []


def _mask(v: Any) -> Any:
    """Every leaf of a secret value masked, its shape kept (so a masked Secret is still a manifest)."""
    if isinstance(v, dict):
        return {k: _mask(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_mask(x) for x in v]
    return SECRET


def _decode(v: Any, reveal: bool) -> Any:
    """A deserialized-by-hand protobuf value: secrets masked (or shown), integers kept integers."""
    if isinstance(v, dict):
        sig = v.get(rpc._special_sig_key)
        if sig == _SECRET_SIG:
            inner = _decode(v.get("value"), True)
            return inner if reveal else _mask(inner)
        if sig == _RESOURCE_SIG:
            return v.get("urn")
        return {k: _decode(x, reveal) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x, reveal) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if v == _UNKNOWN:
        return UNKNOWN
    return v


def _has_secret(v: Any) -> bool:
    if isinstance(v, dict):
        return v.get(rpc._special_sig_key) == _SECRET_SIG or any(_has_secret(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_secret(x) for x in v)
    return False


@dataclass
class Resource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    provider: str | None
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    options: dict[str, Any]
    inputs: dict[str, Any]  # masked
    revealed: dict[str, Any] = field(repr=False, default_factory=dict)
    secret_paths: bool = False
    # A component's `providers` option (URNs): the SDK awaits each provider before it registers the
    # component, and every child awaits that registration (stacks/tooling/critpath.py). Not part of
    # `to_json`, so renders and diffs are unchanged.
    providers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "provider": self.provider,
            "dependencies": self.dependencies,
            "propertyDependencies": self.property_dependencies,
            "options": self.options,
            "inputs": self.inputs,
        }

    @property
    def is_kubernetes(self) -> bool:
        """A Kubernetes object (a manifest); a Helm release is not one (`kubernetes.is_object`)."""
        return self.custom and kubernetes.is_object(self.type)

    def manifest(self, reveal: bool = False) -> dict[str, Any]:
        return self.revealed if reveal else self.inputs


_OPTION_FIELDS = {
    "protect": "protect",
    "retainOnDelete": "retainOnDelete",
    "deletedWith": "deletedWith",
    "customTimeouts": "customTimeouts",
    "ignoreChanges": "ignoreChanges",
    "replaceOnChanges": "replaceOnChanges",
    "deleteBeforeReplace": "deleteBeforeReplace",
    "aliases": "aliases",
    "additionalSecretOutputs": "additionalSecretOutputs",
    "importId": "importId",
    "replaceWith": "replaceWith",
}


@dataclass(frozen=True)
class Invoke:
    """One provider function call (a look-up such as `aws:ec2/getVpc:getVpc`) the program made.

    Attributes:
        token: the function's token.
        provider: the URN of the provider it ran on; None when the SDK sent none, so the engine
            would use the package's default provider (the ambient region and credentials).
        args: its arguments.
    """

    token: str
    provider: str | None
    args: dict[str, Any]


class RecordingMonitor(rmocks.MockMonitor):
    """A MockMonitor that keeps every RegisterResource request and every invoke."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.records: list[Resource] = []
        self.invokes: list[Invoke] = []

    def Invoke(self, request: Any) -> Any:
        if request.tok != "pulumi:pulumi:getResource":
            provider = request.provider.rsplit("::", 1)[0] if "::" in request.provider else None
            args = MessageToDict(request.args) if request.HasField("args") else {}
            self.invokes.append(Invoke(token=request.tok, provider=provider, args=args))
        return super().Invoke(request)

    def RegisterResource(self, request: Any) -> Any:
        resp = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return resp
        # The engine, not the SDK, marks `additionalSecretOutputs` secret; do what it does.
        for key in request.additionalSecretOutputs:
            if key in resp.object.fields:
                wrapped = struct_pb2.Struct()
                wrapped.fields[rpc._special_sig_key].string_value = _SECRET_SIG
                wrapped.fields["value"].CopyFrom(resp.object.fields[key])
                resp.object.fields[key].struct_value.CopyFrom(wrapped)
        req = MessageToDict(request, preserving_proto_field_name=False)
        obj = MessageToDict(request.object) if request.HasField("object") else {}
        options = {k: req[src] for src, k in _OPTION_FIELDS.items() if src in req and req[src] not in ([], {}, "")}
        if "aliases" in req:
            options["aliases"] = req["aliases"]
        provider = request.provider or None
        if provider and "::" in provider:
            provider = provider.rsplit("::", 1)[0]  # drop the provider id, keep its URN
        self.records.append(
            Resource(
                urn=resp.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=bool(request.custom),
                provider=provider,
                dependencies=sorted(set(request.dependencies)),
                property_dependencies={
                    k: sorted(v.get("urns", [])) for k, v in req.get("propertyDependencies", {}).items()
                },
                options=options,
                inputs=_decode(obj, reveal=False),
                revealed=_decode(obj, reveal=True),
                providers=sorted({ref.rsplit("::", 1)[0] for ref in request.providers.values()}),
            )
        )
        return resp


@dataclass
class Run:
    resources: list[Resource]
    outputs: dict[str, Any]  # masked
    revealed_outputs: dict[str, Any]
    error: BaseException | None = None
    invokes: list[Invoke] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what `pulumi.log.warn` said, as a preview shows it

    def by_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def kubernetes(self) -> list[Resource]:
        return [r for r in self.resources if r.is_kubernetes]

    def get(self, type_: str, name: str) -> Resource:
        hits = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(hits) != 1:
            known = sorted(r.name for r in self.resources if r.type == type_)
            raise KeyError(f"{type_} {name!r}: {len(hits)} matches; have {known}")
        return hits[0]


async def _resolve_outputs(outputs: dict[str, Any], reveal: bool) -> dict[str, Any]:
    """Stack outputs as plain values; a secret output (or one holding a secret) is masked whole."""
    result = {}
    for k, v in outputs.items():
        o = pulumi.Output.from_input(v)
        secret = await o.is_secret()
        value = await o.future()
        result[k] = SECRET if secret and not reveal else value
    return result


def run(
    program: Callable[[], None],
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    project: str = "airflow-k8s",
    stack: str = "test",
) -> Run:
    """Run `program` under recording mocks with the given raw config; return the recorded graph.

    An exception raised by the program is returned in `Run.error` together with whatever was
    registered before it, so tests can assert that bad input registered nothing.
    """
    # The cyclic collector is off for the run: the provider SDKs leave a heap of ~10^6 objects,
    # and each full collection the run's allocations trigger walks all of it, about a third of a
    # render's time (stacks.tooling.benchmark). Cycles the run leaves are collected after it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run(program, config, secret_keys, project, stack)
    finally:
        if collecting:
            gc.enable()


def _run(
    program: Callable[[], None],
    config: dict[str, str] | None,
    secret_keys: list[str] | None,
    project: str,
    stack: str,
) -> Run:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    rsettings.reset_options()
    rconfig.set_all_config(dict(config or {}), list(secret_keys or []))
    monitor = RecordingMonitor(StackMocks())
    warnings: list[str] = []
    logger = logging.Logger("airflow-k8s-render")
    logger.addHandler(_Collect(warnings))
    pulumi.runtime.set_mocks(StackMocks(), project=project, stack=stack, preview=False, monitor=monitor, logger=logger)
    error: BaseException | None = None
    try:
        loop.run_until_complete(rstack.run_pulumi_func(program))
    except BaseException as e:  # noqa: BLE001 - handed to the caller
        error = e
    root = pulumi.runtime.get_root_resource()
    raw_outputs = dict(getattr(root, "outputs", {}) or {})
    outputs = loop.run_until_complete(_resolve_outputs(raw_outputs, reveal=False)) if not error else {}
    revealed = loop.run_until_complete(_resolve_outputs(raw_outputs, reveal=True)) if not error else {}
    loop.close()
    rsettings.reset_options()
    asyncio.set_event_loop(None)
    return Run(
        resources=monitor.records,
        outputs=outputs,
        revealed_outputs=revealed,
        error=error,
        invokes=monitor.invokes,
        warnings=warnings,
    )


class _Collect(logging.Handler):
    """Keeps the program's warnings (the mock engine hands `pulumi.log.warn` to a logger)."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        self._into.append(record.getMessage())
