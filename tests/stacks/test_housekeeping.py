"""Issue 15.5: housekeeping CronJobs. Render, query, assert; the e2e proof of `db clean` against a
real Airflow 3.3.2 DB is tests/e2e/test_housekeeping_e2e.py."""

from __future__ import annotations

import datetime
import subprocess
from typing import Any

import pytest

from components.airflow.housekeeping_settings import cron_schedule
from stacks.tooling.render import stack_names
from tests.render import env_of, named, objects, pod_spec, render
from tests.stacks.test_local_render import VARIANTS

HOUSEKEEPING = VARIANTS["housekeeping"]
KUBE = "airflow.executor=CeleryExecutor,KubernetesExecutor"
DB_CLEAN = "airflow.housekeeping.dbClean.enabled=true"
POD_CLEANUP = "airflow.housekeeping.podCleanup.enabled=true"


def cron(run: Any, name: str) -> dict[str, Any]:
    return named(run, "CronJob", name)


def main_container(obj: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(obj)["containers"][0]


def script(obj: dict[str, Any]) -> str:
    c = main_container(obj)
    return (c.get("command", []) + c.get("args", []))[-1]


def rules_of(run: Any, service_account: str, namespace: str) -> list[dict[str, Any]]:
    """The rules every Role bound to `service_account` in `namespace` grants."""
    roles = {r["metadata"]["name"]: r for r in objects(run, "Role") if r["metadata"]["namespace"] == namespace}
    out = []
    for b in objects(run, "RoleBinding"):
        if b["metadata"]["namespace"] == namespace and any(s["name"] == service_account for s in b["subjects"]):
            out += roles[b["roleRef"]["name"]]["rules"]
    return out


# ---- off by default: no existing stack changes ------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_nothing_is_cleaned_unless_asked(stack: str) -> None:
    """Deleting run history is data loss for whoever wants the history: both cleanups are opt-in
    (so is the official chart's `cleanup`; chart/values.yaml `cleanup.enabled: false`)."""
    run = render(stack)
    names = {o["metadata"]["name"] for o in objects(run, "CronJob")} | {
        o["metadata"]["name"] for o in objects(run, "ServiceAccount")
    }
    assert not names & {"airflow-db-clean", "airflow-pod-cleanup"}


# ---- db clean ----------------------------------------------------------------------------------


def test_db_clean_runs_on_its_schedule_one_at_a_time() -> None:
    c = cron(render("local", *HOUSEKEEPING), "airflow-db-clean")
    spec = c["spec"]
    assert spec["schedule"] == "@daily" and spec["timeZone"] == "Europe/Paris"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (1, 3)
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2 and job["activeDeadlineSeconds"] == 120 * 60
    assert job["ttlSecondsAfterFinished"] == 86400
    assert pod_spec(c)["restartPolicy"] == "Never"
    # Not without a zone unless asked: the controller's own then.
    assert "timeZone" not in cron(render("local", DB_CLEAN), "airflow-db-clean")["spec"]


def test_db_clean_skips_the_archive_fails_loudly_and_takes_the_tables_and_batch_size() -> None:
    text = script(cron(render("local", *HOUSEKEEPING), "airflow-db-clean"))
    assert 'exec airflow db clean --clean-before-timestamp "$before" --skip-archive --yes ' in text
    assert "--error-on-cleanup-failure" in text
    assert "--tables dag_run,log,xcom --batch-size 10000" in text
    plain = script(cron(render("local", DB_CLEAN), "airflow-db-clean"))
    assert "--tables" not in plain and "--batch-size" not in plain


def test_the_cut_off_is_computed_when_the_job_runs(tmp_path: Any) -> None:
    """No date is baked into the render: the script asks `date` at run time. Run its first lines
    here with GNU date (the image's is GNU coreutils too) and read the cut-off back."""
    text = script(
        cron(render("local", "airflow.housekeeping.dbClean={enabled: true, retentionDays: 7}"), "airflow-db-clean")
    )
    assert str(datetime.date.today().year) not in text
    probe = text.replace("exec airflow db clean", "echo CUTOFF").replace('echo "airflow db clean:', "true #")
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("CUTOFF"))
    cut = datetime.datetime.fromisoformat(line.split()[2].strip('"'))
    expected = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=7)
    assert cut.utcoffset() == datetime.timedelta(0)
    assert abs((cut - expected).total_seconds()) < 120


