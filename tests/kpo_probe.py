"""Run the real KubernetesPodOperator against a fake Kubernetes API server and record what it does.

Runs with the Airflow venv's python (tests/components/test_kpo.py starts it):

    python tests/kpo_probe.py REQUEST.json RESULT.json

REQUEST: {"env": {...}, "launcher_namespace": "airflow", "scenarios": ["default", ...]}: `env` is
what the rendered launcher container has (its AIRFLOW_CONN_KUBERNETES_DEFAULT, or nothing);
`launcher_namespace` is the namespace a launcher pod runs in, which is what the provider reads from
the service-account mount when nothing else names a namespace. RESULT: per scenario, every API
request the provider made ({component, transport, method, path, query}), every pod it created (the
body it POSTed, exactly as the API server would receive it) and the task's outcome.

Nothing of the provider is replaced. The cut is below the Kubernetes client libraries, at the HTTP
layer: `kubernetes`' urllib3 pool manager, `kubernetes_asyncio`'s aiohttp session and the websocket
client that `kubernetes.stream` opens for `exec`. Their in-cluster config loaders run for real too,
on a token and CA file written here instead of the service-account mount. Sleeps are shortened:
that changes how often the provider polls, never which calls it makes.

Which side makes a call: the task (a Celery worker or a KubernetesExecutor task pod) runs the
operator, so its calls are `worker`'s; a deferred task's trigger runs in the `triggerer`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import faulthandler
import io
import json
import os
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import kubernetes.client.rest as sync_rest
import kubernetes.config.incluster_config as sync_incluster
import kubernetes.stream.ws_client as ws_client
import kubernetes_asyncio.client.rest as async_rest
import kubernetes_asyncio.config.incluster_config as async_incluster
import urllib3

_real_sleep = time.sleep
_real_async_sleep = asyncio.sleep


def _fast_sleep(seconds: float) -> None:
    _real_sleep(min(seconds, 0.005))


async def _fast_async_sleep(seconds: float, result: Any = None) -> Any:
    return await _real_async_sleep(min(seconds, 0.005), result)


NOW = "2024-01-01T00:00:00Z"
XCOM = {"answer": 42}
COMPONENT = {"name": "worker"}  # who is calling: the worker (task) or the triggerer


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCluster:
    """Just enough of the Kubernetes API for one KubernetesPodOperator task: pods that start, run,
    finish (with `exit_code`) and log; events; exec into the xcom sidecar."""

    def __init__(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.state: dict[tuple[str, str], str] = {}
        self.pending_reads: dict[tuple[str, str], int] = {}
        self.running_reads: dict[tuple[str, str], int] = {}
        self.requests: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self._rv = 10

    def record(self, transport: str, method: str, path: str, query: dict[str, Any]) -> None:
        self.requests.append(
            {"component": COMPONENT["name"], "transport": transport, "method": method, "path": path, "query": query}
        )

    # ---- pod lifecycle --------------------------------------------------------------------

    def _with_status(self, key: tuple[str, str]) -> dict[str, Any]:
        pod = copy.deepcopy(self.pods[key])
        names = [c["name"] for c in pod["spec"]["containers"]]
        state = self.state[key]
        if state == "pending":
            pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
            return pod

        def status(name: str, done: bool) -> dict[str, Any]:
            code = self.exit_code if name == names[0] else 0
            st = (
                {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                "startedAt": NOW, "finishedAt": _now()}}
                if done
                else {"running": {"startedAt": NOW}}
            )  # fmt: skip
            return {"name": name, "image": "x", "imageID": "", "ready": not done, "restartCount": 0, "state": st}

        base_done = state in ("base-done", "done")
        statuses = [status(n, base_done if n == names[0] else state == "done") for n in names]
        finished = all("terminated" in s["state"] for s in statuses)
        phase = ("Succeeded" if self.exit_code == 0 else "Failed") if finished else "Running"
        pod["status"] = {"phase": phase, "containerStatuses": statuses, "startTime": NOW,
                         "conditions": [{"type": "PodScheduled", "status": "True"}]}  # fmt: skip
        return pod

    def _finish_base(self, key: tuple[str, str]) -> None:
        if self.state[key] == "running":
            sidecar = len(self.pods[key]["spec"]["containers"]) > 1
            self.state[key] = "base-done" if sidecar else "done"

    def _read(self, key: tuple[str, str]) -> dict[str, Any]:
        if self.state[key] == "pending":
            # The first reads find it scheduled, not yet running (long enough for an events watch).
            pod = self._with_status(key)
            self.pending_reads[key] = self.pending_reads.get(key, 0) + 1
            if self.pending_reads[key] >= 2:
                self.state[key] = "running"
            return pod
        if self.state[key] == "running":
            # A trigger polls without reading logs: the base container ends after a few polls.
            self.running_reads[key] = self.running_reads.get(key, 0) + 1
            if self.running_reads[key] >= 3:
                self._finish_base(key)
        return self._with_status(key)

    def kill_sidecar(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if self.state.get(key) == "base-done":
            self.state[key] = "done"

    # ---- the REST API -----------------------------------------------------------------------

    def handle(self, transport: str, method: str, url: str, query: dict[str, Any], body: Any) -> tuple[int, Any]:
        parts = urlsplit(url)
        query = {**dict(parse_qsl(parts.query)), **query}
        path = parts.path
        self.record(transport, method, path, query)
        seg = path.strip("/").split("/")
        if seg[:3] != ["api", "v1", "namespaces"] or len(seg) < 5:
            return 404, _status(404, f"unknown path {path}")
        ns, resource, rest = seg[3], seg[4], seg[5:]
        if resource == "events":
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "e1", "namespace": ns, "uid": "e1", "resourceVersion": "2"},
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": "x"},
                "reason": "Scheduled",
                "message": "assigned",
                "type": "Normal",
            }
            if str(query.get("watch")).lower() == "true":
                return 200, ("stream", [json.dumps({"type": "ADDED", "object": event})])
            return 200, {"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "2"},
                         "items": [event]}  # fmt: skip
        if resource != "pods":
            return 404, _status(404, f"unknown resource {resource}")
        if not rest:
            if method == "POST":
                pod = json.loads(body) if isinstance(body, (str, bytes)) else body
                self.created.append(copy.deepcopy(pod))
                if pod["metadata"].get("namespace") not in (None, ns):
                    return 400, _status(400, "the namespace of the provided object does not match")
                self._rv += 1
                pod["metadata"].update(namespace=ns, uid=f"uid-{self._rv}", resourceVersion=str(self._rv),
                                       creationTimestamp=NOW)  # fmt: skip
                key = (ns, pod["metadata"]["name"])
                self.pods[key] = pod
                self.state[key] = "pending"
                return 201, self._with_status(key)
            if method == "GET":
                items = [self._with_status(k) for k in self.pods if k[0] == ns and _selects(
                    query.get("labelSelector", ""), self.pods[k]["metadata"].get("labels") or {})]  # fmt: skip
                return 200, {
                    "apiVersion": "v1",
                    "kind": "PodList",
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                }
            return 405, _status(405, method)
        key = (ns, rest[0])
        if key not in self.pods:
            return 404, _status(404, f'pods "{rest[0]}" not found')
        if len(rest) == 1:
            if method == "GET":
                return 200, self._read(key)
            if method == "PATCH":
                patch = json.loads(body) if isinstance(body, (str, bytes)) else body
                labels = (patch.get("metadata") or {}).get("labels") or {}
                self.pods[key]["metadata"].setdefault("labels", {}).update(labels)
                return 200, self._with_status(key)
            if method == "DELETE":
                pod = self._with_status(key)
                del self.pods[key]
                return 200, pod
        if rest[1:] == ["log"] and method == "GET":
            if query.get("container") == self.pods[key]["spec"]["containers"][0]["name"]:
                self._finish_base(key)
            return 200, ("text", f"{NOW} hello from the pod\n")
        return 405, _status(405, f"{method} {path}")


def _status(code: int, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": message, "code": code}


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


CLUSTER: dict[str, FakeCluster] = {}


def _payload(result: Any) -> tuple[bytes, str, list[bytes]]:
    if isinstance(result, tuple) and result[0] == "stream":
        lines = [(line + "\n").encode() for line in result[1]]
        return b"".join(lines), "application/json", lines
    if isinstance(result, tuple) and result[0] == "text":
        return result[1].encode(), "text/plain", [result[1].encode()]
    data = json.dumps(result).encode()
    return data, "application/json", [data]


class _Body(io.BytesIO):
    """A response body that closes at its end, as a socket's does (urllib3 streams until closed)."""

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if not data:
            self.close()
        return data

    def read1(self, size: int | None = -1, /) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any, /) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class FakePoolManager:
    """Stands in for urllib3's PoolManager inside `kubernetes.client.rest.RESTClientObject`."""

    def request(self, method: str, url: str, fields: Any = None, body: Any = None, preload_content: bool = True,
                **_: Any) -> urllib3.HTTPResponse:  # fmt: skip
        code, result = CLUSTER["now"].handle("rest", method, url, dict(fields or []), body)
        data, ctype, _lines = _payload(result)
        return urllib3.HTTPResponse(
            body=_Body(data), status=code, reason="OK" if code < 400 else "Error",
            headers={"Content-Type": ctype}, preload_content=preload_content,
        )  # fmt: skip


