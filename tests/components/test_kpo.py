"""KubernetesPodOperator out of the box, proved with the provider's own code.

For each shipped stack file, the rendered launcher env (its AIRFLOW_CONN_KUBERNETES_DEFAULT) is handed
to the real KubernetesPodOperator (cncf-kubernetes 10.25.0, in the Airflow venv), which runs default
tasks against a fake API server (tests/kpo_probe.py). What it records is checked against the render:
the pods land in the rendered task namespace and meet the Pod Security level that namespace enforces
(and would not meet `restricted`); the Role bound to each launcher's ServiceAccount in that namespace
allows every API request the provider made; and a pod that names no ServiceAccount runs as one with no
token and no rights.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.roster import Roster
from stacks.config import PROJECT, StackConfig, parse
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config, stack_names
from tests.pod_security import enforced_level, violations
from tests.render import K8S_VERSIONS, env_of, named, objects, pod_spec, render, workloads

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_E2E_VENV", ROOT / ".ci" / ".airflow-venv"))
PROBE = ROOT / "tests" / "kpo_probe.py"
CONN = "AIRFLOW_CONN_KUBERNETES_DEFAULT"
SCENARIOS = ("default", "xcom", "failure", "deferrable", "deferrable-kill")
SIDECAR = "airflow-xcom-sidecar"  # utils/xcom_sidecar.py PodDefaults.SIDECAR_CONTAINER_NAME

# What the provider is known to call, by reading its code. The probe's record must be exactly this,
# so a provider upgrade that adds a call fails here first (and then, if the Role lacks it, below).
# (side, verb, resource, why: file:function in airflow/providers/cncf/kubernetes/)
KNOWN_CALLS: set[tuple[str, str, str]] = {
    # operators/pod.py find_pod: reattach by labels, before and after creating the pod
    ("worker", "list", "pods"),
    # utils/pod_manager.py PodManager.run_pod_async (create_pod)
    ("worker", "create", "pods"),
    # utils/pod_manager.py PodManager.read_pod: await_pod_start, container status, istio check
    ("worker", "get", "pods"),
    # utils/pod_manager.py PodManager.read_pod_events: watch_pod_events while it starts
    # (log_events_on_startup), and operators/pod.py _read_pod_events on failure
    ("worker", "list", "events"),
    # utils/pod_manager.py PodManager.read_pod_logs (fetch_container_logs; trigger_reentry's _write_logs)
    ("worker", "get", "pods/log"),
    # utils/pod_manager.py extract_xcom_json / extract_xcom_kill: kubernetes.stream over a websocket
    # GET, which the API server authorizes as `get` and, from 1.35, also as `create`
    # (AuthorizePodWebsocketUpgradeCreatePermission, kubernetes/kubernetes#134577)
    ("worker", "get", "pods/exec"),
    ("worker", "create", "pods/exec"),
    # operators/pod.py patch_already_checked: label a failed (or kept) pod so a retry does not reattach
    ("worker", "patch", "pods"),
    # utils/pod_manager.py PodManager.delete_pod (process_pod_deletion, on_finish_action=delete_pod)
    ("worker", "delete", "pods"),
    # hooks/kubernetes.py AsyncKubernetesHook.get_pod: the trigger polls the pod
    ("triggerer", "get", "pods"),
    # hooks/kubernetes.py AsyncKubernetesHook.watch_pod_events (log_events_on_startup)
    ("triggerer", "watch", "events"),
    # triggers/pod.py KubernetesPodTrigger.on_kill -> AsyncKubernetesHook.delete_pod
    ("triggerer", "delete", "pods"),
}


def stack_config(stack: str, *overrides: str) -> StackConfig:
    config, _ = load_stack_config(stack, overrides)

    def value(raw: str) -> Any:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # a plain string, e.g. `cloud: aws`

    return parse({k.split(":", 1)[1]: value(v) for k, v in config.items() if k.startswith(f"{PROJECT}:")})


def roster_of(stack: str, *overrides: str) -> Roster:
    cfg = stack_config(stack, *overrides)
    return Roster.of(cfg.airflow, cfg.airflow.dags.git_writer)


@functools.lru_cache(maxsize=16)
def probe(env: tuple[tuple[str, str], ...], launcher_namespace: str) -> dict[str, Any]:
    """What the real operator does with this env, in a launcher pod of `launcher_namespace`."""
    python = AIRFLOW_VENV / "bin" / "python"
    assert python.exists(), f"no Airflow venv at {AIRFLOW_VENV}: `bash .ci/run` installs it (or set AIRFLOW_E2E_VENV)"
    with tempfile.TemporaryDirectory() as tmp:
        request, result = Path(tmp, "request.json"), Path(tmp, "result.json")
        request.write_text(
            json.dumps({"env": dict(env), "launcher_namespace": launcher_namespace, "scenarios": list(SCENARIOS)})
        )
        done = subprocess.run(
            [str(python), str(PROBE), str(request), str(result)],
            capture_output=True,
            text=True,
            timeout=600,
            env={"PATH": os.environ.get("PATH", ""), "HOME": tmp, "AIRFLOW_HOME": tmp},
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(result.read_text())


def launcher_container(run: engine.Run, component: str) -> dict[str, Any]:
    """The Airflow container of `component`: its workload's, or the pod template's `base` (task)."""
    if component == "task":
        cm = named(run, "ConfigMap", "airflow-pod-template")
        pod = yaml.safe_load(cm["data"]["pod_template_file.yaml"])
        return pod_spec(pod)["containers"][0]
    [obj] = [o for o in workloads(run) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return pod_spec(obj)["containers"][0]


def kpo_env(run: engine.Run, component: str) -> tuple[tuple[str, str], ...]:
    """The launcher's plain KubernetesPodOperator settings (what the probe may see of its env)."""
    value = env_of(launcher_container(run, component)).get(CONN)
    return ((CONN, value),) if isinstance(value, str) else ()


