"""Issue 15.5: the housekeeping CronJobs' rendered containers, run as the harness runs rendered
containers.

db clean: real Airflow 3.3.2 on a real PostgreSQL holding run history made by running a DAG
(`airflow dags test`) twice, one run then back-dated past the retention. The rendered db-clean
container, with exactly the env it renders (the DB URL and no other secret), deletes the old run's
rows (dag_run, task_instance, xcom, log) and keeps the new one's; a second run changes nothing, and
no archive table is left.

Pod cleanup: the rendered pod-cleanup container against the emulated API server (tests/e2e/kube.py:
the rendered Roles decide what its token may do), with task pods in every phase and age in the
Airflow and the task namespace: it deletes only finished (or long-pending) task pods, and only with
list and delete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from components.airflow.housekeeping_settings import DB_CLEAN_TABLES
from tests.e2e.harness import AIRFLOW_VENV, Cluster, Container, Postgres, Process, airflow_containers
from tests.e2e.kube import KubeApi, Kubelet, User
from tests.e2e.test_airflow_e2e import DB_PASSWORD, TIMINGS, _render_objects
from tests.e2e.test_kubernetes_executor_e2e import _forget_discovery

DAG_ID = "e2e_housekeeping"
DAG = f'''
import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator

with DAG("{DAG_ID}", schedule=None, start_date=datetime.datetime(2020, 1, 1), catchup=False):
    BashOperator(task_id="hello", bash_command="echo kept-or-not")
'''
RETENTION_DAYS = 30
# Logical dates of the two runs: `airflow dags test` starts a run at its logical date (the Task SDK's
# DAG.test passes start_date=logical_date), and db clean judges a run by its start_date, so the kept
# run's date must be inside the retention: yesterday. The other is back-dated past it below.
_TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
OLD_RUN, NEW_RUN = ((_TODAY - timedelta(days=d)).isoformat() for d in (2, 1))
OLD_DAY, NEW_DAY = OLD_RUN[:10], NEW_RUN[:10]


@dataclass
class Stack:
    pg: Postgres
    cluster: Cluster
    containers: dict[str, Container]
    objects: list[dict[str, Any]]
    base: Path


def overrides(pg: Postgres) -> tuple[str, ...]:
    return (
        "database.mode=external",
        f"database.external={{host: 127.0.0.1, port: {pg.port}, name: airflow, user: airflow, "
        f"password: '{DB_PASSWORD}', sslmode: disable}}",
        "airflow.dags={source: volume, claimName: e2e-dags}",
        "airflow.executor=KubernetesExecutor",
        "kubernetes.taskNamespace=airflow-tasks",
        f"airflow.housekeeping.dbClean={{enabled: true, retentionDays: {RETENTION_DAYS}}}",
        "airflow.housekeeping.podCleanup={enabled: true, minCompletedMinutes: 60, minPendingMinutes: 30}",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert (AIRFLOW_VENV / "bin" / "airflow").exists(), f"no Airflow virtualenv at {AIRFLOW_VENV}: run `bash .ci/run`"
    t0 = time.time()
    base = tmp_path_factory.mktemp("e2e-housekeeping")
    pg = Postgres(base / "postgres", DB_PASSWORD)
    try:
        pg.start()
        pg.create_airflow_db()
        objects = _render_objects(overrides(pg))
        dags = base / "dag-volume"
        dags.mkdir()
        (dags / f"{DAG_ID}.py").write_text(DAG)
        cluster = Cluster(objects, dags, base)
        containers = airflow_containers(objects)
        p = Process(cluster, containers["migrate"]).start()
        assert p.wait(300) == 0, p.tail()
        yield Stack(pg, cluster, containers, objects, base)
    finally:
        pg.remove()
        TIMINGS["housekeeping_module"] = time.time() - t0
        TIMINGS["end"] = time.time()


def run_as(stack: Stack, component: str, argv: list[str], name: str, timeout: float = 300) -> Process:
    """The rendered container of `component` (its env, mounts, secrets), running `argv` instead."""
    p = Process(stack.cluster, stack.containers[component], name=name)
    p.argv = argv
    assert p.start().wait(timeout) == 0, p.tail()
    return p


def counts(pg: Postgres) -> dict[str, str]:
    """What each run left, per run: `<logical date>=<rows>` lists, for one-line assertions."""

    def per_run(table: str) -> str:
        return pg.query(
            f"SELECT string_agg(to_char(r.logical_date, 'YYYY-MM-DD') || '=' || n, ',' ORDER BY r.logical_date) "
            f"FROM (SELECT run_id, count(*) n FROM {table} WHERE dag_id = '{DAG_ID}' GROUP BY run_id) t "
            f"JOIN dag_run r ON r.dag_id = '{DAG_ID}' AND r.run_id = t.run_id"
        )

    return {
        "dag_run": pg.query(
            f"SELECT string_agg(to_char(logical_date, 'YYYY-MM-DD'), ',' ORDER BY logical_date) FROM dag_run "
            f"WHERE dag_id = '{DAG_ID}'"
        ),
        "task_instance": per_run("task_instance"),
        "xcom": per_run("xcom"),
        "log": pg.query(
            f"SELECT string_agg(event, ',' ORDER BY event) FROM log WHERE dag_id = '{DAG_ID}' AND event LIKE 'e2e-%'"
        ),
        "archives": pg.query("SELECT count(*) FROM pg_tables WHERE tablename LIKE '_airflow_deleted__%'"),
    }


def test_db_clean_deletes_what_is_older_than_the_retention_and_nothing_else(stack: Stack) -> None:
    pg = stack.pg
    airflow = str(AIRFLOW_VENV / "bin" / "airflow")
    # Run history the way Airflow writes it: the DAG run twice, in process, against the real DB.
    for date in (OLD_RUN, NEW_RUN):
        run_as(stack, "scheduler", [airflow, "dags", "test", DAG_ID, date], name=f"dags-test-{date[:10]}")
    # Back-date the first run past the retention (its rows as if written 200 days ago), and add an
    # audit-log row on each side of the cut-off.
    old = "now() - interval '200 days'"
    run_id = pg.query(f"SELECT run_id FROM dag_run WHERE dag_id = '{DAG_ID}' AND logical_date = '{OLD_RUN}'")
    assert run_id, "the first dags test made no run"
    where = f"dag_id = '{DAG_ID}' AND run_id = '{run_id}'"
    pg.query(f"UPDATE dag_run SET start_date = {old}, end_date = {old}, queued_at = {old} WHERE {where}")
    pg.query(f"UPDATE task_instance SET start_date = {old}, end_date = {old} WHERE {where}")
    pg.query(f"UPDATE xcom SET timestamp = {old} WHERE {where}")
    pg.query(
        f"INSERT INTO log (dttm, event, dag_id) VALUES ({old}, 'e2e-old', '{DAG_ID}'), "
        f"(now() - interval '{RETENTION_DAYS - 1} days', 'e2e-recent', '{DAG_ID}')"
    )
    before = counts(pg)
    assert before == {
        "dag_run": f"{OLD_DAY},{NEW_DAY}",
        "task_instance": f"{OLD_DAY}=1,{NEW_DAY}=1",
        "xcom": f"{OLD_DAY}=1,{NEW_DAY}=1",
        "log": "e2e-old,e2e-recent",
        "archives": "0",
    }, before

    clean = stack.containers["db-clean"]
    # Exactly the secrets the render gives it: the DB URL. No fernet key, JWT secret or API key.
    secret_vars = {e["name"] for e in clean.spec["env"] if "valueFrom" in e}
    assert secret_vars == {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
    first = Process(stack.cluster, clean, name="db-clean-1").start()
    assert first.wait(300) == 0, first.tail()
    assert "airflow db clean: rows older than" in first.log.read_text()
    after = counts(pg)
    assert after == {
        "dag_run": NEW_DAY,
        "task_instance": f"{NEW_DAY}=1",
        "xcom": f"{NEW_DAY}=1",
        "log": "e2e-recent",
        "archives": "0",  # --skip-archive: the purged rows are not kept in _airflow_deleted__* tables
    }, after

    # A second run (the next day's, or a retry after a failure halfway) finds nothing more to delete.
    second = Process(stack.cluster, clean, name="db-clean-2").start()
    assert second.wait(300) == 0, second.tail()
    assert counts(pg) == after


def test_the_settings_know_exactly_the_tables_airflow_cleans(stack: Stack) -> None:
    """DB_CLEAN_TABLES (the `tables` allowed in config) is Airflow 3.3.2's list, read in the db-clean
    container's env (FAB with database sessions adds `session`)."""
    p = run_as(
        stack,
        "db-clean",
        [
            str(AIRFLOW_VENV / "bin" / "python"),
            "-c",
            "import json; from airflow.utils.db_cleanup import config_dict; print('TABLES', json.dumps(sorted(config_dict)))",
        ],
        name="db-clean-tables",
    )
    line = next(x for x in p.log.read_text().splitlines() if x.startswith("TABLES "))
    assert json.loads(line.removeprefix("TABLES ")) == sorted(DB_CLEAN_TABLES)


