"""What a cluster gives the KubernetesExecutor, emulated on loopback: an API server and a kubelet.

`KubeApi` is a Kubernetes API server for pods, over HTTPS with a throwaway CA. It serves what
cncf-kubernetes 10.25.0 calls (executors/kubernetes_executor.py, kubernetes_executor_utils.py,
kube_client.py): create, get, list (also as a PartialObjectMetadataList through the dynamic
client's discovery), watch, patch and delete of pods and their log, with label and field selectors
and resourceVersions as kube-apiserver answers them:
- a watch from resourceVersion "0" or none starts with a synthetic ADDED per matching pod, one from
  a given version sends what happened after it, and one from a compacted version gets an ERROR
  event with a 410 Status; an object that stops matching a watch's selector is a DELETED event;
- a missing pod is a 404 Status; deleting a pod that never ran or has finished removes it at once
  (a MODIFIED event with its deletionTimestamp, then DELETED), deleting a running one lets the
  kubelet stop it within its grace period first (pkg/registry/core/pod/strategy.go,
  CheckGracefulDelete; apiserver registry/generic/registry/store.go, Delete);
- requests carry the service-account token the kubelet mounted (else 401) and are allowed by the
  rendered Roles and RoleBindings only (else a 403 with kube-apiserver's message); a pod naming a
  ServiceAccount the render does not have is refused, as the ServiceAccount admission plugin does,
  which also adds the token volume when the pod or its account automounts it.

`Kubelet` runs what the API is asked for: each created pod's `base` container as a harness Process
built from the pod the executor POSTed (not from the rendered template), with its env resolved and
its volumes mounted as harness.Process does for the rendered workloads (a claim is one directory
per claim name, an emptyDir one of the pod's own), under the pod's name as hostname. It reports
Pending -> Running -> Succeeded/Failed with containerStatuses through the API, and when the pod is
deleted it removes the pod's emptyDirs and writable layer: a deleted pod's files are gone. It also
starts the rendered workloads' containers, so that those whose token is automounted (the scheduler
and the api-server under KubernetesExecutor) find the API the way they would in a pod: from
KUBERNETES_SERVICE_HOST/PORT and the token and CA under /var/run/secrets/kubernetes.io/serviceaccount.
That path is fixed in the kubernetes client (config/incluster_config.py), so the process runs in a
private mount namespace (`unshare`) in which the pod's own directory is bind-mounted read-only on
/run (/var/run links there); nothing of the rendered configuration is rewritten.

What a real cluster does that this does not: see NOT_EMULATED.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.harness import Cluster, Container, Process, make_ca_and_server_cert, pod_template

NOT_EMULATED = (
    "scheduling (one node: no resources, affinity, taints or quotas); access modes of claims (each "
    "claim is one directory whatever its mode, so a ReadWriteOnce claim shared by pods on several "
    "nodes works here and not there); image pulls and the image's read-only root filesystem; "
    "runAsUser, runAsGroup and fsGroup (every process runs as the test's user); Pod Security "
    "admission and the NetworkPolicies; init and sidecar containers (a task pod with them fails as "
    "NotEmulated); task pods' probes and resource limits; Services' cluster IPs, service-link "
    "environment variables and pod DNS (the rendered workloads keep the machine's hostname); tokens "
    "are opaque, never expire and are not bound to a pod; only pods are served (no events, "
    "ConfigMaps or Secrets through the API), without JSON-patch, server-side apply, paging or "
    "bookmarks; the rendered workloads' own pods run but are not listed by the API"
)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NODE = "e2e-node"
# What a pod's container sees at /run (and /var/run): only what the kubelet mounts there.
_RUN_PREFIXES = ("/var/run/", "/run/")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An API answer other than success, as a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.name = code, reason, message, name

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.name:
            out["details"] = {"name": self.name, "kind": "pods"}
        return out


def _not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'pods "{name}" not found', name)


# ---- selectors, as kube-apiserver parses them ------------------------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _split_requirements(selector: str) -> list[str]:
    """Split on the commas that are not inside a set's parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def label_matcher(selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """A label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`)."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split_requirements(selector or ""):
        m = _REQUIREMENT.match(part)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        if m["absent"]:
            tests.append(lambda labels, k=m["absent"]: k not in labels)
        elif m["op"] in ("=", "=="):
            tests.append(lambda labels, k=m["key"], v=m["value"]: labels.get(k) == v)
        elif m["op"] == "!=":
            tests.append(lambda labels, k=m["key"], v=m["value"]: labels.get(k) != v)
        elif m["setop"]:
            values = {v.strip() for v in m["values"].split(",") if v.strip()}
            if m["setop"] == "in":
                tests.append(lambda labels, k=m["key"], vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=m["key"], vs=values: labels.get(k) not in vs)
        else:
            tests.append(lambda labels, k=m["key"]: k in labels)
    return lambda pod: all(t(pod["metadata"].get("labels") or {}) for t in tests)


