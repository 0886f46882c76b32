"""DESIGN.md's rules, as assertions over the rendered graph of the local stack and its variants."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from components.airflow import kpo
from components.airflow.roster import BY_NAME
from stacks.tooling import engine
from stacks.tooling.render import stack_names
from tests.render import (
    airflow_pods,
    component,
    containers,
    dumps,
    env_of,
    is_airflow,
    named,
    objects,
    pod_spec,
    render,
    workloads,
)
from tests.stacks.test_local_render import VARIANTS

ALL = sorted(VARIANTS)


def _secret_leaves(run: engine.Run) -> set[str]:
    """Every value that is masked in the render: compare masked and revealed inputs leaf by leaf."""
    found: set[str] = set()

    def walk(masked: Any, revealed: Any) -> None:
        if masked == engine.SECRET and isinstance(revealed, str):
            found.add(revealed)
        elif isinstance(masked, dict) and isinstance(revealed, dict):
            for k in masked:
                walk(masked[k], revealed.get(k))
        elif isinstance(masked, list) and isinstance(revealed, list):
            for m, r in zip(masked, revealed, strict=True):
                walk(m, r)

    for r in run.resources:
        walk(r.inputs, r.revealed)
    for k, v in run.outputs.items():
        walk(v, run.revealed_outputs.get(k))
    return found


# ---- explicit provider -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL)
def test_every_kubernetes_resource_has_the_stacks_explicit_provider(variant: str) -> None:
    run = render("local", *VARIANTS[variant])
    providers = {r.urn: r for r in run.by_type("pulumi:providers:kubernetes")}
    assert providers, "no explicit kubernetes provider"
    assert all(p.inputs.get("context") == "kind-airflow" for p in providers.values())
    missing = [r.name for r in run.kubernetes() if r.provider not in providers]
    assert not missing, f"on the default (ambient) provider: {missing}"


# ---- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL)
def test_no_secret_appears_in_plain_text(variant: str) -> None:
    run = render("local", *VARIANTS[variant])
    secrets = {s for s in _secret_leaves(run) if len(s) >= 8}
    assert len(secrets) >= 5  # fernet, jwt, api key, admin, DB password at least
    text = dumps(run)
    leaked = [s[:4] + "..." for s in secrets if s in text or json.dumps(s)[1:-1] in text]
    assert not leaked


def test_config_secrets_stay_secret() -> None:
    run = render("local", *VARIANTS["external-db-broker"])
    text = dumps(run)
    for pw in ("p@ss:w/rd$1", "r3d!s$pw", "p%40ss%3Aw%2Frd%241"):
        assert pw not in text


def test_generated_secrets_are_pulumi_random_and_only_reach_pods_by_reference() -> None:
    run = render("local")
    assert {r.name for r in run.by_type("random:index/randomPassword:RandomPassword")} >= {
        "airflow-secrets-jwt-secret",
        "airflow-secrets-api-secret-key",
        "airflow-secrets-admin-password",
        "postgres-password",
        "redis-password",
    }
    assert [r.name for r in run.by_type("random:index/randomBytes:RandomBytes")] == ["airflow-secrets-fernet-key"]
    for obj in workloads(run):
        for c in containers(pod_spec(obj)):
            for name, value in env_of(c).items():
                if name == kpo.CONNECTION_VARIABLE and isinstance(value, str):
                    # KubernetesPodOperator's generated connection is plain: in-cluster, no credentials.
                    conn = json.loads(value)
                    assert set(conn) == {"conn_type", "extra"} and "kube_config" not in conn["extra"], value
                    continue
                # Connections (AIRFLOW_CONN_*, *_SQL_ALCHEMY_CONN*), not CONNECTION_CHECK_MAX_COUNT.
                connection = re.search(r"(^|_)CONN(_|$)", name) is not None
                if connection or any(
                    w in name for w in ("PASSWORD", "SECRET", "FERNET", "BROKER_URL", "RESULT_BACKEND")
                ):
                    assert isinstance(value, tuple) and value[0] == "secret", f"{obj['metadata']['name']}: {name}"


def test_admin_password_is_a_secret_output() -> None:
    run = render("local")
    assert run.outputs["adminPassword"] == engine.SECRET
    assert run.revealed_outputs["adminPassword"] not in (None, engine.SECRET)


# ---- migration -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL)
def test_every_airflow_workload_depends_on_the_migration_job(variant: str) -> None:
    run = render("local", *VARIANTS[variant])
    [job] = [r for r in run.by_type("kubernetes:batch/v1:Job") if r.name == "airflow-migrate"]
    for r in run.kubernetes():
        obj = r.inputs
        if obj.get("kind") in ("Deployment", "StatefulSet") and any(is_airflow(c) for c in containers(pod_spec(obj))):
            assert job.urn in r.dependencies, f"{r.name} does not wait for the migration"
            inits = [c["name"] for c in pod_spec(obj).get("initContainers", [])]
            # A pod restarted mid-upgrade waits too, where it uses the DB (not the worker or Flower).
            uses_db = any("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env_of(c) for c in pod_spec(obj)["containers"])
            assert ("wait-for-migrations" in inits) == uses_db, r.name


def test_migration_job_waits_for_database_and_is_bounded() -> None:
    run = render("local")
    job = run.get("kubernetes:batch/v1:Job", "airflow-migrate")
    pg = run.get("kubernetes:apps/v1:StatefulSet", "postgres-statefulset")
    assert pg.urn in job.dependencies
    assert job.options["customTimeouts"]["create"] == "15m"
    assert job.inputs["spec"]["activeDeadlineSeconds"] == 15 * 60
    assert pod_spec(job.inputs)["containers"][0]["args"] == ["db", "migrate"]


def test_a_new_image_gives_a_new_migration_job() -> None:
    a = named(render("local"), "Job", "airflow-migrate")["metadata"]["name"]
    b = named(render("local", "airflow.image.tag=3.3.3"), "Job", "airflow-migrate")["metadata"]["name"]
    assert a != b and a.startswith("airflow-migrate-") and b.startswith("airflow-migrate-")


def test_admin_user_job_runs_after_migration_and_api_server_after_it() -> None:
    run = render("local")
    mig = run.get("kubernetes:batch/v1:Job", "airflow-migrate")
    user = run.get("kubernetes:batch/v1:Job", "airflow-create-user")
    api = run.get("kubernetes:apps/v1:Deployment", "airflow-api-server")
    assert mig.urn in user.dependencies and user.urn in api.dependencies
    assert "airflow users create" in pod_spec(user.inputs)["containers"][0]["args"][-1]


# ---- DAG volume ------------------------------------------------------------------------------


def _dag_claim_mounts(run: engine.Run, claim: str) -> list[tuple[str, str, bool]]:
    """(object, container, read-only) for every container that mounts the DAG claim."""
    out = []
    for obj in workloads(run) + [o for o in objects(run, "ConfigMap") if False]:
        spec = pod_spec(obj)
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(spec):
            for m in c.get("volumeMounts", []):
                v = vols.get(m["name"], {})
                if v.get("persistentVolumeClaim", {}).get("claimName") == claim:
                    ro = bool(m.get("readOnly")) and bool(v["persistentVolumeClaim"].get("readOnly"))
                    out.append((obj["metadata"]["name"], c["name"], ro))
    return out


def test_dag_volume_is_read_only_everywhere_but_the_single_writer() -> None:
    run = render("local")
    mounts = _dag_claim_mounts(run, "airflow-dags")
    writers = [(o, c) for o, c, ro in mounts if not ro]
    assert writers == [("airflow-git-sync", "git-sync")]
    readers = {o for o, c, ro in mounts if ro}
    assert {"airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"} <= readers
    writer = named(run, "Deployment", "airflow-git-sync")
    assert writer["spec"]["replicas"] == 1 and writer["spec"]["strategy"]["type"] == "Recreate"


def test_existing_claim_is_mounted_read_only_without_a_writer() -> None:
    run = render("local", "airflow.dags.git=null", "airflow.dags.claimName=team-dags")
    mounts = _dag_claim_mounts(run, "team-dags")
    assert mounts and all(ro for _, _, ro in mounts)
    assert not [o for o in objects(run, "PersistentVolumeClaim") if o["metadata"]["name"] == "airflow-dags"]
    assert not [o for o in objects(run, "Deployment") if component(o) == "git-sync"]


# ---- RBAC: pod rights only on launchers ------------------------------------------------------


def _pod_rights(run: engine.Run) -> dict[str, set[str]]:
    """ServiceAccount -> verbs on pods, over every RoleBinding/ClusterRoleBinding in the render."""
    roles = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects(run, "Role")}
    croles = {o["metadata"]["name"]: o for o in objects(run, "ClusterRole")}
    rights: dict[str, set[str]] = {}
    for b in objects(run, "RoleBinding") + objects(run, "ClusterRoleBinding"):
        ref = b["roleRef"]
        role = (
            croles.get(ref["name"])
            if ref["kind"] == "ClusterRole"
            else roles.get((b["metadata"].get("namespace"), ref["name"]))
        )
        assert role is not None, f"binding {b['metadata']['name']} refers to a missing role"
        verbs = {
            v
            for rule in role.get("rules", [])
            if "pods" in rule.get("resources", []) or "*" in rule.get("resources", [])
            for v in rule["verbs"]
        }
        for s in b.get("subjects", []):
            if verbs:
                rights.setdefault(s["name"], set()).update(verbs)
    return rights


@pytest.mark.parametrize(
    "overrides,launchers,readers",
    [
        (("airflow.podOperator.enabled=false",), set(), set()),
        (
            ("airflow.executor=KubernetesExecutor", "airflow.podOperator.enabled=false"),
            {"airflow-scheduler"},
            {"airflow-api-server"},
        ),
        ((), {"airflow-worker", "airflow-triggerer"}, set()),
        (
            VARIANTS["both-executors+kpo"],
            {"airflow-scheduler", "airflow-worker", "airflow-task", "airflow-triggerer"},
            {"airflow-api-server"},
        ),
    ],
)
def test_only_pod_launchers_may_create_pods(overrides: tuple[str, ...], launchers: set[str], readers: set[str]) -> None:
    rights = _pod_rights(render("local", *overrides))
    assert {sa for sa, verbs in rights.items() if "create" in verbs} == launchers
    assert {sa for sa, verbs in rights.items() if "create" not in verbs} == readers


@pytest.mark.parametrize("variant", ALL)
def test_only_api_callers_mount_a_token(variant: str) -> None:
    run = render("local", *VARIANTS[variant])
    rights = _pod_rights(run)
    for obj in workloads(run):
        spec = pod_spec(obj)
        if spec.get("automountServiceAccountToken", True):
            assert spec["serviceAccountName"] in rights, f"{obj['metadata']['name']} mounts a token it does not need"


def test_task_namespace_service_account_has_no_rights() -> None:
    run = render("local", *VARIANTS["both-executors+kpo"])
    task_accounts = [o for o in objects(run, "ServiceAccount") if o["metadata"].get("namespace") == "airflow-tasks"]
    # The rightless runner, and the namespace's `default` account (patched token-less).
    assert sorted(sa["metadata"]["name"] for sa in task_accounts) == ["airflow-task-runner", "default"]
    for sa in task_accounts:
        assert sa["automountServiceAccountToken"] is False
        assert sa["metadata"]["name"] not in _pod_rights(run)


# ---- production defaults on every pod -------------------------------------------------------


@pytest.mark.parametrize("variant", ALL)
def test_every_pod_is_hardened(variant: str) -> None:
    run = render("local", *VARIANTS[variant])
    for obj in workloads(run):
        name = obj["metadata"]["name"]
        spec = pod_spec(obj)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], (name, c["name"])


def test_multi_replica_components_have_disruption_budgets_and_spread() -> None:
    run = render("local", "airflow.scheduler.replicas=2", "airflow.apiServer.replicas=3")
    pdbs = {o["metadata"]["name"] for o in objects(run, "PodDisruptionBudget")}
    assert {"airflow-scheduler", "airflow-api-server"} <= pdbs
    assert "airflow-dag-processor" not in pdbs  # one replica: a PDB would block node drains
    sched = named(run, "Deployment", "airflow-scheduler")
    assert pod_spec(sched)["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "ScheduleAnyway"


def test_network_policies_deny_by_default_and_admit_log_fetching_from_api_server_only() -> None:
    run = render("local")
    pols = {o["metadata"]["name"]: o for o in objects(run, "NetworkPolicy")}
    assert pols["airflow-default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    wl = pols["airflow-worker-logs"]["spec"]["ingress"]
    assert wl[0]["from"] == [
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/instance": "airflow", "app.kubernetes.io/component": "api-server"}
            }
        }
    ]
    assert wl[0]["ports"] == [{"port": 8793, "protocol": "TCP"}]
    assert not objects(render("local", "kubernetes.networkPolicies=false"), "NetworkPolicy")


# ---- every Airflow pod can run a task -------------------------------------------------------

# Every Airflow container (Jobs too); which secrets each gets is tests/stacks/test_least_secrets.py.
REQUIRED_ENV = {"AIRFLOW_HOME", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER"}
# Every long-running one and every task pod: where tasks run or are served.
RUNTIME_ENV = {
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
}


@pytest.mark.parametrize("variant", ALL)
def test_every_airflow_container_has_the_shared_settings(variant: str) -> None:
    run = render("local", *VARIANTS[variant])
    for comp, spec in airflow_pods(run):
        for c in containers(spec):
            if is_airflow(c):
                if comp in BY_NAME and not BY_NAME[comp].settings:
                    continue  # the Airflow image running no Airflow process (the log groomer)
                env = env_of(c)
                assert REQUIRED_ENV <= set(env), (comp, REQUIRED_ENV - set(env))
                if (
                    comp in ("migrate", "create-user", "pools", "db-clean", "pod-cleanup")
                    or c["name"] == "wait-for-migrations"
                ):
                    continue
                assert RUNTIME_ENV <= set(env), (comp, RUNTIME_ENV - set(env))
                assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
                    "http://airflow-api-server.airflow.svc.cluster.local:8080/execution/"
                )


def test_fernet_key_is_url_safe_base64_of_32_bytes() -> None:
    import base64

    secret = named(render("local"), "Secret", "airflow-secrets", reveal=True)
    key = secret["stringData"]["fernet-key"]
    assert "+" not in key and "/" not in key
    assert len(base64.urlsafe_b64decode(key)) == 32


def test_database_and_broker_urls_are_url_encoded() -> None:
    from urllib.parse import unquote, urlsplit

    run = render("local", *VARIANTS["external-db-broker"])
    data = named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]
    db = urlsplit(data["sql-alchemy-conn"])
    assert unquote(db.password) == "p@ss:w/rd$1" and "$" not in data["sql-alchemy-conn"]
    assert db.hostname == "db.example.com" and "sslmode=require" in db.query
    broker = urlsplit(named(run, "Secret", "airflow-broker", reveal=True)["stringData"]["broker-url"])
    assert broker.scheme == "rediss" and broker.username == "" and unquote(broker.password) == "r3d!s$pw"
    assert broker.query == "ssl_cert_reqs=required"


# ---- signals: Celery's warm shutdown ---------------------------------------------------------

# (stack, variant) pairs: every local variant, and every other stack file as it is.
RENDERS = [("local", v) for v in ALL] + [(s, "as-is") for s in stack_names() if s != "local"]


@pytest.mark.parametrize(("stack", "variant"), RENDERS)
def test_only_celery_workers_ask_dumb_init_to_signal_just_its_child(stack: str, variant: str) -> None:
    """The image's ENTRYPOINT is dumb-init, which by default signals the whole process group on
    SIGTERM (the image sets DUMB_INIT_SETSID=1), so Celery's pool processes are signalled beside its
    main process, whose warm shutdown would let their tasks finish. The official chart sets
    DUMB_INIT_SETSID=0 on workers only; tests/e2e/test_warm_shutdown_e2e.py shows the difference."""
    run = render(stack, *VARIANTS.get(variant, ()))
    pods = [(component(o), pod_spec(o)) for o in workloads(run)]
    for cm in objects(run, "ConfigMap"):
        if "pod_template_file.yaml" in cm.get("data", {}):  # KubernetesExecutor's task pods
            pods.append(("task", yaml.safe_load(cm["data"]["pod_template_file.yaml"])["spec"]))
    seen: dict[str, set[str | None]] = {}
    for comp, spec in pods:
        for c in containers(spec):
            if is_airflow(c):
                seen.setdefault(comp, set()).add(env_of(c).get("DUMB_INIT_SETSID"))
    scheduler_env = env_of(next(s for comp, s in pods if comp == "scheduler")["containers"][0])
    celery = "CeleryExecutor" in scheduler_env["AIRFLOW__CORE__EXECUTOR"]
    assert ("worker" in seen) == celery
    # Worker sets (issue 15) are Celery workers too: component `worker-<name>`, the same table row.
    workers = {comp: {"0"} for comp in seen if comp == "worker" or comp.startswith("worker-")} if celery else {}
    assert {comp: values for comp, values in seen.items() if values != {None}} == workers
