"""Issue 14, item 1: behind the UI's Ingress the api-server knows its external URL.

With `ui.host` the api-server believes X-Forwarded-Proto/For from private peers only (the ingress
controller, a load balancer in the VPC), and `[api] base_url` is the HTTPS URL, where it decides a
redirect, a login callback or a link; the in-cluster execution API URL stays what it was. Without
`ui.host` nothing of this is rendered. tests/e2e/test_proxy_e2e.py runs the real api-server.
"""

from __future__ import annotations

import ipaddress

import pytest

from components.airflow.env import TRUSTED_PROXIES
from tests.render import component, containers, env_of, is_airflow, render, workloads

LOCAL_UI = ("ui.host=airflow.example.com", "ui.ingressClassName=nginx", "ui.tls.clusterIssuer=letsencrypt-prod")
AWS_UI = (
    "ui.host=airflow.example.com",
    "aws.ui.certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
)
STACKS = [("local", LOCAL_UI), ("aws-dev", AWS_UI)]


def _airflow_env(stack: str, *overrides: str) -> dict[str, dict[str, object]]:
    """component -> env of its Airflow container (every workload, Job and the task-pod template)."""
    run = render(stack, *overrides)
    out = {}
    for w in workloads(run):
        for c in containers(w["spec"]["template"]["spec"]):
            if is_airflow(c) and c["name"] not in ("wait-for-migrations",):
                out.setdefault(component(w), env_of(c))
    return out


def _api_args(stack: str, *overrides: str) -> list[str]:
    [api] = [w for w in workloads(render(stack, *overrides)) if component(w) == "api-server"]
    return api["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("stack,ui", STACKS, ids=[s for s, _ in STACKS])
def test_behind_the_ingress_the_api_server_trusts_private_proxies_only(stack: str, ui: tuple[str, ...]) -> None:
    assert "--proxy-headers" in _api_args(stack, *ui)
    env = _airflow_env(stack, *ui)
    assert env["api-server"]["FORWARDED_ALLOW_IPS"] == TRUSTED_PROXIES
    # Only the process that serves HTTP gets it.
    assert [c for c, e in env.items() if "FORWARDED_ALLOW_IPS" in e] == ["api-server"]
    nets = [ipaddress.ip_network(n) for n in TRUSTED_PROXIES.split(",")]
    # No public address (100.64.0.0/10 is shared address space, used for pod networks).
    assert "*" not in TRUSTED_PROXIES and not any(n.is_global for n in nets)
    assert not any(ipaddress.ip_address("203.0.113.7") in n for n in nets)


@pytest.mark.parametrize("stack,ui", STACKS, ids=[s for s, _ in STACKS])
def test_links_point_at_the_https_url_and_tasks_still_reach_the_api_in_cluster(stack: str, ui: tuple[str, ...]) -> None:
    env = _airflow_env(stack, *ui)
    assert env["api-server"]["AIRFLOW__API__BASE_URL"] == "https://airflow.example.com/"
    # Where task or DAG code runs (ti.log_url in alerts), the same URL.
    for comp in ("dag-processor", "triggerer", "worker"):
        assert env[comp]["AIRFLOW__API__BASE_URL"] == "https://airflow.example.com/", comp
        assert env[comp]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-api-server.airflow.svc.cluster.local:8080/execution/"
        )


@pytest.mark.parametrize("stack", ["local", "aws-dev"])
def test_without_a_host_nothing_changes(stack: str) -> None:
    assert "--proxy-headers" not in _api_args(stack)
    for comp, env in _airflow_env(stack).items():
        assert "FORWARDED_ALLOW_IPS" not in env and "AIRFLOW__API__BASE_URL" not in env, comp


def test_base_url_is_owned_by_ui_host() -> None:
    from stacks.tooling.render import RenderError

    with pytest.raises(
        RenderError, match=r"airflow-k8s:airflow.config.*'api.base_url' is set by the program \(ui.host"
    ):
        render("local", "airflow.config={api.base_url: 'https://elsewhere.example.com/'}")