def test_db_clean_holds_the_db_url_only_waits_for_the_schema_and_has_no_token() -> None:
    run = render("local", *HOUSEKEEPING)
    c = cron(run, "airflow-db-clean")
    spec = pod_spec(c)
    env = env_of(main_container(c))
    refs = {v[2] for v in env.values() if isinstance(v, tuple)}
    assert refs == {"sql-alchemy-conn"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "airflow-db-clean"
    assert [i["name"] for i in spec["initContainers"]] == ["wait-for-migrations"]
    assert not rules_of(run, "airflow-db-clean", "airflow")
    # The Job placement and the stack's pull secrets reach it (a private image, tainted nodes).
    assert spec["nodeSelector"] == {"pool": "system"} and spec["imagePullSecrets"] == [{"name": "regcred"}]


# ---- pod cleanup -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,namespaces",
    [
        # KubernetesExecutor pods only, in Airflow's namespace.
        (("airflow.executor=KubernetesExecutor", "airflow.podOperator.enabled=false"), ["airflow"]),
        # KubernetesPodOperator pods only, in the task namespace.
        (("airflow.executor=CeleryExecutor", "kubernetes.taskNamespace=airflow-tasks"), ["airflow-tasks"]),
        # Both.
        ((KUBE, "kubernetes.taskNamespace=airflow-tasks"), ["airflow", "airflow-tasks"]),
    ],
)
def test_pod_cleanup_lists_and_deletes_pods_only_where_task_pods_are(
    overrides: tuple[str, ...], namespaces: list[str]
) -> None:
    run = render("local", *overrides, POD_CLEANUP)
    c = cron(run, "airflow-pod-cleanup")
    env = env_of(main_container(c))
    assert env["CLEANUP_NAMESPACES"] == " ".join(namespaces)
    for ns in ("airflow", "airflow-tasks"):
        rules = rules_of(run, "airflow-pod-cleanup", ns)
        if ns in namespaces:
            assert rules == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}], ns
        else:
            assert rules == [], ns
    # Only the launchers may create pods; the cleaner is in none of their bindings.
    for b in objects(run, "RoleBinding"):
        if "pod-launcher" in b["roleRef"]["name"]:
            assert "airflow-pod-cleanup" not in {s["name"] for s in b["subjects"]}


def test_pod_cleanup_gets_a_token_no_secret_and_the_provider_cli() -> None:
    run = render("local", *HOUSEKEEPING)
    c = cron(run, "airflow-pod-cleanup")
    spec = pod_spec(c)
    assert spec["automountServiceAccountToken"] is True
    assert named(run, "ServiceAccount", "airflow-pod-cleanup")["automountServiceAccountToken"] is True
    env = env_of(main_container(c))
    assert not [v for v in env.values() if isinstance(v, tuple)]
    # No DB URL: the image's DB check is off (it would open sqlite under the read-only home).
    assert env["CONNECTION_CHECK_MAX_COUNT"] == "0" and "initContainers" not in spec
    text = script(c)
    assert (
        'airflow kubernetes cleanup-pods --namespace "$ns" --min-completed-minutes 120 --min-pending-minutes 60' in text
    )
    s = c["spec"]
    assert s["schedule"] == "*/15 * * * *" and s["concurrencyPolicy"] == "Forbid"
    assert s["startingDeadlineSeconds"] == 600 and s["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 600


def test_the_pod_cleanup_script_tries_every_namespace_and_fails_if_one_failed(tmp_path: Any) -> None:
    """With a stand-in `airflow` that fails for one namespace: both are tried, the run fails."""
    text = script(cron(render("local", *HOUSEKEEPING), "airflow-pod-cleanup"))
    fake = tmp_path / "airflow"
    fake.write_text('#!/bin/bash\necho "$@" >> "$SEEN"\n[[ "$*" != *"--namespace airflow "* ]]\n')
    fake.chmod(0o755)
    seen = tmp_path / "seen"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "CLEANUP_NAMESPACES": "airflow airflow-tasks", "SEEN": str(seen)}
    done = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert [line.split()[3] for line in seen.read_text().splitlines()] == ["airflow", "airflow-tasks"]


