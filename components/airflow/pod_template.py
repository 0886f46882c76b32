"""KubernetesExecutor's pod template: task pods are made from it and carry no Airflow settings of
their own, so everything (execution API URL, secrets by reference, DAGs) must be in here."""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.airflow.pods import AIRFLOW_GID, AIRFLOW_UID, PodFactory
from components.k8s import labels, pod_security

COMPONENT = "task"


def pod_template_object(pods: PodFactory) -> dict[str, Any]:
    """The template as a Pod object (its `base` container is the one the executor fills in)."""
    vols, mounts = pods.volumes(COMPONENT)
    init: list[dict[str, Any]] = []
    if pods.dag_source == "gitSync":
        init.append(pods.git_sync_container("git-sync-init", True))
    spec: dict[str, Any] = {
        "serviceAccountName": pods.service_account(COMPONENT),
        "automountServiceAccountToken": pods.roster.calls_kubernetes_api(COMPONENT),
        "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
        "restartPolicy": "Never",
        # The KubernetesExecutor looks for the container named "base".
        "containers": [pods.container(COMPONENT, [], pods.settings.workers.resources, mounts, name="base")],
        "volumes": vols,
    }
    if init:
        spec["initContainers"] = init
    spec = pods.finish(COMPONENT, spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "placeholder", **pods.meta(COMPONENT, checksum=False)},
        "spec": spec,
    }


def pod_template_configmap(
    parent: pulumi.Resource, name: str, instance: str, namespace: pulumi.Input[str], pods: PodFactory
) -> k8s.core.v1.ConfigMap:
    """The template as the file the scheduler reads (`[kubernetes_executor] pod_template_file`)."""
    body = pulumi.Output.from_input(pod_template_object(pods)).apply(lambda obj: yaml.safe_dump(obj, sort_keys=False))
    # A ConfigMap's data is replace-forcing in pulumi-kubernetes; under a fixed name the provider
    # would delete it first and the scheduler's template would be missing meanwhile. Named by its
    # content, a changed template is a new ConfigMap made first, the scheduler rolls onto it in
    # place, and the old one is deleted after.
    cm_name = body.apply(lambda b: f"{instance}-pod-template-{hashlib.sha256(b.encode()).hexdigest()[:8]}")
    return k8s.core.v1.ConfigMap(
        f"{name}-pod-template",
        metadata={
            "name": cm_name,
            "namespace": namespace,
            "labels": labels(instance, "pod-template"),
        },
        data={"pod_template_file.yaml": body},
        opts=pulumi.ResourceOptions(parent=parent),
    )
