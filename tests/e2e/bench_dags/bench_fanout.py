"""Issue 15's performance target: one start task, 50 parallel tasks of 2 seconds each, one join.

The DAG sets no concurrency of its own (no `max_active_tasks`, no pool): how many of the 50 run at
once is up to the deployment's configuration ([core] parallelism, [core] max_active_tasks_per_dag,
the default pool, the workers' concurrency), which is what the benchmark compares.
"""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task

WIDTH = 50
TASK_SECONDS = 2


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def bench_fanout() -> None:
    @task
    def start() -> None:
        print("bench-fanout-start", flush=True)

    @task
    def join() -> None:
        print("bench-fanout-join", flush=True)

    @task
    def hold(i: int) -> int:
        time.sleep(TASK_SECONDS)
        return i

    begin, end = start(), join()
    for i in range(WIDTH):
        begin >> hold.override(task_id=f"hold_{i:02d}")(i) >> end


bench_fanout()
