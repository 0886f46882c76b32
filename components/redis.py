"""An in-cluster Redis as Celery's broker: one password-protected StatefulSet with a small volume.

Meant for clusters without a managed Redis (the `local` stack). It runs the official image as its
`redis` user (999) with a read-only root filesystem, no capabilities and no service-account token,
reachable only from this instance's pods. The password lives in a Secret that also carries the
`redis.conf` holding `requirepass`, so it never appears in the process arguments (`ps`, `/proc`).
"""

from __future__ import annotations

import pulumi
from pydantic import Field

from components.endpoints import BrokerEndpoint
from components.settings import Resources, SettingsModel, resources_field
from components.single_server import SingleServer

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
        opts: pulumi.ResourceOptions | None = None,
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
        server = SingleServer(self, name, namespace=namespace, instance=instance, component=COMPONENT, port=PORT,
                              password_specials=PASSWORD_SPECIALS)  # fmt: skip
        password = server.password.result
        # `result` is a secret Output, so the rendered config stays one too.
        self.secret = server.secret({PASSWORD_KEY: password, CONFIG_KEY: password.apply(redis_conf)})
        account = server.service_account()
        self.service = server.service()
        container = server.container(
            image=settings.image,
            res=settings.resources,
            # Loading a large append-only file answers LOADING for a while; the startup probe allows it.
            probe_command=_PING,
            extra={
                # `args`, not `command`: the image's entrypoint still sets a private umask for the data files.
                "args": ["redis-server", f"{CONFIG_DIR}/{CONFIG_KEY}"],
                "env": [
                    {
                        "name": "REDISCLI_AUTH",
                        "valueFrom": {"secretKeyRef": {"name": self.secret.metadata.name, "key": PASSWORD_KEY}},
                    },
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_DIR},
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                ],
            },
        )
        self.stateful_set = server.stateful_set(
            service=self.service,
            account=account,
            container=container,
            volumes=[
                {
                    "name": "config",
                    "secret": {
                        "secretName": self.secret.metadata.name,
                        # Only the config file; owner root, group fsGroup (999), nobody else.
                        "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}],
                        "defaultMode": 0o440,
                    },
                },
            ],
            uid=UID,
            gid=GID,
            data_size=DATA_SIZE,
        )
        if network_policy:
            server.network_policy()

        self.endpoint = BrokerEndpoint(
            host=server.host,
            port=PORT,
            password=pulumi.Output.secret(password),
            # In-cluster traffic to a server that has no certificate.
            tls=False,
            depends_on=[self.stateful_set],
        )
        self.register_outputs({"host": server.host, "port": PORT, "secretName": self.secret.metadata.name})