class _AioContent:
    def __init__(self, lines: list[bytes]) -> None:
        self._lines = list(lines)

    async def readline(self) -> bytes:
        if self._lines:
            return self._lines.pop(0)
        await _real_async_sleep(0.01)  # a watch stays open until its timeout; then the stream ends
        return b""


class _AioResponse:
    def __init__(self, code: int, data: bytes, ctype: str, lines: list[bytes]) -> None:
        self.status = code
        self.reason = "OK" if code < 400 else "Error"
        self.headers = {"Content-Type": ctype}
        self._data = data
        self.content = _AioContent(lines)

    async def read(self) -> bytes:
        return self._data

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeSession:
    """Stands in for the aiohttp ClientSession inside `kubernetes_asyncio.client.rest.RESTClientObject`."""

    async def request(self, method: str, url: str, data: Any = None, **_: Any) -> _AioResponse:
        await _real_async_sleep(0)  # a network round trip lets other tasks run
        code, result = CLUSTER["now"].handle("rest", method, url, {}, data)
        return _AioResponse(code, *_payload(result))

    async def close(self) -> None:
        pass


class FakeWebSocket:
    """Stands in for `kubernetes.stream.ws_client.WSClient`: an exec into a pod's container."""

    def __init__(self, configuration: Any, url: str, headers: Any, capture_all: bool, binary: bool = False) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        commands = [v for k, v in query if k == "command"]
        CLUSTER["now"].handle("websocket", "GET", url.replace("wss://", "https://", 1), {}, None)
        seg = parts.path.strip("/").split("/")
        self._pod = (seg[3], seg[5])
        reads_xcom = any("return.json" in c for c in commands)
        self._out = json.dumps(XCOM) if reads_xcom else ""
        self._open = True

    def run_forever(self, timeout: Any = None) -> None:
        self._open = False

    def is_open(self) -> bool:
        return self._open

    def update(self, timeout: Any = None) -> None:
        self._open = False

    def write_stdin(self, data: str) -> None:
        if data.startswith("kill") or "/proc/" in data:
            CLUSTER["now"].kill_sidecar(*self._pod)

    def peek_stdout(self, timeout: Any = 0) -> bool:
        return False

    def peek_stderr(self, timeout: Any = 0) -> bool:
        return False

    def read_stdout(self, timeout: Any = None) -> str:
        return ""

    def read_stderr(self, timeout: Any = None) -> str:
        return ""

    def read_all(self) -> str:
        return self._out

    def close(self, **_: Any) -> None:
        self._open = False