# ---- pod cleanup against the emulated API server ------------------------------------------------


def _ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


TASK_LABELS = {"dag_id": "d", "task_id": "t", "try_number": "1", "airflow_version": "3.3.2"}


def _pod(kube: KubeApi, namespace: str, name: str, phase: str, minutes: float, labels: dict[str, str]) -> None:
    """A pod created `minutes` ago, now in `phase` (a finished one finished then)."""
    kube.store.create(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": "apache/airflow:3.3.2"}]},
        },
    )

    def change(p: dict[str, Any]) -> None:
        p["metadata"]["creationTimestamp"] = _ago(minutes + 1)
        p["status"]["phase"] = phase
        if phase in ("Succeeded", "Failed"):
            p["status"]["containerStatuses"] = [
                {
                    "name": "base",
                    "ready": False,
                    "restartCount": 0,
                    "image": "apache/airflow:3.3.2",
                    "imageID": "",
                    "state": {
                        "terminated": {
                            "exitCode": 0 if phase == "Succeeded" else 1,
                            "startedAt": _ago(minutes + 1),
                            "finishedAt": _ago(minutes),
                        }
                    },
                }
            ]

    kube.store.set_status(namespace, name, change)


def test_pod_cleanup_deletes_only_finished_task_pods_with_list_and_delete(stack: Stack) -> None:
    objects = stack.objects
    cluster = replace(stack.cluster)
    kube = KubeApi(stack.base / "kube", objects).start()
    kubelet = Kubelet(kube, cluster)  # not started: it runs only the rendered container below
    pods = {
        # KubernetesExecutor pods in Airflow's namespace.
        ("airflow", "failed-long-ago"): ("Failed", 120, TASK_LABELS),
        ("airflow", "failed-just-now"): ("Failed", 10, TASK_LABELS),  # kept to be looked at
        ("airflow", "running"): ("Running", 300, TASK_LABELS),
        ("airflow", "pending-too-long"): ("Pending", 45, TASK_LABELS),
        ("airflow", "pending-briefly"): ("Pending", 5, TASK_LABELS),
        # Not a task pod (no Airflow task labels): never touched, however finished.
        ("airflow", "someone-elses"): ("Failed", 600, {"app": "other"}),
        # KubernetesPodOperator pods in the task namespace.
        ("airflow-tasks", "kpo-succeeded-long-ago"): ("Succeeded", 90, TASK_LABELS),
        ("airflow-tasks", "kpo-running"): ("Running", 90, TASK_LABELS),
        # A namespace it has no business in.
        ("default", "elsewhere-failed"): ("Failed", 600, TASK_LABELS),
    }
    try:
        for (ns, name), (phase, minutes, labels) in pods.items():
            _pod(kube, ns, name, phase, minutes, labels)
        proc = kubelet.run_workload(stack.containers["pod-cleanup"])
        rc = proc.wait(180)
        assert rc == 0, proc.tail()
        left = {key for key in pods if kube.store.list(key[0], lambda p, n=key[1]: p["metadata"]["name"] == n)[0]}
        user = User("airflow", "airflow-pod-cleanup")
        calls = [(r.verb, r.namespace, r.name, r.code) for r in kube.requests if r.user == user.name]
    finally:
        kubelet.stop()
        kube.stop()
        _forget_discovery(kube)
    assert {key for key in pods if key not in left} == {
        ("airflow", "failed-long-ago"),
        ("airflow", "pending-too-long"),
        ("airflow-tasks", "kpo-succeeded-long-ago"),
    }
    # It listed each namespace it cleans and deleted one pod at a time, every call allowed; it never
    # created, patched or read a pod, nor looked at any other namespace.
    assert {(verb, ns) for verb, ns, _, _ in calls} == {
        ("list", "airflow"),
        ("list", "airflow-tasks"),
        ("delete", "airflow"),
        ("delete", "airflow-tasks"),
    }
    assert all(code == 200 for *_, code in calls), calls
    assert not kube.rbac.allows(user, "create", "pods", "airflow")
    assert not kube.rbac.allows(user, "create", "pods", "airflow-tasks")
    assert not kube.rbac.allows(user, "list", "pods", "default")


def test_db_clean_does_not_start_before_the_schema_matches_its_image(stack: Stack) -> None:
    """Its init container is the rendered `db check-migrations`: against the migrated DB it passes."""
    c = next(o for o in stack.objects if o["kind"] == "CronJob" and o["metadata"]["name"] == "airflow-db-clean")
    init = c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]
    container = replace(stack.containers["db-clean"], spec=init)
    p = Process(stack.cluster, container, name="db-clean-wait").start()
    assert p.wait(180) == 0, p.tail()
