"""The components table: what it answers, and that the render does what it says."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from components.airflow.roster import BY_NAME, TABLE, Roster
from components.airflow.settings import GENERATED_CONTAINERS, AirflowSettings, Flower
from stacks.tooling import engine
from tests.render import airflow_pods, containers, is_airflow, objects, pod_spec, render, workloads
from tests.stacks.test_local_render import VARIANTS

ROOT = Path(__file__).resolve().parents[2]


def roster(**airflow: object) -> Roster:
    return Roster.of(AirflowSettings.model_validate(airflow), git_writer=False)


def test_components_per_executor() -> None:
    assert roster().components == [
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "migrate",
        "create-user",
        "worker",
    ]
    assert "worker" not in roster(executor="KubernetesExecutor").components
    assert "task" in roster(executor="KubernetesExecutor").components
    assert "create-user" not in roster(auth={"manager": "simple"}).components
    both = roster(executor="CeleryExecutor,KubernetesExecutor", flower={"enabled": True}, statsd={"enabled": True})
    assert {"worker", "task", "flower", "statsd"} <= set(both.components)
    # Flower exists only with Celery, whatever its flag says (the config model rejects the combination;
    # model_construct skips that check to show the table does not depend on it).
    flag_on = AirflowSettings.model_construct(
        **{**dict(AirflowSettings.model_validate({"executor": "KubernetesExecutor"})),
           "flower": Flower.model_validate({"enabled": True})}
    )  # fmt: skip
    assert flag_on.flower.enabled and "flower" not in Roster.of(flag_on, False).components
    assert not Roster.of(flag_on, False).conditions.flower


def test_api_rights_follow_executor_and_pod_operator() -> None:
    off = {"podOperator": {"enabled": False}}
    assert (roster(**off).pod_launchers, roster(**off).task_pod_launchers, roster(**off).pod_log_readers) == (
        [],
        [],
        [],
    )
    # KubernetesPodOperator is on by default: the Celery worker and the triggerer may launch its pods.
    assert set(roster().task_pod_launchers) == {"worker", "triggerer"} and roster().pod_launchers == []
    kube = roster(executor="KubernetesExecutor")
    assert kube.pod_launchers == ["scheduler"] and kube.pod_log_readers == ["api-server"]
    kpo = roster(executor="CeleryExecutor,KubernetesExecutor")
    assert set(kpo.task_pod_launchers) == {"worker", "task", "triggerer"}
    assert not roster().calls_kubernetes_api("scheduler") and kube.calls_kubernetes_api("scheduler")
    assert not kpo.calls_kubernetes_api("dag-processor")


def test_task_log_users_are_the_airflow_processes_that_touch_logs() -> None:
    assert set(roster(executor="CeleryExecutor,KubernetesExecutor").task_log_users) == {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "worker",
        "task",
    }
    assert "worker" not in roster(executor="KubernetesExecutor").task_log_users


def test_secret_grants() -> None:
    r = roster()
    assert "admin-password" in r.secret_keys("create-user") and "admin-password" not in r.secret_keys("api-server")
    assert "simple-auth-passwords.json" in roster(auth={"manager": "simple"}).secret_keys("api-server")
    assert "simple-auth-passwords.json" not in r.secret_keys("api-server")
    assert not r.secret_keys("statsd") and not r.secret_keys("git-sync")


GENERATED_SECRETS = ("airflow-secrets", "airflow-broker")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_pods_do_what_the_table_says(variant: str) -> None:
    """Tokens, ports and secret references in every rendered pod are the table's answers."""
    run = render("local", *VARIANTS[variant])
    for obj in workloads(run):
        comp = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        if comp not in BY_NAME:
            continue  # PostgreSQL and Redis
        row = BY_NAME[comp]
        spec = pod_spec(obj)
        token = spec.get("automountServiceAccountToken", True)
        assert token == bool(_rights(run, spec["serviceAccountName"])), (comp, token)
        main = spec["containers"][0]
        assert [(p["name"], p["containerPort"], p["protocol"]) for p in main.get("ports", [])] == [
            (p.name, p.number, p.protocol) for p in row.ports
        ], comp
        for c in containers(spec):
            if not is_airflow(c):
                continue
            # References to the stack's generated Secrets (not to a user's own, from extraEnv).
            keys = {
                e["valueFrom"]["secretKeyRef"]["key"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
                and e["valueFrom"]["secretKeyRef"]["name"] in GENERATED_SECRETS
            }
            conns = {k for k in keys if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}  # roster.CONNECTIONS
            assert keys - conns <= row.secrets | {k for k, _ in row.extra_secrets}, (comp, c["name"], keys)


def _rights(run: engine.Run, account: str) -> bool:
    """Whether any RoleBinding names `account`."""
    return any(s["name"] == account for b in objects(run, "RoleBinding") for s in b.get("subjects", []))


def test_no_other_module_keeps_a_list_of_components() -> None:
    """Which components exist and what each may do lives in roster.py only: no other module of the
    program spells out three or more component names in one literal tuple, list or set, or compares
    a value with a component's name."""
    names = set(BY_NAME)
    offenders = []
    for path in [*ROOT.glob("components/**/*.py"), *ROOT.glob("stacks/**/*.py")]:
        if path.name == "roster.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                found = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names}
                if len(found) >= 3:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {sorted(found)}")
            # `if component == "worker"`: a decision about a component belongs in its row.
            if isinstance(node, ast.Compare):
                found = {
                    e.value for e in [node.left, *node.comparators] if isinstance(e, ast.Constant) and e.value in names
                }
                if found:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} compares with {sorted(found)}")
    assert not offenders, offenders


def test_table_names_are_unique_and_ports_named_uniquely() -> None:
    assert len(BY_NAME) == len(TABLE)
    for row in TABLE:
        assert len({p.name for p in row.ports}) == len(row.ports), row.name
        assert re.match(r"^[a-z][a-z0-9-]*$", row.name)


def test_the_settings_reserve_every_container_name_the_program_uses() -> None:
    """An extra container may not take a name already in the pod: a helper's
    (settings.GENERATED_CONTAINERS) or the Airflow container's, which is its row's name."""
    for variant in VARIANTS.values():
        for comp, spec in airflow_pods(render("local", *variant)):
            if comp in BY_NAME and BY_NAME[comp].options:
                names = {c["name"] for c in containers(spec)}
                extra = {n for n in names if n not in GENERATED_CONTAINERS and n != comp}
                # Only the variant's own extra containers are not reserved.
                assert extra <= {"log-shipper", "proxy"}, (comp, extra)
