"""An in-cluster PostgreSQL for Airflow's metadata database: one StatefulSet with its own volume.

Meant for clusters without a managed database (the `local` stack). It runs the official image
hardened like every other pod here: non-root (the image's `postgres` user, 999), read-only root
filesystem, no capabilities, no service-account token, reachable only from this instance's pods.
The password is generated once by pulumi-random, kept secret end to end and handed to the server
by `secretKeyRef` only.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import Field

from components.endpoints import DatabaseEndpoint
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
from components.settings import Quantity, Resources, SettingsModel, resources_field

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

# Characters that need URL-encoding are kept on purpose, so every consumer is forced to encode.
PASSWORD_SPECIALS = "!#$%&*()-_=+[]{}<>:?@/"


class InClusterDatabase(SettingsModel):
    image: str = Field("postgres:17.6", description="PostgreSQL image (official), exact tag.")
    storage_size: Quantity = Field("8Gi", description="Data volume size.")
    storage_class: Optional[str] = Field(None, description="StorageClass of the data volume; unset: cluster default.")
    resources: Resources = resources_field("250m", "512Mi", "1Gi")


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
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        """Create the database.

        Args:
            name: Pulumi name prefix of the children (`<name>-password`, `<name>-statefulset`, ...).
            namespace: namespace to create every object in.
            instance: the Airflow instance name; objects are named `<instance>-postgresql` and only pods
                labelled `app.kubernetes.io/instance: <instance>` may connect.
            settings: image, volume size and class, requests and limits.
            network_policy: create the NetworkPolicy that admits only this instance's pods.
            opts: options of the component; pass the Kubernetes provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:incluster:Postgres", name, None, opts)
        obj_name = f"{instance}-{COMPONENT}"
        meta: dict[str, Any] = {"name": obj_name, "namespace": namespace, "labels": labels(instance, COMPONENT)}
        match = selector(instance, COMPONENT)

        # The image applies POSTGRES_PASSWORD only when it initialises an empty volume: the inputs
        # below must never change, or the new password would not match the existing database.
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
            string_data={PASSWORD_KEY: password.result},
            opts=child(self),
        )

        # The server needs no Kubernetes API access: its own account, no token mounted.
        account = private_service_account(self, name, meta)

        self.service = single_port_service(self, name, meta, match, "postgresql", PORT)

        container: dict[str, Any] = {
            "name": "postgresql",
            "image": settings.image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "postgresql", "containerPort": PORT, "protocol": "TCP"}],
            "env": [
                {"name": "POSTGRES_USER", "value": USER},
                {"name": "POSTGRES_DB", "value": DATABASE},
                {
                    "name": "POSTGRES_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": self.secret.metadata.name, "key": PASSWORD_KEY}},
                },
                {"name": "PGDATA", "value": PGDATA},
            ],
            "securityContext": container_security(read_only_root=True),
            "resources": resources(settings.resources),
            "volumeMounts": [
                {"name": "data", "mountPath": DATA_MOUNT},
                # The read-only root leaves only these writable: the socket and lock file, and scratch.
                {"name": "run", "mountPath": "/var/run/postgresql"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            # initdb on slow storage can take minutes; the startup probe allows five.
            "startupProbe": _exec_probe(_PG_ISREADY, period=5, failures=60),
            "readinessProbe": _exec_probe(_PG_ISREADY, period=10, failures=3),
            "livenessProbe": _exec_probe(_PG_ISREADY, period=20, failures=6),
            "lifecycle": {
                # Kubernetes stops containers with SIGTERM, which is PostgreSQL's "smart" shutdown: it
                # waits for every client to disconnect, and Airflow's pools never do, so the pod would be
                # killed at the grace period and recover on restart. A fast shutdown ends sessions cleanly
                # (the image sets STOPSIGNAL SIGINT for the same reason, which Kubernetes ignores).
                "preStop": {"exec": {"command": ["pg_ctl", "stop", "--mode=fast", "--wait", "--timeout=60"]}},
            },
        }

        self.stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=meta,
            spec={
                "serviceName": self.service.metadata.name,
                "replicas": 1,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": match},
                # `pulumi destroy` leaves no volume behind; scaling to zero keeps the data.
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "template": {
                    "metadata": {"labels": labels(instance, COMPONENT)},
                    "spec": {
                        "serviceAccountName": account.metadata.name,
                        "automountServiceAccountToken": False,
                        # Other Services' variables are noise here (and a Service named `postgres`
                        # would inject POSTGRES_PORT, which the image reads).
                        "enableServiceLinks": False,
                        "securityContext": pod_security(UID, GID, fs_group=GID),
                        "terminationGracePeriodSeconds": 90,
                        "containers": [container],
                        "volumes": [
                            {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": labels(instance, COMPONENT)},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": settings.storage_size}},
                            **({"storageClassName": settings.storage_class} if settings.storage_class else {}),
                        },
                    }
                ],
            },
            # Claim templates are immutable, so the provider would replace the StatefulSet on a size or
            # class change, and the Delete retention policy would then delete the database's volume.
            # Ignore such changes instead: grow the claim in place (`kubectl edit pvc`) if needed.
            opts=child(self, ignore_changes=["spec.volumeClaimTemplates"]),
        )

        if network_policy:
            allow_from_instance(self, name, meta, match, instance, PORT)

        host = pulumi.Output.concat(self.service.metadata.name, ".", namespace, ".svc.cluster.local")
        self.endpoint = DatabaseEndpoint(
            host=host,
            port=PORT,
            name=DATABASE,
            user=USER,
            password=pulumi.Output.secret(password.result),
            # Traffic never leaves the cluster network and this server has no certificate to offer.
            sslmode="disable",
            depends_on=[self.stateful_set],
        )
        self.register_outputs({"host": host, "port": PORT, "secretName": self.secret.metadata.name})


def _exec_probe(command: list[str], *, period: int, failures: int) -> dict[str, Any]:
    """An exec probe: `pg_isready` asks the server itself, where a TCP probe only sees an open port."""
    return {
        "exec": {"command": command},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }
