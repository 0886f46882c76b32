"""Query helpers over a render: each assertion in the tests stays one line."""

from __future__ import annotations

import functools
import gc
import json
import warnings
from collections.abc import Iterator
from typing import Any

from stacks.tooling import engine
from stacks.tooling.render import run_stack

# Kubernetes versions the README says are supported; every rendered object is validated against each.
K8S_VERSIONS = ["1.31", "1.32", "1.33", "1.34", "1.35"]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}


@functools.lru_cache(maxsize=64)
def _cached(stack: str, overrides: tuple[str, ...], secrets: tuple[str, ...]) -> engine.Run:
    return run_stack(stack, overrides, secrets)


def render(stack: str = "local", *overrides: str, secrets: tuple[str, ...] = ()) -> engine.Run:
    """Render a stack file (cached: renders are pure functions of their inputs); `secrets` are set
    as Pulumi secrets (`--set-secret`)."""
    return _cached(stack, tuple(overrides), secrets)


def objects(run: engine.Run, kind: str | None = None, reveal: bool = False) -> list[dict[str, Any]]:
    out = [r.manifest(reveal) for r in run.kubernetes()]
    return [o for o in out if kind is None or o.get("kind") == kind]


def named(run: engine.Run, kind: str, name: str, reveal: bool = False) -> dict[str, Any]:
    hits = [
        o
        for o in objects(run, kind, reveal)
        # Jobs (image hash) and the pod-template ConfigMap (content hash) carry a suffix.
        if o["metadata"]["name"] == name
        or o["metadata"]["name"].startswith(name + "-")
        and kind in ("Job", "ConfigMap")
    ]
    assert len(hits) == 1, (
        f"{kind} {name}: {len(hits)} found; have {[o['metadata']['name'] for o in objects(run, kind)]}"
    )
    return hits[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return pod_template(obj)["spec"]


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod (metadata and spec) a workload makes; a CronJob's through its Job template."""
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def workloads(run: engine.Run, reveal: bool = False) -> list[dict[str, Any]]:
    return [o for o in objects(run, reveal=reveal) if o["kind"] in WORKLOAD_KINDS]


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> plain value, or ('secret'|'configmap', name, key) for references."""
    out: dict[str, Any] = {}
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = ("secret", ref["name"], ref["key"])
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            out[e["name"]] = ("configmap", ref["name"], ref["key"])
    return out


def is_airflow(container: dict[str, Any]) -> bool:
    image = str(container.get("image", ""))
    # The official PgBouncer images are tags of the same repository (`airflow-pgbouncer-...`).
    return "apache/airflow" in image and ":airflow-pgbouncer" not in image


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def table_row(comp: str) -> str:
    """The components-table row of a pod's component label: a worker set's pods
    (`worker-<name>`, issue 15) are the `worker` row."""
    return "worker" if comp.startswith("worker-") else comp


def dumps(run: engine.Run) -> str:
    """Everything a render would write (masked), as one string to search for leaks."""
    return json.dumps({"resources": [r.to_json() for r in run.resources], "outputs": run.outputs})


def airflow_pods(run: engine.Run) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, pod spec) of every pod that runs the Airflow image: the workloads, the Jobs, and
    the KubernetesExecutor's task pods (the pod template, read back from its ConfigMap)."""
    import yaml

    for obj in workloads(run, reveal=True):
        yield component(obj), pod_spec(obj)
    for cm in objects(run, "ConfigMap", reveal=True):
        body = (cm.get("data") or {}).get("pod_template_file.yaml")
        if body:
            pod = yaml.safe_load(body)
            yield component(pod), pod["spec"]


def drop_aborted_applies() -> None:
    """A program ended by an error leaves the coroutines of its pending applies; collect them here, so
    their "never awaited" warning does not land on a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()
