"""Each cloud's tooling facts live in one module of stacks/tooling/clouds/, and they cover every render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks.tooling import clouds
from stacks.tooling.render import stack_names
from tests.render import render

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ROOT / "stacks" / "tooling"
CLOUDS = TOOLING / "clouds"
COMPONENT_PREFIXES = ("pulumi:", "airflow-k8s:")  # the stack, providers, and our components
PREFIXES = sorted({"aws:", "azure-native:"} | {c.prefix for c in clouds.ALL})


def test_no_cloud_type_token_outside_the_facts_modules() -> None:
    alternatives = "|".join(re.escape(p) for p in PREFIXES)
    token = re.compile(rf"""["'](?:{alternatives})""")
    files = [p for p in TOOLING.rglob("*.py") if CLOUDS not in p.parents]
    assert {p.name for p in files} >= {"engine.py", "diff.py", "teardown.py", "cli.py", "render.py"}
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if token.search(line)
    ]
    assert not hits, "cloud type tokens belong in stacks/tooling/clouds/:\n" + "\n".join(hits)


@pytest.mark.parametrize("stack", stack_names())
def test_every_rendered_type_has_its_facts(stack: str) -> None:
    types = {r.type for r in render(stack).resources}
    unowned = sorted(t for t in types if clouds.facts_for(t) is None and not t.startswith(COMPONENT_PREFIXES))
    assert not unowned, f"no module in stacks/tooling/clouds/ owns {unowned}"


def test_each_facts_module_speaks_only_of_its_own_types() -> None:
    prefixes = [c.prefix for c in clouds.ALL]
    assert len(set(prefixes)) == len(prefixes)
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]
    for c in clouds.ALL:
        named = [*c.stateful, *c.mock_invokes, *c.network_and_cluster]
        assert all(c.owns(t) for t in named), (c.prefix, [t for t in named if not c.owns(t)])
