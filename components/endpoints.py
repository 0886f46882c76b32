"""The small typed contracts between a cloud's pieces and the cloud-agnostic Airflow component.

A stack builds its database, broker and DAG volume however its cloud does it and hands the Airflow
component only these values. Passwords are always Pulumi secret Outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pulumi

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where the Airflow metadata database lives and how to log in to it."""

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
    """A non-clustered Redis-compatible endpoint for Celery (kombu has no Redis Cluster support)."""

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    password: Optional[pulumi.Output[str]]  # secret Output, or None for an unauthenticated broker
    tls: bool = False
    db: int = 0
    # kombu's `ssl_cert_reqs` for rediss:// URLs; without it kombu silently skips the check.
    cert_reqs: Literal["required", "optional", "none"] = "required"
    depends_on: list[pulumi.Resource] = field(default_factory=list)


@dataclass(frozen=True)
class RemoteLogs:
    """Remote task-log storage: Airflow's `[logging] remote_base_log_folder` and its connection."""

    base_folder: pulumi.Input[str]
    conn_id: str
    # A connection URI or JSON for `AIRFLOW_CONN_<ID>`; carries no keys (identity comes from the pod).
    connection: pulumi.Input[str]
    # Further provider settings the handler needs, e.g. the WASB container.
    extra_env: dict[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceAccountAnnotations:
    """Per-component ServiceAccount annotations and pod labels (IRSA / Pod Identity / workload identity)."""

    annotations: dict[str, dict[str, pulumi.Input[str]]] = field(default_factory=dict)
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)