def _install_fakes(workdir: str, launcher_namespace: str) -> None:
    token, ca = os.path.join(workdir, "token"), os.path.join(workdir, "ca.crt")
    for path, text in ((token, "fake-token"), (ca, "not used: no connection is ever opened")):
        with open(path, "w") as f:
            f.write(text)
    os.environ["KUBERNETES_SERVICE_HOST"] = "10.96.0.1"
    os.environ["KUBERNETES_SERVICE_PORT"] = "443"
    for mod in (sync_incluster, async_incluster):
        mod.SERVICE_TOKEN_FILENAME = token  # type: ignore[attr-defined]
        mod.SERVICE_CERT_FILENAME = ca  # type: ignore[attr-defined]

    def sync_init(self: Any, configuration: Any, pools_size: int = 4, maxsize: Any = None) -> None:
        self.pool_manager = FakePoolManager()

    def async_init(self: Any, configuration: Any, pools_size: int = 4, maxsize: Any = None) -> None:
        self.pool_manager, self.server_hostname, self.proxy, self.proxy_headers = FakeSession(), None, None, None

    sync_rest.RESTClientObject.__init__ = sync_init  # type: ignore[method-assign]
    async_rest.RESTClientObject.__init__ = async_init  # type: ignore[method-assign]
    ws_client.WSClient = FakeWebSocket  # type: ignore[misc,assignment]
    time.sleep = _fast_sleep
    asyncio.sleep = _fast_async_sleep  # type: ignore[assignment]

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    # What a launcher pod's service-account mount says (/var/run/secrets/.../namespace).
    KubernetesPodOperator._incluster_namespace = property(lambda self: launcher_namespace)  # type: ignore[assignment]