# The fields kube-apiserver lets a pod list be selected by (pkg/registry/core/pod/strategy.go).
_POD_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda p: p["metadata"]["name"],
    "metadata.namespace": lambda p: p["metadata"]["namespace"],
    "spec.nodeName": lambda p: p["spec"].get("nodeName", ""),
    "spec.restartPolicy": lambda p: p["spec"].get("restartPolicy", ""),
    "spec.schedulerName": lambda p: p["spec"].get("schedulerName", ""),
    "spec.serviceAccountName": lambda p: p["spec"].get("serviceAccountName", ""),
    "spec.hostNetwork": lambda p: str(bool(p["spec"].get("hostNetwork"))).lower(),
    "status.phase": lambda p: p.get("status", {}).get("phase", ""),
    "status.podIP": lambda p: p.get("status", {}).get("podIP", ""),
    "status.nominatedNodeName": lambda p: p.get("status", {}).get("nominatedNodeName", ""),
}


def field_matcher(selector: str | None) -> Callable[[dict[str, Any]], bool]:
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for part in _split_requirements(selector or ""):
        m = re.match(r"^\s*([\w.]+)\s*(==|!=|=)\s*(\S*)\s*$", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        name, op, value = m.groups()
        if name not in _POD_FIELDS:
            raise ApiError(400, "BadRequest", f"field label not supported: {name}")
        get = _POD_FIELDS[name]
        if op == "!=":
            tests.append(lambda p, g=get, v=value: g(p) != v)
        else:
            tests.append(lambda p, g=get, v=value: g(p) == v)
    return lambda pod: all(t(pod) for t in tests)


# ---- RBAC, from the rendered Roles and RoleBindings ----------------------------------------------


@dataclass(frozen=True)
class User:
    namespace: str
    service_account: str

    @property
    def name(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class Rbac:
    """Namespaced Roles bound to ServiceAccounts: the only RBAC objects the render makes."""

    def __init__(self, manifests: list[dict[str, Any]]) -> None:
        roles = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o.get("rules") or []
            for o in manifests
            if o["kind"] == "Role"
        }
        unsupported = sorted({o["kind"] for o in manifests if o["kind"] in ("ClusterRole", "ClusterRoleBinding")})
        if unsupported:
            raise NotImplementedError(f"the emulated API authorises Roles only, the render has {unsupported}")
        self._rules: dict[tuple[str, User], list[dict[str, Any]]] = {}
        for b in (o for o in manifests if o["kind"] == "RoleBinding"):
            ns = b["metadata"]["namespace"]
            rules = roles.get((ns, b["roleRef"]["name"]), []) if b["roleRef"]["kind"] == "Role" else []
            for s in b.get("subjects") or []:
                if s["kind"] == "ServiceAccount":
                    self._rules.setdefault((ns, User(s.get("namespace", ns), s["name"])), []).extend(rules)

    def allows(self, user: User, verb: str, resource: str, namespace: str) -> bool:
        for rule in self._rules.get((namespace, user), []):
            if (
                ("" in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
                and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
                and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
            ):
                return True
        return False


# ---- the store: what etcd and the pod registry do --------------------------------------------------


@dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    old: dict[str, Any] | None
    new: dict[str, Any]


def _merge(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); a strategic merge patch of maps is the same."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


class PodStore:
    """Pods with resourceVersions and an event history that can be compacted, like etcd's."""

    def __init__(self, namespaces: set[str], admit: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.cond = threading.Condition()
        self._namespaces = namespaces
        self._admit = admit
        self._rv = 1000
        self._oldest = self._rv  # the oldest version a watch may start from (etcd compaction)
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: list[Event] = []
        self.closed = False

    @property
    def resource_version(self) -> int:
        return self._rv

    def _emit(self, type_: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        self.history.append(Event(self._rv, type_, copy.deepcopy(old), copy.deepcopy(new)))
        self.cond.notify_all()

    def compact(self) -> None:
        """Forget the history so far: a watch from an older version gets 410 Gone."""
        with self.cond:
            self._oldest = self._rv
            self.history.clear()

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(body)
        meta = pod.setdefault("metadata", {})
        if meta.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")  # fmt: skip
        if namespace not in self._namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found', namespace)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", "Pod is invalid: metadata.name: Required value: name or generateName is required")  # fmt: skip
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        spec = pod.setdefault("spec", {})
        if not any(c.get("name") for c in spec.get("containers", [])):
            raise ApiError(422, "Invalid", f'Pod "{meta["name"]}" is invalid: spec.containers: Required value', meta["name"])  # fmt: skip
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        pod = self._admit(pod)
        pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        with self.cond:
            if (namespace, meta["name"]) in self._pods:
                raise ApiError(409, "AlreadyExists", f'pods "{meta["name"]}" already exists', meta["name"])
            self._pods[(namespace, meta["name"])] = pod
            self._emit("ADDED", None, pod)
            return copy.deepcopy(pod)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with self.cond:
            pod = self._pods.get((namespace, name))
            if pod is None:
                raise _not_found(name)
            return copy.deepcopy(pod)

    def list(self, namespace: str | None, match: Callable[[dict[str, Any]], bool]) -> tuple[list[dict[str, Any]], str]:
        with self.cond:
            items = [
                copy.deepcopy(p) for (ns, _), p in sorted(self._pods.items()) if namespace in (None, ns) and match(p)
            ]
            return items, str(self._rv)

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            old = self._pods.get((namespace, name))
            if old is None:
                raise _not_found(name)
            new = _merge(old, patch)
            # Status goes through the status subresource; the main resource ignores changes to it.
            new["status"] = copy.deepcopy(old["status"])
            if new.get("spec") != old.get("spec"):
                raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: spec: Forbidden: pod updates may not change fields other than the mutable ones', name)  # fmt: skip
            for k in ("uid", "namespace", "name", "creationTimestamp", "deletionTimestamp"):
                if new["metadata"].get(k) != old["metadata"].get(k):
                    raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: metadata.{k}: field is immutable', name)
            if new == old:
                return copy.deepcopy(old)  # a no-op update writes nothing
            self._pods[(namespace, name)] = new
            self._emit("MODIFIED", old, new)
            return copy.deepcopy(new)

    def delete(self, namespace: str, name: str, grace: int | None) -> dict[str, Any]:
        """CheckGracefulDelete: immediately when the pod never ran on a node or has finished, else
        marked for the kubelet to stop within the grace period."""
        with self.cond:
            old = self._pods.get((namespace, name))
            if old is None:
                raise _not_found(name)
            if old["metadata"].get("deletionTimestamp"):
                return copy.deepcopy(old)  # graceful deletion already pending
            period = grace if grace is not None else int(old["spec"].get("terminationGracePeriodSeconds", 30))
            if not old["spec"].get("nodeName") or old["status"].get("phase") in ("Succeeded", "Failed"):
                period = 0
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = max(period, 0)
            self._pods[(namespace, name)] = new
            self._emit("MODIFIED", old, new)
            if period <= 0:
                self._remove(namespace, name)
            return copy.deepcopy(new)

    def _remove(self, namespace: str, name: str) -> None:
        last = self._pods.pop((namespace, name))
        self._emit("DELETED", last, copy.deepcopy(last))

    # -- what the kubelet does through the status subresource and the final delete --

    def set_status(self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]) -> bool:
        with self.cond:
            old = self._pods.get((namespace, name))
            if old is None:
                return False
            new = copy.deepcopy(old)
            change(new)
            self._pods[(namespace, name)] = new
            self._emit("MODIFIED", old, new)
            return True

    def finish_deletion(self, namespace: str, name: str) -> None:
        with self.cond:
            if (namespace, name) in self._pods:
                self._remove(namespace, name)

    def events(self, since: int, stop: Callable[[], bool], deadline: float) -> Iterator[Event]:
        """The events after `since`, waiting for new ones until `deadline` or `stop()`."""
        seen = since
        while True:
            with self.cond:
                if since < self._oldest:
                    raise ApiError(410, "Expired", f"too old resource version: {since} ({self._oldest})")
                fresh = [e for e in self.history if e.rv > seen]
                if not fresh:
                    if self.closed or stop() or time.time() >= deadline:
                        return
                    self.cond.wait(min(1.0, max(deadline - time.time(), 0.01)))
                    continue
            for e in fresh:
                seen = e.rv
                yield e


def watch_event(e: Event, match: Callable[[dict[str, Any]], bool], namespace: str | None) -> dict[str, Any] | None:
    """What a watch with this selector sees of an event (the watch cache's rules)."""
    if namespace not in (None, e.new["metadata"]["namespace"]):
        return None
    was = e.old is not None and match(e.old)
    now = match(e.new)
    if e.type == "DELETED":
        return {"type": "DELETED", "object": e.new} if was else None
    if now and was:
        return {"type": "MODIFIED", "object": e.new}
    if now:
        return {"type": "ADDED", "object": e.new}
    if was and e.old is not None:
        # It left the selector: a DELETED event with its previous content at the new version.
        gone = copy.deepcopy(e.old)
        gone["metadata"]["resourceVersion"] = str(e.rv)
        return {"type": "DELETED", "object": gone}
    return None


# ---- the API server --------------------------------------------------------------------------------

DISCOVERY: dict[str, dict[str, Any]] = {
    "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0+airflow-k8s-e2e", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["po"],
            },
            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        ],
    },
}
_POD_PATH = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[a-z0-9-]+)/)?pods(?:/(?P<name>[a-z0-9.-]+)(?P<log>/log)?)?$")


