"""AirflowNamespace: namespace(s), one ServiceAccount per component, least-privilege RBAC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s

from components.airflow.roster import TABLE
from components.namespace import POD_LAUNCHER_RULES, PSA_LABELS, AirflowNamespace
from stacks.tooling import engine
from tests.render import K8S_VERSIONS

# Every Airflow component the table knows, as the stacks pass them.
COMPONENTS = [c.name for c in TABLE]


def build(
    task_namespace: str | None = None,
    launchers: Sequence[str] = ("scheduler",),
    task_launchers: Sequence[str] = (),
    readers: Sequence[str] = (),
    annotations: dict[str, dict[str, str]] | None = None,
) -> engine.Run:
    def prog() -> None:
        p = k8s.Provider("k8s", context="kind-test")
        AirflowNamespace(
            "ns",
            namespace="airflow",
            instance="airflow",
            components=COMPONENTS,
            pod_launchers=launchers,
            task_pod_launchers=task_launchers,
            pod_log_readers=readers,
            task_namespace=task_namespace,
            annotations=annotations,
            opts=pulumi.ResourceOptions(providers=[p]),
        )

    run = engine.run(prog)
    assert run.error is None, run.error
    return run


def objs(run: engine.Run, kind: str) -> list[dict[str, Any]]:
    return [r.inputs for r in run.kubernetes() if r.inputs["kind"] == kind]


def pod_rights(run: engine.Run) -> dict[tuple[str, str], set[str]]:
    """(subject namespace, ServiceAccount) -> verbs on pods, through every binding."""
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in objs(run, "Role")}
    out: dict[tuple[str, str], set[str]] = {}
    for b in objs(run, "RoleBinding"):
        role = roles[(b["metadata"]["namespace"], b["roleRef"]["name"])]
        verbs = {v for rule in role["rules"] if "pods" in rule["resources"] for v in rule["verbs"]}
        for s in b["subjects"]:
            out.setdefault((s["namespace"], s["name"]), set()).update(verbs)
    return out


def test_every_child_uses_the_given_provider_and_is_strictly_valid() -> None:
    run = build(task_namespace="airflow-tasks", task_launchers=["worker"], readers=["api-server"])
    assert all(r.provider and r.provider.endswith("::k8s") for r in run.kubernetes())
    for r in run.kubernetes():
        for v in K8S_VERSIONS:
            kubernetes_validate.validate(r.inputs, v, strict=True)


def test_one_service_account_per_component_with_tokens_only_for_api_callers() -> None:
    run = build(readers=["api-server"])
    sas = {s["metadata"]["name"]: s for s in objs(run, "ServiceAccount")}
    assert set(sas) == {f"airflow-{c}" for c in COMPONENTS}
    mounted = {n for n, s in sas.items() if s["automountServiceAccountToken"]}
    assert mounted == {"airflow-scheduler", "airflow-api-server"}


def test_pod_launcher_role_has_exactly_the_rights_launchers_need() -> None:
    run = build()
    [role] = objs(run, "Role")
    assert role["rules"] == POD_LAUNCHER_RULES
    assert {(r["resources"][0], tuple(r["verbs"])) for r in role["rules"]} == {
        ("pods", ("create", "get", "list", "watch", "patch", "delete")),
        ("pods/log", ("get",)),
        ("pods/exec", ("create", "get")),
        ("events", ("list", "watch")),
    }


def test_only_launchers_are_bound() -> None:
    rights = pod_rights(build(launchers=["scheduler"], task_launchers=["worker", "triggerer"]))
    assert set(rights) == {
        ("airflow", "airflow-scheduler"),
        ("airflow", "airflow-worker"),
        ("airflow", "airflow-triggerer"),
    }


def test_no_launchers_means_no_role_at_all() -> None:
    run = build(launchers=())
    assert not objs(run, "Role") and not objs(run, "RoleBinding")


def test_task_namespace_gets_the_launcher_role_and_a_rightless_runner() -> None:
    run = build(task_namespace="airflow-tasks", task_launchers=["worker", "task"])
    namespaces = {n["metadata"]["name"]: n for n in objs(run, "Namespace")}
    assert set(namespaces) == {"airflow", "airflow-tasks"}
    task_role = [r for r in objs(run, "Role") if r["metadata"]["namespace"] == "airflow-tasks"]
    assert len(task_role) == 1
    bindings = {b["metadata"]["namespace"]: b for b in objs(run, "RoleBinding")}
    assert {s["name"] for s in bindings["airflow-tasks"]["subjects"]} == {"airflow-worker", "airflow-task"}
    assert {s["namespace"] for s in bindings["airflow-tasks"]["subjects"]} == {"airflow"}
    assert {s["name"] for s in bindings["airflow"]["subjects"]} == {"airflow-scheduler"}
    [runner] = [s for s in objs(run, "ServiceAccount") if s["metadata"]["namespace"] == "airflow-tasks"]
    assert runner["automountServiceAccountToken"] is False
    assert ("airflow-tasks", runner["metadata"]["name"]) not in pod_rights(run)


def test_namespaces_enforce_pod_security_restricted() -> None:
    run = build(task_namespace="airflow-tasks", task_launchers=["worker"])
    for ns in objs(run, "Namespace"):
        assert PSA_LABELS.items() <= ns["metadata"]["labels"].items()


def test_annotations_reach_their_service_account_only() -> None:
    run = build(annotations={"worker": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/logs"}})
    sas = {s["metadata"]["name"]: s for s in objs(run, "ServiceAccount")}
    assert sas["airflow-worker"]["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/logs"
    }
    assert sas["airflow-scheduler"]["metadata"]["annotations"] == {}


def test_unknown_launcher_is_refused() -> None:
    def prog() -> None:
        AirflowNamespace(
            "ns", namespace="airflow", instance="airflow", components=["scheduler"], pod_launchers=["webserver"]
        )

    run = engine.run(prog)
    assert isinstance(run.error, ValueError) and "webserver" in str(run.error)
    assert run.resources == []
