"""The KubernetesExecutor end to end (issue 10, item 9): a finished task's log outlives its pod.

The local stack rendered with `airflow.executor=KubernetesExecutor` boots as in test_airflow_e2e.py,
on an emulated cluster (kube.py): the scheduler and the api-server reach a Kubernetes API on
loopback through their mounted service-account tokens, the real KubernetesExecutor creates the task
pod there, an emulated kubelet runs the pod the executor POSTed, and the executor deletes it when
the task ends, emptyDirs and all. The task's log must then still be readable through the REST API:
it is not, when the task pod wrote it to an emptyDir and nothing else keeps it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import AIRFLOW_VENV, E2E, Api, Cluster, airflow_containers
from tests.e2e.kube import NOT_EMULATED, ApiError, KubeApi, Kubelet, PodProcess, User
from tests.e2e.test_airflow_e2e import Deployment, _render_objects, booted

# Issue 14.3: the task pods' placement and the stack's pull secret, which the executor must carry
# from the pod template into the pod it creates (the emulated kubelet schedules nothing by them).
TASK_PLACEMENT = (
    "airflow.taskPods.placement={nodeSelector: {accelerator: nvidia}, tolerations: [{key: nvidia.com/gpu, "
    "operator: Exists, effect: NoSchedule}], priorityClassName: gpu-batch}",
    "airflow.imagePullSecrets=[regcred]",
)
DAG_ID = "e2e_kelogs"
TASK_ID = "log_marker"


class KubeDeployment(Deployment):
    """The rendered stack under the KubernetesExecutor alone: PostgreSQL, no broker, every Airflow
    container started by the emulated kubelet, and the emulated API for the pods it launches."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, overrides=("airflow.executor=KubernetesExecutor", *TASK_PLACEMENT))

    def start_servers(self) -> None:
        self.pg.start()
        self.pg.create_airflow_db()  # no Redis: nothing uses a broker under the KubernetesExecutor alone

    def boot(self) -> None:
        objects = _render_objects(self.overrides())
        dags = self.base / "dag-volume"
        shutil.copytree(E2E / "dags", dags, dirs_exist_ok=True)
        self.cluster = Cluster(objects, dags, self.base)
        self.kube = KubeApi(self.base / "kube", objects).start()
        self.kubelet = Kubelet(self.kube, self.cluster).start()
        self.containers = airflow_containers(objects)
        self.admin_password = self.cluster.secrets["airflow-secrets"]["admin-password"]
        for job in ("migrate", "create-user"):
            p = self.kubelet.run_workload(self.containers[job])
            rc = p.wait(300)
            assert rc == 0, f"{job} Job failed ({rc}):\n{p.tail()}"
        for comp, c in self.containers.items():
            if c.kind != "Job":
                self.start(comp)
        api = self.containers["api-server"]
        port = int(next(a for a in api.spec["args"] if a.isdigit()))
        self.api = Api(f"http://127.0.0.1:{port}")
        self.api.wait_healthy(api.spec["readinessProbe"]["httpGet"]["path"], timeout=180)

    def start(self, comp: str) -> PodProcess:
        process = self.kubelet.run_workload(self.containers[comp])
        self.procs[comp] = process
        return process

    def logs(self) -> str:
        pods = "\n".join(
            f"--- pod {r.name} ({r.phase}, exit {r.exit_code}) ---\n{self.kubelet.container_log(r.namespace, r.name)}"
            for r in self.kubelet.pods.values()
        )
        return super().logs() + "\n" + pods

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.kubelet.stop()
            self.kube.stop()
            _forget_discovery(self.kube)


def _forget_discovery(kube: KubeApi) -> None:
    """The dynamic client's discovery cache in the temp directory, named after the API's URL
    (kubernetes/dynamic/discovery.py): each run's API has its own port, so its cache is litter."""
    url = f"https://127.0.0.1:{kube.port}".encode()
    Path(tempfile.gettempdir(), f"osrcp-{hashlib.md5(url, usedforsecurity=False).hexdigest()}.json").unlink(
        missing_ok=True
    )


@pytest.fixture(scope="module")
def ke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeDeployment]:
    module = booted(
        KubeDeployment(tmp_path_factory.mktemp("e2e-ke")), "kubernetes_executor_module", "kubernetes_executor_boot"
    )
    with module as d:
        yield d


def _rendered_service_account(ke: KubeDeployment, component: str) -> User:
    c = ke.containers[component]
    workload = next(o for o in ke.cluster.manifests if (o["kind"], o["metadata"]["name"]) == (c.kind, c.workload))
    return User(workload["metadata"]["namespace"], workload["spec"]["template"]["spec"]["serviceAccountName"])


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} after {timeout}s")


def test_task_log_outlives_its_pod(ke: KubeDeployment) -> None:
    ke.api.login("admin", ke.admin_password)
    ke.wait_for_dag(DAG_ID)
    marker = uuid.uuid4().hex
    status, body = ke.api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"marker": marker}})  # fmt: skip
    assert status == 200, body
    run_id = body["dag_run_id"]
    # While the task runs, the api-server reads its log from the pod through the Kubernetes API.
    live = _live_log(ke, run_id, f"e2e-kelogs-marker={marker}")
    assert "Found logs through kube API" in live, "\n".join(live)
    assert ke.wait_run(run_id, DAG_ID) == "success", ke.logs()

    # The task ran in the pod the scheduler created through the API, which the scheduler then deleted.
    pods = [r for r in ke.kubelet.pods.values() if r.labels.get("dag_id") == DAG_ID]
    assert len(pods) == 1, [r.name for r in ke.kubelet.pods.values()]
    pod = pods[0]
    # The run is a success once the task says so; its pod's process ends, and is deleted, after.
    _wait(lambda: pod.cleaned, 60, f"pod {pod.name} was not deleted and cleaned up:\n{ke.logs()}")
    assert (pod.phase, pod.exit_code) == ("Succeeded", 0), ke.logs()
    # The placement of airflow.taskPods reached the pod the executor created, merged from the template.
    assert pod.spec["nodeSelector"] == {"accelerator": "nvidia"}, pod.spec
    assert pod.spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod.spec["priorityClassName"] == "gpu-batch" and pod.spec["imagePullSecrets"] == [{"name": "regcred"}]
    scheduler = _rendered_service_account(ke, "scheduler").name
    calls = [(r.user, r.verb, r.code) for r in ke.kube.requests if r.name == pod.name]
    assert (scheduler, "delete", 200) in calls, calls
    with pytest.raises(ApiError, match="not found"):
        ke.kube.store.get(pod.namespace, pod.name)
    assert pod.volumes, "the task pod had no emptyDir"
    assert not [name for name, host in pod.volumes.items() if host.exists()], "emptyDirs outlived their pod"
    # Every call the executor and the api-server made was served and allowed by the rendered RBAC.
    assert not ke.kube.unhandled, ke.kube.unhandled
    assert not [r for r in ke.kube.requests if r.code in (401, 403)], [r for r in ke.kube.requests if r.code >= 400]

    # The finished task's log, through the REST API, from the api-server.
    lines = _task_log(ke, run_id)
    assert f"e2e-kelogs-marker={marker}" in lines, "the finished task's log is gone:\n" + "\n".join(lines)


def _task_log(ke: KubeDeployment, run_id: str) -> list[str]:
    """The task's first try's log lines (and the sources the api-server names), through the REST API."""
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{TASK_ID}"
    status, body = ke.api.call("GET", f"{path}/logs/1?full_content=true")
    assert status == 200, body
    return [m.get("event", "") for m in body["content"] if isinstance(m, dict)]


def _live_log(ke: KubeDeployment, run_id: str, line: str, timeout: float = 240) -> list[str]:
    """The log of the running task once it holds `line`."""
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{TASK_ID}"
    deadline, lines, state = time.time() + timeout, [], None
    while time.time() < deadline:
        status, body = ke.api.call("GET", path)
        state = body.get("state") if status == 200 and isinstance(body, dict) else None
        if state in ("success", "failed", "upstream_failed"):
            break
        if state == "running":
            lines = _task_log(ke, run_id)
            if line in lines:
                return lines
        time.sleep(1)
    raise AssertionError(f"never saw {line!r} while the task ran (last state {state}):\n" + "\n".join(lines))


# ---- the emulated API against the kubernetes client the provider uses -------------------------------

