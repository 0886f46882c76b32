"""Issue 10.10: probes that make a pod Ready soon after its process is healthy, at a sane cost.

The kubelet runs no readiness or liveness probe before the startup probe has passed, and a
container without a readiness probe is Ready once started. So the time from "healthy" to "Ready"
is at most one startup period plus, where there is one, one readiness period.
"""

from __future__ import annotations

import pytest

from tests.render import containers, is_airflow, named, pod_spec, render, workloads
from tests.stacks.test_local_render import VARIANTS

EVERYTHING = ("airflow.executor=CeleryExecutor,KubernetesExecutor", "airflow.flower.enabled=true")


def _long_running(run):  # noqa: ANN001, ANN202
    for obj in workloads(run):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for c in pod_spec(obj)["containers"]:
                if is_airflow(c):
                    yield obj["metadata"]["name"], c


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), "everything"])
def test_every_airflow_process_is_ready_within_15_s_of_being_healthy(variant: str) -> None:
    run = render("local", *(EVERYTHING if variant == "everything" else VARIANTS[variant]))
    seen = 0
    for name, c in _long_running(run):
        seen += 1
        start, live, ready = c.get("startupProbe"), c.get("livenessProbe"), c.get("readinessProbe")
        assert start and live, name
        assert start["periodSeconds"] + (ready["periodSeconds"] if ready else 0) <= 15, name
        assert start["periodSeconds"] * start["failureThreshold"] >= 300, name  # slow starts survive
        for probe in (start, live, ready):
            assert probe is None or not probe.get("initialDelaySeconds"), name  # the startup probe gates
        if ready:  # readiness runs for the pod's whole life: never an interpreter
            assert "exec" not in ready, name
        if "exec" in live:  # an `airflow`/`celery` interpreter costs seconds of CPU
            assert live["periodSeconds"] >= 60, name
    assert seen >= 4  # api-server, scheduler, dag-processor, triggerer (+ worker, flower)


def test_components_behind_a_service_gate_it_with_an_http_or_tcp_readiness_check() -> None:
    run = render("local", *EVERYTHING)
    api = named(run, "Deployment", "airflow-api-server")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"] == {"path": "/api/v2/monitor/health", "port": "api"}
    flower = named(run, "Deployment", "airflow-flower")["spec"]["template"]["spec"]["containers"][0]
    # Flower's own health endpoint, which answers without its basic-auth credentials (issue 14).
    assert flower["readinessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "flower"}


def test_the_scheduler_is_probed_over_its_health_server() -> None:
    run = render("local")
    sched = named(run, "Deployment", "airflow-scheduler")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in sched["env"]}
    port = {p["name"]: p["containerPort"] for p in sched["ports"]}["health"]
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] == str(port)
    for probe in ("startupProbe", "livenessProbe"):
        assert sched[probe]["httpGet"] == {"path": "/health", "port": "health"}
    for obj in workloads(run):
        for c in containers(pod_spec(obj)):
            assert "readinessProbe" not in c or obj["metadata"]["name"] != "airflow-scheduler"
