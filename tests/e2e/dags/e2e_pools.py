"""Issue 15.6: pools and secret variables from the stack config (tests/e2e/test_pools_e2e.py).

`e2e_pools`: three independent tasks in a one-slot pool declared in `airflow.pools` (the worker runs
8 at once, so only the pool keeps them apart), and a task that reads a Variable given as a Pulumi
secret in `airflow.secretVariables`. `e2e_pools_held`: one task in a pool the test declares with
0 slots, so it stays scheduled: a pool still in use."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

from airflow.sdk import Variable, dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_tasks=8)
def e2e_pools() -> None:
    @task(pool="e2e_serial")
    def one_at_a_time(i: int) -> int:
        print(f"e2e-pool-task-{i}", flush=True)
        time.sleep(3)
        return i

    @task
    def read_secret_variable() -> None:
        value = Variable.get("e2e_secret")
        # The digest, not the value: the test compares it with the rendered Secret's.
        print("e2e-secret-variable-sha256=" + hashlib.sha256(value.encode()).hexdigest(), flush=True)

    for i in range(3):
        one_at_a_time.override(task_id=f"serial_{i}")(i)
    read_secret_variable()


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def e2e_pools_held() -> None:
    @task(pool="e2e_held")
    def waits_for_a_slot() -> None:
        print("e2e-held-ran", flush=True)

    waits_for_a_slot()


e2e_pools()
e2e_pools_held()