def task_namespace(run: engine.Run) -> str:
    """The namespace the stack made for task pods (or the Airflow namespace when it made none)."""
    names = [n["metadata"]["name"] for n in objects(run, "Namespace")]
    tasks = [n for n in objects(run, "Namespace") if n["metadata"]["labels"]["app.kubernetes.io/component"] == (
        "task-namespace")]  # fmt: skip
    return tasks[0]["metadata"]["name"] if tasks else names[0]


def record(stack: str, *overrides: str) -> tuple[engine.Run, Roster, dict[str, Any]]:
    run = render(stack, *overrides)
    roster = roster_of(stack, *overrides)
    assert roster.task_pod_launchers, f"{stack}: no component may launch KubernetesPodOperator pods"
    envs = {kpo_env(run, c) for c in roster.task_pod_launchers}
    assert len(envs) == 1, f"the launchers disagree on the connection: {envs}"
    airflow_ns = named(run, "Namespace", stack_config(stack, *overrides).kubernetes.namespace)
    return run, roster, probe(envs.pop(), airflow_ns["metadata"]["name"])


# ---- the pods land in the task namespace and its Pod Security level admits them ---------------


@pytest.mark.parametrize("stack", stack_names())
def test_default_pods_land_in_the_task_namespace_and_are_admitted(stack: str) -> None:
    run, _, result = record(stack)
    ns_name = task_namespace(run)
    namespace = named(run, "Namespace", ns_name)
    level = enforced_level(namespace)
    assert ns_name != stack_config(stack).kubernetes.namespace, "task pods share Airflow's namespace"
    for scenario, outcome in result.items():
        assert outcome["pods"], f"{scenario}: no pod created ({outcome['error']})"
        for pod in outcome["pods"]:
            assert pod["metadata"]["namespace"] == ns_name, scenario
            for version in K8S_VERSIONS:
                assert violations(pod, level, version) == [], (scenario, version, level)
    # `restricted` would reject the very same default pod: why the task namespace enforces less.
    [default_pod] = result["default"]["pods"]
    assert {v.control for v in violations(default_pod, "restricted")} >= {
        "Running as Non-root",
        "Privilege Escalation",
        "Seccomp",
        "Capabilities",
    }
    # Airflow's own namespace keeps enforcing `restricted`.
    assert enforced_level(named(run, "Namespace", stack_config(stack).kubernetes.namespace)) == "restricted"


