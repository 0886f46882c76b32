"""Run the real program under Pulumi mocks and record the whole resource graph.

This is the engine behind `python -m stacks.render` and every test: a `MockMonitor` subclass keeps
each RegisterResource request whole (type, name, parent, dependencies, provider, options) and its
inputs as the provider would get them (camelCase, secrets still marked), so a render can mask them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict
from pulumi.runtime import config as rconfig
from pulumi.runtime import mocks as rmocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as rsettings
from pulumi.runtime import stack as rstack

SECRET = "[secret]"
UNKNOWN = "[unknown]"
_SECRET_SIG = rpc._special_secret_sig
_RESOURCE_SIG = rpc._special_resource_sig
_UNKNOWN = rpc.UNKNOWN


def mock_secret(seed: str, n: int = 24) -> str:
    """A deterministic stand-in for a generated secret, with characters that need URL-encoding."""
    h = hashlib.sha256(seed.encode()).hexdigest()
    return (h[: n - 6] + "$@/%+:")[:n] if n >= 8 else h[:n]


class StackMocks(pulumi.runtime.Mocks):
    """Outputs a real provider would compute, made deterministic."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        state = dict(args.inputs)
        t = args.typ
        if t == "random:index/randomPassword:RandomPassword":
            state["result"] = mock_secret(args.name, int(args.inputs.get("length", 24)))
        elif t == "random:index/randomBytes:RandomBytes":
            raw = hashlib.sha256(args.name.encode()).digest()[: int(args.inputs.get("length", 32))]
            # Force '+' and '/' into the standard alphabet so URL-safe conversion is exercised.
            raw = b"\xfb\xff" + raw[2:]
            state["base64"] = base64.b64encode(raw).decode()
            state["hex"] = raw.hex()
        elif t == "random:index/randomString:RandomString":
            state["result"] = hashlib.sha256(args.name.encode()).hexdigest()[: int(args.inputs.get("length", 8))]
        elif t.startswith("aws:"):
            state.update(_aws_outputs(t, args.name, state))
        elif t.startswith("azure-native:"):
            state.update(_azure_outputs(t, args.name, state))
        elif t.startswith("kubernetes:") and "metadata" in state:
            meta = dict(state.get("metadata") or {})
            meta.setdefault("name", args.name)
            state["metadata"] = meta
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        # Look-ups an existing-infrastructure stack makes; shaped like the provider's results.
        if args.token == "aws:eks/getCluster:getCluster":
            return {"name": args.args["name"], "endpoint": f"https://{args.args['name']}.eks.mock",
                    "certificateAuthorities": [{"data": "bW9jay1jYQ=="}],
                    "vpcConfig": {"clusterSecurityGroupId": "sg-0mockcluster"}}
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            kubeconfig = f"apiVersion: v1\nkind: Config\nclusters:\n- name: {args.args['resourceName']}\n"
            return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}
        if args.token == "azure-native:containerservice:getManagedCluster":
            return {"name": args.args["resourceName"], "location": "westeurope",
                    "oidcIssuerProfile": {"enabled": True, "issuerURL": "https://oidc.mock/existing/"}}
        if args.token == "azure-native:redisenterprise:listDatabaseKeys":
            return {"primaryKey": mock_secret("redis-primary-key", 44), "secondaryKey": mock_secret("redis-2", 44)}
        if args.token == "azure-native:storage:listStorageAccountKeys":
            return {"keys": [{"keyName": "key1", "value": mock_secret("storage-key", 64), "permissions": "FULL"}]}
        if args.token == "azure-native:authorization:getClientConfig":
            return {"clientId": "00000000-0000-0000-0000-00000000c11e", "objectId": "00000000-0000-0000-0000-0000000000b1",
                    "subscriptionId": "00000000-0000-0000-0000-000000005ub0", "tenantId": "00000000-0000-0000-0000-00000000fe11"}
        if args.token == "aws:ec2/getVpc:getVpc":
            return {"id": args.args["id"], "cidrBlock": "10.90.0.0/16"}
        return {}


