"""Apply the stack's declared Airflow pools (airflow-k8s `airflow.pools`); run by the pools Job.

    python apply_pools.py /opt/airflow/pools/pools.json

Runs with the Airflow image's own interpreter against the metadata DB (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)
and makes Airflow's `slot_pool` table agree with the file, in one transaction:
- a declared pool is created, or updated where its slots, description or include_deferred differ
  (Airflow's own `Pool.create_or_update_pool`, what `airflow pools import` calls); one that already
  matches is left untouched, so a second run changes nothing;
- a pool whose description ends with the marker (so this Job wrote it) and that is no longer
  declared is deleted, unless task instances of unfinished DAG runs still use it: the scheduler does
  not schedule a task whose pool is gone ("Tasks using non-existent pool ... will not be scheduled",
  jobs/scheduler_job_runner.py) and it would wait there for good. Such a pool is kept and the run
  exits 1 after committing everything else, so the Job retries (its backoff), and a `pulumi up` that
  outlasts the retries fails naming the pool and runs the Job again next time;
- `default_pool` and pools without the marker (made in the UI or by the API) are never deleted.
A run stopped halfway commits nothing; the next run starts from whatever is in the table.
"""

from __future__ import annotations

import json
import sys

from airflow.models.dagrun import DagRun
from airflow.models.pool import Pool
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from airflow.utils.state import State
from sqlalchemy import and_, func, or_, select


def _in_use(session, names: list[str]) -> dict[str, int]:
    """Pool -> task instances of queued or running DAG runs that are not finished (None included:
    a task not yet scheduled will ask for its pool later)."""
    if not names:
        return {}
    waiting = [s for s in State.unfinished if s is not None]
    query = (
        select(TaskInstance.pool, func.count())
        .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
        .where(
            TaskInstance.pool.in_(names),
            DagRun.state.in_(list(State.unfinished_dr_states)),
            or_(TaskInstance.state.is_(None), TaskInstance.state.in_(waiting)),
        )
        .group_by(TaskInstance.pool)
    )
    return {pool: count for pool, count in session.execute(query)}


def apply(doc: dict) -> tuple[list[str], dict[str, int]]:
    """Returns the lines to print and the undeclared pools kept because tasks still use them."""
    marker, declared = doc["marker"], doc["pools"]
    lines: list[str] = []
    with create_session() as session:
        existing = {p.pool: p for p in session.scalars(select(Pool))}
        for name, want in sorted(declared.items()):
            have = existing.get(name)
            row = (want["slots"], want["description"], want["include_deferred"])
            if have is not None and (have.slots, have.description, have.include_deferred) == row:
                lines.append(f"pool {name}: unchanged")
                continue
            Pool.create_or_update_pool(
                name=name,
                slots=want["slots"],
                description=want["description"],
                include_deferred=want["include_deferred"],
                session=session,
            )
            lines.append(f"pool {name}: {'created' if have is None else 'updated'} (slots {want['slots']})")
        stale = sorted(
            name
            for name, pool in existing.items()
            if name not in declared and name != doc["default_pool"] and (pool.description or "").endswith(marker)
        )
        busy = _in_use(session, stale)
        for name in stale:
            if name in busy:
                lines.append(f"pool {name}: no longer declared, kept: {busy[name]} unfinished task(s) use it")
                continue
            session.delete(existing[name])
            lines.append(f"pool {name}: deleted (no longer declared)")
    return lines, busy


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        doc = json.load(f)
    lines, busy = apply(doc)
    for line in lines:
        print(line, flush=True)
    if busy:
        print(
            "error: pools removed from airflow.pools still have unfinished tasks: "
            + ", ".join(f"{name} ({n})" for name, n in sorted(busy.items()))
            + "; they are deleted once those tasks finish (this Job retries; or run `pulumi up` again)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
