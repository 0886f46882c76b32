"""Two long tasks to stop a Celery worker under: its warm shutdown must let both finish.

A Python task, and a Bash task whose operator has an `on_kill` (it stops the command): SIGTERM
reaching a task's supervisor runs `on_kill`, so the two kinds react differently to a group signal.
"""

from __future__ import annotations

import time
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

SECONDS = 20

with DAG(
    dag_id="e2e_warm_shutdown",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},  # the first try's outcome is the run's: nothing hides a kill
) as dag:

    @task
    def python_sleep() -> str:
        print("e2e-python-started", flush=True)
        time.sleep(SECONDS)
        print("e2e-python-finished", flush=True)
        return "done"

    python_sleep()
    BashOperator(task_id="bash_sleep", bash_command=f"echo e2e-bash-started; sleep {SECONDS}; echo e2e-bash-finished")