# Run with the Airflow virtualenv's kubernetes client (the one cncf-kubernetes calls); prints a JSON
# object of what the API answered. The pods it creates run `python -c` in the emulated kubelet.
CLIENT_CHECKS = r"""
import json, sys, threading, time
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

port, ca, ns, tokens = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])

def api(token):
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = f"https://127.0.0.1:{port}", ca
    cfg.api_key["BearerToken"] = "bearer " + token
    return client.CoreV1Api(client.ApiClient(cfg))

def status(call):
    try:
        call()
        return 200
    except ApiException as e:
        return e.status

def pod(name, code, sa="airflow-task", labels=None):
    return {"metadata": {"name": name, "labels": {"kubernetes_executor": "True", **(labels or {})}},
            "spec": {"serviceAccountName": sa, "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "base", "image": "x", "args": ["python", "-c", code]}]}}

def phase(v1, name):
    try:
        return v1.read_namespaced_pod(name, ns).status.phase
    except ApiException as e:
        return e.status

def wait_phase(v1, name, want):
    for _ in range(120):
        if phase(v1, name) == want:
            return want
        time.sleep(0.25)
    return phase(v1, name)

out = {}
v1 = api(tokens["launcher"])
out["bad_token"] = status(lambda: api("nope").list_namespaced_pod(ns))
out["no_rights"] = status(lambda: api(tokens["other"]).list_namespaced_pod(ns))
out["unknown_account"] = status(lambda: v1.create_namespaced_pod(ns, pod("x", "", sa="nobody")))
out["create"] = v1.create_namespaced_pod(ns, pod("done", "print('e2e-out')", labels={"a": "b"})).status.phase
out["create_again"] = status(lambda: v1.create_namespaced_pod(ns, pod("done", "")))
out["read_missing"] = status(lambda: v1.read_namespaced_pod("missing", ns))
out["done_phase"] = wait_phase(v1, "done", "Succeeded")
# As the executor reads it (get_task_log): unparsed bytes.
out["log"] = v1.read_namespaced_pod_log("done", ns, container="base", tail_lines=5, _preload_content=False).data.decode()
start = v1.list_namespaced_pod(ns).metadata.resource_version
v1.create_namespaced_pod(ns, pod("sleeper", "import time; time.sleep(60)", labels={"a": "b"}))
out["sleeper_phase"] = wait_phase(v1, "sleeper", "Running")
sel = lambda s, f=None: sorted(p.metadata.name for p in v1.list_namespaced_pod(ns, label_selector=s, field_selector=f).items)
out["selectors"] = {
    "a=b": sel("a=b"), "a!=b": sel("a!=b"), "a notin (b)": sel("a notin (b)"), "!a": sel("!a"),
    "phase!=Succeeded": sel("kubernetes_executor=True", "status.phase!=Succeeded"),
    "phase=Succeeded": sel("kubernetes_executor=True", "status.phase=Succeeded"),
}
out["bad_field"] = status(lambda: v1.list_namespaced_pod(ns, field_selector="spec.nope=x"))
dyn = DynamicClient(v1.api_client)
partial = dyn.get(resource=dyn.resources.get(api_version="v1", kind="Pod"), namespace=ns, label_selector="a=b",
                  header_params={"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"})
out["partial"] = sorted((i.kind, i.metadata.name, i.get("spec") is None) for i in partial.items)

def stream(rv, selector="a=b"):
    # As the executor's watcher asks: a server-side timeout, so the client raises on an ERROR event.
    seen = []
    try:
        for e in watch.Watch().stream(v1.list_namespaced_pod, ns, label_selector=selector, resource_version=rv,
                                      timeout_seconds=1, _request_timeout=10):
            m = e["object"].metadata
            seen.append([e["type"], m.name, e["object"].status.phase, bool(m.deletion_timestamp)])
    except ApiException as e:
        seen.append(["raised", e.status])
    return seen

out["watch_from_0"] = stream("0")
out["watch_from_start"] = stream(start)
v1.patch_namespaced_pod("done", ns, {"metadata": {"labels": {"a": "c"}}})
out["patch_spec"] = status(lambda: v1.patch_namespaced_pod("done", ns, {"spec": {"restartPolicy": "Always"}}))
after_patch = v1.list_namespaced_pod(ns).metadata.resource_version
v1.delete_namespaced_pod("sleeper", ns, body=client.V1DeleteOptions())
out["sleeper_after_delete"] = wait_phase(v1, "sleeper", 404)
out["watch_after_patch"] = stream(str(int(after_patch) - 1))
v1.delete_namespaced_pod("done", ns, body=client.V1DeleteOptions())
out["delete_again"] = status(lambda: v1.delete_namespaced_pod("done", ns, body=client.V1DeleteOptions()))
out["log_after_delete"] = status(lambda: v1.read_namespaced_pod_log("done", ns, container="base"))
print(json.dumps(out))
"""