@pytest.mark.parametrize("stack", stack_names())
def test_default_tasks_succeed_against_the_fake_api(stack: str) -> None:
    _, _, result = record(stack)
    assert result["default"]["error"] is None, result["default"].get("traceback")
    assert result["xcom"]["error"] is None and result["xcom"]["returned"] == {"answer": 42}
    assert result["deferrable"]["error"] is None, result["deferrable"].get("traceback")
    assert result["failure"]["error"].startswith("AirflowException: Pod failure-")


def test_the_xcom_sidecar_meets_restricted_on_its_own() -> None:
    """The sidecar's securityContext comes from the connection (`xcom_sidecar_container_security_context`):
    whatever the user's image needs, the provider's own container is hardened."""
    _, _, result = record("local")
    [pod] = result["xcom"]["pods"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["base", SIDECAR]
    assert not [v for v in violations(pod, "restricted") if v.subject == SIDECAR]


# ---- RBAC: every call the provider makes is allowed where the pod lands ----------------------


def required(request: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The (verb, apiGroup, resource[/subresource], namespace) an API server authorizes a request as."""
    seg = request["path"].strip("/").split("/")
    assert seg[:3] == ["api", "v1", "namespaces"], request["path"]
    namespace, resource, rest = seg[3], seg[4], seg[5:]
    method = request["method"]
    if len(rest) == 2:
        resource = f"{resource}/{rest[1]}"
    if request["transport"] == "websocket":
        return [(v, "", resource, namespace) for v in ("get", "create")]
    if not rest:
        watch = str(request["query"].get("watch", "")).lower() == "true"
        verb = {"GET": "watch" if watch else "list", "POST": "create"}[method]
    else:
        verb = {"GET": "get", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}[method]
    return [(verb, "", resource, namespace)]


def rights(run: engine.Run, account: str, account_ns: str, namespace: str) -> set[tuple[str, str, str]]:
    """(verb, apiGroup, resource) the ServiceAccount holds in `namespace`, through every binding."""
    roles = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects(run, "Role")}
    roles |= {(None, o["metadata"]["name"]): o for o in objects(run, "ClusterRole")}
    out: set[tuple[str, str, str]] = set()
    bindings = [b for b in objects(run, "RoleBinding") if b["metadata"]["namespace"] == namespace]
    for b in bindings + objects(run, "ClusterRoleBinding"):
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace") == account_ns
            for s in b.get("subjects", [])
        ):
            continue
        ref = b["roleRef"]
        role = roles[(None if ref["kind"] == "ClusterRole" else namespace, ref["name"])]
        for rule in role.get("rules", []):
            out |= {(v, g, r) for v in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]}
    return out


def covered(granted: set[tuple[str, str, str]], verb: str, group: str, resource: str) -> bool:
    return any(v in (verb, "*") and g in (group, "*") and r in (resource, "*") for v, g, r in granted)


def sides(roster: Roster) -> dict[str, str]:
    """Which recorded side each task-pod launcher plays: the triggerer runs triggers, the rest tasks."""
    return {c: "triggerer" if c == "triggerer" else "worker" for c in roster.task_pod_launchers}


@pytest.mark.parametrize(
    "stack,overrides",
    [(s, ()) for s in stack_names()] + [("local", ("airflow.executor=CeleryExecutor,KubernetesExecutor",))],
)
def test_launchers_may_make_every_call_the_provider_makes(stack: str, overrides: tuple[str, ...]) -> None:
    run, roster, result = record(stack, *overrides)
    airflow_ns = stack_config(stack, *overrides).kubernetes.namespace
    missing = []
    for component, side in sides(roster).items():
        account = f"airflow-{component}"
        for scenario, outcome in result.items():
            for request in outcome["requests"]:
                if request["component"] != side:
                    continue
                for verb, group, resource, namespace in required(request):
                    if not covered(rights(run, account, airflow_ns, namespace), verb, group, resource):
                        missing.append(f"{account}: {verb} {resource} in {namespace} ({scenario})")
    assert not missing, "\n".join(sorted(set(missing)))


def test_the_recorded_calls_are_the_known_ones() -> None:
    _, _, result = record("local")
    recorded = {
        (request["component"], verb, resource)
        for outcome in result.values()
        for request in outcome["requests"]
        for verb, _, resource, _ in required(request)
    }
    assert recorded == KNOWN_CALLS


# ---- pods that name no ServiceAccount get one without a token or rights ----------------------


@pytest.mark.parametrize("stack", stack_names())
def test_pods_without_a_service_account_run_tokenless_and_rightless(stack: str) -> None:
    run, _, result = record(stack)
    ns_name = task_namespace(run)
    for outcome in result.values():
        for pod in outcome["pods"]:
            # The provider names none, so admission gives the namespace's `default` ServiceAccount,
            # whose own setting then decides whether a token is mounted.
            assert "serviceAccountName" not in pod["spec"] and "automountServiceAccountToken" not in pod["spec"]
    [default_sa] = [
        o
        for o in objects(run, "ServiceAccount")
        if o["metadata"]["name"] == "default" and o["metadata"]["namespace"] == ns_name
    ]
    assert default_sa["automountServiceAccountToken"] is False
    for b in objects(run, "RoleBinding") + objects(run, "ClusterRoleBinding"):
        for s in b.get("subjects", []):
            assert not (s["kind"] == "ServiceAccount" and s["name"] == "default"), b["metadata"]["name"]
            assert not (s["kind"] == "Group" and s["name"].startswith("system:serviceaccounts")), b["metadata"]["name"]


# ---- who gets the connection ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [(), ("airflow.executor=KubernetesExecutor",), ("airflow.executor=CeleryExecutor,KubernetesExecutor",)],
)
def test_the_connection_reaches_exactly_the_task_pod_launchers(overrides: tuple[str, ...]) -> None:
    run = render("local", *overrides)
    roster = roster_of("local", *overrides)
    have = set()
    for obj in workloads(run):
        for c in [*pod_spec(obj).get("initContainers", []), *pod_spec(obj)["containers"]]:
            if CONN in env_of(c):
                have.add(obj["metadata"]["labels"]["app.kubernetes.io/component"])
    if "task" in roster.components:
        have |= {"task"} if kpo_env(run, "task") else set()
    assert have == set(roster.task_pod_launchers)
    conn = json.loads(dict(kpo_env(run, roster.task_pod_launchers[0]))[CONN])
    assert conn["conn_type"] == "kubernetes"
    assert conn["extra"]["in_cluster"] is True and conn["extra"]["namespace"] == "airflow-tasks"


def test_a_user_defined_kubernetes_default_wins() -> None:
    user = {"conn_type": "kubernetes", "extra": {"in_cluster": True, "namespace": "jobs"}}
    run = render("local", secrets=("airflow.connections.kubernetes_default=" + json.dumps(user),))
    roster = roster_of("local")
    for component in roster.task_pod_launchers:
        env = launcher_container(run, component)["env"]
        entries = [e for e in env if e["name"] == CONN]
        assert len(entries) == 1, component
        assert entries[0]["valueFrom"]["secretKeyRef"]["key"] == CONN, component


def test_opting_out_keeps_task_pods_in_airflows_namespace() -> None:
    """`kubernetes.taskNamespace` set to the Airflow namespace: no second namespace, the launchers'
    Role in Airflow's, and the pods must then meet `restricted` themselves (a default one does not)."""
    overrides = ("kubernetes.taskNamespace=airflow",)
    run, roster, result = record("local", *overrides)
    assert [n["metadata"]["name"] for n in objects(run, "Namespace")] == ["airflow"]
    [pod] = result["default"]["pods"]
    assert pod["metadata"]["namespace"] == "airflow"
    assert violations(pod, "restricted")  # rejected: the user chose this
    for component in roster.task_pod_launchers:
        assert covered(rights(run, f"airflow-{component}", "airflow", "airflow"), "create", "", "pods")


# ---- NetworkPolicies ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_network_policies_leave_launchers_and_jobs_their_egress(stack: str) -> None:
    """The launchers must reach the API server, and a job its data sources. The policies only limit
    ingress into Airflow's namespace (the launchers' API calls are egress, their replies return on
    the same connection), and none selects pods of the task namespace. A policy that adds Egress must
    keep the API server (and, in the task namespace, what jobs need) open: this test then fails."""
    run = render(stack)
    ns_name = task_namespace(run)
    for policy in objects(run, "NetworkPolicy"):
        assert policy["spec"].get("policyTypes") == ["Ingress"], policy["metadata"]["name"]
        assert policy["metadata"]["namespace"] != ns_name, policy["metadata"]["name"]
