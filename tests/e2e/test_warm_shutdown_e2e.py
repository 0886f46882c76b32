"""Celery's warm shutdown under the image's dumb-init: what a rollout, drain or scale-down does.

The worker runs as the official image runs it: `/usr/bin/dumb-init -- /entrypoint celery worker`
(Debian's dumb-init 1.2.5, as in the image; the entrypoint emulated by image-entrypoint.sh), with
the image's ENV under the rendered env. The kubelet stops a container by sending SIGTERM to its
PID 1, dumb-init; so does this test, and nothing else.

With the render's DUMB_INIT_SETSID=0, dumb-init passes SIGTERM to its child only, Celery's main
process, whose warm shutdown waits for the running tasks. With the image's default (1) dumb-init
signals the child's whole process group: Celery's pool processes too, and in Airflow 3.3.2 the task
supervisor running in a pool process forwards SIGTERM to its task, whose runner then calls the
operator's `on_kill` (task-sdk supervisor.py `_forward_signal`, task_runner.py `_on_term`). A task
whose operator has one (BashOperator stops its command; KubernetesPodOperator deletes its pod) fails;
a plain Python task, with `BaseOperator.on_kill` a no-op, sleeps on and succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.harness import AIRFLOW_VENV, DUMB_INIT, IMAGE_ENV, Process
from tests.e2e.test_airflow_e2e import TIMINGS, Deployment

DAG_ID = "e2e_warm_shutdown"
# Each task of dags/e2e_warm_shutdown.py, and the line it prints once its own code runs.
STARTED = {"python_sleep": "e2e-python-started", "bash_sleep": "e2e-bash-started"}
TASKS = tuple(STARTED)
SECONDS = 20  # each task's sleep (dags/e2e_warm_shutdown.py)
FORWARDED = "Received signal, forwarding to task subprocess"  # the task supervisor, when signalled


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[3])


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        st = _stat(pid)
        if st is None:
            return False
        pid = st[0]
    return False


class ImageDeployment(Deployment):
    """The e2e Deployment, with the Celery worker started as the official image starts it."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.render_setsid = True  # False: as if the render did not set DUMB_INIT_SETSID
        self.workers: list[Process] = []

    def start(self, comp: str) -> Process:
        if comp != "worker":
            return super().start(comp)
        p = Process(self.cluster, self.containers[comp], name=f"worker-{len(self.workers)}", image_entrypoint=True)
        if not self.render_setsid:
            p.env["DUMB_INIT_SETSID"] = IMAGE_ENV["DUMB_INIT_SETSID"]  # the image's ENV shows through
        self.workers.append(p)
        self.procs[comp] = p.start()
        return p

    def worker(self, render_setsid: bool) -> Process:
        """A running worker with or without the rendered DUMB_INIT_SETSID (the booted one if it fits)."""
        current = self.procs["worker"]
        if current.alive() and self.render_setsid == render_setsid:
            return current
        current.stop()
        self.render_setsid = render_setsid
        return self.start("worker")

    def stop(self) -> None:
        # dumb-init leads a session (start_new_session) and in setsid mode starts Celery in one of
        # its own; whatever a stopped worker leaves behind is in one of them.
        sessions = {w.proc.pid for w in self.workers if w.alive() and w.proc is not None}
        sessions |= {st[1] for pid in _pids() if (st := _stat(pid)) and st[0] in sessions}
        try:
            super().stop()
        finally:
            for pid in _pids():
                if (st := _stat(pid)) and st[1] in sessions:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageDeployment]:
    assert (AIRFLOW_VENV / "bin" / "airflow").exists(), f"no Airflow virtualenv at {AIRFLOW_VENV}: run `bash .ci/run`"
    assert DUMB_INIT.exists(), f"no {DUMB_INIT}: install Debian's dumb-init (`bash .ci/run` does)"
    d = ImageDeployment(tmp_path_factory.mktemp("e2e-warm-shutdown"))
    t0 = time.time()
    TIMINGS.setdefault("start", t0)
    try:
        d.start_servers()
        d.boot()
        d.api.login("admin", d.admin_password)
        d.wait_for_dag(DAG_ID)
        yield d
    finally:
        d.stop()
        TIMINGS["warm_shutdown_module"] = time.time() - t0
        TIMINGS["end"] = time.time()


@dataclass
class Stopped:
    """What SIGTERM to dumb-init did; times in seconds after it was sent."""

    states: dict[str, str]
    task_end: dict[str, float]  # each task's end_date as the metadata DB has it
    duration: dict[str, float]  # each task's start_date to end_date
    worker_exit: float
    warm_shutdown: bool  # Celery's main process said so
    forwarded: int  # task supervisors that got SIGTERM (and passed it to their task)
    events: dict[str, list[str]]  # each task's log events, in order

    def summary(self) -> str:
        return f"states={self.states} task_end={self.task_end} worker_exit={self.worker_exit:.1f}"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _task_events(worker: Process, run_id: str, task_id: str) -> list[str]:
    """The `event` of each JSON line of a task's log files on the worker (the task's own output is
    one event per line)."""
    out = []
    for log in worker.dir.rglob("*.log"):
        if f"run_id={run_id}" in str(log) and f"task_id={task_id}" in str(log):
            for line in log.read_text(errors="replace").splitlines():
                with suppress(ValueError):
                    out.append(str(json.loads(line).get("event")))
    return out


