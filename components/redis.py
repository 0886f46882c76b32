"""An in-cluster Redis as Celery's broker: one password-protected StatefulSet with a small volume.

Meant for clusters without a managed Redis (the `local` stack). It runs the official image as its
`redis` user (999) with a read-only root filesystem, no capabilities and no service-account token,
reachable only from this instance's pods. The password lives in a Secret that also carries the
`redis.conf` holding `requirepass`, so it never appears in the process arguments (`ps`, `/proc`).
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import Field

from components.endpoints import BrokerEndpoint
from components.k8s import (
    allow_from_instance,
    child,
    container_security,
    labels,
    pod_security,
    private_service_account,
    resources,
    selector,
    single_port_service,
)
from components.settings import Resources, SettingsModel, resources_field

COMPONENT = "redis"
PORT = 6379
PASSWORD_KEY = "password"
CONFIG_KEY = "redis.conf"
CONFIG_DIR = "/etc/redis"
DATA_DIR = "/data"  # the image's VOLUME and WORKDIR
DATA_SIZE = "1Gi"  # the append-only file of a Celery queue stays small

# The official Debian-based image's `redis` user and group.
UID = 999
GID = 999

# Characters that need URL-encoding are kept on purpose, so every consumer is forced to encode;
# quotes, backslash, space and '#' are left out because they would change how redis.conf parses.
PASSWORD_SPECIALS = "!$%&*()-_=+[]{}<>:?@/"

# Greps for PONG because an error reply (NOAUTH, LOADING) does not fail every redis-cli version.
# The password comes from REDISCLI_AUTH, never from `-a` on the command line.
_PING = ["sh", "-c", f"redis-cli -h 127.0.0.1 -p {PORT} ping | grep -q PONG"]


def redis_conf(password: str) -> str:
    """The whole server configuration; `password` must hold no space, quote, backslash or '#'."""
    return "\n".join(
        [
            f"port {PORT}",
            # On even with a password: it only matters if requirepass were ever dropped.
            "protected-mode yes",
            f"requirepass {password}",
            # Queued Celery messages survive a restart of the pod.
            "appendonly yes",
            f"dir {DATA_DIR}",
            "",
        ]
    )


class InClusterBroker(SettingsModel):
    image: str = Field("redis:7.4.6", description="Redis image (official), exact tag.")
    resources: Resources = resources_field("100m", "256Mi", "512Mi")


class InClusterRedis(pulumi.ComponentResource):
    """Redis as a single-replica StatefulSet, with a Service, a Secret and a NetworkPolicy.

    Attributes:
        endpoint: how Celery reaches it (password a secret Output; usable once the StatefulSet is ready).
        service, stateful_set, secret: the Kubernetes objects, for callers that need their names.
    """

    endpoint: BrokerEndpoint

    def __init__(
        self,
        name: str,
        *,
        namespace: pulumi.Input[str],
        instance: str,
        settings: InClusterBroker,
        network_policy: bool = True,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        """Create the broker.

        Args:
            name: Pulumi name prefix of the children (`<name>-password`, `<name>-statefulset`, ...).
            namespace: namespace to create every object in.
            instance: the Airflow instance name; objects are named `<instance>-redis` and only pods
                labelled `app.kubernetes.io/instance: <instance>` may connect.
            settings: image, requests and limits.
            network_policy: create the NetworkPolicy that admits only this instance's pods.
            opts: options of the component; pass the Kubernetes provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:incluster:Redis", name, None, opts)
        obj_name = f"{instance}-{COMPONENT}"
        meta: dict[str, Any] = {"name": obj_name, "namespace": namespace, "labels": labels(instance, COMPONENT)}
        match = selector(instance, COMPONENT)

        password = random.RandomPassword(
            f"{name}-password",
            length=32,
            special=True,
            override_special=PASSWORD_SPECIALS,
            min_lower=1,
            min_upper=1,
            min_numeric=1,
            min_special=1,
            opts=child(self),
        )

        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=meta,
            type="Opaque",
            # `result` is a secret Output, so the rendered config stays one too.
            string_data={PASSWORD_KEY: password.result, CONFIG_KEY: password.result.apply(redis_conf)},
            opts=child(self),
        )

        # The server needs no Kubernetes API access: its own account, no token mounted.
        account = private_service_account(self, name, meta)

        self.service = single_port_service(self, name, meta, match, "redis", PORT)

        container: dict[str, Any] = {
            "name": "redis",
            "image": settings.image,
            "imagePullPolicy": "IfNotPresent",
            # `args`, not `command`: the image's entrypoint still sets a private umask for the data files.
            "args": ["redis-server", f"{CONFIG_DIR}/{CONFIG_KEY}"],
            "ports": [{"name": "redis", "containerPort": PORT, "protocol": "TCP"}],
            "env": [
                {
                    "name": "REDISCLI_AUTH",
                    "valueFrom": {"secretKeyRef": {"name": self.secret.metadata.name, "key": PASSWORD_KEY}},
                },
            ],
            "securityContext": container_security(read_only_root=True),
            "resources": resources(settings.resources),
            "volumeMounts": [
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            ],
            # Loading a large append-only file answers LOADING for a while; the startup probe allows it.
            "startupProbe": _exec_probe(_PING, period=5, failures=60),
            "readinessProbe": _exec_probe(_PING, period=10, failures=3),
            "livenessProbe": _exec_probe(_PING, period=20, failures=6),
        }

        self.stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=meta,
            spec={
                "serviceName": self.service.metadata.name,
                "replicas": 1,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": match},
                # `pulumi destroy` leaves no volume behind; scaling to zero keeps the queue.
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "template": {
                    "metadata": {"labels": labels(instance, COMPONENT)},
                    "spec": {
                        "serviceAccountName": account.metadata.name,
                        "automountServiceAccountToken": False,
                        # Other Services' variables are noise here (a Service named `redis` would
                        # inject REDIS_PORT=tcp://...).
                        "enableServiceLinks": False,
                        # fsGroup makes the data volume writable and the config readable by group 999.
                        "securityContext": pod_security(UID, GID, fs_group=GID),
                        "containers": [container],
                        "volumes": [
                            {
                                "name": "config",
                                "secret": {
                                    "secretName": self.secret.metadata.name,
                                    # Only the config file; owner root, group fsGroup, nobody else.
                                    "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}],
                                    "defaultMode": 0o440,
                                },
                            },
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": labels(instance, COMPONENT)},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": DATA_SIZE}},
                        },
                    }
                ],
            },
            # Claim templates are immutable: a change would make the provider replace the StatefulSet
            # and the Delete retention policy would take the volume (and queued messages) with it.
            opts=child(self, ignore_changes=["spec.volumeClaimTemplates"]),
        )

        if network_policy:
            allow_from_instance(self, name, meta, match, instance, PORT)

        host = pulumi.Output.concat(self.service.metadata.name, ".", namespace, ".svc.cluster.local")
        self.endpoint = BrokerEndpoint(
            host=host,
            port=PORT,
            password=pulumi.Output.secret(password.result),
            # In-cluster traffic to a server that has no certificate.
            tls=False,
            depends_on=[self.stateful_set],
        )
        self.register_outputs({"host": host, "port": PORT, "secretName": self.secret.metadata.name})


def _exec_probe(command: list[str], *, period: int, failures: int) -> dict[str, Any]:
    """An exec probe: `redis-cli ping` checks the server answers, where a TCP probe only sees an open port."""
    return {
        "exec": {"command": command},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }
