"""How long `pulumi up` of a new stack takes, estimated offline from the rendered graph: the longest
chain of creations, and the shorter chain the cloud itself forces.

    python -m stacks.render STACK --critical-path

Reviewers see a deploy-time regression in a pull request as a longer chain, and which resource made it.

When a resource starts (Pulumi Python SDK 3.272.0, the pinned `pulumi`; paths under its package)
-----------------------------------------------------------------------------------------------
Before the SDK sends a resource's RegisterResource, `prepare_resource` (runtime/resource.py) awaits:
  - its inputs (`serialize_properties`, line 228): an Output of another resource resolves only once
    that resource is created; those resources are the request's `propertyDependencies`;
  - its `depends_on` (line 215, `_resolve_depends_on_urns`);
  - its parent's URN (line 247);
  - a custom resource: its `provider` (line 266, `_create_provider_ref` awaits the provider's URN and
    ID); a component: every provider of its `providers` option (line 274);
  - `deleted_with` and `replace_with` (lines 294, 301).
A resource's URN and ID resolve only when RegisterResource returns (line 1378, after the RPC at line
1340), and the reply carries the provider's outputs, so for a custom resource that is after it has
been created. A component has nothing to create: it is registered as soon as what it awaits is there.

A dependency on a component (in `depends_on` or through an input) is a dependency on its custom
descendants: `_add_dependency` (runtime/rpc.py, line 328) replaces a local component by its children,
recursively, and stops at a custom resource (a custom resource's own children are not included). The
recorded `dependencies` are already expanded this way; `schedule` expands again, so a graph written by
hand means the same.

So, in this model:
  - a custom resource starts when its dependencies, its provider and its parent are there; it finishes
    a typical creation time later (each provider's `creation_times`, stacks/tooling/clouds/);
  - a component and a provider take no time: a component is there once what it awaits is there (its
    own dependencies, its `providers`, its parent), a provider once its inputs resolve (a Kubernetes
    provider's kubeconfig comes from the cluster) and its `depends_on` are created;
  - a parent relation alone makes a child wait for nothing; but a child does wait for its parent's
    registration, and so for whatever its parent component waits for: a component's `depends_on` and
    `providers` hold back every child (what the engine records for the component shows it);
  - everything else runs in parallel: `pulumi up --parallel` is unbounded by default ("Defaults to
    unbounded. (default 2147483647)", the `pulumi up` flags as listed at fig.io/manual/pulumi/up).
Reading outputs through invokes and the engine's own overhead are ignored.
`test_the_pinned_sdk_holds_a_child_until_its_parent_component_is_registered` checks the parent and
`providers` waits on the pinned SDK (tests/stacks/test_critical_path.py).

The chain the cloud forces
--------------------------
`forced_chain` is the same schedule over only the physical prerequisites: an edge of the rendered
graph stays only when the dependent's type cannot be created (or, for a workload, cannot run) before
the other type exists (each provider's `physical` table in stacks/tooling/clouds/, with the reason
for each group; a table names other providers' types by role, e.g. a Kubernetes object needs
`@kubernetes-api`, which the EKS and AKS clusters play; `physical_rule` decides the pairs a type
alone cannot, such as an EKS add-on by its name). Parent edges and component
`providers` go (they are how the program is arranged, not what the cloud needs). A provider is looked
through: an edge to a provider becomes edges to what the provider waits for, filtered by the
dependent's own prerequisites, so a Namespace needs the cluster's API but a Deployment also needs its
nodes. The forced chain can never be longer than the longest chain (it keeps a subset of the edges).
A dependent type nobody judged keeps all its edges (it cannot shorten the chain by omission) and
the report names it.

Its limit: it judges edges by type. A Secret holding both the database and the broker URL needs
both, so its readers wait for both in the forced chain too; only splitting the Secret shortens that.

Creation times
--------------
Each provider's `creation_times` cites a source for each figure; one without a source says
"estimate", and the report counts them. Types no provider times get `DEFAULT_SECONDS`, and the
report lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from stacks.tooling import clouds, engine
from stacks.tooling.clouds.facts import ROLE, CreationTime

DEFAULT_SECONDS = 5.0
"""A custom type no provider's facts time: most API objects are created in seconds."""
PROVIDER = "pulumi:providers:"  # a provider resource configures its plugin: no cloud call, no time


def _entry(type_: str) -> CreationTime | None:
    facts = clouds.facts_for(type_)
    return facts.creation_times.get(type_, facts.default_creation) if facts is not None else None


def creation_time(r: engine.Resource) -> CreationTime | None:
    """The facts' creation time of a custom resource; None for components, providers and untimed types."""
    return _entry(r.type) if r.custom and not r.type.startswith(PROVIDER) else None


