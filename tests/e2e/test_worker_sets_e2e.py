"""Issue 15, items 3 and 4, on real Airflow 3.3.2 with PostgreSQL and Redis on loopback: a task sent
to a worker set's queue runs on a worker started with that set's rendered command and env, never on
the default workers; and the query the rendered ScaledObject gives KEDA, run on the real metadata DB
through the rendered connection string while the set's tasks are in flight, returns
ceil(queued + running / concurrency), then 0 once they are done.

Two pods have two addresses; two processes here share one. The set's worker gets its own log-server
port (as its own pod IP would give it) and nothing else differs from the render.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Process, _pg_bin
from tests.e2e.test_airflow_e2e import TIMINGS, Deployment, booted

DAG_ID = "e2e_queues"
GPU_TASKS = 5
CONCURRENCY = 2
SETS = (
    f"airflow.workerSets=[{{name: gpu, queues: [gpu], concurrency: {CONCURRENCY}, "
    "autoscaling: {enabled: true, minReplicas: 0, maxReplicas: 3}}]",
    "airflow.workers.autoscaling={enabled: true, maxReplicas: 2}",
)


class SetsDeployment(Deployment):
    def boot(self) -> None:
        super().boot()
        gpu = Process(self.cluster, self.containers["worker-gpu"])
        # Its own pod would have its own IP; on one loopback address the log server needs its own port.
        gpu.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = "8795"
        self.procs["worker-gpu"] = gpu.start()

    def scaled_object(self, name: str) -> dict:
        return next(o for o in self.cluster.manifests if o["kind"] == "ScaledObject" and o["metadata"]["name"] == name)

    def keda_query(self, name: str) -> float:
        """The ScaledObject's query, run as KEDA's scaler would: through the rendered connection string."""
        so = self.scaled_object(name)
        [trigger] = so["spec"]["triggers"]
        auth = next(o for o in self.cluster.manifests if o["kind"] == "TriggerAuthentication")
        [ref] = auth["spec"]["secretTargetRef"]
        conn = self.cluster.secrets[ref["name"]][ref["key"]]
        out = subprocess.run(
            [_pg_bin("psql"), conn, "-tAc", trigger["metadata"]["query"]],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return float(out.stdout.strip())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SetsDeployment]:
    d = SetsDeployment(tmp_path_factory.mktemp("e2e-worker-sets"), overrides=SETS)
    with booted(d, "worker_sets_module", "worker_sets_boot"):
        d.api.login("admin", d.admin_password)
        d.wait_for_dag(DAG_ID)
        yield d


def _ran_on(worker: Process, run_id: str, task_id: str) -> bool:
    return any(f"run_id={run_id}" in str(p) and f"task_id={task_id}" in str(p) for p in worker.dir.rglob("*.log"))


def test_the_set_runs_its_queue_and_keda_counts_its_tasks(stack: SetsDeployment) -> None:
    gpu_container = stack.containers["worker-gpu"].spec
    assert gpu_container["args"] == ["celery", "worker", "--queues", "gpu"]
    assert stack.keda_query("airflow-worker-gpu") == 0
    t0 = time.time()
    run_id = stack.trigger(DAG_ID)
    seen: list[float] = []
    deadline = time.time() + 240
    while stack.run_state(run_id, DAG_ID) not in ("success", "failed"):
        assert time.time() < deadline, stack.logs()
        seen.append(stack.keda_query("airflow-worker-gpu"))
        time.sleep(0.5)
    TIMINGS["worker_sets_run"] = time.time() - t0
    assert stack.run_state(run_id, DAG_ID) == "success", stack.logs()
    # While all five were queued or running, KEDA would have asked for ceil(5 / 2) = 3 replicas; never more.
    assert max(seen) == 3 and 3 in seen, seen
    assert stack.keda_query("airflow-worker-gpu") == 0
    assert stack.keda_query("airflow-worker") == 0
    states, tis = stack.task_states(run_id, DAG_ID)
    assert {ti["queue"] for ti in tis if ti["task_id"] == "on_gpu"} == {"gpu"}
    default, gpu = stack.procs["worker"], stack.procs["worker-gpu"]
    assert _ran_on(gpu, run_id, "on_gpu") and not _ran_on(default, run_id, "on_gpu")
    assert _ran_on(default, run_id, "on_default") and not _ran_on(gpu, run_id, "on_default")
    # The set's worker ran with its own concurrency: never more than 2 of its tasks at once.
    starts = sorted((ti["start_date"], ti["end_date"]) for ti in tis if ti["task_id"] == "on_gpu")
    overlap = max(sum(1 for s, e in starts if s <= start < e) for start, _ in starts)
    assert overlap <= CONCURRENCY, starts
    assert Path(gpu.log).exists()
