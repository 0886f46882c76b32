"""Airflow's generated secrets and the Kubernetes Secret that carries them to every pod.

Each value is generated once by pulumi-random and kept in state, so it is the same across deploys
(a JWT secret or fernet key that changed on every `pulumi up` would break running tasks and stored
connections). Everything stays a Pulumi secret end to end; pods get it by `secretKeyRef` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.airflow.roster import (
    ADMIN_PASSWORD,
    API_SECRET_KEY,
    BROKER_URL,
    FERNET_KEY,
    JWT_SECRET,
    RESULT_BACKEND,
    SIMPLE_AUTH_PASSWORDS,
    SQL_ALCHEMY_CONN,
)
from components.endpoints import BrokerEndpoint, DatabaseEndpoint
from components.k8s import labels


def _q(value: str) -> str:
    # Percent-encode everything but unreserved characters: '@', ':', '/' would break the URL and
    # Airflow expands '$VAR' inside AIRFLOW__* values, so '$' must become '%24'.
    return quote(value, safe="")


def database_url(driver: str, user: str, password: str, host: str, port: int, name: str, sslmode: str) -> str:
    """A SQLAlchemy URL with user and password URL-encoded."""
    return f"{driver}://{_q(user)}:{_q(password)}@{host}:{port}/{_q(name)}?sslmode={sslmode}"


def broker_url(password: str | None, host: str, port: int, db: int, tls: bool, cert_reqs: str) -> str:
    """A kombu Redis URL. The password goes after an empty user name (`redis://:pw@`): `redis://pw@`
    would be read as a user name. `rediss://` needs `ssl_cert_reqs`, or kombu skips the check."""
    scheme = "rediss" if tls else "redis"
    auth = f":{_q(password)}@" if password else ""
    query = f"?ssl_cert_reqs={cert_reqs}" if tls else ""
    return f"{scheme}://{auth}{host}:{port}/{db}{query}"


def fernet_from_base64(std_b64: str) -> str:
    """RandomBytes.base64 is the standard alphabet; Fernet wants URL-safe base64."""
    return std_b64.replace("+", "-").replace("/", "_")


class AirflowSecrets(pulumi.ComponentResource):
    """Generated Airflow secrets plus connection URLs, as one Kubernetes Secret.

    Attributes:
        secret_name: the Secret's name, for `secretKeyRef`s (its keys are roster.py's constants).
        connection_keys: the keys holding `airflow.connections`, as AIRFLOW_CONN_<ID>.
        values: every key's value, a secret Output each.
        admin_password: the generated admin password, a secret Output (the `adminPassword` output).
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: pulumi.Input[str],
        instance: str,
        database: DatabaseEndpoint,
        broker: BrokerEndpoint | None,
        admin_user: str,
        connections: Mapping[str, pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Generate the secrets and write the Secret.

        Args:
            name: Pulumi name prefix of the children (`<name>-fernet-key`, `<name>-secret`, ...); the
                generated values are keyed by it in state, so it must never change.
            namespace: namespace of the Secret.
            instance: the Airflow instance; the Secret is `<instance>-secrets`.
            database: the metadata DB; its URL (and Celery's result backend) carry its credentials.
            broker: the Celery broker, or None without the CeleryExecutor (no broker URL then).
            admin_user: the admin's user name, for SimpleAuthManager's passwords file.
            connections: Airflow connection id -> URI or JSON, each a secret Output.
            opts: options of the component (its parent carries the Kubernetes provider).
        """
        super().__init__("airflow-k8s:kubernetes:AirflowSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        fernet = random.RandomBytes(f"{name}-fernet-key", length=32, opts=child)
        jwt = random.RandomPassword(f"{name}-jwt-secret", length=64, special=False, opts=child)
        api_key = random.RandomPassword(f"{name}-api-secret-key", length=64, special=False, opts=child)
        # Symbols that survive a shell, a form field and JSON without escaping.
        admin = random.RandomPassword(
            f"{name}-admin-password", length=24, special=True, override_special="-_.!*", min_special=2, opts=child
        )
        self.admin_password: pulumi.Output[str] = pulumi.Output.secret(admin.result)

        db = database
        sql_conn = pulumi.Output.all(db.user, db.password, db.host, db.port, db.name).apply(
            lambda a: database_url("postgresql+psycopg2", a[0], a[1], a[2], int(a[3]), a[4], db.sslmode)
        )
        result_backend = pulumi.Output.all(db.user, db.password, db.host, db.port, db.name).apply(
            lambda a: database_url("db+postgresql", a[0], a[1], a[2], int(a[3]), a[4], db.sslmode)
        )
        data: dict[str, pulumi.Input[str]] = {
            FERNET_KEY: fernet.base64.apply(fernet_from_base64),
            JWT_SECRET: jwt.result,
            API_SECRET_KEY: api_key.result,
            SQL_ALCHEMY_CONN: sql_conn,
            RESULT_BACKEND: result_backend,
            ADMIN_PASSWORD: admin.result,
            SIMPLE_AUTH_PASSWORDS: admin.result.apply(lambda p: json.dumps({admin_user: p})),
        }
        if broker is not None:
            b = broker
            data[BROKER_URL] = pulumi.Output.all(b.password, b.host, b.port).apply(
                lambda a: broker_url(a[0], a[1], int(a[2]), b.db, b.tls, b.cert_reqs)
            )
        for conn_id, uri in connections.items():
            data[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri

        self.secret_name = f"{instance}-secrets"
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": self.secret_name, "namespace": namespace, "labels": labels(instance, "secrets")},
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
            opts=child,
        )
        self.connection_keys = [f"AIRFLOW_CONN_{c.upper()}" for c in connections]
        # Key -> value (secret Outputs), for the checksums that roll the pods reading a changed key.
        self.values: dict[str, pulumi.Output[str]] = {
            k: pulumi.Output.secret(pulumi.Output.from_input(v)) for k, v in data.items()
        }
        self.register_outputs({"secret_name": self.secret_name, "admin_password": self.admin_password})
