"""Issue 14.3, KubernetesPodOperator defaults: the rendered `airflow_local_settings.py` (kpo.py) on
real Airflow 3.3.2 with cncf-kubernetes 10.25.0. A default KubernetesPodOperator builds its pod with
`airflow.podOperator.placement`; an operator that sets a field keeps its own; the KubernetesExecutor's
task pods are left to the pod template. No cluster is needed: `build_pod_request_obj(dry_run=True)`
is the pod the operator would create, after Airflow's pod_mutation_hook."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from components.airflow.env import CONFIG_DIR, HOME
from tests.e2e.harness import AIRFLOW_VENV
from tests.render import named, pod_spec, render

PLACEMENT = (
    "airflow.podOperator.placement={nodeSelector: {pool: batch}, tolerations: [{key: spot, operator: Equal, "
    "value: 'true', effect: NoSchedule}], affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: "
    "[{weight: 100, preference: {matchExpressions: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]}}]}}, "
    "priorityClassName: batch-low}"
)

BUILD = """
import json
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.settings import pod_mutation_hook
from kubernetes.client import ApiClient, models as k8s

ops = [
    KubernetesPodOperator(task_id="plain", image="busybox:1.36", cmds=["true"]),
    KubernetesPodOperator(task_id="own", image="busybox:1.36", node_selector={"pool": "mine"}, tolerations=[]),
]
out = {op.task_id: ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))["spec"] for op in ops}
executor_pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(labels={"kubernetes_executor": "True"}), spec=k8s.V1PodSpec(containers=[]))
pod_mutation_hook(executor_pod)
out["executor"] = ApiClient().sanitize_for_serialization(executor_pod)["spec"]
print("RESULT " + json.dumps(out))
"""


def _build(home: Path) -> dict[str, Any]:
    python = AIRFLOW_VENV / "bin" / "python"
    assert python.exists(), f"no Airflow venv at {AIRFLOW_VENV}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home)
    done = subprocess.run(
        [str(python), "-c", BUILD], env=env, capture_output=True, text=True, timeout=120, cwd=home, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _mounted_local_settings(tmp_path: Path, *overrides: str) -> Path:
    """AIRFLOW_HOME with the module where the worker's mount puts it, from the rendered ConfigMap."""
    run = render("local", *overrides)
    worker = pod_spec(named(run, "StatefulSet", "airflow-worker", reveal=True))
    mount = next(m for m in worker["containers"][0]["volumeMounts"] if m["name"] == "local-settings")
    volume = next(v for v in worker["volumes"] if v["name"] == "local-settings")
    cm = named(run, "ConfigMap", "airflow-local-settings", reveal=True)
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    target = tmp_path / "home" / Path(mount["mountPath"]).relative_to(HOME)
    assert str(Path(mount["mountPath"]).parent) == CONFIG_DIR  # on Airflow's path: $AIRFLOW_HOME/config
    target.parent.mkdir(parents=True)
    target.write_text(cm["data"][mount["subPath"]])
    return tmp_path / "home"


def test_a_default_kpo_pod_gets_the_placement_and_an_operators_own_fields_win(tmp_path: Path) -> None:
    out = _build(_mounted_local_settings(tmp_path, PLACEMENT))
    plain = out["plain"]
    assert plain["nodeSelector"] == {"pool": "batch"}
    assert plain["tolerations"] == [{"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert plain["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100
    assert plain["priorityClassName"] == "batch-low"
    own = out["own"]
    assert own["nodeSelector"] == {"pool": "mine"}  # the operator's own value is kept
    assert own["priorityClassName"] == "batch-low"  # what it leaves unset is filled in
    # The KubernetesExecutor's pods take their placement from the pod template (airflow.taskPods).
    assert not out["executor"].get("nodeSelector") and not out["executor"].get("tolerations")


def test_without_the_module_a_kpo_pod_has_no_placement(tmp_path: Path) -> None:
    """The control: the provider itself sets none of these."""
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    plain = _build(home)["plain"]
    # It sends them empty ({} or []), which the hook takes as unset.
    assert not any(plain.get(k) for k in ("nodeSelector", "tolerations", "affinity", "priorityClassName"))
