"""Issue 10.11: as many concurrent tasks as one worker runs (the local stack's worker concurrency),
each holding its slot long enough for the suite to measure the worker's memory at full load."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task

SLOTS = 8  # stacks/Pulumi.local.yaml: airflow.workers.concurrency


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_tasks=SLOTS)
def e2e_fanout() -> None:
    @task
    def hold(i: int) -> int:
        print(f"e2e-fanout-{i}-holding", flush=True)
        time.sleep(25)
        return i

    hold.expand(i=list(range(SLOTS)))


e2e_fanout()
