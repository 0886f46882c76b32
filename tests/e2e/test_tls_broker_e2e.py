"""The broker URL form the AWS stack renders (rediss://, AUTH, ssl_cert_reqs=required) against a
real TLS-only Redis: the same DAG must succeed, and the certificate check must really happen."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import AIRFLOW_VENV
from tests.e2e.test_airflow_e2e import EXPECTED, Deployment, booted
from tests.render import named, render


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with booted(Deployment(tmp_path_factory.mktemp("e2e-tls"), tls_broker=True), "tls_broker_module") as d:
        yield d


def test_rendered_broker_url_has_the_aws_stack_form(tls_stack: Deployment) -> None:
    ours = urlsplit(tls_stack.cluster.secrets["airflow-broker"]["broker-url"])
    aws = urlsplit(named(render("aws-dev"), "Secret", "airflow-broker", reveal=True)["stringData"]["broker-url"])
    for url in (ours, aws):
        assert url.scheme == "rediss" and url.username == "" and url.password and url.path == "/0"
    assert ours.query == aws.query == "ssl_cert_reqs=required"


def test_certificate_is_checked(tls_stack: Deployment) -> None:
    """Without the CA in the trust store the same URL is refused: kombu really verifies."""
    url = tls_stack.cluster.secrets["airflow-broker"]["broker-url"]
    probe = "import redis, sys; redis.from_url(sys.argv[1]).ping()"
    untrusted = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", probe, url],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    trusted = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", probe, url],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(tls_stack.redis.ca)},
    )
    assert trusted.returncode == 0, trusted.stderr


def test_dag_succeeds_over_a_tls_broker(tls_stack: Deployment) -> None:
    tls_stack.ready_for_pipeline()
    run_id = tls_stack.trigger()
    assert tls_stack.wait_run(run_id) == "success", tls_stack.logs()
    states, _ = tls_stack.task_states(run_id)
    assert states == EXPECTED
