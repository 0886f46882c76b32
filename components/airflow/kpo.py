"""KubernetesPodOperator's `kubernetes_default` connection: what makes a default
`KubernetesPodOperator(image=..., cmds=[...])` work without the DAG author configuring anything.

The operator (apache-airflow-providers-cncf-kubernetes, operators/pod.py `build_pod_request_obj`) puts
its pod in the operator's `namespace`, else the connection's `namespace` extra, else the namespace of
the service account it runs under (the launcher's own, i.e. Airflow's). Without a connection that
names the task namespace, the pods land in Airflow's namespace, which enforces Pod Security
`restricted` and where the launchers hold no pod rights once a task namespace exists.

The connection also sets `in_cluster`: the deferrable path needs it. The trigger's async hook
(hooks/kubernetes.py `AsyncKubernetesHook._load_config`) has no in-cluster fallback, unlike the
sync hook (`_get_default_client`); without it the trigger looks for a kubeconfig file and fails.

And it hardens the xcom sidecar (`xcom_sidecar_container_security_context`, read by the hook when
the operator sets none): the provider's alpine sidecar has no securityContext of its own
(utils/xcom_sidecar.py `PodDefaults.SIDECAR_CONTAINER`), but needs no privilege at all. Whatever the
user's image needs, the provider's own container then meets `restricted`.

The connection holds no secret (in-cluster credentials come from the pod's service-account token),
so it is a plain env value, in Airflow's JSON connection form.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.settings import Placement
from components.k8s import labels

CONNECTION_ID = "kubernetes_default"  # the operator's and hook's default `kubernetes_conn_id`
CONNECTION_VARIABLE = f"AIRFLOW_CONN_{CONNECTION_ID.upper()}"

# The sidecar runs `sh -c 'trap "exit 0" INT; while true; do sleep 1; done'`, and is exec'd into to
# `cat` the result file and to signal that loop (same uid): nobody (65534) with nothing else suffices.
XCOM_SIDECAR_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def connection_json(namespace: str) -> str:
    """The connection, in-cluster and pointed at `namespace`, in Airflow's JSON connection form."""
    extra = {
        "in_cluster": True,
        "namespace": namespace,
        # The hook json.loads() this extra itself, so it is a JSON string inside the JSON.
        "xcom_sidecar_container_security_context": json.dumps(XCOM_SIDECAR_SECURITY_CONTEXT),
    }
    return json.dumps({"conn_type": "kubernetes", "extra": extra})


def connection(namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    """The value of CONNECTION_VARIABLE for pods that go to `namespace`."""
    return pulumi.Output.from_input(namespace).apply(connection_json)


# ---- placement defaults for KubernetesPodOperator pods -----------------------------------------
#
# The provider (cncf-kubernetes 10.25.0, operators/pod.py) takes node_selector, tolerations,
# affinity and priority_class_name per operator only (and topology spread only through a
# full_pod_spec or pod_template_file); no config option sets defaults for them. What it does call
# for every pod it builds is Airflow's cluster policy `pod_mutation_hook` (`build_pod_request_obj`,
# last step), which Airflow imports from `airflow_local_settings` on the path, and
# `$AIRFLOW_HOME/config` is on the path (airflow/settings.py `prepare_syspath_for_config_and_plugins`).
# So the defaults ship as that module, mounted only where KubernetesPodOperator runs.
LOCAL_SETTINGS_FILE = "airflow_local_settings.py"
LOCAL_SETTINGS_VOLUME = "local-settings"
# Placement's keys as the pod spec names them, and the V1PodSpec attributes they become.
_SPEC_ATTRIBUTES = {
    "nodeSelector": "node_selector",
    "tolerations": "tolerations",
    "affinity": "affinity",
    "topologySpreadConstraints": "topology_spread_constraints",
    "priorityClassName": "priority_class_name",
}

_HOOK = """\
\"\"\"Rendered by airflow-k8s (components/airflow/kpo.py): airflow.podOperator.placement as the defaults
of every KubernetesPodOperator pod. A field the operator sets is kept; the KubernetesExecutor's own
task pods (from the pod template) are left alone.\"\"\"

import json

DEFAULTS = json.loads({defaults!r})
ATTRIBUTES = json.loads({attributes!r})


def pod_mutation_hook(pod):
    if pod.spec is None or "kubernetes_executor" in ((pod.metadata and pod.metadata.labels) or {{}}):
        return
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    spec = dict(DEFAULTS, containers=[])
    defaults = PodGenerator.deserialize_model_dict({{"apiVersion": "v1", "kind": "Pod", "spec": spec}}).spec
    for key, attribute in ATTRIBUTES.items():
        if key in DEFAULTS and not getattr(pod.spec, attribute, None):
            setattr(pod.spec, attribute, getattr(defaults, attribute))
"""


def placement_spec(placement: Placement) -> dict[str, Any]:
    """The placement as pod-spec fields (unset ones left out)."""
    dumped = placement.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {k: v for k, v in dumped.items() if k in _SPEC_ATTRIBUTES}


def local_settings(placement: Placement) -> str:
    """The airflow_local_settings module that applies `placement` to KubernetesPodOperator pods."""
    defaults = json.dumps(placement_spec(placement), sort_keys=True)
    return _HOOK.format(defaults=defaults, attributes=json.dumps(_SPEC_ATTRIBUTES))


def local_settings_configmap(
    parent: pulumi.Resource, name: str, instance: str, namespace: pulumi.Input[str], placement: Placement
) -> k8s.core.v1.ConfigMap:
    """The module as a ConfigMap named by its content, like the pod template: a change is a new
    ConfigMap the launchers roll onto, never a delete-first replacement under them."""
    body = local_settings(placement)
    return k8s.core.v1.ConfigMap(
        f"{name}-local-settings",
        metadata={
            "name": f"{instance}-local-settings-{hashlib.sha256(body.encode()).hexdigest()[:8]}",
            "namespace": namespace,
            "labels": labels(instance, "local-settings"),
        },
        data={LOCAL_SETTINGS_FILE: body},
        opts=pulumi.ResourceOptions(parent=parent),
    )
