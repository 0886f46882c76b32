"""The small typed contracts between a cloud's pieces and the cloud-agnostic Airflow component.

A stack builds its database, broker and DAG volume however its cloud does it and hands the Airflow
component only these values. Passwords are always Pulumi secret Outputs.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# The modes that check the server's certificate, and so need CA certificates to check it against.
VERIFYING_SSLMODES: tuple[SslMode, ...] = ("verify-ca", "verify-full")
# Debian's ca-certificates bundle: in the official Airflow image (Debian bookworm with the
# `ca-certificates` package), and the file a verifying connection trusts when no CA is given.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


def ca_certificates(pem: str) -> list[tuple[str, dict[str, Any]]]:
    """Each CA certificate of a PEM bundle, with its fields as `ssl` decodes them (`subject`,
    `notAfter`, ...). ValueError, saying what is wrong, unless every block is a CA certificate that
    OpenSSL loads (the same parser libpq and asyncpg use)."""
    if "PRIVATE KEY-----" in pem:
        raise ValueError("holds a private key: give only the CA certificate(s)")
    blocks = _PEM_CERTIFICATE.findall(pem)
    if len(blocks) != pem.count("-----BEGIN CERTIFICATE-----"):
        raise ValueError("holds a certificate block without its END line")
    if not blocks:
        raise ValueError("holds no PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)")
    out = []
    for number, block in enumerate(blocks, 1):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=block)
        except (ssl.SSLError, ValueError) as e:
            raise ValueError(f"certificate {number} does not parse ({getattr(e, 'reason', None) or e})") from None
        loaded = context.get_ca_certs()  # only CA certificates are listed
        if not loaded:
            raise ValueError(f"certificate {number} is not a CA certificate")
        out.append((block, loaded[0]))
    return out


def common_name(fields: dict[str, Any]) -> str:
    """The subject's CN, from `ca_certificates`' decoded fields."""
    return next((v for rdn in fields.get("subject", ()) for k, v in rdn if k == "commonName"), "")


@dataclass(frozen=True)
class CaBundle:
    """The CA certificates a `verify-ca`/`verify-full` database connection checks the server against.

    Exactly one source is set:
        pem: the PEM text; the Airflow component puts it in a ConfigMap and mounts it (the RDS roots).
        config_map: an existing ConfigMap in the Airflow namespace holding it under `key`.
        secret: an existing Secret in the Airflow namespace holding it under `key`.
        image_file: a file already in the Airflow image, nothing mounted (`SYSTEM_CA_BUNDLE`).
    """

    pem: str | None = None
    config_map: str | None = None
    secret: str | None = None
    key: str = "ca.crt"
    image_file: str | None = None

    def __post_init__(self) -> None:
        given = [s for s in (self.pem, self.config_map, self.secret, self.image_file) if s]
        if len(given) != 1:
            raise ValueError("a CaBundle has exactly one of pem, config_map, secret or image_file")

    @classmethod
    def system(cls) -> CaBundle:
        """The image's public trust store (for servers with publicly trusted certificates)."""
        return cls(image_file=SYSTEM_CA_BUNDLE)


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where the Airflow metadata database lives and how to log in to it.

    Made by RdsPostgres, FlexiblePostgres and InClusterPostgres, or by the local stack from
    `database.external`; the Airflow component turns it into its SQLAlchemy and Celery result URLs.

    Attributes:
        host: DNS name or address of the PostgreSQL server.
        port: TCP port (5432 for every server this project makes).
        name: the database name.
        user: the login role.
        password: the role's password, always a secret Output.
        sslmode: libpq `sslmode` for the connection URLs (the asyncpg URL gets the same mode as
            `ssl=`); RDS and Flexible Server say `verify-full`, the in-cluster server `disable`.
        ca: what `verify-ca`/`verify-full` check the server's certificate against; required by
            them and refused by the other modes (which verify nothing).
        depends_on: resources the endpoint is only usable after; the migration Job waits for them.
    """

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    name: pulumi.Input[str]
    user: pulumi.Input[str]
    password: pulumi.Output[str]  # always a secret Output
    sslmode: SslMode = "prefer"
    ca: CaBundle | None = None
    # Resources the endpoint is only usable after (e.g. the in-cluster StatefulSet).
    depends_on: list[pulumi.Resource] = field(default_factory=list)

    def __post_init__(self) -> None:
        verifying = self.sslmode in VERIFYING_SSLMODES
        if verifying and self.ca is None:
            raise ValueError(f"sslmode {self.sslmode!r} needs a CA bundle to verify the server against")
        if self.ca is not None and not verifying:
            raise ValueError(f"a CA bundle only applies to sslmode verify-ca or verify-full, not {self.sslmode!r}")


@dataclass(frozen=True)
class DatabaseLimit:
    """What a PostgreSQL server allows Airflow: `max_connections` less the slots it keeps for others
    (superusers, the cloud's own agents), where those figures come from, and how to get more (the
    connection-budget error quotes both; components/airflow/budget.py)."""

    max_connections: int
    reserved: int
    source: str
    larger: str

    @property
    def usable(self) -> int:
        return self.max_connections - self.reserved


@dataclass(frozen=True)
class BrokerEndpoint:
    """A non-clustered Redis-compatible endpoint for Celery (kombu has no Redis Cluster support).

    Made by ElastiCacheBroker, ManagedRedis and InClusterRedis, or by the local stack from
    `broker.external`; the Airflow component turns it into Celery's broker URL.

    Attributes:
        host: DNS name or address of the Redis primary.
        port: TCP port (6379 on ElastiCache and in-cluster, 10000 on Azure Managed Redis).
        password: the AUTH password or access key as a secret Output; None for no AUTH.
        tls: connect with `rediss://`.
        db: the Redis database number in the URL.
        cert_reqs: kombu's `ssl_cert_reqs`, used only with `tls`.
        depends_on: resources the endpoint is only usable after (kept for callers; the Airflow
            component waits only on the database's).
    """

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    password: pulumi.Output[str] | None  # secret Output, or None for an unauthenticated broker
    tls: bool = False
    db: int = 0
    # kombu's `ssl_cert_reqs` for rediss:// URLs; without it kombu silently skips the check.
    cert_reqs: Literal["required", "optional", "none"] = "required"
    depends_on: list[pulumi.Resource] = field(default_factory=list)


@dataclass(frozen=True)
class RemoteLogs:
    """Remote task-log storage: Airflow's `[logging] remote_base_log_folder` and its connection.

    Made by S3TaskLogs and BlobTaskLogs; the Airflow component sets these as environment variables.

    Attributes:
        base_folder: `[logging] remote_base_log_folder` (e.g. `s3://<bucket>/logs`).
        conn_id: `[logging] remote_log_conn_id`; the connection is set as `AIRFLOW_CONN_<CONN_ID>`.
        connection: the connection's URI or JSON; it holds no keys, the pod's cloud identity signs in.
        extra_env: further environment variables for the log handler.
        ready: what must exist before a pod that writes or reads logs is created: the bindings of
            its cloud identity, which the cloud's admission webhook looks up when the pod is made.
    """

    base_folder: pulumi.Input[str]
    conn_id: str
    # A connection URI or JSON for `AIRFLOW_CONN_<ID>`; carries no keys (identity comes from the pod).
    connection: pulumi.Input[str]
    # Further provider settings the handler needs, e.g. the WASB container.
    extra_env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    ready: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class ServiceAccountAnnotations:
    """Per-component ServiceAccount annotations and pod labels (IRSA / Pod Identity / workload identity).

    Attributes:
        annotations: component name -> annotations of its ServiceAccount.
        pod_labels: component name -> extra labels on its pods.
    """

    annotations: dict[str, dict[str, pulumi.Input[str]]] = field(default_factory=dict)
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)