def _seconds(r: engine.Resource) -> float:
    if not r.custom or r.type.startswith(PROVIDER):
        return 0.0
    t = creation_time(r)
    return t.of(r.inputs) if t is not None else DEFAULT_SECONDS


def _custom_types(run: engine.Run) -> set[str]:
    return {r.type for r in run.resources if r.custom and not r.type.startswith(PROVIDER)}


def defaulted_types(run: engine.Run) -> list[str]:
    """Custom types of the render that no facts time: they got `DEFAULT_SECONDS`."""
    return sorted(t for t in _custom_types(run) if _entry(t) is None)


@cache
def _roles() -> dict[str, frozenset[str]]:
    """Role -> the types every provider says play it."""
    roles: dict[str, frozenset[str]] = {}
    for facts in clouds.ALL:
        for role, types in facts.roles.items():
            roles[role] = roles.get(role, frozenset()) | types
    return roles


@cache
def needs(type_: str) -> frozenset[str] | None:
    """The types a type physically needs (roles resolved); None: nobody judged it."""
    facts = clouds.facts_for(type_)
    if facts is None:
        return None
    table = facts.physical.get(type_, facts.default_physical)
    if table is None:
        return None
    out: set[str] = set()
    for t in table:
        out |= _roles().get(t[len(ROLE) :], frozenset()) if t.startswith(ROLE) else {t}
    return frozenset(out)


def _physical(dependent: engine.Resource, prereq: engine.Resource) -> bool:
    for facts in (clouds.facts_for(dependent.type), clouds.facts_for(prereq.type)):
        decided = facts.physical_rule(dependent, prereq) if facts is not None else None
        if decided is not None:
            return decided
    table = needs(dependent.type)
    return True if table is None else prereq.type in table  # an unjudged type keeps every edge


def unjudged_types(run: engine.Run) -> list[str]:
    """Custom types of the render with no physical prerequisites known: the forced chain keeps their edges."""
    return sorted(t for t in _custom_types(run) if needs(t) is None)


def data_services() -> frozenset[str]:
    """The types the report gives start times for (each provider's `data-service` role)."""
    return _roles().get("data-service", frozenset())


# ---- the schedule ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """When one resource is created, in minutes from the start of `pulumi up`."""

    resource: engine.Resource
    start: float
    finish: float
    after: str | None
    """The URN whose finish set the start (the last of what it waited for); None: it starts at once."""


@dataclass(frozen=True)
class Chain:
    minutes: float
    steps: tuple[Slot, ...]


class _Graph:
    """The rendered graph with the SDK's view of what each resource waits for."""

    def __init__(self, run: engine.Run) -> None:
        self.by_urn = {r.urn: r for r in run.resources}
        self.children: dict[str, list[str]] = {}
        for r in run.resources:
            if r.parent in self.by_urn:
                self.children.setdefault(r.parent, []).append(r.urn)

    def expand(self, urns: Iterable[str]) -> set[str]:
        """URNs with each local component replaced by its custom descendants (`_add_dependency`)."""
        out: set[str] = set()
        todo = [u for u in urns if u in self.by_urn]
        while todo:
            u = todo.pop()
            if self.by_urn[u].custom:
                out.add(u)
            else:
                todo.extend(self.children.get(u, []))
        return out

    def dependencies(self, r: engine.Resource) -> set[str]:
        deps = {u for us in r.property_dependencies.values() for u in us} | set(r.dependencies)
        for option in ("deletedWith", "replaceWith"):
            value = r.options.get(option)
            deps |= {value} if isinstance(value, str) else set(value or ())
        return self.expand(deps)

    def waits(self, r: engine.Resource, forced: bool) -> set[str]:
        deps = self.dependencies(r)
        if r.provider in self.by_urn:
            deps.add(r.provider)
        if not forced:
            deps |= {p for p in r.providers if p in self.by_urn}
            if r.parent in self.by_urn:
                deps.add(r.parent)
            return deps
        if not r.custom:
            return set()  # a component is no physical step
        return {u for u in self._through_providers(deps) if _physical(r, self.by_urn[u])}

    def _through_providers(self, urns: set[str]) -> set[str]:
        """A provider stands for what it waits for (its inputs and `depends_on`), recursively."""
        out: set[str] = set()
        todo, seen = list(urns), set()
        while todo:
            u = todo.pop()
            if u in seen:
                continue
            seen.add(u)
            r = self.by_urn[u]
            if r.type.startswith(PROVIDER):
                todo.extend(self.dependencies(r))
            else:
                out.add(u)
        return out


