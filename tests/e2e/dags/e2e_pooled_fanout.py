"""Issue 15.2: a fan-out of short tasks on Celery, run with every long-running component's metadata-DB
connections going through PgBouncer (tests/e2e/test_pgbouncer_e2e.py). More tasks than the worker
has slots, so the scheduler, the worker's result backend and the api-server's execution API all
keep the pool busy at once."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task

TASKS = 24


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_tasks=TASKS)
def e2e_pooled_fanout() -> None:
    @task
    def short(i: int) -> int:
        time.sleep(2)
        print(f"e2e-pooled-{i}-done", flush=True)
        return i

    @task
    def total(values: list[int]) -> int:
        result = sum(values)
        print(f"e2e-pooled-total={result}", flush=True)
        return result

    total(short.expand(i=list(range(TASKS))))


e2e_pooled_fanout()
