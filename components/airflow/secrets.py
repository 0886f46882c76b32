"""Airflow's generated secrets and the Kubernetes Secret that carries them to every pod.

Each value is generated once by pulumi-random and kept in state, so it is the same across deploys
(a JWT secret or fernet key that changed on every `pulumi up` would break running tasks and stored
connections). Everything stays a Pulumi secret end to end; pods get it by `secretKeyRef` only.

The metadata DB's URLs are here too, in the two forms its drivers read TLS settings in: libpq's
(`sslmode`, `sslrootcert`: psycopg2 for Airflow, psycopg for Celery's result backend) and asyncpg's
(Airflow's async engine). So is the CA bundle those URLs point at when the stack ships one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.airflow.env import DB_CA_FILE
from components.airflow.roster import (
    ADMIN_PASSWORD,
    API_SECRET_KEY,
    BROKER_URL,
    FERNET_KEY,
    FLOWER_BASIC_AUTH,
    JWT_SECRET,
    RESULT_BACKEND,
    SIMPLE_AUTH_PASSWORDS,
    SQL_ALCHEMY_CONN,
    SQL_ALCHEMY_CONN_ASYNC,
    SQL_ALCHEMY_CONN_DIRECT,
    SSO_CLIENT_SECRET,
)
from components.endpoints import BrokerEndpoint, CaBundle, DatabaseEndpoint
from components.k8s import labels

# The pod volume that brings a shipped CA bundle to env.DB_CA_DIR.
DB_CA_VOLUME = "db-ca"


def _q(value: str) -> str:
    # Percent-encode everything but unreserved characters: '@', ':', '/' would break the URL and
    # Airflow expands '$VAR' inside AIRFLOW__* values, so '$' must become '%24'.
    return quote(value, safe="")


def _netloc(host: str, port: int) -> str:
    # An IPv6 address goes in brackets (RFC 3986), or its colons would read as a port.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def database_url(
    driver: str, user: str, password: str, host: str, port: int, name: str, sslmode: str, sslrootcert: str | None = None
) -> str:
    """A SQLAlchemy URL for a libpq-based driver, user and password URL-encoded; TLS as libpq's
    `sslmode` and, when the server is verified, `sslrootcert` (the CA file inside the container)."""
    query = {"sslmode": sslmode, **({"sslrootcert": sslrootcert} if sslrootcert else {})}
    tls = urlencode(query, safe="/", quote_via=quote)
    return f"{driver}://{_q(user)}:{_q(password)}@{_netloc(host, port)}/{_q(name)}?{tls}"


def async_database_url(
    user: str, password: str, host: str, port: int, name: str, sslmode: str, sslrootcert: str | None = None
) -> str:
    """The same database as a `postgresql+asyncpg` URL, for `[database] sql_alchemy_conn_async`.

    SQLAlchemy hands the URL's query to `asyncpg.connect()` as keyword arguments, and asyncpg 0.32
    has neither `sslmode` nor `sslrootcert` among them (TypeError). The mode goes in its `ssl=`
    argument, which takes the same names; the CA file in its `dsn=` argument, a libpq-style URI
    that asyncpg merges with the keyword arguments (asyncpg/connect_utils.py,
    `_parse_connect_dsn_and_args`). The file is given explicitly because asyncpg, unlike libpq's
    `sslrootcert=system`, never falls back to a system trust store.
    """
    query = {"ssl": sslmode}
    if sslrootcert:
        query["dsn"] = "postgresql://?" + urlencode({"sslrootcert": sslrootcert}, safe="/", quote_via=quote)
    return (
        f"postgresql+asyncpg://{_q(user)}:{_q(password)}@{_netloc(host, port)}/{_q(name)}?"
        f"{urlencode(query, safe='', quote_via=quote)}"
    )


@dataclass(frozen=True)
class DatabaseCa:
    """Where a verified connection's CA bundle is inside Airflow containers.

    Attributes:
        file: the file the URLs' `sslrootcert` names.
        volume: the pod volume (named DB_CA_VOLUME) that puts it at DB_CA_DIR, mounted read-only;
            None when the file is already in the image.
    """

    file: str
    volume: dict[str, Any] | None = None


def broker_url(password: str | None, host: str, port: int, db: int, tls: bool, cert_reqs: str) -> str:
    """A kombu Redis URL. The password goes after an empty user name (`redis://:pw@`): `redis://pw@`
    would be read as a user name. `rediss://` needs `ssl_cert_reqs`, or kombu skips the check."""
    scheme = "rediss" if tls else "redis"
    auth = f":{_q(password)}@" if password else ""
    query = f"?ssl_cert_reqs={cert_reqs}" if tls else ""
    return f"{scheme}://{auth}{_netloc(host, port)}/{db}{query}"


def fernet_from_base64(std_b64: str) -> str:
    """RandomBytes.base64 is the standard alphabet; Fernet wants URL-safe base64."""
    return std_b64.replace("+", "-").replace("/", "_")


class AirflowSecrets(pulumi.ComponentResource):
    """Generated Airflow secrets plus connection URLs, as a Kubernetes Secret, and the broker URL as
    a second one (`<instance>-broker`) so that what reads only the database never waits for the broker.

    Attributes:
        secret_name: the main Secret's name, for `secretKeyRef`s (its keys are roster.py's constants).
        secret_names: key -> the Secret holding it where that is not `secret_name` (the broker URL).
        database_resources: what a pod reading the database needs first (the main Secret, and the
            CA bundle's ConfigMap when the stack ships one).
        connection_keys: the keys holding `airflow.connections`, as AIRFLOW_CONN_<ID>, and
            `airflow.secretVariables`, as AIRFLOW_VAR_<NAME> (roster.CONNECTIONS grants both).
        values: every key's value, a secret Output each.
        admin_password: the generated admin password, a secret Output (the `adminPassword` output).
        flower_password: Flower's generated basic-auth password, a secret Output, when Flower runs.
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
        secret_variables: Mapping[str, pulumi.Output[str]] | None = None,
        sso_client_secret: pulumi.Output[str] | None = None,
        flower_user: str | None = None,
        direct_database: DatabaseEndpoint | None = None,
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
            secret_variables: Airflow Variable name -> value, each a secret Output.
            sso_client_secret: the SSO provider's client secret (a secret Output), if SSO is on.
            flower_user: Flower's basic-auth user, if Flower runs (its password is generated).
            direct_database: the server itself when `database` is PgBouncer in front of it: its URL is
                the Jobs' (SQL_ALCHEMY_CONN_DIRECT), and its CA bundle the one shipped.
            opts: options of the component (its parent carries the Kubernetes provider).
        """
        super().__init__("airflow-k8s:kubernetes:AirflowSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._ca_configmap: list[pulumi.Resource] = []

        fernet = random.RandomBytes(f"{name}-fernet-key", length=32, opts=child)
        jwt = random.RandomPassword(f"{name}-jwt-secret", length=64, special=False, opts=child)
        api_key = random.RandomPassword(f"{name}-api-secret-key", length=64, special=False, opts=child)
        # Symbols that survive a shell, a form field and JSON without escaping.
        admin = random.RandomPassword(
            f"{name}-admin-password", length=24, special=True, override_special="-_.!*", min_special=2, opts=child
        )
        self.admin_password: pulumi.Output[str] = pulumi.Output.secret(admin.result)

        db = database
        # The CA bundle is the server's: behind PgBouncer the pooled URLs carry no TLS settings.
        self.database_ca = self._database_ca(name, namespace, instance, (direct_database or db).ca, child)
        # What a pod that reads the database needs to exist: the Secret, and a shipped CA's ConfigMap.
        self.database_resources: list[pulumi.Resource] = [*self._ca_configmap]
        ca_file = self.database_ca.file if self.database_ca else None
        # The URLs `database` makes: behind PgBouncer they name no CA (PgBouncer checks the server).
        pooled_ca = ca_file if direct_database is None else None
        login = pulumi.Output.all(db.user, db.password, db.host, db.port, db.name)
        sql_conn = login.apply(
            lambda a: database_url("postgresql+psycopg2", a[0], a[1], a[2], int(a[3]), a[4], db.sslmode, pooled_ca)
        )
        # Celery's database backend: SQLAlchemy 2.1 resolves `postgresql://` to psycopg (3), libpq too.
        result_backend = login.apply(
            lambda a: database_url("db+postgresql", a[0], a[1], a[2], int(a[3]), a[4], db.sslmode, pooled_ca)
        )
        sql_conn_async = login.apply(
            lambda a: async_database_url(a[0], a[1], a[2], int(a[3]), a[4], db.sslmode, pooled_ca)
        )
        data: dict[str, pulumi.Input[str]] = {
            FERNET_KEY: fernet.base64.apply(fernet_from_base64),
            JWT_SECRET: jwt.result,
            API_SECRET_KEY: api_key.result,
            SQL_ALCHEMY_CONN: sql_conn,
            SQL_ALCHEMY_CONN_ASYNC: sql_conn_async,
            RESULT_BACKEND: result_backend,
            ADMIN_PASSWORD: admin.result,
            SIMPLE_AUTH_PASSWORDS: admin.result.apply(lambda p: json.dumps({admin_user: p})),
        }
        if direct_database is not None:
            d = direct_database
            data[SQL_ALCHEMY_CONN_DIRECT] = pulumi.Output.all(d.user, d.password, d.host, d.port, d.name).apply(
                lambda a: database_url("postgresql+psycopg2", a[0], a[1], a[2], int(a[3]), a[4], d.sslmode, ca_file)
            )
        if sso_client_secret is not None:
            data[SSO_CLIENT_SECRET] = sso_client_secret
        self.flower_password: pulumi.Output[str] | None = None
        if flower_user is not None:
            # No symbols: Flower splits its basic-auth option at ',' and a credential at ':'.
            flower = random.RandomPassword(f"{name}-flower-password", length=32, special=False, opts=child)
            self.flower_password = pulumi.Output.secret(flower.result)
            data[FLOWER_BASIC_AUTH] = flower.result.apply(lambda p: f"{flower_user}:{p}")
        for conn_id, uri in connections.items():
            data[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
        # A task's Variable.get asks the environment-variables backend (AIRFLOW_VAR_<NAME>) before the
        # execution API (airflow/sdk/execution_time/secrets/__init__.py, DEFAULT_SECRETS_SEARCH_PATH_WORKERS).
        variable_keys = [f"AIRFLOW_VAR_{name.upper()}" for name in secret_variables or {}]
        for name, value in (secret_variables or {}).items():
            data[f"AIRFLOW_VAR_{name.upper()}"] = value

        self.secret_name = f"{instance}-secrets"
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": self.secret_name, "namespace": namespace, "labels": labels(instance, "secrets")},
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
            opts=child,
        )
        self.database_resources.append(self.secret)
        # Key -> the Secret holding it, where that is not `secret_name`.
        self.secret_names: dict[str, str] = {}
        broker_data: dict[str, pulumi.Input[str]] = {}
        if broker is not None:
            # A Secret of its own: the migration reads the main one, and must not wait for a broker
            # that takes longer to create than the database.
            b = broker
            broker_data[BROKER_URL] = pulumi.Output.all(b.password, b.host, b.port).apply(
                lambda a: broker_url(a[0], a[1], int(a[2]), b.db, b.tls, b.cert_reqs)
            )
            self.secret_names[BROKER_URL] = f"{instance}-broker"
            k8s.core.v1.Secret(
                f"{name}-broker",
                metadata={"name": f"{instance}-broker", "namespace": namespace, "labels": labels(instance, "broker")},
                type="Opaque",
                string_data={k: pulumi.Output.secret(v) for k, v in broker_data.items()},
                opts=child,
            )
        self.connection_keys = [f"AIRFLOW_CONN_{c.upper()}" for c in connections] + variable_keys
        # Key -> value (secret Outputs), for the checksums that roll the pods reading a changed key.
        self.values: dict[str, pulumi.Output[str]] = {
            k: pulumi.Output.secret(pulumi.Output.from_input(v)) for k, v in {**data, **broker_data}.items()
        }
        self.register_outputs({"secret_name": self.secret_name, "admin_password": self.admin_password})

    def _database_ca(
        self, name: str, namespace: pulumi.Input[str], instance: str, ca: CaBundle | None, child: pulumi.ResourceOptions
    ) -> DatabaseCa | None:
        """The CA bundle's place in the containers; PEM text becomes a ConfigMap (certificates are
        public: no Secret needed), an existing ConfigMap or Secret is mounted as it is."""
        if ca is None:
            return None
        if ca.image_file:
            return DatabaseCa(ca.image_file)
        items = [{"key": ca.key, "path": DB_CA_FILE.rsplit("/", 1)[1]}]
        if ca.secret:
            return DatabaseCa(DB_CA_FILE, {"name": DB_CA_VOLUME, "secret": {"secretName": ca.secret, "items": items}})
        source = ca.config_map
        if ca.pem:
            configmap = k8s.core.v1.ConfigMap(
                f"{name}-db-ca",
                metadata={"name": f"{instance}-db-ca", "namespace": namespace, "labels": labels(instance, "db-ca")},
                data={ca.key: ca.pem},
                opts=child,
            )
            source = configmap.metadata["name"]
            self._ca_configmap.append(configmap)
        return DatabaseCa(DB_CA_FILE, {"name": DB_CA_VOLUME, "configMap": {"name": source, "items": items}})
