"""The end-to-end DAG: every kind of task the rendered configuration has to carry."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator, Variable, get_current_context, task


class WaitOnTriggerer(BaseOperator):
    """Always defers: the worker slot is released and only the triggerer can resume the task."""

    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=3)), method_name="resume")

    def resume(self, context, event=None):
        print("e2e-resumed-by-triggerer")
        return "resumed"


with DAG(
    dag_id="e2e_pipeline",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},
    tags=["e2e"],
) as dag:
    hello = BashOperator(task_id="bash_hello", bash_command="echo e2e-bash-says-hello")

    @task
    def produce() -> dict[str, int]:
        return {"a": 20, "b": 22}

    @task
    def consume(numbers: dict[str, int]) -> int:
        total = numbers["a"] + numbers["b"]
        assert total == 42, numbers
        print(f"e2e-xcom-total={total}")
        return total

    @task(retries=2, retry_delay=timedelta(seconds=2))
    def flaky() -> str:
        ti = get_current_context()["ti"]
        if ti.try_number == 1:
            raise RuntimeError("first try fails on purpose")
        return f"succeeded on try {ti.try_number}"

    wait = WaitOnTriggerer(task_id="deferred_wait")

    @task
    def square(x: int) -> int:
        return x * x

    @task
    def total_of_squares(values: list[int]) -> int:
        result = sum(values)
        assert result == 1 + 4 + 9, values
        return result

    @task
    def read_variable() -> str:
        # Provided through the stack's `airflow.variables` config, as AIRFLOW_VAR_E2E_GREETING.
        value = Variable.get("e2e_greeting")
        assert value == "hello-from-stack-config", value
        print(f"e2e-variable={value}")
        # Created through the REST API before the run: stored encrypted with the fernet key.
        stored = Variable.get("e2e_api_variable")
        assert stored == "set-through-the-api", stored
        print(f"e2e-api-variable={stored}")
        return value

    total = consume(produce())
    squares = square.expand(x=[1, 2, 3])
    hello >> total >> flaky() >> wait >> total_of_squares(squares) >> read_variable()
