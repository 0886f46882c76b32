"""The small typed contracts between a cloud's pieces and the cloud-agnostic Airflow component.

A stack builds its database, broker and DAG volume however its cloud does it and hands the Airflow
component only these values. Passwords are always Pulumi secret Outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


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
        sslmode: libpq `sslmode` for the connection URLs; the cloud databases say `require`.
        depends_on: resources the endpoint is only usable after; the migration Job waits for them.
    """

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    name: pulumi.Input[str]
    user: pulumi.Input[str]
    password: pulumi.Output[str]  # always a secret Output
    sslmode: SslMode = "prefer"
    # Resources the endpoint is only usable after (e.g. the in-cluster StatefulSet).
    depends_on: list[pulumi.Resource] = field(default_factory=list)


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
    """

    base_folder: pulumi.Input[str]
    conn_id: str
    # A connection URI or JSON for `AIRFLOW_CONN_<ID>`; carries no keys (identity comes from the pod).
    connection: pulumi.Input[str]
    # Further provider settings the handler needs, e.g. the WASB container.
    extra_env: dict[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceAccountAnnotations:
    """Per-component ServiceAccount annotations and pod labels (IRSA / Pod Identity / workload identity).

    Attributes:
        annotations: component name -> annotations of its ServiceAccount.
        pod_labels: component name -> extra labels on its pods.
    """

    annotations: dict[str, dict[str, pulumi.Input[str]]] = field(default_factory=dict)
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)