def schedule(run: engine.Run, forced: bool = False) -> dict[str, Slot]:
    """URN -> when the resource is created; `forced`: over the physical prerequisites only."""
    graph = _Graph(run)
    slots: dict[str, Slot] = {}
    visiting: set[str] = set()

    def slot(urn: str) -> Slot:
        if urn in slots:
            return slots[urn]
        if urn in visiting:  # Pulumi refuses a cycle; never hang on a hand-made one
            raise ValueError(f"dependency cycle through {urn}")
        visiting.add(urn)
        r = graph.by_urn[urn]
        # The last to finish sets the start; on a tie, the smallest URN, so the output is stable.
        waited = sorted((slot(u) for u in graph.waits(r, forced)), key=lambda s: (-s.finish, s.resource.urn))
        start = waited[0].finish if waited else 0.0
        after = waited[0].resource.urn if waited else None
        visiting.discard(urn)
        slots[urn] = Slot(r, start, start + _seconds(r) / 60, after)
        return slots[urn]

    for urn in sorted(graph.by_urn):
        slot(urn)
    return slots


def _chain(slots: Mapping[str, Slot]) -> Chain:
    if not slots:
        return Chain(0.0, ())
    last = min(slots.values(), key=lambda s: (-s.finish, s.resource.urn))
    steps = [last]
    while steps[-1].after is not None:
        steps.append(slots[steps[-1].after])
    steps.reverse()
    while len(steps) > 1 and steps[0].finish == 0:  # providers and components at the start add nothing
        steps.pop(0)
    return Chain(last.finish, tuple(steps))


def longest_chain(run: engine.Run) -> Chain:
    """The chain of creations that ends last: the estimated time of `pulumi up` of a new stack."""
    return _chain(schedule(run))


def forced_chain(run: engine.Run) -> Chain:
    """The longest chain over physical prerequisites only: the least time the cloud allows."""
    return _chain(schedule(run, forced=True))


def start_of(run: engine.Run, type_: str, name: str, forced: bool = False) -> float:
    """Minutes from the start of `pulumi up` until the resource's creation starts."""
    return schedule(run, forced)[run.get(type_, name).urn].start


# ---- the report ----------------------------------------------------------------------------------------


def _label(r: engine.Resource) -> str:
    return f"{r.type} {r.name}"


def _chain_lines(chain: Chain) -> list[str]:
    return [f"  {s.start:6.1f} -> {s.finish:6.1f}  {_label(s.resource)}" for s in chain.steps]


def _why(slots: Mapping[str, Slot], s: Slot) -> str:
    """What a resource waited for last: the resource whose creation it waited for, and the component
    or provider it waited through (a parent component holding back its children, say)."""
    through: list[str] = []
    after = slots[s.after] if s.after else None
    while after is not None and after.finish == after.start and after.finish > 0 and after.after:
        through.append(_label(after.resource))  # a component or provider: no time of its own
        after = slots[after.after]
    if after is None or after.finish == 0:
        return "at once"
    return f"after {_label(after.resource)}" + (f", through {' and '.join(through)}" if through else "")


def summary(run: engine.Run) -> str:
    """The report `--critical-path` prints: totals, the longest chain, and when the data services start."""
    program, forced = schedule(run), schedule(run, forced=True)
    longest, floor = _chain(program), _chain(forced)
    lines = [
        f"estimated `pulumi up` of a new stack: {longest.minutes:.1f} min (longest chain)",
        f"forced by the cloud:                  {floor.minutes:.1f} min (physical prerequisites only)",
        "",
        "longest chain (start -> finish, minutes):",
        *_chain_lines(longest),
        "",
        "forced chain:",
        *_chain_lines(floor),
    ]
    services = sorted(
        (s for s in program.values() if s.resource.type in data_services()), key=lambda s: (s.start, s.resource.urn)
    )
    if services:
        lines += ["", "data services start (minutes; forced in brackets):"]
        for s in services:
            lines.append(
                f"  {s.start:6.1f} [{forced[s.resource.urn].start:4.1f}]  {_label(s.resource)}  ({_why(program, s)})"
            )
    defaulted = defaulted_types(run)
    if defaulted:
        lines += ["", f"no creation time, {DEFAULT_SECONDS:.0f} s assumed: {', '.join(defaulted)}"]
    unjudged = unjudged_types(run)
    if unjudged:
        lines += ["", f"no physical prerequisites known, all edges kept: {', '.join(unjudged)}"]
    estimated = sorted({r.type for r in run.resources if (t := creation_time(r)) is not None and t.estimate})
    lines += [
        "",
        f"{len(estimated)} of the {len(_custom_types(run))} types' creation times are estimates without "
        "a measured source (each provider's `creation_times`, stacks/tooling/clouds/).",
    ]
    return "\n".join(lines)
