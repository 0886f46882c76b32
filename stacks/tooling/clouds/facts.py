"""What the offline tooling knows about one cloud (one provider's resource types), in one object.

A cloud's module fills in a `CloudFacts`; `stacks/tooling/clouds/__init__.py` lists them, and the
engine (mock outputs and invokes), diff (stateful types), teardown (what blocks or outlives a
destroy) and critpath (creation times, physical prerequisites) read only that list.
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


@dataclass(frozen=True)
class CreationTime:
    """How long creating one resource of a type typically takes, and where the figure comes from."""

    seconds: float
    source: str
    """A public source for the figure, or `estimate: ...` when none was found (the report counts those)."""
    by_inputs: Callable[[Mapping[str, Any]], float] | None = None
    """When the time depends on the inputs (camelCase, as the provider gets them): seconds from them."""

    @property
    def estimate(self) -> bool:
        return self.source.startswith("estimate")

    def of(self, inputs: Mapping[str, Any]) -> float:
        return self.by_inputs(inputs) if self.by_inputs is not None else self.seconds


def estimate(seconds: float, why: str = "") -> CreationTime:
    """A creation time without a measured source, marked as such."""
    return CreationTime(seconds, f"estimate{': ' + why if why else ''}")


# What the dependent physically needs of the prerequisite, when the table cannot say by type alone
# (an EKS add-on by its name): True, False, or None to let the tables decide.
PhysicalRule = Callable[["Resource", "Resource"], "bool | None"]

ROLE = "@"
"""Marks a role in `CloudFacts.physical`: `@kubernetes-api` is every type any cloud says plays it."""


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


def _undecided(dependent: Resource, prereq: Resource) -> bool | None:
    return None


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
    # What `render --critical-path` (stacks/tooling/critpath.py) needs to time `pulumi up`:
    creation_times: Mapping[str, CreationTime] = field(default_factory=dict)
    """Type -> its typical creation time, with the source of the figure."""
    default_creation: CreationTime | None = None
    """For this provider's types not in `creation_times`; None: critpath's default, and the report names them."""
    physical: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Dependent type -> the types (or `@roles`) it cannot be created, or run, without: the forced chain."""
    default_physical: frozenset[str] | None = None
    """For this provider's types not in `physical`; None: such a type keeps all its edges (and is reported)."""
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Role (`kubernetes-api`, `kubernetes-nodes`, `pod-addon`, `value`, `volume`, `generated`,
    `data-service`) -> this provider's types that play it, so other providers' tables can name them."""
    physical_rule: PhysicalRule = _undecided
    """Pairs involving this provider's types whose physical need depends on the resources themselves."""

    def owns(self, type_token: str) -> bool:
        return type_token.startswith(self.prefix)