def _mask(v: Any) -> Any:
    """Every leaf of a secret value masked, its shape kept (so a masked Secret is still a manifest)."""
    if isinstance(v, dict):
        return {k: _mask(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_mask(x) for x in v]
    return SECRET


def _aws_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Computed outputs a real AWS provider returns, so dependants get realistic values."""
    arn = f"arn:aws:mock:::{name}"
    out: dict[str, Any] = {"arn": arn}
    if typ == "aws:iam/role:Role":
        out["name"] = name
    elif typ == "aws:eks/cluster:Cluster":
        out.update(endpoint=f"https://{name}.eks.mock", certificateAuthority={"data": "bW9jay1jYQ=="},
                   vpcConfig={**(state.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{name}"})
    elif typ == "aws:rds/instance:Instance":
        out.update(address=f"{state.get('identifier', name)}.mock.eu-west-1.rds.amazonaws.com",
                   endpoint=f"{state.get('identifier', name)}.mock:5432")
    elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        out["primaryEndpointAddress"] = f"master.{state.get('replicationGroupId', name)}.mock.cache.amazonaws.com"
    elif typ == "aws:s3/bucket:Bucket":
        out["bucket"] = state.get("bucket") or f"{state.get('bucketPrefix', '')}{hashlib.sha256(name.encode()).hexdigest()[:12]}"
        out["arn"] = f"arn:aws:s3:::{out['bucket']}"
    elif typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup",
                 "aws:elasticache/subnetGroup:SubnetGroup"):
        out["name"] = state.get("name", name)
    return out


def _azure_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Computed outputs the Azure Resource Manager returns."""
    out: dict[str, Any] = {}
    for key in ("resourceGroupName", "accountName", "serverName", "clusterName", "resourceName", "privateZoneName",
                "virtualNetworkName", "privateEndpointName", "shareName", "containerName", "databaseName"):
        if key in state and key != "resourceGroupName":
            out["name"] = state[key]
    if typ == "azure-native:resources:ResourceGroup":
        out["name"] = state.get("resourceGroupName", name)
    elif typ == "azure-native:containerservice:ManagedCluster":
        out["oidcIssuerProfile"] = {"enabled": True, "issuerURL": f"https://oidc.mock/{name}/"}
    elif typ == "azure-native:dbforpostgresql:Server":
        out["fullyQualifiedDomainName"] = f"{state.get('serverName', name)}.postgres.database.azure.com"
    elif typ == "azure-native:redisenterprise:RedisEnterprise":
        out["hostName"] = f"{state.get('clusterName', name)}.westeurope.redis.azure.net"
    elif typ == "azure-native:managedidentity:UserAssignedIdentity":
        out.update(clientId=f"{name}-client-id", principalId=f"{name}-principal-id")
    return out


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
    parent: Optional[str]
    custom: bool
    provider: Optional[str]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    options: dict[str, Any]
    inputs: dict[str, Any]  # masked
    revealed: dict[str, Any] = field(repr=False, default_factory=dict)
    secret_paths: bool = False

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
        return self.type.startswith("kubernetes:") and self.custom

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


class RecordingMonitor(rmocks.MockMonitor):
    """A MockMonitor that keeps every RegisterResource request."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.records: list[Resource] = []

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
            )
        )
        return resp


@dataclass
class Run:
    resources: list[Resource]
    outputs: dict[str, Any]  # masked
    revealed_outputs: dict[str, Any]
    error: Optional[BaseException] = None

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
    config: Optional[dict[str, str]] = None,
    secret_keys: Optional[list[str]] = None,
    project: str = "airflow-k8s",
    stack: str = "test",
) -> Run:
    """Run `program` under recording mocks with the given raw config; return the recorded graph.

    An exception raised by the program is returned in `Run.error` together with whatever was
    registered before it, so tests can assert that bad input registered nothing.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    rsettings.reset_options()
    rconfig.set_all_config(dict(config or {}), list(secret_keys or []))
    monitor = RecordingMonitor(StackMocks())
    pulumi.runtime.set_mocks(StackMocks(), project=project, stack=stack, preview=False, monitor=monitor)
    error: Optional[BaseException] = None
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
    return Run(resources=monitor.records, outputs=outputs, revealed_outputs=revealed, error=error)
