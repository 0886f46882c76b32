"""Each cloud's tooling facts live in one module of stacks/tooling/clouds/, and they cover every render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks.tooling import clouds
from stacks.tooling.render import stack_names
from tests.render import render
from tests.stacks.test_azure import EXISTING as AZURE_EXISTING

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


# Each stack file, plus the existing-infrastructure variants (the only renders that look things up).
LOOKUPS = [
    ("aws-dev", ()),
    (
        "aws-dev",
        (
            "aws.cluster.existingName=team-eks",
            "aws.network={vpcId: vpc-0abc12345678, privateSubnets: "
            "[{id: subnet-0aaa11112222, availabilityZone: eu-west-1a}, {id: subnet-0bbb11112222, availabilityZone: eu-west-1b}]}",
        ),
    ),
    ("azure-dev", ()),
    ("azure-dev", AZURE_EXISTING),
    *[(s, ()) for s in stack_names() if s not in ("aws-dev", "azure-dev")],
]
# Packages whose default provider would pick up ambient settings (region, subscription, kubeconfig
# context). `random` has no settings: its default provider cannot point anywhere wrong, and moving
# the generated passwords of existing stacks to another provider is a risk with nothing to gain.
CONFIGURED = ("aws:", "azure-native:", "kubernetes:")


@pytest.mark.parametrize(("stack", "overrides"), LOOKUPS)
def test_no_resource_or_invoke_runs_on_a_default_provider(stack: str, overrides: tuple[str, ...]) -> None:
    run = render(stack, *overrides)
    explicit = {r.urn for r in run.resources if r.type.startswith("pulumi:providers:")}
    resources = [r for r in run.resources if r.custom and r.type.startswith(CONFIGURED)]
    assert resources
    assert not [r.name for r in resources if r.provider not in explicit]
    looked_up = [i for i in run.invokes if i.token.startswith(CONFIGURED)]
    assert not [i.token for i in looked_up if i.provider not in explicit]
    if overrides:
        assert looked_up  # the existing-infrastructure variants do look things up
