"""Issue 10.9: a finished task's log must still be readable after the pod that ran it is gone.

Airflow 3.3.2's FileTaskHandler (`utils/log/file_task_handler.py`, `_read`) serves a finished task's
log from remote storage if logging is remote, else from the api-server's own log folder, and only
then asks the worker's log server by the task instance's hostname. A KubernetesExecutor task pod is
deleted when its task ends (`delete_worker_pods`), and its name resolves to nothing, so without
remote logging the log survives only if the task pod and the api-server share the log folder's
storage. These tests check that over every variant that runs task pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.pod_security import admits
from tests.render import airflow_pods, env_of, is_airflow, named, objects, render

LOGS = "/opt/airflow/logs"


def _log_volume(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The pod volume mounted at the log folder of the pod's Airflow container; None if nothing is
    mounted there or the mount comes from a StatefulSet's claim template."""
    c = next(c for c in spec["containers"] if is_airflow(c))
    m = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == LOGS), None)
    if m is None:
        return None
    assert not m.get("readOnly"), m  # task pods write their log; the triggerer appends trigger logs
    return next((v for v in spec["volumes"] if v["name"] == m["name"]), None)


def _remote(spec: dict[str, Any]) -> bool:
    c = next(c for c in spec["containers"] if is_airflow(c))
    return env_of(c).get("AIRFLOW__LOGGING__REMOTE_LOGGING") == "True"


