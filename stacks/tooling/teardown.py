"""What `pulumi destroy` would do to a rendered stack: the order it removes resources in, and every
reason it could be blocked or leave something behind.

    python -m stacks.render STACK --teardown

What blocks or outlives a destroy beyond the resource options is each cloud's facts
(stacks/tooling/clouds/), as are the network and cluster types a load balancer must go before.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.tooling import clouds, engine
from stacks.tooling.clouds.facts import Severity


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


@dataclass(frozen=True)
class _View:
    """The `DestroyView` a cloud's destroy checks see."""

    run: engine.Run
    network: tuple[engine.Resource, ...]

    def ancestors(self, urn: str) -> set[str]:
        return ancestors(self.run, urn)


def findings(run: engine.Run) -> list[Finding]:
    network_types = {t for facts in clouds.ALL for t in facts.network_and_cluster}
    view = _View(run, tuple(r for r in run.resources if r.type in network_types))
    out: list[Finding] = []
    for r in run.resources:
        if r.options.get("protect"):
            out.append(Finding("blocks", r.urn, "protected: destroy refuses until `pulumi state unprotect`"))
        if r.options.get("retainOnDelete"):
            out.append(Finding("leaves", r.urn, "retainOnDelete: removed from the state, kept in the cloud"))
        facts = clouds.facts_for(r.type)
        if facts is not None:
            out += [Finding(severity, r.urn, message) for severity, message in facts.destroy_checks(r, view)]
    return out


def report(run: engine.Run) -> str:
    lines = ["destroy order (first to last):"]
    lines += [f"  {n:3d}. {r.type}  {r.name}" for n, r in enumerate(destroy_order(run), 1)]
    found = findings(run)
    lines.append("")
    serious = [f for f in found if f.severity != "note"]
    lines.append("what could block destroy or leave something behind:" if serious else "nothing blocks destroy.")
    lines += [f"  {f}" for f in sorted(found, key=lambda f: ("blocks", "leaves", "note").index(f.severity))]
    blocking = sum(f.severity == "blocks" for f in found)
    lines.append(
        f"\n{blocking} blocking, {sum(f.severity == 'leaves' for f in found)} left behind, "
        f"{sum(f.severity == 'note' for f in found)} notes"
    )
    return "\n".join(lines)
