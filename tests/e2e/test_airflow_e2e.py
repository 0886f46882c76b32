"""Real Airflow 3, PostgreSQL and Redis, booted from what `stacks.render local` renders.

The Airflow processes come from the rendered manifests only (see harness.py for the two things
emulated: volume mounts and cluster DNS). The DAG is triggered through the REST API as the admin
whose password the rendered user Job set.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stacks.config import AIRFLOW_VERSION
from stacks.tooling.render import run_stack
from tests.e2e.harness import AIRFLOW_VENV, E2E, Api, Cluster, Postgres, Process, Redis, airflow_containers

DB_PASSWORD = "e2e$db@pw/1:%x"  # '$', '@', '/', ':', '%' all need URL-encoding
REDIS_PASSWORD = "r3d$is@pw/2:%y"
DAG_ID = "e2e_pipeline"
EXPECTED = {
    "bash_hello": "success",
    "produce": "success",
    "consume": "success",
    "flaky": "success",
    "deferred_wait": "success",
    "square": "success",
    "total_of_squares": "success",
    "read_variable": "success",
}
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer", "worker")
TIMINGS: dict[str, float] = {}
# The worker's measured memory (MiB) at full concurrency (printed at the end of the run).
MEMORY: dict[str, float] = {}
# Components the emulated kubelet had to start again after a fault (printed at the end of the run).
RESTARTED: list[str] = []


def test_airflow_lock_matches_the_image_tag_the_stack_renders() -> None:
    lock = (E2E / "airflow-lock.txt").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", lock, re.M)
    assert pinned and pinned.group(1) == AIRFLOW_VERSION
    image = [
        o for o in _render_objects(()) if o["kind"] == "Deployment" and o["metadata"]["name"] == "airflow-scheduler"
    ][0]
    assert image["spec"]["template"]["spec"]["containers"][0]["image"] == f"apache/airflow:{AIRFLOW_VERSION}"


def _render_objects(overrides: tuple[str, ...]) -> list[dict[str, Any]]:
    run = run_stack("local", overrides)
    return [r.manifest(reveal=True) for r in run.kubernetes()]


class Deployment:
    """The whole rendered stack, running: servers, jobs, long-running components."""

    def __init__(self, base: Path, overrides: tuple[str, ...] = (), tls_broker: bool = False) -> None:
        self.base = base
        self.pg = Postgres(base / "postgres", DB_PASSWORD)
        self.redis = Redis(base / "redis", REDIS_PASSWORD, tls=tls_broker)
        self.extra = overrides
        self.procs: dict[str, Process] = {}
        self.restarted: list[str] = []  # components restarted by restart_exited(), in order

    def overrides(self) -> tuple[str, ...]:
        return (
            "database.mode=external",
            f"database.external={{host: 127.0.0.1, port: {self.pg.port}, name: airflow, user: airflow, "
            f"password: '{DB_PASSWORD}', sslmode: disable}}",
            "broker.mode=external",
            f"broker.external={{host: 127.0.0.1, port: {self.redis.port}, password: '{REDIS_PASSWORD}', "
            f"tls: {str(self.redis.tls).lower()}}}",
            "airflow.dags={source: volume, claimName: e2e-dags}",
            "airflow.variables={e2e_greeting: hello-from-stack-config}",
            # Notice a lost worker in seconds rather than the default 5 minutes, so the fault tests
            # finish; the setting goes through the stack's `airflow.config` like a user's would.
            "airflow.config={scheduler.task_instance_heartbeat_timeout: '20', "
            "scheduler.task_instance_heartbeat_timeout_detection_interval: '5'}",
            *self.extra,
        )

    def start_servers(self) -> None:
        self.pg.start()
        self.pg.create_airflow_db()
        self.redis.start()

    def boot(self) -> None:
        objects = _render_objects(self.overrides())
        dags = self.base / "dag-volume"
        shutil.copytree(E2E / "dags", dags, dirs_exist_ok=True)
        self.cluster = Cluster(objects, dags, self.base, ca_bundle=self.redis.ca)
        self.containers = airflow_containers(objects)
        secret = self.cluster.secrets["airflow-secrets"]
        self.admin_password = secret["admin-password"]
        t0 = time.time()
        for job in ("migrate", "create-user"):
            p = Process(self.cluster, self.containers[job]).start()
            rc = p.wait(300)
            assert rc == 0, f"{job} Job failed ({rc}):\n{p.tail()}"
        TIMINGS["jobs"] = time.time() - t0
        for comp in LONG_RUNNING:
            self.start(comp)
        api = self.containers["api-server"]
        port = int(next(a for a in api.spec["args"] if a.isdigit()))
        self.api = Api(f"http://127.0.0.1:{port}")
        self.api.wait_healthy(api.spec["readinessProbe"]["httpGet"]["path"], timeout=180)
        # A healthy answer is this stack's only if its processes are still up: an api-server that could
        # not bind its port (another Airflow on 127.0.0.1:8080) exits, and the answer came from the other.
        exited = [comp for comp, p in self.procs.items() if not p.alive()]
        assert exited == [], f"exited while booting: {exited}\n{self.logs()}"

    def start(self, comp: str) -> Process:
        self.procs[comp] = Process(self.cluster, self.containers[comp]).start()
        return self.procs[comp]

    def restart(self, comp: str, sig: str = "TERM") -> None:
        p = self.procs[comp]
        p.kill() if sig == "KILL" else p.stop()
        self.start(comp)

    def restart_exited(self) -> list[str]:
        """What the kubelet does for a Deployment's or StatefulSet's pod (`restartPolicy: Always`):
        start again every long-running container that exited. Returns the ones it restarted."""
        exited = [comp for comp, p in self.procs.items() if not p.alive()]
        for comp in exited:
            self.start(comp)
        return exited

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.tail(40)}" for n, p in self.procs.items())

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()
        self.redis.stop()
        self.pg.remove()

    # -- DAG runs through the REST API --

    def ready_for_pipeline(self) -> None:
        """Log in as the admin, wait for the pipeline DAG, and set the variable it reads through the
        REST API (the pipeline's `read_variable` task expects it)."""
        self.api.login("admin", self.admin_password)
        self.wait_for_dag()
        status, body = self.api.call(
            "POST", "/api/v2/variables", {"key": "e2e_api_variable", "value": "set-through-the-api"}
        )
        assert status in (200, 201), body

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, _ = self.api.call("GET", f"/api/v2/dags/{dag_id}")
            if status == 200:
                status, body = self.api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                assert status == 200, body
                return
            time.sleep(2)
        raise TimeoutError(f"{dag_id} was never parsed:\n{self.logs()}")

    def trigger(self, dag_id: str = DAG_ID) -> str:
        status, body = self.api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {}})
        assert status == 200, body
        return body["dag_run_id"]

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        status, body = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return body["state"] if status == 200 else f"http-{status}"

    def wait_run(self, run_id: str, dag_id: str = DAG_ID, timeout: float = 240, kubelet: bool = False) -> str:
        """Poll the run until it ends; with `kubelet`, restart exited components meanwhile."""
        deadline = time.time() + timeout
        state = "queued"
        while time.time() < deadline:
            if kubelet:
                self.restarted += self.restart_exited()
            state = self.run_state(run_id, dag_id)
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} still {state} after {timeout}s:\n{self.logs()}")

    def wait_task_running(self, run_id: str, task_id: str, dag_id: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, body = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
            if status == 200 and body["state"] == "running":
                return
            time.sleep(0.5)
        raise TimeoutError(f"{task_id} never ran:\n{self.logs()}")

    def task_states(self, run_id: str, dag_id: str = DAG_ID) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        status, body = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
        assert status == 200, body
        states: dict[str, Any] = {}
        for ti in body["task_instances"]:
            states.setdefault(ti["task_id"], set()).add(ti["state"])
        return {k: v.pop() if len(v) == 1 else sorted(v) for k, v in states.items()}, body["task_instances"]

    def task_log(self, run_id: str, task_id: str, try_number: int) -> str:
        status, body = self.api.call(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        )
        assert status == 200, body
        return str(body)


D = TypeVar("D", bound=Deployment)


@contextmanager
def booted(d: D, module: str, boot: str | None = None) -> Iterator[D]:
    """A module's own stack: servers started and the render booted; stopped at the end, with the
    module's time (and, if named, its boot time) in TIMINGS."""
    assert (AIRFLOW_VENV / "bin" / "airflow").exists(), f"no Airflow virtualenv at {AIRFLOW_VENV}: run `bash .ci/run`"
    t0 = time.time()
    try:
        d.start_servers()
        d.boot()
        if boot:
            TIMINGS[boot] = time.time() - t0
        yield d
    finally:
        d.stop()
        TIMINGS[module] = time.time() - t0
        TIMINGS["end"] = time.time()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert (AIRFLOW_VENV / "bin" / "airflow").exists(), (
        f"no Airflow virtualenv at {AIRFLOW_VENV}: `bash .ci/run` builds it from tests/e2e/airflow-lock.txt"
    )
    d = Deployment(tmp_path_factory.mktemp("e2e"))
    try:
        t_servers = time.time()
        d.start_servers()
        t0 = time.time()
        TIMINGS["servers"] = t0 - t_servers
        d.boot()
        TIMINGS["boot"] = time.time() - t0
        TIMINGS["start"] = t0
        yield d
    finally:
        d.stop()
        TIMINGS["end"] = time.time()


def test_login_needs_the_generated_admin_password(stack: Deployment) -> None:
    bad = Api(stack.api.base)
    with pytest.raises(AssertionError, match="login as admin failed: 401"):
        bad.login("admin", stack.admin_password + "x")
    stack.api.login("admin", stack.admin_password)
    status, _ = Api(stack.api.base).call("GET", f"/api/v2/dags/{DAG_ID}")
    assert status == 401  # no token, no access


def test_rerunning_the_user_job_applies_a_changed_admin_password(stack: Deployment) -> None:
    """The rendered create-user Job run again with another password (what a changed generated
    password does: its checksum rolls the Job): the new password logs in, the old one no longer
    does. `airflow users create` exits 0 for an existing user, so this fails unless the Job resets
    the password on every run."""

    def run_job(password: str) -> None:
        p = Process(stack.cluster, stack.containers["create-user"], name=f"create-user-{len(password)}")
        p.env["ADMIN_PASSWORD"] = password
        assert p.start().wait(180) == 0, p.tail()

    changed = stack.admin_password + "-rotated"
    run_job(changed)
    try:
        with pytest.raises(AssertionError, match="401"):
            Api(stack.api.base).login("admin", stack.admin_password)
        Api(stack.api.base).login("admin", changed)
    finally:
        run_job(stack.admin_password)
    stack.api.login("admin", stack.admin_password)


def test_dag_runs_to_success_with_every_task_kind(stack: Deployment) -> None:
    stack.ready_for_pipeline()
    # Stored encrypted: this is where a bad fernet key fails.
    assert stack.pg.query("SELECT is_encrypted FROM variable WHERE key = 'e2e_api_variable'") == "t"
    run_id = stack.trigger()
    state = stack.wait_run(run_id)
    TIMINGS["process_start_to_dag_success"] = time.time() - TIMINGS["start"]
    states, tis = stack.task_states(run_id)
    assert state == "success", f"{states}\n{stack.logs()}"
    assert states == EXPECTED
    assert len([t for t in tis if t["task_id"] == "square"]) == 3  # mapped over [1, 2, 3]
    flaky = next(t for t in tis if t["task_id"] == "flaky")
    assert flaky["try_number"] == 2  # failed once, succeeded on retry
    for task_id, try_number, text in (
        ("bash_hello", 1, "e2e-bash-says-hello"),
        ("consume", 1, "e2e-xcom-total=42"),
        ("read_variable", 1, "e2e-variable=hello-from-stack-config"),
        ("read_variable", 1, "e2e-api-variable=set-through-the-api"),
        ("deferred_wait", 1, "Pausing task as DEFERRED"),
        ("deferred_wait", 1, "e2e-resumed-by-triggerer"),
    ):
        assert text in stack.task_log(run_id, task_id, try_number), (task_id, text)
    # The trigger itself ran in the triggerer process (its own log files, nobody else's).
    trigger_logs = list((stack.procs["triggerer"].dir / "volumes" / "logs").rglob("*deferred_wait*/*.trigger.*"))
    assert trigger_logs and "Trigger fired event" in trigger_logs[0].read_text()


def test_every_rendered_probe_passes_against_the_running_process(stack: Deployment) -> None:
    """Each long-running component's probes, run as the kubelet would against its process: HTTP and
    TCP checks on the rendered (named) ports, exec checks in the container's own environment (which
    is the narrowed one: a probe needing a setting the component lost would fail here)."""
    import socket
    import urllib.request

    checked = []
    for comp in LONG_RUNNING:
        spec = stack.containers[comp].spec
        ports = {p["name"]: p["containerPort"] for p in spec.get("ports", [])}
        handlers = {json.dumps({k: v for k, v in spec[kind].items() if k in ("httpGet", "exec", "tcpSocket")})
                    for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in spec}  # fmt: skip
        for raw in sorted(handlers):
            h = json.loads(raw)
            if "httpGet" in h:
                port = ports[h["httpGet"]["port"]]
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{h['httpGet']['path']}", timeout=30) as r:
                    assert r.status == 200, (comp, h)
            elif "tcpSocket" in h:
                socket.create_connection(("127.0.0.1", ports[h["tcpSocket"]["port"]]), timeout=10).close()
            else:
                p = Process(stack.cluster, stack.containers[comp], name=f"probe-{comp}")
                p.argv = list(h["exec"]["command"])
                assert p.start().wait(120) == 0, (comp, h, p.tail())
            checked.append((comp, next(iter(h))))
    assert ("scheduler", "httpGet") in checked and ("worker", "exec") in checked, checked


def test_worker_memory_at_full_concurrency_fits_the_rendered_limit(stack: Deployment) -> None:
    """Issue 10.11: fill every slot of the worker (the rendered concurrency) with a task, measure
    the worker's memory (PSS of its process tree: the Celery parent, its pool and, per task, a
    supervisor and a task runner), and check the rendered limit holds it with the headroom the
    settings model's rule keeps (components/airflow/settings.py, worker_memory_floor)."""
    from components.settings import parse_quantity
    from tests.e2e.harness import tree_pss

    worker = stack.containers["worker"].spec
    slots = int(next(e["value"] for e in worker["env"] if e["name"] == "AIRFLOW__CELERY__WORKER_CONCURRENCY"))
    limit = parse_quantity(worker["resources"]["limits"]["memory"])
    pid = stack.procs["worker"].proc.pid  # type: ignore[union-attr]
    stack.api.login("admin", stack.admin_password)
    stack.wait_for_dag("e2e_fanout")
    idle = tree_pss(pid)
    run_id = stack.trigger("e2e_fanout")
    peak, running = 0, 0
    deadline = time.time() + 180
    while time.time() < deadline:
        _, tis = stack.task_states(run_id, "e2e_fanout")
        running = max(running, sum(1 for t in tis if t["state"] == "running"))
        peak = max(peak, tree_pss(pid))
        if stack.run_state(run_id, "e2e_fanout") in ("success", "failed"):
            break
        time.sleep(1)
    assert stack.wait_run(run_id, "e2e_fanout") == "success"
    assert running == slots, f"only {running} of {slots} slots ran at once"
    per_task = (peak - idle) / slots
    MEMORY.update(idle_mib=idle / 2**20, peak_mib=peak / 2**20, per_task_mib=per_task / 2**20, limit_mib=limit / 2**20)
    assert peak <= limit, MEMORY


RESILIENCE = "e2e_resilience"


def _run_through(stack: Deployment, fault: Any) -> dict[str, Any]:
    """Trigger the resilience DAG, apply `fault` while its slow task runs, assert nothing is lost."""
    stack.api.login("admin", stack.admin_password)
    stack.wait_for_dag(RESILIENCE)
    run_id = stack.trigger(RESILIENCE)
    stack.wait_task_running(run_id, "slow", RESILIENCE)
    fault()
    stack.api.login("admin", stack.admin_password)  # tokens survive restarts: same JWT secret
    state = stack.wait_run(run_id, RESILIENCE, timeout=300)
    states, tis = stack.task_states(run_id, RESILIENCE)
    assert state == "success", f"{states}\n{stack.logs()}"
    assert states == {"before": "success", "slow": "success", "after": "success"}
    return {t["task_id"]: t for t in tis}


def test_worker_killed_mid_task_is_recovered(stack: Deployment) -> None:
    t0 = time.time()

    def kill_worker() -> None:
        stack.procs["worker"].kill()  # SIGKILL to the worker and its task processes, like a lost pod
        time.sleep(2)
        stack.start("worker")

    tis = _run_through(stack, kill_worker)
    assert tis["slow"]["try_number"] >= 2  # the killed try was detected and retried
    TIMINGS["fault_worker_kill"] = time.time() - t0


def test_scheduler_restarted_mid_run(stack: Deployment) -> None:
    t0 = time.time()
    _run_through(stack, lambda: stack.restart("scheduler"))
    TIMINGS["fault_scheduler_restart"] = time.time() - t0


def test_api_server_restarted_mid_run(stack: Deployment) -> None:
    t0 = time.time()

    def restart_api() -> None:
        stack.restart("api-server")
        stack.api.wait_healthy(stack.containers["api-server"].spec["readinessProbe"]["httpGet"]["path"])

    _run_through(stack, restart_api)
    TIMINGS["fault_api_server_restart"] = time.time() - t0


def test_postgres_restarted_between_runs(stack: Deployment) -> None:
    t0 = time.time()
    stack.api.login("admin", stack.admin_password)
    first = stack.trigger(RESILIENCE)
    assert stack.wait_run(first, RESILIENCE) == "success"
    stack.pg.restart()
    # A component that reaches the database while it shuts down may exit ("the database system is
    # shutting down", seen for the scheduler); in Kubernetes its container is restarted, so here too.
    stack.restarted += stack.restart_exited()
    stack.api.wait_healthy(stack.containers["api-server"].spec["readinessProbe"]["httpGet"]["path"])
    second = stack.trigger(RESILIENCE)
    assert stack.wait_run(second, RESILIENCE, timeout=300, kubelet=True) == "success", stack.logs()
    RESTARTED.extend(stack.restarted)
    # The first run is still there: nothing was lost with the restart.
    assert stack.run_state(first, RESILIENCE) == "success"
    TIMINGS["fault_postgres_restart"] = time.time() - t0


@pytest.mark.parametrize("executor", ["KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"])
def test_kubernetes_executor_pods_from_the_rendered_template(stack: Deployment, executor: str) -> None:
    """`airflow kubernetes generate-dag-yaml`, run in the rendered scheduler's environment (it needs
    the metadata DB), merges each task with the rendered pod template: every pod must be valid and
    carry what a task needs. It runs on the resilience DAG: in cncf-kubernetes 10.25.0 the command
    fails on mapped tasks ('SerializedMappedOperator' object has no attribute 'dag'), an upstream bug."""
    import kubernetes_validate
    import yaml

    from tests.render import K8S_VERSIONS

    objects = _render_objects(stack.overrides() + (f"airflow.executor={executor}",))
    cluster = Cluster(objects, stack.cluster.dags_dir, stack.base / f"ke-{executor.replace(',', '-')}")
    containers = airflow_containers(objects)
    sched = Process(cluster, containers["scheduler"], name="generate-dag-yaml")
    out = sched.dir / "yaml"
    sched.argv = [
        sched.argv[0],
        "kubernetes",
        "generate-dag-yaml",
        "-l",
        "2024-01-01T00:00:00+00:00",
        "-o",
        str(out),
        RESILIENCE,
    ]
    assert sched.start().wait(180) == 0, sched.tail()
    files = sorted(out.rglob("*.yml")) + sorted(out.rglob("*.yaml"))
    assert len(files) == 3, files  # one pod per task
    for f in files:
        pod = yaml.safe_load(f.read_text())
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
        spec = pod["spec"]
        base = next(c for c in spec["containers"] if c["name"] == "base")
        env = {e["name"]: e for e in base["env"]}
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]["value"] == (
            "http://airflow-api-server.airflow.svc.cluster.local:8080/execution/"
        )
        # A task pod runs task code: it gets no DB login, no fernet key and no token-signing key; the
        # execution API (with the token in its args) serves it connections and variables.
        for name in (
            "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        ):
            assert name not in env, name
        assert spec["serviceAccountName"] == "airflow-task"
        dags = [v for v in spec["volumes"] if v["name"] == "dags"]
        assert dags and dags[0]["persistentVolumeClaim"] == {"claimName": "e2e-dags", "readOnly": True}
        assert {"name": "dags", "mountPath": "/opt/airflow/dags", "readOnly": True} in base["volumeMounts"]
        assert base["args"][:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
        assert spec["securityContext"]["runAsNonRoot"] is True
