"""What every in-cluster, single-replica data server here is made of (PostgreSQL, Redis): a generated
password, a Secret, a ServiceAccount with no token, a ClusterIP Service, a StatefulSet with one data
volume, and a NetworkPolicy admitting only this Airflow instance's pods on its one port.

The server's own module says only what differs: its image's user, its container's env, args and
mounts, its probe command and its endpoint.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.k8s import Manifest, container_security, labels, pod_security, resources, selector
from components.settings import Resources


def exec_probe(command: list[str], *, period: int, failures: int) -> Manifest:
    """An exec probe: asking the server itself, where a TCP probe only sees an open port."""
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


class SingleServer:
    """The pieces of one server, as children of `parent` named `<name>-<piece>`; Kubernetes objects
    are named `<instance>-<component>`."""

    def __init__(
        self,
        parent: pulumi.Resource,
        name: str,
        *,
        namespace: pulumi.Input[str],
        instance: str,
        component: str,
        port: int,
        password_specials: str,
    ) -> None:
        self._parent = parent
        self._name = name
        self._namespace = namespace
        self._instance = instance
        self.component = component
        self.port = port
        self.meta: Manifest = {
            "name": f"{instance}-{component}",
            "namespace": namespace,
            "labels": labels(instance, component),
        }
        self.match = selector(instance, component)
        # Generated once and kept in state. A server applies its password only when it initialises
        # an empty volume, so these inputs must never change.
        self.password = random.RandomPassword(
            f"{name}-password",
            length=32,
            special=True,
            override_special=password_specials,
            min_lower=1,
            min_upper=1,
            min_numeric=1,
            min_special=1,
            opts=self._child(),
        )

    def _child(self, **kw: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self._parent, **kw)

    def secret(self, string_data: dict[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-secret", metadata=self.meta, type="Opaque", string_data=string_data, opts=self._child()
        )

    def service_account(self) -> k8s.core.v1.ServiceAccount:
        """The server needs no Kubernetes API access: its own account, no token mounted."""
        return k8s.core.v1.ServiceAccount(
            f"{self._name}-serviceaccount", metadata=self.meta, automount_service_account_token=False,
            opts=self._child(),
        )  # fmt: skip

    def service(self) -> k8s.core.v1.Service:
        """A ClusterIP Service rather than a headless one: its address survives the pod being
        rescheduled, so clients holding a resolved address keep working. Sets `host`, its DNS name."""
        spec: Manifest = {
            "type": "ClusterIP",
            "selector": self.match,
            "ports": [{"name": self.component, "port": self.port, "targetPort": self.component, "protocol": "TCP"}],
        }
        service = k8s.core.v1.Service(f"{self._name}-service", metadata=self.meta, spec=spec, opts=self._child())
        self.host = pulumi.Output.concat(service.metadata.name, ".", self._namespace, ".svc.cluster.local")
        return service

    def container(self, *, image: str, res: Resources, probe_command: list[str], extra: Manifest) -> Manifest:
        """The server's container: hardened, its one port, startup/readiness/liveness from one
        command (the startup probe allows five minutes: initialisation or a large file to load)."""
        return {
            "name": self.component,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": self.component, "containerPort": self.port, "protocol": "TCP"}],
            "securityContext": container_security(read_only_root=True),
            "resources": resources(res),
            "startupProbe": exec_probe(probe_command, period=5, failures=60),
            "readinessProbe": exec_probe(probe_command, period=10, failures=3),
            "livenessProbe": exec_probe(probe_command, period=20, failures=6),
            **extra,
        }

    def stateful_set(
        self,
        *,
        service: k8s.core.v1.Service,
        account: k8s.core.v1.ServiceAccount,
        container: Manifest,
        volumes: list[Manifest],
        uid: int,
        gid: int,
        data_size: str,
        storage_class: str | None = None,
        pod_extra: Manifest | None = None,
    ) -> k8s.apps.v1.StatefulSet:
        spec: Manifest = {
            # By name, not the Service's Output: `spec.serviceName` replaces a StatefulSet.
            "serviceName": self.meta["name"],
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": self.match},
            # `pulumi destroy` leaves no volume behind; scaling to zero keeps the data.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": labels(self._instance, self.component)},
                "spec": {
                    "serviceAccountName": account.metadata.name,
                    "automountServiceAccountToken": False,
                    # Other Services' variables are noise here, and a Service named like the image
                    # (`postgres`, `redis`) would inject variables it reads (POSTGRES_PORT, ...).
                    "enableServiceLinks": False,
                    # fsGroup makes the data volume writable by the image's user.
                    "securityContext": pod_security(uid, gid, fs_group=gid),
                    **(pod_extra or {}),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels(self._instance, self.component)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": data_size}},
                        **({"storageClassName": storage_class} if storage_class else {}),
                    },
                }
            ],
        }
        return k8s.apps.v1.StatefulSet(
            f"{self._name}-statefulset",
            metadata=self.meta,
            spec=spec,
            # Claim templates are immutable, so the provider would replace the StatefulSet on a size or
            # class change, and the Delete retention policy would then delete the data volume with it.
            # Ignore such changes instead: grow the claim in place (`kubectl edit pvc`) if needed.
            opts=self._child(ignore_changes=["spec.volumeClaimTemplates"], depends_on=[service]),
        )

    def network_policy(self, components: list[str] | None = None) -> k8s.networking.v1.NetworkPolicy:
        """Only this Airflow instance's pods (of `components` only, when given), on the server's one port."""
        peer: Manifest = {"matchLabels": {"app.kubernetes.io/instance": self._instance}}
        if components is not None:
            peer["matchExpressions"] = [
                {"key": "app.kubernetes.io/component", "operator": "In", "values": sorted(components)}
            ]
        spec: Manifest = {
            "podSelector": {"matchLabels": self.match},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": peer}], "ports": [{"port": self.port, "protocol": "TCP"}]}],
        }
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-networkpolicy", metadata=self.meta, spec=spec, opts=self._child()
        )
