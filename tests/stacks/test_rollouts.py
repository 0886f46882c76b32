"""Issue 10.4, 10.5, 10.6, 10.12, 10.13: what happens on the next `pulumi up`, on a rollout and after a
failure, as far as pulumi-kubernetes' own rules decide it (provider/pkg/provider/diff.go lists the
fields whose change replaces an object; the Job await logic and `pulumi.com/replaceUnready` are in
the provider's Job docs)."""

from __future__ import annotations

import re

import pytest

from stacks.tooling import engine
from tests.render import named, objects, pod_spec, pod_template, render, workloads

CHECKSUM = "airflow-k8s.io/secret-checksum"


def _minutes(timeout: str) -> float:
    m = re.fullmatch(r"(\d+)m", timeout)
    assert m, timeout
    return int(m.group(1))


# ---- 10.4: a failed Job does not wedge the stack; rollouts get the time they need --------------


def test_jobs_are_replaced_when_unready_so_a_failed_migration_can_be_retried() -> None:
    run = render("local")
    for job in ("airflow-migrate", "airflow-create-user"):
        assert named(run, "Job", job)["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true", job


@pytest.mark.parametrize("replicas", [1, 3])
def test_rollout_timeouts_cover_draining_every_replica(replicas: int) -> None:
    """A StatefulSet rolls one pod at a time and a Deployment (maxUnavailable 0, maxSurge 1) one pod
    at a time too; each old pod may take its grace period to stop. The provider's default wait is
    10 minutes, so the worker's 600 s warm shutdown times out a 2-replica rollout."""
    run = render("local", f"airflow.workers.replicas={replicas}", f"airflow.scheduler.replicas={replicas}")
    for r in run.kubernetes():
        if r.inputs.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        spec = pod_spec(r.inputs)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        need = r.inputs["spec"].get("replicas", 1) * grace / 60
        timeouts = r.options.get("customTimeouts") or {}
        for op in ("create", "update"):
            have = _minutes(timeouts.get(op, "10m"))
            assert have >= need + 5, (r.name, op, have, need)


# ---- 10.5: a changed secret rolls exactly the pods that read it -------------------------------


def _pod_annotations(run: engine.Run, reveal: bool = True) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for obj in workloads(run, reveal=reveal):
        out[obj["metadata"]["name"].rsplit("-", 1)[0] if obj["kind"] == "Job" else obj["metadata"]["name"]] = (
            pod_template(obj).get("metadata", {}).get("annotations", {}).get(CHECKSUM)
        )
    return out


def _db(password: str) -> tuple[str, ...]:
    return ("database.mode=external", f"database.external={{host: db.example.com, password: '{password}'}}")


def test_a_changed_db_password_rolls_the_pods_that_use_it_and_only_those() -> None:
    a = _pod_annotations(render("local", *_db("first-password")))
    b = _pod_annotations(render("local", *_db("second-password")))
    rolled = sorted(k for k in a if a[k] != b[k])
    # The result backend URL carries the DB login, so the worker rolls too; git-sync does not.
    assert rolled == [
        "airflow-api-server",
        "airflow-create-user",
        "airflow-dag-processor",
        "airflow-migrate",
        "airflow-scheduler",
        "airflow-triggerer",
        "airflow-worker",
    ]
    assert a["airflow-git-sync"] is None


def test_a_changed_connection_rolls_only_its_holders() -> None:
    a = _pod_annotations(render("local", secrets=("airflow.connections.x=http://a",)))
    b = _pod_annotations(render("local", secrets=("airflow.connections.x=http://b",)))
    assert sorted(k for k in a if a[k] != b[k]) == [
        "airflow-api-server",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ]


def test_the_checksum_is_itself_a_secret() -> None:
    run = render("local")
    masked = _pod_annotations(run, reveal=False)
    revealed = _pod_annotations(run)
    assert masked["airflow-scheduler"] == engine.SECRET
    assert revealed["airflow-scheduler"] not in (None, engine.SECRET)


# ---- 10.6: the admin Job always sets the generated password -----------------------------------


def test_the_admin_job_resets_the_password_even_when_the_user_exists() -> None:
    """`airflow users create` prints "already exists" and exits 0 for an existing user (fab 3.10.2,
    auth_manager/cli_commands/user_command.py), so `create || reset-password` never resets."""
    script = pod_spec(named(render("local"), "Job", "airflow-create-user"))["containers"][0]["args"][2]
    create, _, reset = script.partition("&&")
    assert "airflow users create" in create and "||" not in script
    assert "airflow users reset-password" in reset and '--password "$ADMIN_PASSWORD"' in reset


# ---- 10.12: a pod-template change is an in-place rollout of the scheduler ---------------------


def test_the_pod_template_configmap_is_named_by_its_content_so_a_change_creates_before_deleting() -> None:
    """A ConfigMap's `data` is replace-forcing in pulumi-kubernetes; under a fixed name the provider
    must delete it first, leaving the scheduler's template missing. Named by its content, a changed
    template is a new ConfigMap, the scheduler rolls onto it in place, and the old one goes after."""

    def parts(*extra: str) -> tuple[str, str, object]:
        run = render("local", "airflow.executor=KubernetesExecutor", *extra)
        [cm] = [r for r in run.kubernetes() if r.inputs.get("kind") == "ConfigMap" and "pod-template" in r.name]
        sched = run.get("kubernetes:apps/v1:Deployment", "airflow-scheduler")
        vol = next(v for v in pod_spec(sched.inputs)["volumes"] if v["name"] == "pod-template")
        assert vol["configMap"]["name"] == cm.inputs["metadata"]["name"]
        # Nothing that replaces a Deployment (metadata.name/namespace, spec.selector) follows it.
        assert {k for k, v in sched.property_dependencies.items() if cm.urn in v} == {"spec"}
        return cm.inputs["metadata"]["name"], sched.inputs["metadata"]["name"], cm.urn

    a, sched_a, urn_a = parts()
    b, sched_b, urn_b = parts("airflow.workers.resources={memoryLimit: 3Gi}")
    assert a != b and a.startswith("airflow-pod-template-")
    assert sched_a == sched_b == "airflow-scheduler" and urn_a == urn_b


def test_statefulsets_name_their_service_without_a_property_dependency() -> None:
    """`spec.serviceName` replaces a StatefulSet; if it were an Output of the Service, a Service
    replacement would leave it unknown at preview."""
    run = render("local")
    services = {r.inputs["metadata"]["name"]: r.urn for r in run.kubernetes() if r.inputs.get("kind") == "Service"}
    sets = [r for r in run.kubernetes() if r.inputs.get("kind") == "StatefulSet"]
    assert len(sets) >= 4  # postgres, redis, triggerer, worker
    for r in sets:
        governing = services[r.inputs["spec"]["serviceName"]]
        assert governing in r.dependencies, r.name  # still made after its Service
        assert governing not in r.property_dependencies.get("spec", []), r.name


# ---- 10.13: immutable fields -----------------------------------------------------------------


def test_worker_log_claims_are_in_the_statefulset_name_so_a_change_replaces_safely() -> None:
    """`spec.volumeClaimTemplates` replaces a StatefulSet. Under the same name that is delete first:
    every worker killed at once. The claim's shape is in the name instead: a new set comes up
    beside the old one, whose workers then drain with their grace period."""
    plain = named(render("local"), "StatefulSet", "airflow-worker")
    a = [
        o
        for o in objects(render("local", "airflow.workers.storageSize=5Gi"), "StatefulSet")
        if "worker" in o["metadata"]["name"]
    ]
    b = [
        o
        for o in objects(render("local", "airflow.workers.storageSize=10Gi"), "StatefulSet")
        if "worker" in o["metadata"]["name"]
    ]
    assert plain["metadata"]["name"] == "airflow-worker"  # existing stacks keep theirs
    assert a[0]["metadata"]["name"] != b[0]["metadata"]["name"] != "airflow-worker"


@pytest.mark.parametrize("stack", ["local", "aws-dev", "azure-dev"])
def test_no_claim_is_replaced_when_its_size_setting_changes(stack: str) -> None:
    """`spec.resources` of a claim is replace-forcing: a changed DAG volume size would delete the
    claim (a static volume's claim cannot bind again). Every standalone claim ignores it."""
    run = render(stack)
    claims = [r for r in run.kubernetes() if r.inputs.get("kind") == "PersistentVolumeClaim"]
    assert claims
    for r in claims:
        assert "spec.resources" in (r.options.get("ignoreChanges") or []), r.name


@pytest.mark.parametrize("stack", ["local", "azure-dev"])
def test_a_stopping_api_server_serves_until_its_endpoints_are_gone(stack: str) -> None:
    """Endpoint removal reaches kube-proxy and ingress controllers a few seconds after a pod starts
    terminating; until then they still send it requests, so it keeps serving (a preStop sleep, an
    action of the kubelet's own: no shell in the image needed) well within its grace period."""
    pod = named(render(stack), "Deployment", "airflow-api-server")["spec"]["template"]["spec"]
    seconds = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 5 <= seconds <= pod["terminationGracePeriodSeconds"] // 2
