"""A DAG whose middle task runs long enough to kill or restart components under it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import DAG, task

with DAG(dag_id="e2e_resilience", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:

    @task
    def before() -> int:
        return 1

    @task(retries=3, retry_delay=timedelta(seconds=2))
    def slow(value: int) -> int:
        print("e2e-slow-started", flush=True)
        time.sleep(12)
        return value + 1

    @task
    def after(value: int) -> None:
        assert value == 2, value
        print("e2e-after-done")

    after(slow(before()))
