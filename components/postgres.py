"""An in-cluster PostgreSQL for Airflow's metadata database: one StatefulSet with its own volume.

Meant for clusters without a managed database (the `local` stack). It runs the official image
hardened like every other pod here: non-root (the image's `postgres` user, 999), read-only root
filesystem, no capabilities, no service-account token, reachable only from this instance's pods.
The password is generated once by pulumi-random, kept secret end to end and handed to the server
by `secretKeyRef` only.
"""

from __future__ import annotations

import pulumi
from pydantic import Field

from components.endpoints import DatabaseEndpoint, DatabaseLimit
from components.settings import Quantity, Resources, SettingsModel, resources_field
from components.single_server import SingleServer

COMPONENT = "postgresql"
PORT = 5432
DATABASE = "airflow"
USER = "airflow"
PASSWORD_KEY = "password"

# The official Debian-based image's `postgres` user and group (the Alpine images use 70 instead).
UID = 999
GID = 999

# PGDATA is a subdirectory of the volume: initdb refuses a non-empty directory, and a fresh volume's
# root may hold `lost+found`. The mount is the `VOLUME` of images up to 17 (so the runtime adds no
# anonymous volume over it); with 18+ an explicit PGDATA also skips the image's check for data in
# the pre-18 layout (docker-library/postgres#1259). A major-version change of the image still needs
# pg_upgrade: the new server refuses the old data directory (it does not overwrite it).
DATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{DATA_MOUNT}/pgdata"

# Connects over TCP on purpose: while the image initialises the database it runs a temporary
# server on the Unix socket only, so the pod is not ready until the real server listens.
_PG_ISREADY = ["pg_isready", "--host=127.0.0.1", f"--port={PORT}", f"--username={USER}", f"--dbname={DATABASE}"]

# PostgreSQL's defaults for max_connections and superuser_reserved_connections
# (https://www.postgresql.org/docs/17/runtime-config-connection.html); the image changes neither.
DEFAULT_MAX_CONNECTIONS = 100
SUPERUSER_RESERVED = 3

# Characters that need URL-encoding are kept on purpose, so every consumer is forced to encode.
PASSWORD_SPECIALS = "!#$%&*()-_=+[]{}<>:?@/"


class InClusterDatabase(SettingsModel):
    image: str = Field("postgres:17.6", description="PostgreSQL image (official), exact tag.")
    storage_size: Quantity = Field("8Gi", description="Data volume size.")
    storage_class: str | None = Field(None, description="StorageClass of the data volume; unset: cluster default.")
    resources: Resources = resources_field("250m", "512Mi", "1Gi")
    max_connections: int | None = Field(
        None,
        ge=25,
        le=5000,
        description="The server's max_connections; unset: PostgreSQL's default 100, raised to Airflow's peak "
        'connections plus the 3 superuser-reserved when that is more (README, "Database connection budget").',
    )

    def connection_limit(self, peak: int | None = None) -> DatabaseLimit:
        """What the server allows: the setting, else the default raised to `peak` (Airflow's)."""
        n = self.effective_max_connections(peak) or DEFAULT_MAX_CONNECTIONS
        how = "" if self.max_connections else " (unset: the default, or Airflow's peak when higher)"
        return DatabaseLimit(
            max_connections=n,
            reserved=SUPERUSER_RESERVED,
            source=f"in-cluster PostgreSQL max_connections {n}{how}, less {SUPERUSER_RESERVED} superuser-reserved",
            larger="a higher database.inCluster.maxConnections (and memory)",
        )

    def effective_max_connections(self, peak: int | None) -> int | None:
        """The max_connections to start the server with; None: PostgreSQL's default (so a stack that
        fits it renders the same StatefulSet as before the budget existed)."""
        if self.max_connections is not None:
            return self.max_connections
        if peak is not None and peak + SUPERUSER_RESERVED > DEFAULT_MAX_CONNECTIONS:
            return min(peak + SUPERUSER_RESERVED, 5000)
        return None


