"""Issue 15.6 on real Airflow 3.3.2: the rendered pools Job's container, run against a migrated
PostgreSQL, makes `slot_pool` match `airflow.pools` (create, re-apply with no change, change slots,
delete what it made and nothing else, keep a pool that unfinished tasks use); a one-slot pool keeps
three tasks of a DAG apart on a worker that runs eight at once; and a Variable given only as a Pulumi
secret (`airflow.secretVariables`) reaches a task's `Variable.get`."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from components.airflow.pools import MARKER
from tests.e2e.api_only import Front, front
from tests.e2e.harness import Cluster, Process, airflow_containers

SECRET = "e2e-secret-variable-value-7c1d"
SERIAL = "e2e_serial: {slots: 1, description: one at a time}"
HELD = "e2e_held: {slots: 0}"
V1 = f"airflow.pools={{{SERIAL}, e2e_gone: {{slots: 5, includeDeferred: true}}, {HELD}}}"
# e2e_gone removed, e2e_serial kept, default_pool's slots set.
V2 = f"airflow.pools={{{SERIAL}, {HELD}, default_pool: {{slots: 64}}}}"
# e2e_held removed too.
V3 = f"airflow.pools={{{SERIAL}, default_pool: {{slots: 64}}}}"


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    with front(
        tmp_path_factory.mktemp("e2e-pools"),
        (V1, "airflow.secretVariables={}"),
        components=("api-server", "scheduler", "dag-processor", "worker"),
        redis=True,
        module="pools",
        secrets={"secretVariables.e2e_secret": SECRET},
    ) as d:
        # Its own api-server answers (not a stray one on the same port: a second server fails to bind).
        assert all(p.alive() for p in d.procs.values()), d.logs()
        d.api.login("admin", d.admin_password)
        yield d


def run_pools_job(d: Front, pools: str, name: str) -> tuple[int, str]:
    """The pools Job's container from a render with `pools`, run once as the Job's pod would."""
    d.extra = (pools, "airflow.secretVariables={}")
    objects = d.render()
    cluster = Cluster(objects, d.base / "dag-volume", d.base)
    job = airflow_containers(objects)["pools"]
    p = Process(cluster, job, name=name).start()
    rc = p.wait(180)
    return rc, p.log.read_text()


def rows(d: Front) -> dict[str, tuple[str, ...]]:
    """slot_pool as PostgreSQL has it, with each row's xmin (the transaction that last wrote it)."""
    out = d.pg.query("SELECT pool, slots, description, include_deferred, xmin FROM slot_pool ORDER BY pool")
    return {line.split("|")[0]: tuple(line.split("|")[1:]) for line in out.splitlines()}


def test_the_job_creates_the_declared_pools(d: Front) -> None:
    before = rows(d)
    assert set(before) == {"default_pool"}  # what the migration made
    rc, out = run_pools_job(d, V1, "pools-1")
    assert rc == 0, out
    after = rows(d)
    assert after["e2e_serial"][:3] == ("1", f"one at a time {MARKER}", "f")
    assert after["e2e_gone"][:3] == ("5", MARKER, "t")
    assert after["e2e_held"][:3] == ("0", MARKER, "f")
    assert after["default_pool"] == before["default_pool"]  # not declared: untouched


def test_applying_the_same_pools_again_changes_nothing(d: Front) -> None:
    before = rows(d)
    rc, out = run_pools_job(d, V1, "pools-2")
    assert rc == 0, out
    assert "created" not in out and "updated" not in out and "deleted" not in out
    assert rows(d) == before  # the same xmin: no row was written


def test_changed_slots_update_and_a_removed_pool_is_deleted_but_a_ui_pool_kept(d: Front) -> None:
    status, body = d.api.call("POST", "/api/v2/pools", {"name": "ui_made", "slots": 2, "description": "by hand"})
    assert status == 201, body
    rc, out = run_pools_job(d, V2, "pools-3")
    assert rc == 0, out
    after = rows(d)
    assert "e2e_gone" not in after and "pool e2e_gone: deleted" in out
    assert after["ui_made"][:2] == ("2", "by hand")
    assert after["default_pool"][:2] == ("64", MARKER)
    assert after["e2e_serial"][0] == "1"


def test_a_removed_pool_that_tasks_still_wait_in_is_kept_until_they_finish(d: Front) -> None:
    """A run of e2e_pools_held waits in the 0-slot pool e2e_held. Removing the pool then would leave
    the task scheduled for good, so the Job keeps it and fails (its retries and the next `up` run it
    again); once the run is over, the same Job deletes it."""
    d.wait_for_dag("e2e_pools_held")
    run_id = d.trigger("e2e_pools_held")
    deadline = time.time() + 120
    while d.pg.query(f"SELECT state FROM task_instance WHERE run_id = '{run_id}'") != "scheduled":
        assert time.time() < deadline, d.logs()
        time.sleep(1)
    rc, out = run_pools_job(d, V3, "pools-4")
    assert rc == 1, out
    assert "pool e2e_held: no longer declared, kept: 1 unfinished task(s) use it" in out
    assert "e2e_held" in rows(d)
    status, body = d.api.call("PATCH", f"/api/v2/dags/e2e_pools_held/dagRuns/{run_id}", {"state": "failed"})
    assert status == 200, body
    rc, out = run_pools_job(d, V3, "pools-5")
    assert rc == 0, out
    assert "e2e_held" not in rows(d) and "ui_made" in rows(d)


def _interval(ti: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"])


def test_a_one_slot_pool_runs_three_tasks_one_at_a_time_and_a_secret_variable_reaches_a_task(d: Front) -> None:
    d.wait_for_dag("e2e_pools")
    run_id = d.trigger("e2e_pools")
    assert d.wait_run(run_id, "e2e_pools", timeout=300) == "success", d.logs()
    _, tis = d.task_states(run_id, "e2e_pools")
    serial = sorted(_interval(t) for t in tis if t["task_id"].startswith("serial_"))
    assert len(serial) == 3 and all(t["pool"] == "e2e_serial" for t in tis if t["task_id"].startswith("serial_"))
    for (_, end), (start, _) in zip(serial, serial[1:], strict=False):
        assert end <= start, serial  # the next one started only after the previous one ended
    status, log = d.api.call(
        "GET",
        f"/api/v2/dags/e2e_pools/dagRuns/{run_id}/taskInstances/read_secret_variable/logs/1?full_content=true",
    )
    assert status == 200, log
    assert "e2e-secret-variable-sha256=" + hashlib.sha256(SECRET.encode()).hexdigest() in json.dumps(log)
    # The value came from the Secret, by reference: no rendered env holds it as a plain value.
    for obj in d.render():
        assert SECRET not in json.dumps(obj) or obj["kind"] == "Secret", obj["metadata"]["name"]