# ---- the log groomer ---------------------------------------------------------------------------


def test_the_log_groomer_has_its_own_tokenless_account_pull_secrets_and_placement() -> None:
    """On main it ran as the namespace's `default` account, with no imagePullSecrets and no
    placement: a private image never pulled, and on tainted nodes it never scheduled."""
    run = render(
        "local",
        "airflow.executor=KubernetesExecutor",
        "airflow.imagePullSecrets=[regcred]",
        "airflow.placement={nodeSelector: {pool: airflow}, tolerations: [{key: dedicated, operator: Exists}]}",
    )
    c = cron(run, "airflow-log-groomer")
    spec = pod_spec(c)
    assert spec["serviceAccountName"] == "airflow-log-groomer" and spec["automountServiceAccountToken"] is False
    assert named(run, "ServiceAccount", "airflow-log-groomer")["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"pool": "airflow"} and spec["tolerations"][0]["key"] == "dedicated"
    s = c["spec"]
    assert s["concurrencyPolicy"] == "Forbid" and s["startingDeadlineSeconds"] == 1800
    assert s["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600  # over before the next hourly run


@pytest.mark.parametrize("mode", ["ReadWriteOnce", "ReadWriteMany"])
def test_with_a_readwriteonce_claim_the_groomer_runs_where_the_claim_is_attached(mode: str) -> None:
    """A second node would get a Multi-Attach error and the pod would wait out its deadline every
    hour: it goes where the api-server (which always mounts the claim) runs."""
    run = render("local", "airflow.executor=KubernetesExecutor", f"kubernetes.logVolumeAccessMode={mode}")
    spec = pod_spec(cron(run, "airflow-log-groomer"))
    api = pod_spec(named(run, "Deployment", "airflow-api-server"))
    assert "airflow-logs" in {v.get("persistentVolumeClaim", {}).get("claimName") for v in api["volumes"]}
    if mode == "ReadWriteMany":
        assert "affinity" not in spec
        return
    [term] = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": "airflow",
        "app.kubernetes.io/component": "api-server",
    }


def test_the_groomer_keeps_a_users_affinity_and_adds_its_own_term() -> None:
    run = render(
        "local",
        "airflow.executor=KubernetesExecutor",
        "kubernetes.logVolumeAccessMode=ReadWriteOnce",
        "airflow.placement={affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: "
        "topology.kubernetes.io/zone, labelSelector: {matchLabels: {team: data}}}]}}}",
    )
    terms = pod_spec(cron(run, "airflow-log-groomer"))["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert [t["topologyKey"] for t in terms] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]


# ---- the schedule grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "*/15 * * * *",
        "17 3 * * *",
        "0 3 * * MON-FRI",
        "0 0 1 jan,jul *",
        "0 0 ? * *",
        "5,10-20/5 * * * *",
        "0 */2 1-31/2 * 0",
        "30 4 1/3 * *",
        "@daily",
        "@midnight",
        "@weekly",
        "@every 1h30m",
    ],
)
def test_schedules_the_api_server_takes_are_taken(schedule: str) -> None:
    assert cron_schedule(schedule) == schedule
