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

import json
from typing import Any

import pulumi

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