def _client(script: str, *args: str) -> Any:
    """Run `script` with the Airflow virtualenv's Python (its kubernetes client); its JSON output."""
    done = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_emulated_api_answers_as_kube_apiserver(tmp_path: Path) -> None:
    """What the executor relies on, asked with the Airflow virtualenv's own kubernetes client."""
    objects = _render_objects(("airflow.executor=KubernetesExecutor",))
    cluster = Cluster(objects, tmp_path / "dags", tmp_path)
    kube = KubeApi(tmp_path / "kube", objects).start()
    kubelet = Kubelet(kube, cluster).start()
    launcher, namespace, other = _launcher_and_bystander(objects)
    token = kube.token_for(launcher.namespace, launcher.service_account)
    tokens = {"launcher": token, "other": kube.token_for(other.namespace, other.service_account)}
    try:
        out = _client(CLIENT_CHECKS, str(kube.port), str(kube.ca), namespace, json.dumps(tokens))
        # etcd compacts its history: a watch from before that is answered 410 Gone.
        kube.store.compact()
        gone = _client(_WATCH_OLD, str(kube.port), str(kube.ca), namespace, token)
    finally:
        kubelet.stop()
        kube.stop()
        _forget_discovery(kube)
    assert (out["bad_token"], out["no_rights"], out["unknown_account"]) == (401, 403, 403)
    assert (out["create"], out["create_again"], out["read_missing"]) == ("Pending", 409, 404)
    assert (out["done_phase"], out["log"]) == ("Succeeded", "e2e-out\n")
    assert out["sleeper_phase"] == "Running"
    assert out["selectors"] == {
        "a=b": ["done", "sleeper"],
        "a!=b": [],
        "a notin (b)": [],
        "!a": [],
        "phase!=Succeeded": ["sleeper"],
        "phase=Succeeded": ["done"],
    }
    assert out["bad_field"] == 400
    assert out["partial"] == [["PartialObjectMetadata", "done", True], ["PartialObjectMetadata", "sleeper", True]]
    # From "0": the current state as ADDED events; from a version: what happened after it, in order.
    assert out["watch_from_0"] == [["ADDED", "done", "Succeeded", False], ["ADDED", "sleeper", "Running", False]]
    assert [e[:3] for e in out["watch_from_start"]] == [
        ["ADDED", "sleeper", "Pending"],
        ["MODIFIED", "sleeper", "Pending"],  # scheduled to the node
        ["MODIFIED", "sleeper", "Pending"],  # ContainerCreating
        ["MODIFIED", "sleeper", "Running"],
    ]
    assert out["patch_spec"] == 422
    # The patched pod left the selector (a DELETED event); the running one was stopped within its
    # grace period, then removed; the finished one went at once.
    assert out["watch_after_patch"] == [
        ["DELETED", "done", "Succeeded", False],
        ["MODIFIED", "sleeper", "Running", True],
        ["MODIFIED", "sleeper", "Failed", True],
        ["DELETED", "sleeper", "Failed", True],
    ]
    assert out["sleeper_after_delete"] == 404
    assert (out["delete_again"], out["log_after_delete"]) == (404, 404)
    assert gone == ["raised", 410]
    print("not emulated:", NOT_EMULATED)


_WATCH_OLD = r"""
import json, sys
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
port, ca, ns, token = sys.argv[1:5]
cfg = client.Configuration()
cfg.host, cfg.ssl_ca_cert = f"https://127.0.0.1:{port}", ca
cfg.api_key["BearerToken"] = "bearer " + token
v1 = client.CoreV1Api(client.ApiClient(cfg))
try:
    for e in watch.Watch().stream(v1.list_namespaced_pod, ns, resource_version="1", timeout_seconds=3):
        print(json.dumps(["event", e["type"]]))
        break
except ApiException as e:
    print(json.dumps(["raised", e.status]))
"""


def _launcher_and_bystander(objects: list[dict[str, Any]]) -> tuple[User, str, User]:
    """A ServiceAccount the render lets create pods and the namespace it may, and one it binds to nothing."""
    creators = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "Role"
        and any("pods" in r.get("resources", []) and "create" in r.get("verbs", []) for r in o.get("rules", []))
    }
    grants: list[tuple[str, str, User]] = []  # (user name, namespace, user)
    bound: set[User] = set()
    for b in (o for o in objects if o["kind"] == "RoleBinding"):
        ns = b["metadata"]["namespace"]
        for subject in b["subjects"]:
            user = User(subject.get("namespace", ns), subject["name"])
            bound.add(user)
            if (ns, b["roleRef"]["name"]) in creators:
                grants.append((user.name, ns, user))
    _, namespace, launcher = min(grants, key=lambda g: g[:2])
    bystander = next(
        User(o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "ServiceAccount" and User(o["metadata"]["namespace"], o["metadata"]["name"]) not in bound
    )
    return launcher, namespace, bystander