def _sigterm_mid_task(stack: ImageDeployment, worker: Process, grace: int) -> Stopped:
    assert worker.proc is not None
    run_id = stack.trigger(DAG_ID)
    for task_id in TASKS:
        stack.wait_task_running(run_id, task_id, DAG_ID)
    # `running` comes before the task's code does (the DAG file is parsed first); a signal then
    # finds no command for on_kill to stop. Wait until both print that they have started.
    deadline = time.time() + 120
    while not all(line in _task_events(worker, run_id, t) for t, line in STARTED.items()):
        assert time.time() < deadline, f"the tasks never started:\n{worker.tail()}"
        time.sleep(0.5)
    _, tis = stack.task_states(run_id, DAG_ID)
    assert all(_descends_from(ti["pid"], worker.proc.pid) for ti in tis), "not running under this dumb-init"
    sigterm = time.time()
    os.kill(worker.proc.pid, signal.SIGTERM)  # to PID 1 only, as the container runtime sends it
    wait = min(grace, 150)  # the kubelet would SIGKILL at the grace period; this test gives up earlier
    try:
        worker.proc.wait(wait)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker still running {wait}s after SIGTERM:\n{worker.tail()}") from None
    worker_exit = time.time() - sigterm
    deadline = time.time() + 60
    while True:
        states, tis = stack.task_states(run_id, DAG_ID)
        if all(s in ("success", "failed") for s in states.values()) or time.time() > deadline:
            break
        time.sleep(1)
    worker_log = worker.log.read_text(errors="replace")
    return Stopped(
        states=states,
        task_end={ti["task_id"]: _epoch(ti["end_date"]) - sigterm for ti in tis if ti["end_date"]},
        duration={ti["task_id"]: float(ti["duration"]) for ti in tis if ti["duration"] is not None},
        worker_exit=worker_exit,
        warm_shutdown="Warm shutdown" in worker_log,
        forwarded=worker_log.count(FORWARDED),
        events={t: _task_events(worker, run_id, t) for t in TASKS},
    )


def _grace(stack: ImageDeployment) -> int:
    sts = [
        o
        for o in stack.cluster.manifests
        if o["kind"] in ("StatefulSet", "Deployment")
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]
    assert len(sts) == 1
    return int(sts[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def test_running_tasks_finish_before_the_worker_exits(stack: ImageDeployment) -> None:
    """The fix: with the rendered DUMB_INIT_SETSID=0 only Celery's main process is signalled."""
    grace = _grace(stack)
    worker = stack.worker(render_setsid=True)
    out = _sigterm_mid_task(stack, worker, grace)
    assert out.states == {"python_sleep": "success", "bash_sleep": "success"}, f"{out.summary()}\n{worker.tail()}"
    TIMINGS["warm_shutdown_sigterm_to_tasks_success"] = max(out.task_end.values())
    TIMINGS["warm_shutdown_sigterm_to_worker_exit"] = out.worker_exit
    assert worker.env["DUMB_INIT_SETSID"] == "0"  # from the render, over the image's 1
    assert out.warm_shutdown
    assert out.forwarded == 0  # no task supervisor was signalled
    assert "e2e-bash-finished" in out.events["bash_sleep"]
    # The worker went only after its tasks had ended, and inside the pod's grace period.
    assert max(out.task_end.values()) <= out.worker_exit < grace, out.summary()


def test_without_it_dumb_init_signals_the_tasks_too(stack: ImageDeployment) -> None:
    """The control: the same worker, the same SIGTERM, the image's default DUMB_INIT_SETSID=1."""
    grace = _grace(stack)
    worker = stack.worker(render_setsid=False)
    assert worker.env["DUMB_INIT_SETSID"] == "1"  # the image's ENV
    out = _sigterm_mid_task(stack, worker, grace)
    TIMINGS["warm_shutdown_control_sigterm_to_worker_exit"] = out.worker_exit
    assert out.warm_shutdown  # Celery's main process still shuts down warm, but too late for some
    assert out.forwarded == len(TASKS)  # dumb-init signalled both task supervisors too
    # The Bash task is stopped by its operator's on_kill, which the forwarded SIGTERM set off...
    assert out.states["bash_sleep"] == "failed", f"{out.summary()}\n{worker.tail()}"
    assert "Sending SIGTERM signal to process group" in out.events["bash_sleep"]
    assert "e2e-bash-finished" not in out.events["bash_sleep"]
    assert out.duration["bash_sleep"] < SECONDS  # cut short: a whole run takes longer than its sleep
    # ...while the Python task, whose on_kill does nothing, sleeps on: Airflow 3.3.2's behaviour.
    assert out.states["python_sleep"] == "success"