VARIANTS = [
    ("local", "airflow.executor=KubernetesExecutor"),
    ("local", "airflow.executor=CeleryExecutor,KubernetesExecutor"),
    ("local", "airflow.executor=CeleryExecutor,KubernetesExecutor", "airflow.workers.storageSize=5Gi"),
    ("local", "kubernetes.logVolume=true"),
    ("aws-dev", "airflow.executor=KubernetesExecutor"),
    ("azure-dev", "airflow.executor=CeleryExecutor,KubernetesExecutor"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: " ".join(v))
def test_the_api_server_can_read_what_a_finished_task_wrote(variant: tuple[str, ...]) -> None:
    run = render(*variant)
    pods = dict(airflow_pods(run))
    api = pods["api-server"]
    if _remote(api):
        for comp, spec in pods.items():
            if comp in ("task", "worker"):
                assert _remote(spec), comp
        return
    api_logs = _log_volume(api)
    assert api_logs and "persistentVolumeClaim" in api_logs, api_logs
    claim = api_logs["persistentVolumeClaim"]["claimName"]
    assert "readOnly" not in api_logs["persistentVolumeClaim"]
    # Every task writer writes where the api-server reads: task pods, and workers without their own
    # per-worker log claim (those serve their logs from the worker's log server, by its stable name).
    writers = [c for c in ("task", "worker", "triggerer") if c in pods]
    for comp in writers:
        vol = _log_volume(pods[comp])
        if comp == "worker" and vol is None:
            sts = next(o for o in objects(run, "StatefulSet") if o["metadata"]["name"].startswith("airflow-worker"))
            assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["logs"]
            continue
        assert vol is not None and vol.get("persistentVolumeClaim", {}).get("claimName") == claim, (comp, vol)
    pvc = named(run, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]  # the local stack file's one-node mode
    # No Job keeps logs: migrate and create-user write none worth keeping.
    for obj in objects(run, "Job"):
        vols = obj["spec"]["template"]["spec"].get("volumes", [])
        assert not any("persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] == claim for v in vols)


def test_the_log_claim_keeps_its_size_and_does_not_block_the_first_up() -> None:
    run = render("local", "airflow.executor=KubernetesExecutor", "kubernetes.logVolumeSize=20Gi")
    r = next(r for r in run.kubernetes() if r.inputs.get("kind") == "PersistentVolumeClaim" and r.name == "logs")
    assert r.inputs["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert r.options.get("ignoreChanges") == ["spec.resources"]
    # WaitForFirstConsumer provisioners bind the claim only when a pod uses it.
    assert r.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert not r.options.get("protect")  # `pulumi destroy` of a local stack leaves nothing behind


def test_a_celery_only_local_stack_is_unchanged() -> None:
    """Celery workers keep serving their logs from their stable names; no claim is made unless asked."""
    run = render("local")
    assert not [o for o in objects(run, "PersistentVolumeClaim") if o["metadata"]["name"].endswith("-logs")]
    assert {"name": "logs", "emptyDir": {}} in dict(airflow_pods(run))["api-server"]["volumes"]


def test_no_log_volume_when_asked_not_to() -> None:
    run = render("local", "airflow.executor=KubernetesExecutor", "kubernetes.logVolume=false")
    assert not [o for o in objects(run, "PersistentVolumeClaim") if o["metadata"]["name"].endswith("-logs")]


@pytest.mark.parametrize("stack", ["aws-dev", "azure-dev"])
def test_a_log_volume_on_a_cloud_stack_is_rejected(stack: str) -> None:
    config, secret_keys = load_stack_config(stack, ["kubernetes.logVolume=true"])
    run = engine.run(program, config=config, secret_keys=secret_keys, stack=stack)
    assert run.error is not None
    assert "airflow-k8s:kubernetes.logVolume" in str(run.error) and "remote" in str(run.error), run.error
    assert not run.resources


# ---- day 2: the shared claim does not fill up --------------------------------------------------


def _groomer(run: Any) -> dict[str, Any]:
    return named(run, "CronJob", "airflow-log-groomer")


def test_a_log_claim_comes_with_a_groomer_that_keeps_retention_days() -> None:
    """Nothing in Airflow deletes old task logs, so a shared claim fills and then every task fails
    to write its log. A CronJob on the claim deletes logs older than the retention."""
    run = render("local", "airflow.executor=KubernetesExecutor", "kubernetes.logRetentionDays=3")
    cron = _groomer(run)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    vol = next(v for v in spec["volumes"] if v["name"] == "logs")
    assert vol["persistentVolumeClaim"]["claimName"] == "airflow-logs"
    assert {"name": "logs", "mountPath": LOGS} in c["volumeMounts"]
    assert f"-mmin +{3 * 24 * 60}" in c["command"][-1]
    assert spec["automountServiceAccountToken"] is False
    # A `command` bypasses the image's entrypoint (and its DB check): the groomer holds no secrets.
    assert "env" not in c and c["command"][0] == "bash"
    # It runs in Airflow's namespace, which enforces `restricted`.
    assert admits({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}, "restricted")
    # Without a claim there is nothing to groom.
    assert not objects(render("local"), "CronJob")


def test_the_groomer_deletes_old_logs_and_keeps_fresh_ones(tmp_path: Any) -> None:
    """The rendered script, run by bash and GNU find on a tree aged with os.utime."""
    import os
    import subprocess
    import time

    run = render("local", "airflow.executor=KubernetesExecutor", "kubernetes.logRetentionDays=2")
    script = _groomer(run)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    root = tmp_path / "logs"
    now = time.time()
    day = 86400

    def make(rel: str, age_days: float, is_dir: bool = False) -> None:
        p = root / rel
        if is_dir:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x")
        os.utime(p, (now - age_days * day, now - age_days * day))

    make("dag_id=a/run_id=old/task_id=t/attempt=1.log", 3)
    make("dag_id=a/run_id=new/task_id=t/attempt=1.log", 1)
    make("dag_id=a/run_id=fresh_empty/task_id=t", 0, is_dir=True)  # a task that is about to write
    make("dag_id=b/run_id=gone/task_id=t", 3, is_dir=True)  # emptied by an earlier run, long ago
    make("lost+found/keep.log", 30)
    out = subprocess.run(["bash", "-c", script.replace(LOGS, str(root))], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not (root / "dag_id=a/run_id=old/task_id=t/attempt=1.log").exists()
    assert not (root / "dag_id=b/run_id=gone/task_id=t").exists()  # empty for over an hour: removed
    # Emptied just now: its mtime is now, so the next run removes it (a task may be about to write).
    assert (root / "dag_id=a/run_id=old/task_id=t").is_dir()
    assert (root / "dag_id=a/run_id=new/task_id=t/attempt=1.log").exists()
    assert (root / "dag_id=a/run_id=fresh_empty/task_id=t").is_dir()
    assert (root / "lost+found/keep.log").exists()
    assert root.is_dir()


def test_the_groomer_never_reads_lost_and_found(tmp_path: Any) -> None:
    """A formatted volume's root-owned, 0700 `lost+found` (where the driver applies no fsGroup): the
    groomer runs as the image's user, must not read it, and must still sweep the rest. Run here
    as an unprivileged user (setpriv), since root reads every directory."""
    import os
    import shutil
    import subprocess
    import tempfile
    import time

    script = _groomer(render("local", "airflow.executor=KubernetesExecutor"))["spec"]["jobTemplate"]["spec"]
    script = script["template"]["spec"]["containers"][0]["command"][-1]
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        root = base / "logs"
        old = root / "dag_id=a/run_id=old/task_id=t"
        old.mkdir(parents=True)
        (old / "attempt=1.log").write_text("x")
        stale = root / "dag_id=b/run_id=gone"
        stale.mkdir(parents=True)
        past = time.time() - 30 * 86400
        os.utime(old / "attempt=1.log", (past, past))
        os.utime(stale, (past, past))
        for p in [root, *root.rglob("*")]:
            os.chown(p, 65534, 65534)
        (root / "lost+found").mkdir(mode=0o700)  # root's own
        os.utime(root / "lost+found", (past, past))
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c"]
        # The working directory is one the user may enter, as the image's /opt/airflow is in the pod.
        cmd = [*argv, script.replace(LOGS, str(root))]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=base)
        assert out.returncode == 0, out.stderr
        assert "Permission denied" not in out.stderr
        assert not (old / "attempt=1.log").exists() and not stale.exists()
        assert (root / "lost+found").is_dir()
    finally:
        shutil.rmtree(base)
