"""Issue 14, item 6: Flower behind basic auth when it runs.

The password is generated and kept in state; the credentials reach the Flower pod alone, from the
Secret; every stack exports them under the same names; the probes use Flower's unauthenticated
/healthcheck. tests/e2e/test_flower_auth_e2e.py runs the real Flower.
"""

from __future__ import annotations

import pytest

from tests.render import component, containers, env_of, named, render, workloads

FLOWER = "airflow.flower.enabled=true"
STACKS = ["local", "aws-dev", "azure-dev"]


@pytest.mark.parametrize("stack", STACKS)
def test_flower_gets_its_credentials_and_no_one_else(stack: str) -> None:
    run = render(stack, FLOWER)
    for w in workloads(run):
        for c in containers(w["spec"]["template"]["spec"]):
            env = env_of(c)
            if component(w) == "flower":
                assert env["FLOWER_BASIC_AUTH"] == ("secret", "airflow-secrets", "flower-basic-auth")
            else:
                assert "FLOWER_BASIC_AUTH" not in env, component(w)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_exports_the_same_flower_outputs(stack: str) -> None:
    run = render(stack, FLOWER)
    assert run.outputs["flowerUser"] == "flower"
    assert run.outputs["flowerPassword"] == "[secret]"
    secret = named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]["flower-basic-auth"]
    user, _, password = secret.partition(":")
    assert user == "flower" and password
    assert "flowerUser" not in render(stack).outputs and "flowerPassword" not in render(stack).outputs


def test_probes_use_the_unauthenticated_healthcheck() -> None:
    [flower] = [w for w in workloads(render("local", FLOWER)) if component(w) == "flower"]
    c = flower["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthcheck", "port": "flower"}, probe


def test_the_user_name_is_configurable() -> None:
    run = render("local", FLOWER, "airflow.flower.user=ops")
    assert run.outputs["flowerUser"] == "ops"
    assert named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]["flower-basic-auth"].startswith("ops:")
