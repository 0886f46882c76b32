"""The typed config model: every key the program reads, with its type, default and description.

Pulumi config arrives as one JSON object per top-level key (`airflow-k8s:<key>`). Everything is
validated here, before any resource is registered; an error names the full key path and what is
allowed. Unknown keys are errors. Defaults are what a production user would choose; cheap test
settings belong in the stack files under stacks/.

The README's config reference is generated from this module (`python -m stacks.configdoc`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROJECT = "airflow-k8s"

# The one place the Airflow version is set: the image tag (and the e2e lock file tracks it).
AIRFLOW_VERSION = "3.3.2"

_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_QUANTITY = r"^([+]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


class ConfigError(Exception):
    """Bad stack config; the message names the key and what is allowed. Never a traceback."""


def bad(key: str, message: str) -> ValueError:
    """A cross-field error that names the sub-key it is about (relative to the model raising it)."""
    return ValueError(f"[{key}] {message}")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
        validate_default=True,
        # `--set aws.database.engineVersion=17.7` and YAML `ref: 3.1` arrive as numbers.
        coerce_numbers_to_str=True,
    )


Quantity = Annotated[str, Field(pattern=_QUANTITY)]
DnsLabel = Annotated[str, Field(pattern=_DNS1123_LABEL, max_length=63)]


class Resources(_Model):
    """Requests and limits for one container."""

    cpu_request: Quantity = Field("250m", description="CPU request.")
    memory_request: Quantity = Field("512Mi", description="Memory request.")
    cpu_limit: Optional[Quantity] = Field(
        None, description="CPU limit; unset by default so a busy component is throttled, not capped."
    )
    memory_limit: Quantity = Field("1Gi", description="Memory limit (also the OOM bound).")


def _res(cpu: str, mem: str, mem_limit: str) -> Any:
    return Field(
        default_factory=lambda: Resources.model_validate(
            {"cpuRequest": cpu, "memoryRequest": mem, "memoryLimit": mem_limit}
        ),
        description="Requests and limits.",
    )


class Image(_Model):
    repository: str = Field("apache/airflow", description="Airflow image repository.")
    tag: str = Field(
        AIRFLOW_VERSION,
        description="Exact Airflow image tag; a new tag gives a new migration Job.",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy."
    )

    @field_validator("tag")
    @classmethod
    def _no_latest(cls, v: str) -> str:
        if v == "latest":
            raise ValueError("must be an exact tag such as '3.3.2', not 'latest'")
        return v


class Component(_Model):
    replicas: int = Field(2, ge=1, le=50, description="Replicas.")
    resources: Resources = _res("250m", "512Mi", "1Gi")


class ApiServer(Component):
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Service type of the UI/API; LoadBalancer creates a cloud load balancer."
    )
    resources: Resources = _res("250m", "1Gi", "2Gi")


class Scheduler(Component):
    resources: Resources = _res("500m", "1Gi", "2Gi")


class DagProcessor(Component):
    replicas: int = Field(1, ge=1, le=20, description="Replicas.")
    resources: Resources = _res("250m", "1Gi", "2Gi")


class Triggerer(Component):
    pass


class Workers(Component):
    replicas: int = Field(2, ge=0, le=200, description="Celery worker replicas (0 to scale to none).")
    concurrency: int = Field(16, ge=1, le=256, description="Celery worker concurrency per replica.")
    resources: Resources = _res("500m", "1Gi", "2Gi")
    storage_size: Optional[Quantity] = Field(
        None, description="Per-worker log volume (PVC) size; unset means an emptyDir."
    )


class Flower(_Model):
    enabled: bool = Field(False, description="Run Celery Flower (needs the Celery executor).")
    resources: Resources = _res("100m", "256Mi", "512Mi")


class Statsd(_Model):
    enabled: bool = Field(False, description="Run a statsd exporter and send Airflow metrics to it.")
    image: str = Field("quay.io/prometheus/statsd-exporter:v0.28.0", description="statsd-exporter image.")


class Auth(_Model):
    manager: Literal["fab", "simple"] = Field(
        "fab",
        description="'fab': FabAuthManager with a generated admin; 'simple': SimpleAuthManager, local play only.",
    )
    admin_user: str = Field("admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="Admin user name.")
    admin_email: str = Field("admin@example.com", description="Admin e-mail (FAB only).")


class GitSource(_Model):
    repo: str = Field(..., description="Git URL of the DAG repository (https:// or ssh).")
    ref: str = Field("main", description="Branch, tag or commit to check out.")
    sub_path: str = Field("", description="Folder inside the repository that holds the DAGs.")
    period_seconds: int = Field(60, ge=5, le=3600, description="How often git-sync pulls.")
    credentials_secret: Optional[DnsLabel] = Field(
        None,
        description="Existing Secret in the namespace with GITSYNC_USERNAME/GITSYNC_PASSWORD (https) keys.",
    )
    image: str = Field("registry.k8s.io/git-sync/git-sync:v4.4.2", description="git-sync image.")

    @field_validator("repo")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(https://|ssh://|git@|file://)\S+$", v):
            raise ValueError("must be a git URL starting with https://, ssh://, git@ or file://")
        return v


class Dags(_Model):
    source: Literal["volume", "gitSync", "image", "bundle"] = Field(
        "volume",
        description=(
            "'volume': a ReadWriteMany claim mounted read-only (optionally filled by one git-sync writer); "
            "'gitSync': git-sync sidecars, no volume; 'image': DAGs baked into the image; "
            "'bundle': Airflow 3 GitDagBundle."
        ),
    )
    claim_name: Optional[DnsLabel] = Field(
        None, description="Existing claim to mount (volume source); unset lets the stack provide one."
    )
    git: Optional[GitSource] = Field(
        None, description="Git repository: fills the volume (volume), feeds sidecars (gitSync) or the bundle."
    )
    folder: str = Field("/opt/airflow/dags", description="Where DAGs appear inside Airflow containers.")

    @model_validator(mode="after")
    def _needs_git(self) -> "Dags":
        if self.source in ("gitSync", "bundle") and self.git is None:
            raise bad("git", f"source '{self.source}' needs 'git' (repo, ref, subPath)")
        if self.source in ("gitSync", "bundle", "image") and self.claim_name:
            raise bad("claimName", f"only applies to source 'volume', not '{self.source}'")
        return self


class PodOperator(_Model):
    enabled: bool = Field(
        False,
        description="Tasks use KubernetesPodOperator: workers, task pods and triggerer may launch pods.",
    )


class AirflowSettings(_Model):
    image: Image = Field(default_factory=lambda: Image.model_validate({}), description="Airflow image.")
    executor: Literal["CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"] = Field(
        "CeleryExecutor", description="Executor(s); both at once route tasks by queue."
    )
    auth: Auth = Field(default_factory=lambda: Auth.model_validate({}), description="Authentication.")
    api_server: ApiServer = Field(default_factory=lambda: ApiServer.model_validate({}), description="api-server.")
    scheduler: Scheduler = Field(default_factory=lambda: Scheduler.model_validate({}), description="Scheduler.")
    dag_processor: DagProcessor = Field(
        default_factory=lambda: DagProcessor.model_validate({}), description="DAG processor."
    )
    triggerer: Triggerer = Field(default_factory=lambda: Triggerer.model_validate({}), description="Triggerer.")
    workers: Workers = Field(default_factory=lambda: Workers.model_validate({}), description="Celery workers.")
    flower: Flower = Field(default_factory=lambda: Flower.model_validate({}), description="Celery Flower.")
    statsd: Statsd = Field(default_factory=lambda: Statsd.model_validate({}), description="Metrics.")
    dags: Dags = Field(default_factory=lambda: Dags.model_validate({}), description="Where DAGs come from.")
    pod_operator: PodOperator = Field(
        default_factory=lambda: PodOperator.model_validate({}), description="KubernetesPodOperator support."
    )
    migration_timeout_minutes: int = Field(
        15, ge=1, le=120, description="How long `pulumi up` waits for the migration Job."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Airflow Variables, injected as AIRFLOW_VAR_<NAME> (plain values)."
    )
    connections: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Airflow Connections as URIs or JSON, injected as AIRFLOW_CONN_<ID> from a Secret.",
    )
    config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra airflow.cfg settings as 'section.key' -> value (non-secret; becomes AIRFLOW__S__K).",
    )

    @field_validator("variables", "connections")
    @classmethod
    def _env_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise ValueError(f"name {k!r} must be letters, digits and '_' (it becomes an env variable)")
        return v

    @field_validator("config")
    @classmethod
    def _cfg_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.match(r"^[a-z_]+\.[a-z0-9_]+$", k):
                raise ValueError(f"key {k!r} must be 'section.option' in lower case, e.g. 'core.parallelism'")
        return v

    @property
    def executors(self) -> list[str]:
        return self.executor.split(",")

    @model_validator(mode="after")
    def _coherent(self) -> "AirflowSettings":
        if self.flower.enabled and "CeleryExecutor" not in self.executors:
            raise bad("flower.enabled", f"needs the CeleryExecutor (executor is '{self.executor}')")
        return self


class ExternalDatabase(_Model):
    host: str = Field(..., min_length=1, description="Host name of the PostgreSQL server.")
    port: int = Field(5432, ge=1, le=65535, description="Port.")
    name: str = Field("airflow", pattern=r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$", description="Database name.")
    user: str = Field("airflow", min_length=1, description="User name.")
    password: SecretStr = Field(..., description="Password (set it with `pulumi config set --secret`).")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "require", description="libpq sslmode."
    )


class InClusterDatabase(_Model):
    image: str = Field("postgres:17.6", description="PostgreSQL image (official), exact tag.")
    storage_size: Quantity = Field("8Gi", description="Data volume size.")
    storage_class: Optional[str] = Field(None, description="StorageClass of the data volume; unset: cluster default.")
    resources: Resources = _res("250m", "512Mi", "1Gi")


class Database(_Model):
    mode: Literal["inCluster", "external"] = Field(
        "inCluster", description="'inCluster': a PostgreSQL StatefulSet; 'external': connect to `external`."
    )
    in_cluster: InClusterDatabase = Field(
        default_factory=lambda: InClusterDatabase.model_validate({}), description="In-cluster PostgreSQL."
    )
    external: Optional[ExternalDatabase] = Field(None, description="An existing PostgreSQL server.")

    @model_validator(mode="after")
    def _mode(self) -> "Database":
        if self.mode == "external" and self.external is None:
            raise bad("external", "mode 'external' needs 'external' (host, password, ...)")
        return self


class ExternalBroker(_Model):
    host: str = Field(..., min_length=1, description="Redis host (a non-clustered endpoint).")
    port: int = Field(6379, ge=1, le=65535, description="Port.")
    password: Optional[SecretStr] = Field(None, description="AUTH password (secret).")
    tls: bool = Field(False, description="Connect with TLS (rediss://).")
    db: int = Field(0, ge=0, le=15, description="Redis database number.")


class InClusterBroker(_Model):
    image: str = Field("redis:7.4.6", description="Redis image (official), exact tag.")
    resources: Resources = _res("100m", "256Mi", "512Mi")


class Broker(_Model):
    mode: Literal["inCluster", "external"] = Field(
        "inCluster", description="'inCluster': a password-protected Redis; 'external': connect to `external`."
    )
    in_cluster: InClusterBroker = Field(
        default_factory=lambda: InClusterBroker.model_validate({}), description="In-cluster Redis."
    )
    external: Optional[ExternalBroker] = Field(None, description="An existing Redis-compatible broker.")

    @model_validator(mode="after")
    def _mode(self) -> "Broker":
        if self.mode == "external" and self.external is None:
            raise bad("external", "mode 'external' needs 'external' (host, password, ...)")
        return self


class KubernetesSettings(_Model):
    context: Optional[str] = Field(
        None, description="kubeconfig context to deploy into (required for the local stack)."
    )
    kubeconfig: Optional[str] = Field(
        None, description="Path to the kubeconfig file; unset uses the default search path."
    )
    namespace: DnsLabel = Field("airflow", description="Namespace for Airflow.")
    task_namespace: Optional[DnsLabel] = Field(
        None, description="Separate namespace for KubernetesPodOperator task pods (no API rights there)."
    )
    network_policies: bool = Field(True, description="Create NetworkPolicies (default deny + allow lists).")
    dag_volume_size: Quantity = Field("1Gi", description="Size of the DAG volume the stack creates.")
    dag_volume_storage_class: Optional[str] = Field(
        None, description="StorageClass for the DAG volume; unset: the cluster default."
    )
    dag_volume_access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        "ReadWriteMany",
        description="Access mode of the DAG volume the stack creates; ReadWriteOnce only on one-node clusters.",
    )

    @model_validator(mode="after")
    def _ns(self) -> "KubernetesSettings":
        if self.task_namespace is not None and self.task_namespace == self.namespace:
            raise bad("taskNamespace", "must differ from namespace (or be left unset)")
        return self


# ---- AWS -------------------------------------------------------------------------------------

_AWS_REGION = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$"
# RDS PostgreSQL instance families (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Support.html);
# a typo here would otherwise surface only as an API error halfway through `pulumi up`.
RDS_FAMILIES = {
    "t3", "t4g", "m5", "m5d", "m6g", "m6gd", "m6i", "m6id", "m6in", "m6idn", "m7g", "m7gd", "m7i", "m8g",
    "r5", "r5b", "r5d", "r6g", "r6gd", "r6i", "r6id", "r6in", "r6idn", "r7g", "r7gd", "r7i", "r8g",
    "x2g", "x2idn", "x2iedn", "x2iezn", "z1d",
}
INSTANCE_SIZES = {"micro", "small", "medium", "large", "xlarge"} | {f"{n}xlarge" for n in (2, 4, 8, 12, 16, 24, 32, 48)}
CACHE_FAMILIES = {"t3", "t4g", "m5", "m6g", "m7g", "r5", "r6g", "r6gd", "r7g", "c7gn"}


def _check_class(value: str, prefix: str, families: set[str]) -> str:
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != prefix or parts[1] not in families or parts[2] not in INSTANCE_SIZES:
        raise ValueError(
            f"{value!r} is not a {prefix}.<family>.<size> class; families: {', '.join(sorted(families))}; "
            f"sizes: micro, small, medium, large, xlarge, 2xlarge ... 48xlarge"
        )
    return value


class AwsSubnet(_Model):
    id: str = Field(..., pattern=r"^subnet-[0-9a-f]{8,17}$", description="Subnet id.")
    availability_zone: str = Field(..., pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$", description="Its availability zone.")


class AwsNetwork(_Model):
    vpc_id: Optional[str] = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="Existing VPC; unset creates one.")
    private_subnets: list[AwsSubnet] = Field(
        default_factory=list, description="Existing private subnets (with vpcId), at least two zones."
    )
    cidr: str = Field("10.40.0.0/16", description="CIDR of the VPC the stack creates.")
    availability_zones: list[str] = Field(
        default_factory=list, description="Zones for a created VPC (at least two, in the region)."
    )
    nat_gateways: Literal["single", "perZone"] = Field(
        "perZone", description="NAT gateways of a created VPC: one per zone (HA) or a single one (cheaper)."
    )

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)
        if net.version != 4 or not 16 <= net.prefixlen <= 20:
            raise ValueError("must be an IPv4 CIDR from /16 to /20 (subnets are carved from it)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "AwsNetwork":
        if self.vpc_id:
            zones = {s.availability_zone for s in self.private_subnets}
            if len(zones) < 2:
                raise bad("privateSubnets", f"need subnets in at least two availability zones (got {sorted(zones)})")
        else:
            if self.private_subnets:
                raise bad("privateSubnets", "only with an existing vpcId")
            if len(set(self.availability_zones)) < 2 or len(set(self.availability_zones)) != len(self.availability_zones):
                raise bad("availabilityZones", f"need at least two distinct zones (got {self.availability_zones})")
        return self


class AwsCluster(_Model):
    existing_name: Optional[str] = Field(
        None,
        description="Use this existing EKS cluster instead of creating one; it needs the eks-pod-identity-agent and "
        "aws-efs-csi-driver add-ons.",
    )
    version: str = Field("1.33", pattern=r"^1\.(3[1-5])$", description="Kubernetes version of a created cluster.")
    service_cidr: str = Field("172.20.0.0/16", description="Service IPv4 CIDR of a created cluster.")
    node_instance_types: list[str] = Field(default_factory=lambda: ["m6i.xlarge"], description="Node instance types.")
    node_min: int = Field(3, ge=1, le=100, description="Minimum nodes.")
    node_desired: int = Field(3, ge=1, le=100, description="Desired nodes.")
    node_max: int = Field(6, ge=1, le=100, description="Maximum nodes.")
    node_disk_gib: int = Field(50, ge=20, le=2000, description="Node root volume size.")
    public_endpoint: bool = Field(True, description="Expose the API server endpoint publicly (with IAM auth).")
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653] = Field(
        90, description="Days the control-plane logs (api, audit, authenticator) are kept in CloudWatch."
    )
    public_access_cidrs: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0"], description="Who may reach a public API endpoint."
    )

    @model_validator(mode="after")
    def _nodes(self) -> "AwsCluster":
        if not self.node_min <= self.node_desired <= self.node_max:
            raise bad("nodeDesired", f"must satisfy nodeMin <= nodeDesired <= nodeMax (got {self.node_min}, "
                      f"{self.node_desired}, {self.node_max})")
        return self


class AwsDatabase(_Model):
    instance_class: str = Field("db.m7g.large", description="RDS instance class.")
    engine_version: str = Field("17.6", pattern=r"^1[4-8](\.\d+)?$", description="PostgreSQL version.")
    allocated_storage_gib: int = Field(50, ge=20, le=65536, description="Initial storage.")
    max_allocated_storage_gib: int = Field(200, ge=20, le=65536, description="Storage autoscaling ceiling.")
    multi_az: bool = Field(True, description="Standby in a second zone.")
    backup_retention_days: int = Field(7, ge=1, le=35, description="Automated backups kept (never 0).")
    performance_insights: bool = Field(True, description="Performance Insights.")
    monitoring_interval_seconds: Literal[0, 1, 5, 10, 15, 30, 60] = Field(
        60, description="Enhanced monitoring interval (0 turns it off)."
    )

    @field_validator("instance_class")
    @classmethod
    def _class(cls, v: str) -> str:
        return _check_class(v, "db", RDS_FAMILIES)


class AwsBroker(_Model):
    engine: Literal["valkey", "redis"] = Field(
        "valkey", description="ElastiCache engine; Valkey is the Redis-compatible open-source default."
    )
    engine_version: str = Field("8.1", pattern=r"^\d+\.\d+$", description="Engine version.")
    node_type: str = Field("cache.m7g.large", description="Cache node type.")
    replicas: int = Field(1, ge=0, le=5, description="Read replicas; at least one enables automatic failover.")

    @field_validator("node_type")
    @classmethod
    def _node(cls, v: str) -> str:
        return _check_class(v, "cache", CACHE_FAMILIES)


class AwsSettings(_Model):
    region: str = Field(..., pattern=_AWS_REGION, description="AWS region, e.g. eu-west-1.")
    network: AwsNetwork = Field(..., description="VPC: availabilityZones for a new one, or vpcId + privateSubnets.")
    cluster: AwsCluster = Field(default_factory=lambda: AwsCluster.model_validate({}), description="EKS.")
    database: AwsDatabase = Field(default_factory=lambda: AwsDatabase.model_validate({}), description="RDS PostgreSQL.")
    broker: AwsBroker = Field(default_factory=lambda: AwsBroker.model_validate({}), description="ElastiCache.")
    log_retention_days: int = Field(90, ge=1, le=3650, description="Days task logs are kept in S3.")
    protect: bool = Field(
        True,
        description="Production safety: deletion protection, final snapshot, Pulumi `protect` on the database, "
        "file system and log bucket; false for test stacks that must destroy in one go.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every AWS resource.")

    @model_validator(mode="after")
    def _coherent(self) -> "AwsSettings":
        for z in self.network.availability_zones + [s.availability_zone for s in self.network.private_subnets]:
            if not (z.startswith(self.region) and len(z) == len(self.region) + 1):
                raise bad("network.availabilityZones", f"zone {z!r} is not in region {self.region!r}")
        if self.cluster.existing_name and not self.network.vpc_id:
            raise bad("cluster.existingName", "an existing cluster needs its network: set network.vpcId and "
                      "network.privateSubnets")
        if not self.network.vpc_id:
            vpc = ipaddress.ip_network(self.network.cidr)
            svc = ipaddress.ip_network(self.cluster.service_cidr)
            if vpc.overlaps(svc):
                raise bad("cluster.serviceCidr", f"{svc} overlaps the VPC CIDR {vpc}")
        return self


# ---- Azure -----------------------------------------------------------------------------------

# Public-cloud regions with availability zones or otherwise commonly used; a typo here would only
# surface as an ARM error in the middle of `pulumi up`.
AZURE_REGIONS = {
    "australiaeast", "brazilsouth", "canadacentral", "centralindia", "centralus", "eastasia", "eastus", "eastus2",
    "francecentral", "germanywestcentral", "israelcentral", "italynorth", "japaneast", "koreacentral",
    "mexicocentral", "newzealandnorth", "northeurope", "norwayeast", "polandcentral", "qatarcentral",
    "southafricanorth", "southcentralus", "southeastasia", "spaincentral", "swedencentral", "switzerlandnorth",
    "uaenorth", "uksouth", "westeurope", "westus2", "westus3",
}
# Azure Managed Redis SKUs (redisenterprise); Enterprise_* and EnterpriseFlash_* retire on 2027-03-31.
AZURE_REDIS_SKUS = {
    *(f"Balanced_B{n}" for n in (0, 1, 3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700, 1000)),
    *(f"MemoryOptimized_M{n}" for n in (10, 20, 50, 100, 150, 250, 350, 500, 700, 1000, 1500, 2000)),
    *(f"ComputeOptimized_X{n}" for n in (3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700)),
}


class AzureNetwork(_Model):
    address_space: str = Field("10.50.0.0/16", description="VNet address space.")
    aks_subnet: str = Field("10.50.0.0/18", description="Subnet for AKS nodes.")
    postgres_subnet: str = Field("10.50.64.0/24", description="Subnet delegated to PostgreSQL Flexible Server.")
    endpoints_subnet: str = Field("10.50.65.0/24", description="Subnet for private endpoints (Redis, Files).")

    @model_validator(mode="after")
    def _layout(self) -> "AzureNetwork":
        try:
            space = ipaddress.ip_network(self.address_space)
        except ValueError as e:
            raise bad("addressSpace", str(e)) from None
        nets = {}
        for key in ("aks_subnet", "postgres_subnet", "endpoints_subnet"):
            alias = to_camel(key)
            try:
                net = ipaddress.ip_network(getattr(self, key))
            except ValueError as e:
                raise bad(alias, str(e)) from None
            if not net.subnet_of(space):  # type: ignore[arg-type]
                raise bad(alias, f"{net} is not inside the address space {space}")
            for other, onet in nets.items():
                if net.overlaps(onet):
                    raise bad(alias, f"{net} overlaps {other} {onet}")
            nets[alias] = net
        return self


class AzureCluster(_Model):
    existing_name: Optional[str] = Field(None, description="Use this existing AKS cluster (OIDC issuer and workload "
                                         "identity enabled) instead of creating one.")
    existing_resource_group: Optional[str] = Field(None, description="Resource group of the existing cluster.")
    version: str = Field("1.33", pattern=r"^1\.(3[1-5])$", description="Kubernetes version of a created cluster.")
    service_cidr: str = Field("172.21.0.0/16", description="Service CIDR of a created cluster.")
    node_vm_size: str = Field("Standard_D4ds_v5", pattern=r"^Standard_[A-Za-z0-9_]+$", description="Node VM size.")
    node_min: int = Field(3, ge=1, le=100, description="Minimum nodes (autoscaler).")
    node_max: int = Field(6, ge=1, le=100, description="Maximum nodes (autoscaler).")
    zones: list[Literal["1", "2", "3"]] = Field(default_factory=lambda: ["1", "2", "3"],
                                               description="Availability zones of the node pool.")

    @model_validator(mode="after")
    def _shape(self) -> "AzureCluster":
        if bool(self.existing_name) != bool(self.existing_resource_group):
            raise bad("existingResourceGroup", "set both existingName and existingResourceGroup, or neither")
        if self.node_min > self.node_max:
            raise bad("nodeMin", f"must not exceed nodeMax ({self.node_min} > {self.node_max})")
        return self


class AzureDatabase(_Model):
    tier: Literal["Burstable", "GeneralPurpose", "MemoryOptimized"] = Field("GeneralPurpose", description="Compute tier.")
    sku_name: str = Field("Standard_D2ds_v5", pattern=r"^Standard_(B|D|E)[0-9]+[a-z]*(_v[0-9])?$",
                          description="Compute SKU (Standard_B*, Standard_D*, Standard_E*).")
    version: Literal["14", "15", "16", "17"] = Field("17", description="PostgreSQL major version.")
    storage_gib: Literal[32, 64, 128, 256, 512, 1024, 2048, 4096] = Field(64, description="Storage size.")
    backup_retention_days: int = Field(7, ge=7, le=35, description="Backups kept (Azure's minimum is 7).")
    high_availability: bool = Field(True, description="Zone-redundant standby.")

    @model_validator(mode="after")
    def _sku(self) -> "AzureDatabase":
        family = self.sku_name.split("_")[1][0]
        want = {"Burstable": "B", "GeneralPurpose": "D", "MemoryOptimized": "E"}[self.tier]
        if family != want:
            raise bad("skuName", f"{self.sku_name} is not a {self.tier} SKU (Standard_{want}...)")
        if self.high_availability and self.tier == "Burstable":
            raise bad("highAvailability", "is not offered on the Burstable tier")
        return self


class AzureBroker(_Model):
    sku: str = Field("Balanced_B1", description="Azure Managed Redis SKU.")

    @field_validator("sku")
    @classmethod
    def _sku(cls, v: str) -> str:
        if v not in AZURE_REDIS_SKUS:
            raise ValueError(f"{v!r} is not an Azure Managed Redis SKU (Balanced_B0..B1000, MemoryOptimized_M10.., "
                             "ComputeOptimized_X3..)")
        return v


class AzureDags(_Model):
    protocol: Literal["nfs", "smb"] = Field(
        "nfs", description="Azure Files protocol: NFS (premium, no account keys, POSIX permissions) or SMB (account key)."
    )
    quota_gib: int = Field(100, ge=1, le=102400, description="Share quota (premium shares start at 100 GiB).")


class AzureSettings(_Model):
    region: str = Field(..., description="Azure region, e.g. westeurope.")
    network: AzureNetwork = Field(default_factory=lambda: AzureNetwork.model_validate({}), description="VNet.")
    cluster: AzureCluster = Field(default_factory=lambda: AzureCluster.model_validate({}), description="AKS.")
    database: AzureDatabase = Field(default_factory=lambda: AzureDatabase.model_validate({}),
                                    description="PostgreSQL Flexible Server.")
    broker: AzureBroker = Field(default_factory=lambda: AzureBroker.model_validate({}), description="Azure Managed Redis.")
    dags: AzureDags = Field(default_factory=lambda: AzureDags.model_validate({}), description="Azure Files DAG share.")
    log_retention_days: int = Field(90, ge=1, le=3650, description="Days task logs are kept in Blob storage.")
    protect: bool = Field(True, description="Production safety: Pulumi `protect` on the database, share and log "
                          "container (and their storage accounts); false for test stacks.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every Azure resource.")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in AZURE_REGIONS:
            raise ValueError(f"{v!r} is not a known Azure region (e.g. westeurope, northeurope, eastus2, uksouth)")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> "AzureSettings":
        if ipaddress.ip_network(self.cluster.service_cidr).overlaps(ipaddress.ip_network(self.network.address_space)):
            raise bad("cluster.serviceCidr", f"{self.cluster.service_cidr} overlaps the VNet {self.network.address_space}")
        if self.dags.protocol == "nfs" and self.dags.quota_gib < 100:
            raise bad("dags.quotaGib", f"premium NFS shares start at 100 GiB (got {self.dags.quota_gib})")
        return self


class StackConfig(_Model):
    """All of `airflow-k8s:*`."""

    cloud: Literal["local", "aws", "azure"] = Field("local", description="Which composition in stacks/ builds this stack.")
    kubernetes: KubernetesSettings = Field(
        default_factory=lambda: KubernetesSettings.model_validate({}), description="Target cluster."
    )
    airflow: AirflowSettings = Field(
        default_factory=lambda: AirflowSettings.model_validate({}), description="Airflow itself."
    )
    database: Database = Field(default_factory=lambda: Database.model_validate({}), description="Metadata DB.")
    broker: Broker = Field(default_factory=lambda: Broker.model_validate({}), description="Celery broker.")
    aws: Optional[AwsSettings] = Field(None, description="The AWS stack (cloud: aws).")
    azure: Optional[AzureSettings] = Field(None, description="The Azure stack (cloud: azure).")

    @model_validator(mode="after")
    def _per_cloud(self) -> "StackConfig":
        if self.cloud == "local" and not self.kubernetes.context:
            raise bad("kubernetes.context", "the local stack needs a kubeconfig context name")
        if self.cloud == "aws":
            if self.aws is None:
                raise bad("aws", "cloud 'aws' needs the 'aws' settings (region, network, ...)")
            if self.database.mode != "inCluster" or self.broker.mode != "inCluster":
                raise bad("database.mode", "the aws stack provides RDS and ElastiCache; leave database/broker unset")
        elif self.aws is not None:
            raise bad("aws", f"only applies to cloud 'aws' (cloud is {self.cloud!r})")
        if self.cloud == "azure":
            if self.azure is None:
                raise bad("azure", "cloud 'azure' needs the 'azure' settings (region, ...)")
            if self.database.mode != "inCluster" or self.broker.mode != "inCluster":
                raise bad("database.mode", "the azure stack provides its database and broker; leave them unset")
        elif self.azure is not None:
            raise bad("azure", f"only applies to cloud 'azure' (cloud is {self.cloud!r})")
        return self


def _loc_to_key(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return f"{PROJECT}:" + ".".join(parts) if parts else PROJECT


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind == "literal_error":
        return f"must be one of {str(ctx.get('expected')).replace(' or ', ', ')}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "missing":
        return "is required"
    msg = err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> Optional[list[str]]:
    """The keys a model accepts at `loc` (for 'unknown key' errors)."""
    cur: Any = model
    for p in loc[:-1]:
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        f = next((f for f in cur.model_fields.values() if f.alias == p), None)
        if f is None:
            return None
        ann = f.annotation
        args = [a for a in getattr(ann, "__args__", ()) if a is not type(None)]
        cur = args[0] if args and getattr(ann, "__origin__", None) is Union else ann
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return sorted(f.alias for f in cur.model_fields.values() if f.alias)
    return None


def parse(raw: dict[str, Any]) -> StackConfig:
    """Validate raw config (top-level key -> decoded JSON value) into a StackConfig."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            desc = _describe(err)
            m = re.match(r"^\[([A-Za-z0-9_.]+)\] (.*)$", desc, re.S)
            if m:
                loc, desc = loc + tuple(m.group(1).split(".")), m.group(2)
            line = f"{_loc_to_key(loc)}: {desc}"
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(StackConfig, loc)
                if allowed:
                    line += f" (allowed: {', '.join(allowed)})"
            elif "input" in err and err["type"] not in ("missing",) and not _secret_loc(loc):
                val = err["input"]
                if isinstance(val, (str, int, float, bool)):
                    line += f" (got {json.dumps(val)})"
            lines.append(line)
        raise ConfigError("invalid stack config:\n  " + "\n  ".join(lines)) from None


def _secret_loc(loc: tuple[Any, ...]) -> bool:
    return any(str(p) in ("password", "connections") for p in loc)


def from_pulumi_config() -> StackConfig:
    """Read every `airflow-k8s:*` key from the running Pulumi program's config and validate it.

    Uses the raw config map rather than `Config.require_object`, which would hand secrets back as
    plain values with a warning; secret fields are SecretStr in the model and become secret Outputs
    where they are used.
    """
    from pulumi.runtime import config as rconfig

    raw: dict[str, Any] = {}
    # A real `pulumi up` passes config in PULUMI_CONFIG; tests and the render set it in-process.
    keys = set(rconfig.get_config_env()) | set(rconfig.CONFIG.get())
    for full_key in sorted(keys):
        value = rconfig.get_config(full_key)
        ns, _, key = full_key.partition(":")
        if ns != PROJECT:
            continue
        if "." in key or ":" in key:
            raise ConfigError(f"{full_key}: is not a known key (use --path to set nested values)")
        try:
            raw[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            raw[key] = value
    return parse(raw)