class InClusterPostgres(pulumi.ComponentResource):
    """PostgreSQL as a single-replica StatefulSet, with a Service, a Secret and a NetworkPolicy.

    Attributes:
        endpoint: how Airflow reaches it (password a secret Output; usable once the StatefulSet is ready).
        service, stateful_set, secret: the Kubernetes objects, for callers that need their names.
    """

    endpoint: DatabaseEndpoint

    def __init__(
        self,
        name: str,
        *,
        namespace: pulumi.Input[str],
        instance: str,
        settings: InClusterDatabase,
        network_policy: bool = True,
        max_connections: int | None = None,
        clients: list[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the database.

        Args:
            name: Pulumi name prefix of the children (`<name>-password`, `<name>-statefulset`, ...).
            namespace: namespace to create every object in.
            instance: the Airflow instance name; objects are named `<instance>-postgresql` and only pods
                labelled `app.kubernetes.io/instance: <instance>` may connect.
            settings: image, volume size and class, requests and limits.
            network_policy: create the NetworkPolicy that admits only this instance's pods.
            max_connections: the server's max_connections (settings.effective_max_connections); None:
                PostgreSQL's default.
            clients: the components (`app.kubernetes.io/component`) whose pods it admits, e.g. PgBouncer
                and the Jobs that bypass it; None: every pod of the instance.
            opts: options of the component; pass the Kubernetes provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:incluster:Postgres", name, None, opts)
        server = SingleServer(self, name, namespace=namespace, instance=instance, component=COMPONENT, port=PORT,
                              password_specials=PASSWORD_SPECIALS)  # fmt: skip
        # The image applies POSTGRES_PASSWORD only when it initialises an empty volume.
        self.secret = server.secret({PASSWORD_KEY: server.password.result})
        account = server.service_account()
        self.service = server.service()
        container = server.container(
            image=settings.image,
            res=settings.resources,
            probe_command=_PG_ISREADY,
            extra={
                # The image's entrypoint passes arguments that start with '-' on to `postgres`; only
                # when set, so a stack without it renders the same StatefulSet as before.
                **({"args": ["-c", f"max_connections={max_connections}"]} if max_connections else {}),
                "env": [
                    {"name": "POSTGRES_USER", "value": USER},
                    {"name": "POSTGRES_DB", "value": DATABASE},
                    {
                        "name": "POSTGRES_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": self.secret.metadata.name, "key": PASSWORD_KEY}},
                    },
                    {"name": "PGDATA", "value": PGDATA},
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_MOUNT},
                    # The read-only root leaves only these writable: the socket and lock file, and scratch.
                    {"name": "run", "mountPath": "/var/run/postgresql"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "lifecycle": {
                    # Kubernetes stops containers with SIGTERM, which is PostgreSQL's "smart" shutdown: it
                    # waits for every client to disconnect, and Airflow's pools never do, so the pod would be
                    # killed at the grace period and recover on restart. A fast shutdown ends sessions cleanly
                    # (the image sets STOPSIGNAL SIGINT for the same reason, which Kubernetes ignores).
                    "preStop": {"exec": {"command": ["pg_ctl", "stop", "--mode=fast", "--wait", "--timeout=60"]}},
                },
            },
        )
        self.stateful_set = server.stateful_set(
            service=self.service,
            account=account,
            container=container,
            volumes=[
                {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
            uid=UID,
            gid=GID,
            data_size=settings.storage_size,
            storage_class=settings.storage_class,
            pod_extra={"terminationGracePeriodSeconds": 90},
        )
        if network_policy:
            server.network_policy(clients)

        self.endpoint = DatabaseEndpoint(
            host=server.host,
            port=PORT,
            name=DATABASE,
            user=USER,
            password=pulumi.Output.secret(server.password.result),
            # Traffic never leaves the cluster network and this server has no certificate to offer.
            sslmode="disable",
            depends_on=[self.stateful_set],
        )
        self.register_outputs({"host": server.host, "port": PORT, "secretName": self.secret.metadata.name})
