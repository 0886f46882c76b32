"""The fan-out benchmark's pieces (tests/e2e/bench_fanout.py), without running it: the chart-defaults
environment it builds from the render, the DAG it runs, and its arithmetic. Not a timed test."""

from __future__ import annotations

import json
import subprocess

from stacks.tooling.render import run_stack
from tests.e2e import bench_fanout as bench
from tests.e2e.harness import AIRFLOW_VENV, airflow_containers


def _rendered_env(component: str) -> dict[str, str]:
    objects = [r.manifest(reveal=True) for r in run_stack("local", ()).kubernetes()]
    spec = airflow_containers(objects)[component].spec
    return {e["name"]: e.get("value", "<from a secret>") for e in spec["env"]}


def test_chart_env_swaps_the_programs_settings_for_the_charts_and_keeps_wiring_and_concurrency() -> None:
    rendered = _rendered_env("worker")
    rendered["AIRFLOW__SCHEDULER__PARSING_PROCESSES"] = "7"  # a program setting the chart does not make
    env = bench.chart_env(rendered)
    for name in bench.WIRING & rendered.keys():
        assert env[name] == rendered[name], name
    assert "AIRFLOW__SCHEDULER__PARSING_PROCESSES" not in env
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "127.0.0.1"  # cluster DNS, as the harness maps it
    assert env["AIRFLOW__CORE__COLORED_CONSOLE_LOG"] == "False"
    # The same concurrency as the render (8 in Pulumi.local.yaml), not the chart's own 16.
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == rendered["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "8"
    assert (
        not {k for k in env if k.startswith("AIRFLOW__")}
        - bench.WIRING
        - {bench.env_name(k) for k in bench.CHART_CONFIG}
    )
    # Non-Airflow variables (the kubelet's, the connection for KPO) pass through untouched.
    assert env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] == rendered["AIRFLOW_CONN_KUBERNETES_DEFAULT"]


def test_config_differences_name_each_setting_once_with_both_values() -> None:
    local = {"AIRFLOW__CELERY__WORKER_CONCURRENCY": "8", "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "HOME": "/x"}
    chart = bench.chart_env(local)
    diff = {k: (a, b) for k, a, b in bench.config_differences(local, chart)}
    assert diff["metrics.statsd_on"] == ("(default)", "True")
    assert "celery.worker_concurrency" not in diff and "core.executor" not in diff
    assert all(k == k.lower() and "." in k for k in diff)


def test_max_overlap_counts_tasks_running_at_once() -> None:
    assert bench.max_overlap([(0, 2), (1, 3), (2.5, 4), (5, 6)]) == 2
    assert bench.max_overlap([(0, 10)] * 8) == 8
    assert bench.max_overlap([]) == 0


def test_bench_dag_parses_as_one_start_fifty_parallel_tasks_and_one_join() -> None:
    """Parsed by the real Airflow the benchmark runs (its venv), as the dag-processor would."""
    code = (
        "import json, sys; from airflow.models.dagbag import DagBag;"
        "bag = DagBag(sys.argv[1]);"
        "d = bag.dags['bench_fanout'];"
        "print(json.dumps({'errors': list(bag.import_errors), 'max_active_tasks': d.max_active_tasks,"
        "'tasks': {t.task_id: sorted(t.downstream_task_ids) for t in d.tasks}}))"
    )
    done = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", code, str(bench.DAGS)],
        capture_output=True,
        text=True,
        env={"AIRFLOW_HOME": "/tmp/airflow-k8s-bench-parse", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == []
    tasks = parsed["tasks"]
    holds = sorted(t for t in tasks if t.startswith("hold_"))
    assert len(holds) == 50 and len(tasks) == 52
    assert tasks["start"] == holds
    assert all(tasks[h] == ["join"] for h in holds) and tasks["join"] == []
    assert parsed["max_active_tasks"] == 16  # the DAG sets none: Airflow's [core] default applies


def test_move_ports_moves_each_fixed_port_and_nothing_that_merely_contains_it() -> None:
    spec = {
        "args": ["api-server", "--port", "8080"],
        "env": [
            {
                "name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                "value": "http://api.svc.cluster.local:8080/execution/",
            },
            {"name": "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "value": "8793"},
            {"name": "OTHER", "value": "18080 80801 a8080"},
        ],
        "ports": [{"name": "api", "containerPort": 8080}],
    }
    moved = bench.move_ports(spec, {8080: 41000, 8793: 41001})
    assert moved["args"][-1] == "41000"
    assert moved["env"][0]["value"] == "http://api.svc.cluster.local:41000/execution/"
    assert moved["env"][1]["value"] == "41001"
    assert moved["env"][2]["value"] == "18080 80801 a8080"
    assert moved["ports"][0]["containerPort"] == 41000