@dataclass
class Request:
    """One request as the audit log would record it."""

    user: str
    verb: str
    resource: str
    namespace: str | None
    name: str | None
    code: int


class KubeApi:
    """The API server: HTTPS on 127.0.0.1, a PodStore, tokens per ServiceAccount, RBAC."""

    def __init__(self, base: Path, manifests: list[dict[str, Any]]) -> None:
        self.base = base
        self.ca, cert, key = make_ca_and_server_cert(base / "tls")
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(cert, key)
        self.rbac = Rbac(manifests)
        self.service_accounts = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o for o in manifests if o["kind"] == "ServiceAccount"
        }
        namespaces = {o["metadata"]["name"] for o in manifests if o["kind"] == "Namespace"} | {"default"}
        self.store = PodStore(namespaces, self.admit)
        self._tokens: dict[str, User] = {}
        self.requests: list[Request] = []
        self.unhandled: list[str] = []  # paths this emulation does not serve
        self.kubelet: Kubelet | None = None
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def token_for(self, namespace: str, service_account: str) -> str:
        """A token for the account (what the TokenRequest API gives the kubelet)."""
        for token, user in self._tokens.items():
            if user == User(namespace, service_account):
                return token
        token = secrets.token_urlsafe(32)
        self._tokens[token] = User(namespace, service_account)
        return token

    def admit(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The ServiceAccount admission plugin: the account must exist; its token volume is added
        when the pod (or else its account) automounts it."""
        ns, sa_name = pod["metadata"]["namespace"], pod["spec"].get("serviceAccountName") or "default"
        account = self.service_accounts.get((ns, sa_name))
        if account is None and sa_name != "default":
            raise ApiError(403, "Forbidden", f'pods "{pod["metadata"].get("name", "")}" is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount "{sa_name}" not found')  # fmt: skip
        spec = pod["spec"]
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = (account or {}).get("automountServiceAccountToken", True)
        containers = spec.get("initContainers", []) + spec["containers"]
        if automount and not any(
            m["mountPath"] == SERVICE_ACCOUNT_DIR for c in containers for m in c.get("volumeMounts", [])
        ):
            volume = f"kube-api-access-{secrets.token_hex(3)[:5]}"
            spec.setdefault("volumes", []).append({
                "name": volume,
                "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ]},
            })  # fmt: skip
            for c in containers:
                c.setdefault("volumeMounts", []).append(
                    {"name": volume, "readOnly": True, "mountPath": SERVICE_ACCOUNT_DIR}
                )
        return pod

    # -- serving --

    def start(self) -> KubeApi:
        api = self

        class Handler(_Handler):
            kube = api

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = self.tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        threading.Thread(target=server.serve_forever, name="kube-api", daemon=True).start()
        return self

    def stop(self) -> None:
        with self.store.cond:
            self.store.closed = True
            self.store.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def authenticate(self, header: str | None) -> User:
        token = (header or "").removeprefix("Bearer ").removeprefix("bearer ").strip()
        user = self._tokens.get(token)
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    def authorize(self, user: User, verb: str, resource: str, namespace: str | None, name: str | None) -> None:
        if namespace is not None and self.rbac.allows(user, verb, resource, namespace):
            return
        target = f'{resource.split("/")[0]} "{name}"' if name else resource.split("/")[0]
        sub = f' subresource "{resource.split("/")[1]}"' if "/" in resource else ""
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        raise ApiError(403, "Forbidden", f'{target} is forbidden: User "{user.name}" cannot {verb} resource "{resource.split("/")[0]}"{sub} in API group ""{where}', name)  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kube: KubeApi

    def setup(self) -> None:
        # The TLS handshake in this connection's thread, not in the accepting one.
        self.request.settimeout(30)
        self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the audit log is KubeApi.requests

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        body = self._body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
        kube = self.kube
        record = Request("system:anonymous", method.lower(), url.path, None, None, 0)
        kube.requests.append(record)  # its code is filled in below
        try:
            user = kube.authenticate(self.headers.get("Authorization"))
            record.user = user.name
            if url.path in DISCOVERY and method == "GET":
                record.code = 200  # system:discovery: any authenticated user
                return self._send(200, DISCOVERY[url.path])
            m = _POD_PATH.match(url.path)
            if not m:
                kube.unhandled.append(f"{method} {url.path}")
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            ns, name, log = m["ns"], m["name"], bool(m["log"])
            watch = (query.get("watch") or "").lower() in ("true", "1")
            verb = {
                ("GET", True): "get",
                ("GET", False): "watch" if watch else "list",
                ("POST", False): "create",
                ("PATCH", True): "patch",
                ("DELETE", True): "delete",
                ("PUT", True): "update",
            }.get((method, name is not None))
            if verb is None or (log and verb != "get") or (method == "PUT"):
                kube.unhandled.append(f"{method} {url.path}")
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
            resource = "pods/log" if log else "pods"
            record.verb, record.resource, record.namespace, record.name = verb, resource, ns, name
            kube.authorize(user, verb, resource, ns, name)
            if watch:
                record.code = 200
                return self._watch(ns, query)
            code, out, ctype = self._serve(verb, ns, name, log, query, body)
            record.code = code
            self._send(code, out, ctype)
        except ApiError as e:
            record.code = e.code
            self._send(e.code, e.status())
        except Exception as e:  # a bug of this emulation: answer as kube-apiserver does, and say so
            kube.unhandled.append(f"{method} {url.path}: {type(e).__name__}: {e}")
            record.code = 500
            self._send(500, ApiError(500, "InternalError", f"emulation error: {e}").status())

    def _serve(
        self, verb: str, ns: str | None, name: str | None, log: bool, query: dict[str, str], body: Any
    ) -> tuple[int, Any, str]:
        store = self.kube.store
        if verb == "list":
            match = _matcher(query)
            items, rv = store.list(ns, match)
            accept = self.headers.get("Accept") or ""
            if "as=PartialObjectMetadataList" in accept:
                meta_items = [
                    {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]}
                    for p in items
                ]
                out = {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": rv},
                    "items": meta_items,
                }
                return 200, out, "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}, "application/json"  # fmt: skip
        assert ns is not None
        if verb == "create":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
            return 201, store.create(ns, body), "application/json"
        assert name is not None
        if verb == "get" and log:
            return 200, self._log(ns, name, query), "text/plain"
        if verb == "get":
            return 200, store.get(ns, name), "application/json"
        if verb == "patch":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype not in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
                raise ApiError(415, "UnsupportedMediaType", f"the emulated API does not apply {ctype!r} patches")
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the patch is not a JSON object")
            return 200, store.patch(ns, name, body), "application/json"
        grace = query.get("gracePeriodSeconds")
        if grace is None and isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
            grace = body["gracePeriodSeconds"]
        return 200, store.delete(ns, name, None if grace is None else int(grace)), "application/json"

    def _log(self, ns: str, name: str, query: dict[str, str]) -> bytes:
        pod = self.kube.store.get(ns, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container") or (names[0] if len(names) == 1 else None)
        if container is None:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: {names}")  # fmt: skip
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        statuses = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses", [])}
        state = statuses.get(container, {}).get("state", {"waiting": {"reason": "ContainerCreating"}})
        if "waiting" in state:
            reason = state["waiting"].get("reason", "")
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        kubelet = self.kube.kubelet
        lines = kubelet.container_log(ns, name).splitlines(keepends=True) if kubelet else []
        if query.get("tailLines"):
            lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) > 0 else []
        return "".join(lines).encode()

    def _watch(self, ns: str | None, query: dict[str, str]) -> None:
        store = self.kube.store
        match = _matcher(query)
        timeout = int(query.get("timeoutSeconds") or 1800)
        rv = query.get("resourceVersion") or ""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event: dict[str, Any]) -> None:
            raw = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
            self.wfile.flush()

        try:
            if rv in ("", "0"):
                # Get State and Start at Most Recent / at Any: the current pods as ADDED, then changes.
                items, start = store.list(ns, match)
                for pod in items:
                    send({"type": "ADDED", "object": pod})
                since = int(start)
            else:
                since = int(rv)
            try:
                for e in store.events(since, lambda: store.closed, time.time() + timeout):
                    shown = watch_event(e, match, ns)
                    if shown is not None:
                        send(shown)
            except ApiError as err:
                send({"type": "ERROR", "object": err.status()})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True  # the client went away (its read timed out)


def _matcher(query: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
    labels, fields = label_matcher(query.get("labelSelector")), field_matcher(query.get("fieldSelector"))
    return lambda p: labels(p) and fields(p)


# ---- the kubelet -----------------------------------------------------------------------------------


_UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
_SETUP = (
    'root="$1"; host="$2"; shift 2; '
    'if [ -n "$root" ]; then mount --bind "$root" /run; mount -o remount,bind,ro /run; fi; '
    'if [ -n "$host" ]; then hostname "$host"; fi; '
)


@functools.cache
def _namespaces() -> str:
    """How this machine gives a process its own mount and UTS namespaces: as root; in a user
    namespace that maps the user to root (where unprivileged user namespaces may mount); or through
    passwordless sudo, dropping back to the user (Ubuntu 24.04 lets no unprivileged namespace mount:
    kernel.apparmor_restrict_unprivileged_userns, as on GitHub's runners)."""
    if os.geteuid() == 0:
        return "root"
    with tempfile.TemporaryDirectory() as probe:
        mapped = subprocess.run(
            [_UNSHARE, "--map-root-user", "--mount", "--", "/bin/sh", "-c", 'mount --bind "$0" "$0"', probe],
            capture_output=True,
        )
    if mapped.returncode == 0:
        return "userns"
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return "sudo"
    raise RuntimeError(
        "the emulated kubelet needs its own mount namespace per pod: run as root, allow unprivileged user "
        "namespaces, or give passwordless sudo"
    )


def _unshare_argv(run_root: Path | None, hostname: str | None, argv: list[str], path: str) -> list[str]:
    """Run `argv` in its own mount and UTS namespaces: `run_root` read-only on /run, its hostname
    (`path`: the PATH `argv` runs with)."""
    unshare = [_UNSHARE, "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c"]
    args = [str(run_root or ""), hostname or ""]
    mode = _namespaces()
    if mode == "root":
        return [*unshare, "set -e; " + _SETUP + 'exec "$@"', "sh", *args, *argv]
    if mode == "userns":
        return [unshare[0], "--map-root-user", *unshare[1:], "set -e; " + _SETUP + 'exec "$@"', "sh", *args, *argv]
    # sudo keeps the environment (-E: secrets stay out of the argument list) but not PATH.
    drop = 'uid="$1"; gid="$2"; path="$3"; shift 3; exec setpriv --reuid="$uid" --regid="$gid" --init-groups -- env PATH="$path" "$@"'
    return ["sudo", "-n", "--preserve-env", *unshare, "set -e; " + _SETUP + drop, "sh", *args,
            str(os.getuid()), str(os.getgid()), path, *argv]  # fmt: skip


class PodProcess(Process):
    """A container as the kubelet starts it: harness.Process's env and mounts, plus the pod's
    environment (KUBERNETES_SERVICE_*, HOSTNAME, fieldRefs), the projected service-account volume
    at its real path (/var/run/... through a private mount of /run) and the pod's hostname."""

    def __init__(
        self,
        cluster: Cluster,
        c: Container,
        pod: dict[str, Any],
        kube: KubeApi,
        *,
        name: str,
        hostname: str | None,
    ) -> None:
        self.pod = pod
        self.kube = kube
        self.hostname = hostname
        env = [self._field_ref(e) for e in c.spec.get("env", [])]
        super().__init__(cluster, replace(c, spec={**c.spec, "env": env}), name=name)
        self.run_root: Path | None = None
        for m in c.spec.get("volumeMounts", []):
            if m["mountPath"].startswith(_RUN_PREFIXES):
                self._mount_under_run(m, c.pod_volumes[m["name"]])

    def _field_ref(self, e: dict[str, Any]) -> dict[str, Any]:
        ref = e.get("valueFrom", {}).get("fieldRef")
        if ref is None:
            return e
        value = {
            "metadata.name": self.pod["metadata"]["name"],
            "metadata.namespace": self.pod["metadata"]["namespace"],
            "metadata.uid": self.pod["metadata"].get("uid", ""),
            "spec.nodeName": NODE,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }.get(ref["fieldPath"])
        if value is None:
            raise NotImplementedError(f"the emulated kubelet does not resolve fieldRef {ref['fieldPath']}")
        return {"name": e["name"], "value": value}

    def _mount_under_run(self, mount: dict[str, Any], volume: dict[str, Any]) -> None:
        self.run_root = self.dir / "run"
        rel = mount["mountPath"].removeprefix("/var").removeprefix("/run/")
        host = self.run_root / rel
        host.mkdir(parents=True, exist_ok=True)
        if "projected" not in volume:
            raise NotImplementedError(f"the emulated kubelet mounts only projected volumes under /run: {mount}")
        ns = self.pod["metadata"]["namespace"]
        for source in volume["projected"]["sources"]:
            if "serviceAccountToken" in source:
                sa = self.pod["spec"].get("serviceAccountName") or "default"
                (host / source["serviceAccountToken"]["path"]).write_text(self.kube.token_for(ns, sa))
            elif "configMap" in source and source["configMap"]["name"] == "kube-root-ca.crt":
                shutil.copy(self.kube.ca, host / "ca.crt")
            elif "downwardAPI" in source:
                for item in source["downwardAPI"]["items"]:
                    (host / item["path"]).write_text(ns)
            else:
                raise NotImplementedError(f"projected source not emulated: {source}")
        self.mounts[mount["mountPath"]] = host

    def _env(self, cluster: Cluster) -> dict[str, str]:
        env = super()._env(cluster)
        # The kubelet always sets the API's Service (the `kubernetes` Service of `default`).
        port = str(self.kube.port)
        env.update(
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=port,
            KUBERNETES_SERVICE_PORT_HTTPS=port,
            KUBERNETES_PORT=f"tcp://127.0.0.1:{port}",
            HOSTNAME=self.hostname or socket.gethostname(),
        )
        return env

    def start(self) -> PodProcess:
        if self.run_root is not None or self.hostname:
            self.argv = _unshare_argv(self.run_root, self.hostname, self.argv, self.env["PATH"])
        super().start()
        return self


@dataclass
class PodRecord:
    """What the kubelet did with one pod (for the tests to check)."""

    namespace: str
    name: str
    labels: dict[str, str]
    volumes: dict[str, Path] = field(default_factory=dict)  # emptyDir name -> host directory
    spec: dict[str, Any] = field(default_factory=dict)  # the pod spec as the API stored it
    phase: str = "Pending"
    exit_code: int | None = None
    deleted: bool = False
    cleaned: bool = False
    process: PodProcess | None = None


class Kubelet:
    """One node: runs the pods the API is asked for, and the rendered workloads' containers."""

    def __init__(self, kube: KubeApi, cluster: Cluster) -> None:
        self.kube = kube
        self.cluster = cluster
        kube.kubelet = self
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.log_dir = cluster.base / "kubelet-logs"  # container logs, kept past deletion for debugging
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._claims = {o["metadata"]["name"] for o in cluster.manifests if o["kind"] == "PersistentVolumeClaim"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sync_loop, name="kubelet", daemon=True)

    def start(self) -> Kubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for record in list(self.pods.values()):
            if record.process is not None:
                record.process.stop()
        if self._thread.ident is not None:  # a kubelet used only for run_workload never started its loop
            self._thread.join(10)

    def container_log(self, namespace: str, name: str) -> str:
        record = self.pods.get((namespace, name))
        if record is None or record.process is None:
            return ""
        try:
            return record.process.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- the rendered workloads --

    def run_workload(self, c: Container, name: str | None = None) -> PodProcess:
        """A rendered workload's (Deployment, StatefulSet, Job, CronJob) container, started as the pod its
        controller would make from the template (the API's admission applied: its token, if it
        automounts)."""
        workload = next(o for o in self.cluster.manifests if (o["kind"], o["metadata"]["name"]) == (c.kind, c.workload))
        template = copy.deepcopy(pod_template(workload))
        pod = {
            "metadata": {
                "name": f"{c.workload}-{secrets.token_hex(3)[:5]}",
                "namespace": workload["metadata"]["namespace"],
                "labels": template["metadata"].get("labels", {}),
            },
            "spec": template["spec"],
        }
        pod = self.kube.admit(pod)
        spec = next(x for x in pod["spec"]["containers"] if x["name"] == c.spec["name"])
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        container = replace(c, spec=spec, pod_volumes=volumes)
        # No hostname of its own: the harness resolves Services, not pods' names (see harness.py).
        return PodProcess(self.cluster, container, pod, self.kube, name=name or c.component, hostname=None).start()

    # -- pods created through the API --

    def _sync_loop(self) -> None:
        store = self.kube.store
        since = store.resource_version
        while not self._stop.is_set() and not store.closed:
            try:
                for e in store.events(since, self._stop.is_set, time.time() + 1):
                    since = e.rv
                    key = (e.new["metadata"]["namespace"], e.new["metadata"]["name"])
                    if e.type == "ADDED":
                        record = PodRecord(
                            *key, dict(e.new["metadata"].get("labels") or {}), spec=dict(e.new.get("spec") or {})
                        )
                        self.pods[key] = record
                        threading.Thread(target=self._run_pod, args=(e.new, record), daemon=True).start()
                    elif e.type == "MODIFIED" and e.new["metadata"].get("deletionTimestamp"):
                        self._terminate(key, int(e.new["metadata"].get("deletionGracePeriodSeconds") or 0))
                    elif e.type == "DELETED" and key in self.pods:
                        self.pods[key].deleted = True
                        threading.Thread(target=self._clean_up, args=(self.pods[key],), daemon=True).start()
            except ApiError:  # history compacted under the kubelet: start from now
                since = store.resource_version

    def _status(self, record: PodRecord, change: Callable[[dict[str, Any]], None]) -> bool:
        return self.kube.store.set_status(record.namespace, record.name, change)

    def _unsupported(self, pod: dict[str, Any]) -> str | None:
        spec = pod["spec"]
        if spec.get("initContainers"):
            return "init containers are not emulated"
        if [c["name"] for c in spec["containers"]] != ["base"]:
            return f"only a single `base` container is emulated, not {[c['name'] for c in spec['containers']]}"
        for v in spec.get("volumes", []):
            kinds = set(v) - {"name"}
            if not kinds & {"emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected"}:
                return f"volume {v['name']} of kind {sorted(kinds)} is not emulated"
        return None

    def _run_pod(self, pod: dict[str, Any], record: PodRecord) -> None:
        spec = pod["spec"]

        def schedule(p: dict[str, Any]) -> None:
            p["spec"]["nodeName"] = NODE
            p["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}]

        missing = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec.get("volumes", [])
            if "persistentVolumeClaim" in v
            and v["persistentVolumeClaim"]["claimName"] not in self._claims | {self.cluster.dag_claim}
        ]
        if missing:
            # The scheduler cannot place a pod whose claim does not exist: it stays Pending.
            def unschedulable(p: dict[str, Any]) -> None:
                p["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": f'persistentvolumeclaim "{missing[0]}" not found', "lastTransitionTime": _now()}]  # fmt: skip

            self._status(record, unschedulable)
            return
        if not self._status(record, schedule):
            return
        reason = self._unsupported(pod)
        if reason:
            self._finish(record, 1, "NotEmulated", reason)
            return

        def creating(p: dict[str, Any]) -> None:
            p["status"].update(hostIP="127.0.0.1", startTime=_now())
            p["status"]["containerStatuses"] = [_container_status({"waiting": {"reason": "ContainerCreating"}})]

        self._status(record, creating)
        base = spec["containers"][0]
        container = Container(
            record.name, "Pod", pod["metadata"].get("labels", {}).get("app.kubernetes.io/component", "task"),
            base, {v["name"]: v for v in spec.get("volumes", [])},
        )  # fmt: skip
        hostname = (spec.get("hostname") or record.name)[:63]
        try:
            proc = PodProcess(self.cluster, container, pod, self.kube, name=record.name, hostname=hostname)
        except (KeyError, NotImplementedError) as e:  # a Secret, ConfigMap or field it cannot resolve
            self._finish(record, 1, "CreateContainerConfigError", str(e))
            return
        proc.log = self.log_dir / f"{record.name}.log"
        record.volumes = {
            v["name"]: proc.dir / "volumes" / v["name"] for v in spec.get("volumes", []) if "emptyDir" in v
        }
        record.process = proc
        if record.deleted:  # deleted while its volumes were being set up
            shutil.rmtree(proc.dir, ignore_errors=True)
            record.cleaned = True
            return
        proc.start()
        started = _now()

        def running(p: dict[str, Any]) -> None:
            p["status"].update(phase="Running", podIP="127.0.0.1", podIPs=[{"ip": "127.0.0.1"}])
            p["status"]["conditions"] = [
                {"type": t, "status": "True", "lastTransitionTime": started}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ]
            p["status"]["containerStatuses"] = [_container_status({"running": {"startedAt": started}}, ready=True)]

        record.phase = "Running"
        self._status(record, running)
        assert proc.proc is not None
        code = proc.proc.wait()
        self._finish(record, code, "Completed" if code == 0 else "Error", None, started)

    def _finish(self, record: PodRecord, code: int, reason: str, message: str | None, started: str = "") -> None:
        """The container ended (restartPolicy Never): the pod is Succeeded or Failed for good."""
        record.exit_code = code if code >= 0 else 128 - code  # killed by a signal: 128 + its number
        record.phase = "Succeeded" if code == 0 else "Failed"
        terminated: dict[str, Any] = {"exitCode": record.exit_code, "reason": reason, "finishedAt": _now()}
        if started:
            terminated["startedAt"] = started
        if message:
            terminated["message"] = message

        def done(p: dict[str, Any]) -> None:
            p["status"]["phase"] = record.phase
            for cond in p["status"].get("conditions", []):
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond["status"] = "False"
            p["status"]["containerStatuses"] = [_container_status({"terminated": terminated})]

        self._status(record, done)
        if record.deleted:
            return
        pod = self.kube.store.get(record.namespace, record.name) if self._exists(record) else None
        if pod and pod["metadata"].get("deletionTimestamp"):
            self.kube.store.finish_deletion(record.namespace, record.name)

    def _exists(self, record: PodRecord) -> bool:
        try:
            self.kube.store.get(record.namespace, record.name)
            return True
        except ApiError:
            return False

    def _terminate(self, key: tuple[str, str], grace: int) -> None:
        """A graceful deletion: SIGTERM, SIGKILL after the grace period, then the final delete."""
        record = self.pods.get(key)
        if record is None or record.process is None or not record.process.alive():
            if record is not None and record.phase == "Pending":
                self.kube.store.finish_deletion(*key)
            return

        def stop(proc: PodProcess) -> None:
            assert proc.proc is not None
            os.killpg(proc.proc.pid, signal.SIGTERM)
            try:
                proc.proc.wait(max(grace, 1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.proc.pid, signal.SIGKILL)
            # _run_pod's wait() returns now and _finish() completes the deletion.

        threading.Thread(target=stop, args=(record.process,), daemon=True).start()

    def _clean_up(self, record: PodRecord) -> None:
        """After the pod is deleted and its container gone: its emptyDirs and writable layer go."""
        proc = record.process
        if proc is not None and proc.proc is not None:
            try:
                proc.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.proc.pid, signal.SIGKILL)
                proc.proc.wait(10)
        if proc is not None:
            shutil.rmtree(proc.dir, ignore_errors=True)
        record.cleaned = True


def _container_status(state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
    return {
        "name": "base",
        "state": state,
        "ready": ready,
        "restartCount": 0,
        "image": "emulated",
        "imageID": "",
        "started": "running" in state,
    }
