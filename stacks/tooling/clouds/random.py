"""pulumi-random (`random:` types): the generated secrets, made deterministic under mocks."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from stacks.tooling.clouds.facts import CloudFacts, CreationTime, mock_secret


def mock_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    if typ == "random:index/randomPassword:RandomPassword":
        return {"result": mock_secret(name, int(state.get("length", 24)))}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = hashlib.sha256(name.encode()).digest()[: int(state.get("length", 32))]
        # Force '+' and '/' into the standard alphabet so URL-safe conversion is exercised.
        raw = b"\xfb\xff" + raw[2:]
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
    if typ == "random:index/randomId:RandomId":
        raw = hashlib.sha256(name.encode()).digest()[: int(state.get("byteLength", 4))]
        return {"hex": raw.hex(), "b64Url": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    if typ == "random:index/randomString:RandomString":
        return {"result": hashlib.sha256(name.encode()).hexdigest()[: int(state.get("length", 8))]}
    return {}


_GENERATED = frozenset(
    {
        "random:index/randomPassword:RandomPassword",
        "random:index/randomBytes:RandomBytes",
        "random:index/randomString:RandomString",
    }
)

FACTS = CloudFacts(
    prefix="random:",
    mock_outputs=mock_outputs,
    # pulumi-random computes its values in the plugin: no cloud call, no wait.
    default_creation=CreationTime(0, "pulumi-random generates the value locally, in the provider plugin"),
    default_physical=frozenset(),
    roles={"generated": _GENERATED, "value": _GENERATED},
)
