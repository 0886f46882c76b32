"""Settings of Celery worker autoscaling with KEDA (`airflow.workers.autoscaling`,
`airflow.workerSets[*].autoscaling`) and of KEDA itself (`airflow.keda`).

Facts relied on (KEDA v2.20.2, github.com/kedacore/keda at tag v2.20.2):
- `cooldownPeriod` only delays the step from 1 replica to 0; every other scale-down is the HPA's,
  which KEDA creates with the ScaledObject's `advanced.horizontalPodAutoscalerConfig.behavior`
  (the HPA's own default scale-down stabilization is 300 s).
- The postgresql scaler (pkg/scalers/postgresql_scaler.go) opens one `database/sql` pool per trigger
  in the operator and keeps it for the ScaledObject's life; every `pollingInterval` (and every HPA
  metrics read) runs the query once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.settings import DnsLabel, SettingsModel, bad

# The KEDA version this program installs (the kedacore `keda` chart's version is KEDA's own) and
# whose ScaledObject/TriggerAuthentication schemas are vendored in components/airflow/keda_crds/.
KEDA_VERSION = "2.20.2"
KEDA_CHART_REPO = "https://kedacore.github.io/charts"

# A database/sql pool's default idle size (Go's database/sql, defaultMaxIdleConns): what one
# postgresql trigger may hold open between polls. Counted per ScaledObject in the connection budget.
KEDA_CONNECTIONS_PER_SCALED_OBJECT = 2


class Autoscaling(SettingsModel):
    """KEDA scales a worker group on its queued plus running task instances, `concurrency` per
    replica. Off by default: the group then runs `replicas` replicas."""

    enabled: bool = Field(False, description="Scale this worker group with KEDA (needs airflow.keda).")
    min_replicas: int = Field(
        1, ge=0, le=200, description="Fewest replicas; 0 scales the group to none while its queues are idle."
    )
    max_replicas: int = Field(10, ge=1, le=200, description="Most replicas (the connection budget counts these).")
    polling_interval: int = Field(
        15, ge=5, le=3600, description="Seconds between KEDA's queries of the metadata DB (one query each)."
    )
    cooldown_period: int = Field(
        300,
        ge=0,
        le=86400,
        description="Seconds with no queued or running task before the last replica goes (minReplicas 0 only).",
    )
    scale_down_stabilization_seconds: int = Field(
        300,
        ge=0,
        le=3600,
        description="The HPA scales down only to the highest replica count wanted over this window (bursty DAGs).",
    )

    @model_validator(mode="after")
    def _range(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise bad("maxReplicas", f"{self.max_replicas} is below minReplicas ({self.min_replicas})")
        return self


class Keda(SettingsModel):
    """`airflow.keda`: where the KEDA that scales the workers comes from (used only when a worker
    group has autoscaling on)."""

    source: Literal["install", "existing"] = Field(
        "install",
        description=f"install: the stack installs KEDA {KEDA_VERSION} (the kedacore `keda` Helm chart) in `namespace`; "
        "existing: the cluster already runs KEDA 2.x (its CRDs and operator) there.",
    )
    namespace: DnsLabel = Field("keda", description="KEDA's namespace (its operator queries the metadata DB).")
    operator_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "keda-operator"},
        description="Labels of KEDA's operator pods (the chart's); the in-cluster DB's NetworkPolicy admits these.",
    )
    database_ca_file: str | None = Field(
        None,
        pattern=r"^/[^\s']+$",
        description="source existing, with a verified DB whose CA the stack ships: the CA file's path inside the "
        "existing KEDA operator (the stack cannot mount it there).",
    )

    @model_validator(mode="after")
    def _ca_only_existing(self) -> Keda:
        if self.database_ca_file is not None and self.source != "existing":
            raise bad("databaseCaFile", "applies only with source: existing (an installed KEDA gets the CA mounted)")
        return self
