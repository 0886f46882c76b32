"""The KubernetesExecutor log DAG: one task that logs the marker its run was triggered with, so
the test can tell this run's log from any other text."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import DAG, get_current_context, task

with DAG(
    dag_id="e2e_kelogs",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},
    tags=["e2e"],
) as dag:

    @task
    def log_marker() -> None:
        marker = get_current_context()["dag_run"].conf["marker"]
        print(f"e2e-kelogs-marker={marker}")
        # Still running for a while: the test reads the live log meanwhile (from the pod, through the API).
        time.sleep(10)

    log_marker()
