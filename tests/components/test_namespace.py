"""AirflowNamespace: namespace(s), one ServiceAccount per component, least-privilege RBAC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s

from components.airflow.roster import TABLE
from components.namespace import POD_LAUNCHER_RULES, PSA_LABELS, AirflowNamespace, pod_security_labels
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
    task_pod_security: str = "baseline",
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
            task_pod_security=task_pod_security,
            annotations=annotations,
            opts=pulumi.ResourceOptions(providers=[p]),
        )

    run = engine.run(prog)
    assert run.error is None, run.error
    return run


def objs(run: engine.Run, kind: str) -> list[dict[str, Any]]:
    return [r.inputs for r in run.kubernetes() if r.inputs["kind"] == kind]


def accounts(run: engine.Run) -> dict[str, dict[str, Any]]:
    """The ServiceAccounts this program makes (not the patched `default` ones), by name."""
    return {s["metadata"]["name"]: s for s in objs(run, "ServiceAccount") if s["metadata"]["name"] != "default"}


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
    sas = accounts(run)
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
    [runner] = [s for s in accounts(run).values() if s["metadata"]["namespace"] == "airflow-tasks"]
    assert runner["metadata"]["name"] == "airflow-task-runner"
    assert runner["automountServiceAccountToken"] is False
    assert ("airflow-tasks", runner["metadata"]["name"]) not in pod_rights(run)


def test_airflow_namespace_enforces_restricted_and_the_task_namespace_its_own_level() -> None:
    run = build(task_namespace="airflow-tasks", task_launchers=["worker"])
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in objs(run, "Namespace")}
    assert PSA_LABELS.items() <= namespaces["airflow"].items()
    assert namespaces["airflow"]["pod-security.kubernetes.io/enforce"] == "restricted"
    task = namespaces["airflow-tasks"]
    assert task["pod-security.kubernetes.io/enforce"] == "baseline"
    # Hardening hints stay `restricted` everywhere: users see what their pods lack.
    assert task["pod-security.kubernetes.io/warn"] == task["pod-security.kubernetes.io/audit"] == "restricted"
    strict = build(task_namespace="airflow-tasks", task_launchers=["worker"], task_pod_security="restricted")
    [task_ns] = [n for n in objs(strict, "Namespace") if n["metadata"]["name"] == "airflow-tasks"]
    assert pod_security_labels("restricted").items() <= task_ns["metadata"]["labels"].items()


def test_every_default_service_account_is_made_tokenless_and_bound_to_nothing() -> None:
    """A pod that names no ServiceAccount (a KubernetesPodOperator pod by default) runs as `default`."""
    run = build(task_namespace="airflow-tasks", task_launchers=["worker"], readers=["api-server"])
    patches = [r for r in run.kubernetes() if r.type == "kubernetes:core/v1:ServiceAccountPatch"]
    assert {p.inputs["metadata"]["namespace"] for p in patches} == {"airflow", "airflow-tasks"}
    for p in patches:
        assert p.inputs["metadata"]["name"] == "default"
        assert p.inputs["automountServiceAccountToken"] is False
    assert not any(s["name"] == "default" for b in objs(run, "RoleBinding") for s in b["subjects"])
    # Undoing a patch is a server-side apply into its namespace (pulumi-kubernetes await.go, Patch
    # delete = ssa.Relinquish, NotFound not ignored): with the namespace gone, or going, it would fail
    # the destroy. Each patch goes with its namespace instead.
    namespaces = {
        r.inputs["metadata"]["name"]: r.urn for r in run.kubernetes() if r.type == "kubernetes:core/v1:Namespace"
    }
    for p in patches:
        assert p.options.get("deletedWith") == namespaces[p.inputs["metadata"]["namespace"]], p.options
    no_tasks = build()
    patched = [r for r in no_tasks.kubernetes() if r.type == "kubernetes:core/v1:ServiceAccountPatch"]
    assert [p.inputs["metadata"]["namespace"] for p in patched] == ["airflow"]


def test_annotations_reach_their_service_account_only() -> None:
    run = build(annotations={"worker": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/logs"}})
    sas = accounts(run)
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
