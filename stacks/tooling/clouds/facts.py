"""What the offline tooling knows about one cloud (one provider's resource types), in one object.

A cloud's module fills in a `CloudFacts`; `stacks/tooling/clouds/__init__.py` lists them, and the
engine (mock outputs and invokes), diff (stateful types) and teardown (what blocks or outlives a
destroy) read only that list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from stacks.tooling.engine import Resource, Run

Severity = Literal["blocks", "leaves", "note"]


def mock_secret(seed: str, n: int = 24) -> str:
    """A deterministic stand-in for a generated secret, with characters that need URL-encoding."""
    h = hashlib.sha256(seed.encode()).hexdigest()
    return (h[: n - 6] + "$@/%+:")[:n] if n >= 8 else h[:n]


class DestroyView(Protocol):
    """What a destroy check may look at besides the resource itself."""

    @property
    def run(self) -> Run: ...

    @property
    def network(self) -> Sequence[Resource]:
        """Every network and cluster resource of the render (each cloud's `network_and_cluster`)."""
        ...

    def ancestors(self, urn: str) -> set[str]:
        """Everything `urn` depends on, transitively: what `pulumi destroy` deletes after it."""
        ...


# (type token, resource name, inputs) -> the computed outputs a real provider would add.
MockOutputs = Callable[[str, str, dict[str, Any]], dict[str, Any]]
# An invoke's arguments -> its result, shaped like the provider's.
MockInvoke = Callable[[dict[str, Any]], dict[str, Any]]
# A resource of this cloud -> (severity, message) for each way it blocks a destroy or outlives it.
DestroyCheck = Callable[["Resource", DestroyView], Iterable[tuple[Severity, str]]]


def _no_outputs(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {}


def _no_findings(resource: Resource, view: DestroyView) -> Iterable[tuple[Severity, str]]:
    return ()


@dataclass(frozen=True)
class CloudFacts:
    prefix: str
    """The type-token prefix of this provider's resources and invokes, e.g. `aws:`."""
    mock_outputs: MockOutputs = _no_outputs
    """Computed outputs under mocks, deterministic, so dependants get realistic values."""
    mock_invokes: Mapping[str, MockInvoke] = field(default_factory=dict)
    """Invoke token -> its mock result (the look-ups an existing-infrastructure stack makes)."""
    stateful: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Types whose loss loses data or identity -> the input fields whose change replaces them."""
    network_and_cluster: tuple[str, ...] = ()
    """Types that a load balancer made by a Kubernetes controller must be deleted before."""
    destroy_checks: DestroyCheck = _no_findings
    """What about one of this cloud's resources blocks `pulumi destroy` or is left behind."""

    def owns(self, type_token: str) -> bool:
        return type_token.startswith(self.prefix)