class FakeTI:
    def __init__(self, task_id: str) -> None:
        self.dag_id, self.task_id, self.run_id = "kpo_probe", task_id, "manual__2024-01-01T00:00:00+00:00"
        self.map_index, self.try_number = -1, 1
        self.start_date = datetime.datetime.now(datetime.UTC)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcoms[key] = value


def run_scenario(name: str) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # pragma: no cover - older layouts
        from airflow.exceptions import TaskDeferred

    cluster = CLUSTER["now"] = FakeCluster(exit_code=1 if name == "failure" else 0)
    COMPONENT["name"] = "worker"
    kwargs: dict[str, Any] = {"task_id": name, "image": "python:3.12-slim",
                              "cmds": ["python", "-c", "print('hello')"]}  # fmt: skip
    if name == "xcom":
        kwargs.update(do_xcom_push=True, cmds=["sh", "-c", "echo '{\"answer\": 42}' > /airflow/xcom/return.json"])
    if name == "failure":
        kwargs.update(log_events_on_failure=True)
    if name.startswith("deferrable"):
        kwargs.update(deferrable=True)
    op = KubernetesPodOperator(**kwargs)
    ti = FakeTI(name)
    context: dict[str, Any] = {"ti": ti, "run_id": ti.run_id, "dag": SimpleNamespace(dag_id=ti.dag_id)}
    outcome: dict[str, Any] = {"returned": None, "error": None}
    try:
        try:
            outcome["returned"] = op.execute(context)
        except TaskDeferred as deferred:
            # The triggerer gets the trigger serialized, as Airflow hands it over.
            classpath, trigger_kwargs = deferred.trigger.serialize()
            assert classpath.endswith("KubernetesPodTrigger"), classpath
            trigger = KubernetesPodTrigger(**trigger_kwargs)
            COMPONENT["name"] = "triggerer"
            if name == "deferrable-kill":
                asyncio.run(trigger.on_kill())
                outcome["returned"] = "killed in the triggerer"
            else:

                async def first_event() -> Any:
                    async for event in trigger.run():
                        return event.payload

                payload = asyncio.run(first_event())
                outcome["trigger_event"] = payload
                COMPONENT["name"] = "worker"
                try:
                    outcome["returned"] = getattr(op, deferred.method_name)(context, payload)
                except TaskDeferred:
                    raise RuntimeError(f"deferred again after the trigger's event {payload}") from None
    except Exception as e:  # the outcome is part of the record; the test decides what it should be
        outcome["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        outcome["traceback"] = traceback.format_exc(limit=8)
    return {"requests": cluster.requests, "pods": cluster.created, **outcome, "xcoms": ti.xcoms}


def main() -> None:
    faulthandler.dump_traceback_later(240, exit=True)  # a hang is a bug here: say where, then stop
    request = json.loads(open(sys.argv[1]).read())
    os.environ.update(request.get("env") or {})
    with tempfile.TemporaryDirectory() as workdir:
        os.environ.setdefault("AIRFLOW_HOME", workdir)
        _install_fakes(workdir, request["launcher_namespace"])
        result = {name: run_scenario(name) for name in request["scenarios"]}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
