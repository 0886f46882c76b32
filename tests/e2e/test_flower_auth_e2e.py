"""Flower behind basic auth (issue 14, item 6): the real Flower from the render, with the rendered
env (FLOWER_BASIC_AUTH from the Secret) against the real Redis broker, refuses a request without
the credentials or with wrong ones, accepts the generated ones, and answers its probe path
without them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.e2e.api_only import Front, front
from tests.e2e.harness import wait_port


@pytest.fixture(scope="module")
def flower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Front, str]]:
    with front(
        tmp_path_factory.mktemp("e2e-flower"),
        ("airflow.flower.enabled=true",),
        components=("flower",),
        redis=True,
        module="flower_auth",
    ) as d:
        spec = d.containers["flower"].spec
        port = next(p["containerPort"] for p in spec["ports"] if p["name"] == "flower")
        wait_port(port, timeout=90)
        yield d, f"http://127.0.0.1:{port}"


def _get(url: str, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.get(url, auth=auth, timeout=30, allow_redirects=False)


def test_flower_refuses_requests_without_the_credentials(flower: tuple[Front, str]) -> None:
    d, url = flower
    user, _, password = d.cluster.secrets["airflow-secrets"]["flower-basic-auth"].partition(":")
    assert user == "flower" and len(password) == 32
    for path in ("/", "/workers", "/api/workers"):
        assert _get(url + path).status_code == 401, path
        assert _get(url + path, (user, password + "x")).status_code == 401, path
        assert _get(url + path, ("admin", password)).status_code == 401, path


def test_flower_accepts_the_generated_credentials(flower: tuple[Front, str]) -> None:
    d, url = flower
    user, _, password = d.cluster.secrets["airflow-secrets"]["flower-basic-auth"].partition(":")
    resp = _get(url + "/workers", (user, password))
    assert resp.status_code == 200 and "Flower" in resp.text


def test_the_probe_path_needs_no_credentials(flower: tuple[Front, str]) -> None:
    d, url = flower
    spec = d.containers["flower"].spec
    path = spec["readinessProbe"]["httpGet"]["path"]
    assert spec["livenessProbe"]["httpGet"]["path"] == path == "/healthcheck"
    resp = _get(url + path)
    assert resp.status_code == 200 and resp.text == "OK"
