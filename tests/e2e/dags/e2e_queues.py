"""Issue 15.3/15.4: tasks routed by queue to worker groups. `on_default` goes to Airflow's default
queue (the default workers), each `on_gpu` to the `gpu` queue (the `gpu` worker set), and holds its
slot long enough for the test to read KEDA's query while all of them are queued or running."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task

GPU_TASKS = 5  # over the set's concurrency of 2: KEDA's query must then say ceil(5 / 2) = 3


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_tasks=16)
def e2e_queues() -> None:
    @task
    def on_default() -> str:
        print("e2e-queues-on-default", flush=True)
        return "default"

    @task(queue="gpu")
    def on_gpu(i: int) -> int:
        print(f"e2e-queues-on-gpu-{i}", flush=True)
        time.sleep(20)
        return i

    on_default()
    on_gpu.expand(i=list(range(GPU_TASKS)))


e2e_queues()
