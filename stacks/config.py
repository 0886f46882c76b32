"""The stack-level config model: how the components' settings compose into one stack, the rules
that span several of them, and the error formatting.

Pulumi config arrives as one JSON object per top-level key (`airflow-k8s:<key>`). Everything is
validated here, before any resource is registered; an error names the full key path and what is
allowed. Unknown keys are errors. Defaults are what a production user would choose; cheap test
settings belong in the stack files under stacks/.

Each component's own settings are declared next to it in components/ (Airflow in
components/airflow/settings.py, EKS in components/aws/eks.py, ...); this module adds only what
belongs to a stack: the target cluster, external endpoints, a cloud's region, protection and tags.
The README's config reference is generated from the whole model (`python -m stacks.render --write-readme`).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import pathlib
import re
import types
import typing
from collections.abc import Collection
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from components.airflow.budget import ConnectionBudget, check, connection_budget, over_budget_key, through_pooler
from components.airflow.roster import check_container_names
from components.airflow.settings import AIRFLOW_VERSION, AirflowSettings
from components.aws.broker import AwsBroker
from components.aws.database import AwsDatabase
from components.aws.eks import AwsCluster
from components.aws.load_balancer_controller import AwsUi, check_aws_ui
from components.aws.network import AwsNetwork
from components.azure.aks import AzureCluster
from components.azure.app_routing import AzureUi, check_azure_ui
from components.azure.broker import AzureBroker
from components.azure.database import AzureDatabase
from components.azure.network import AzureNetwork
from components.azure.storage import AzureDags
from components.endpoints import VERIFYING_SSLMODES, DatabaseLimit, ca_certificates
from components.ingress import UiSettings, check_cloud, check_local
from components.pgbouncer import PgBouncerSettings
from components.postgres import SUPERUSER_RESERVED, InClusterDatabase
from components.redis import InClusterBroker
from components.settings import (
    DnsLabel,
    HostName,
    PrintableSecret,
    PrintableStr,
    Quantity,
    SettingsModel,
    bad,
    defaults,
)

__all__ = ["AIRFLOW_VERSION", "PROJECT", "ConfigError", "StackConfig", "from_pulumi_config", "parse"]

PROJECT = "airflow-k8s"


class ConfigError(Exception):
    """Bad stack config; the message names the key and what is allowed. Never a traceback."""


DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ExternalDatabaseCa(SettingsModel):
    """`database.external.ca`: the CA certificate(s) the server's certificate is checked against."""

    pem: str | None = Field(None, description="The CA certificate(s) as PEM text (shipped in a ConfigMap).")
    config_map: str | None = Field(
        None, pattern=DNS1123_SUBDOMAIN, max_length=253, description="An existing ConfigMap in the namespace with it."
    )
    secret: str | None = Field(
        None, pattern=DNS1123_SUBDOMAIN, max_length=253, description="An existing Secret in the namespace with it."
    )
    key: str = Field("ca.crt", pattern=r"^[-._a-zA-Z0-9]{1,253}$", description="Its key in that ConfigMap or Secret.")

    @model_validator(mode="after")
    def _one_source(self) -> ExternalDatabaseCa:
        if sum(1 for v in (self.pem, self.config_map, self.secret) if v) != 1:
            raise ValueError("set exactly one of pem, configMap or secret")
        if self.pem:
            try:
                ca_certificates(self.pem)
            except ValueError as e:
                raise bad("pem", str(e)) from None
        return self


class ExternalDatabase(SettingsModel):
    host: HostName = Field(..., description="Host name or IP address of the PostgreSQL server (no port or path).")
    port: int = Field(5432, ge=1, le=65535, description="Port.")
    name: str = Field("airflow", pattern=r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$", description="Database name.")
    user: PrintableStr = Field("airflow", min_length=1, description="User name.")
    password: PrintableSecret = Field(..., description="Password (set it with `pulumi config set --secret`).")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "require",
        description="libpq sslmode (the async URL gets the same mode). 'require' encrypts but verifies nothing; "
        "'verify-full' checks the certificate and host name against `ca`, or the image's system CA bundle "
        "when `ca` is unset.",
    )
    ca: ExternalDatabaseCa | None = Field(
        None, description="CA certificate(s) for sslmode verify-ca/verify-full (PEM text, or a ConfigMap/Secret key)."
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="The server's max_connections (`SHOW max_connections`): Airflow's peak connections are checked "
        "against it less 3 superuser-reserved; unset: not checked (a warning says the peak).",
    )

    def connection_limit(self) -> DatabaseLimit | None:
        if self.max_connections is None:
            return None
        return DatabaseLimit(
            max_connections=self.max_connections,
            reserved=SUPERUSER_RESERVED,
            source=f"database.external.maxConnections {self.max_connections}, less {SUPERUSER_RESERVED} superuser-reserved",
            larger="a higher max_connections on the server (and database.external.maxConnections)",
        )

    @model_validator(mode="after")
    def _ca_needs_verification(self) -> ExternalDatabase:
        if self.ca is not None and self.sslmode not in VERIFYING_SSLMODES:
            raise bad("ca", f"only applies to sslmode verify-ca or verify-full (sslmode is '{self.sslmode}')")
        return self


class Database(SettingsModel):
    mode: Literal["inCluster", "external"] = Field(
        "inCluster", description="'inCluster': a PostgreSQL StatefulSet; 'external': connect to `external`."
    )
    in_cluster: InClusterDatabase = Field(
        default_factory=defaults(InClusterDatabase), description="In-cluster PostgreSQL."
    )
    external: ExternalDatabase | None = Field(None, description="An existing PostgreSQL server.")

    @model_validator(mode="after")
    def _mode(self) -> Database:
        if self.mode == "external" and self.external is None:
            raise bad("external", "mode 'external' needs 'external' (host, password, ...)")
        if self.mode == "inCluster" and self.external is not None:
            raise bad("external", "is set but mode is 'inCluster', which would ignore it: set mode: external")
        return self


class ExternalBroker(SettingsModel):
    host: HostName = Field(..., description="Redis host name or IP address (a non-clustered endpoint; no port).")
    port: int = Field(6379, ge=1, le=65535, description="Port.")
    password: PrintableSecret | None = Field(None, description="AUTH password (secret).")
    tls: bool = Field(False, description="Connect with TLS (rediss://).")
    db: int = Field(0, ge=0, le=15, description="Redis database number.")


class Broker(SettingsModel):
    mode: Literal["inCluster", "external"] = Field(
        "inCluster", description="'inCluster': a password-protected Redis; 'external': connect to `external`."
    )
    in_cluster: InClusterBroker = Field(default_factory=defaults(InClusterBroker), description="In-cluster Redis.")
    external: ExternalBroker | None = Field(None, description="An existing Redis-compatible broker.")

    @model_validator(mode="after")
    def _mode(self) -> Broker:
        if self.mode == "external" and self.external is None:
            raise bad("external", "mode 'external' needs 'external' (host, password, ...)")
        if self.mode == "inCluster" and self.external is not None:
            raise bad("external", "is set but mode is 'inCluster', which would ignore it: set mode: external")
        return self


SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


class KubernetesSettings(SettingsModel):
    context: PrintableStr | None = Field(
        None, description="kubeconfig context to deploy into (required for the local stack)."
    )
    kubeconfig: PrintableStr | None = Field(
        None, description="Path to the kubeconfig file; unset uses the default search path."
    )
    namespace: DnsLabel = Field("airflow", description="Namespace for Airflow.")
    task_namespace: DnsLabel | None = Field(
        None,
        description=(
            "Namespace for KubernetesPodOperator pods; unset: `<namespace>-tasks` when airflow.podOperator is "
            "enabled. Set it to `namespace` to keep those pods in Airflow's own namespace, where they must "
            "meet Pod Security `restricted`."
        ),
    )
    task_pod_security: Literal["baseline", "restricted"] = Field(
        "baseline",
        description=(
            "Pod Security Standard the task namespace enforces: 'baseline' admits a typical image (root, "
            "no securityContext); warnings and audit always use 'restricted'. Airflow's namespace enforces "
            "'restricted'."
        ),
    )
    network_policies: bool = Field(True, description="Create NetworkPolicies (default deny + allow lists).")
    dag_volume_size: Quantity = Field(
        "1Gi",
        description="Size of the DAG volume the stack creates; applied when the claim is made (grow it in place with kubectl).",
    )
    dag_volume_storage_class: str | None = Field(
        None, description="StorageClass for the DAG volume; unset: the cluster default."
    )
    dag_volume_access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        "ReadWriteMany",
        description="Access mode of the DAG volume the stack creates; ReadWriteOnce only on one-node clusters.",
    )

    log_volume: bool | None = Field(
        None,
        description="Local stack: keep task logs on a claim every task-log writer and the api-server share "
        "(the cloud stacks log to S3 or Blob). Unset: on when the KubernetesExecutor runs tasks, whose pods "
        "are deleted with their logs when the task ends.",
    )
    log_volume_size: Quantity = Field(
        "5Gi",
        description="Size of the task-log claim the local stack creates; applied when the claim is made "
        "(grow it in place with kubectl).",
    )
    log_volume_storage_class: str | None = Field(
        None, description="StorageClass for the task-log claim; unset: the cluster default."
    )
    log_retention_days: int = Field(
        15,
        ge=1,
        le=3650,
        description="Days task logs stay on the task-log claim; an hourly CronJob deletes older ones.",
    )
    log_volume_access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        "ReadWriteMany",
        description="Access mode of the task-log claim; ReadWriteOnce only on one-node clusters.",
    )

    @model_validator(mode="after")
    def _ns(self) -> KubernetesSettings:
        for key, name in (("namespace", self.namespace), ("taskNamespace", self.task_namespace)):
            if name in SYSTEM_NAMESPACES:
                # The stack creates its namespaces and deletes them on destroy: never one the cluster owns.
                raise bad(
                    key, f"'{name}' belongs to the cluster ({', '.join(sorted(SYSTEM_NAMESPACES))}); choose another"
                )
        if self.task_namespace is None and len(self.derived_task_namespace) > 63:
            raise bad(
                "taskNamespace",
                f"the default '{self.derived_task_namespace}' is longer than 63 characters; set taskNamespace",
            )
        return self

    @property
    def derived_task_namespace(self) -> str:
        return f"{self.namespace}-tasks"

    def pod_namespace(self, pod_operator: bool) -> str | None:
        """The separate namespace to create for KubernetesPodOperator pods, or None for none.

        A name set explicitly always gets its namespace (as before it became a default); unset gives
        `<namespace>-tasks` when KubernetesPodOperator is enabled; the Airflow namespace itself means
        the pods stay there.
        """
        name = self.task_namespace or (self.derived_task_namespace if pod_operator else None)
        return None if name == self.namespace else name


# ---- AWS -------------------------------------------------------------------------------------

AWS_REGION = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$"
# The partitions' regions as of 2026-12 (AWS's region list); ISO partitions are left to the pattern.
# A region opened later is one line here.
AWS_REGIONS = frozenset(
    {
        *(f"us-east-{n}" for n in (1, 2)), *(f"us-west-{n}" for n in (1, 2)), "us-gov-east-1", "us-gov-west-1",
        "ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1",
        *(f"eu-west-{n}" for n in (1, 2, 3)), *(f"eu-central-{n}" for n in (1, 2)),
        *(f"eu-south-{n}" for n in (1, 2)), "eu-north-1",
        "af-south-1", "il-central-1", "me-south-1", "me-central-1",
        *(f"ap-east-{n}" for n in (1, 2)), *(f"ap-south-{n}" for n in (1, 2)),
        *(f"ap-northeast-{n}" for n in (1, 2, 3)), *(f"ap-southeast-{n}" for n in (1, 2, 3, 4, 5, 6, 7)),
        "cn-north-1", "cn-northwest-1",
    }
)  # fmt: skip


def api_server_access(
    *,
    created: bool,
    public: bool,
    cidrs: list[str],
    cidrs_key: str,
    network_exists: bool,
    protect_key: str | None,
    private: str,
) -> None:
    """Who may reach a created cluster's API server, the same rule on every cloud: a public one only
    from listed CIDRs (never 0.0.0.0/0 on a protected stack), a private one only in a network that
    exists before the stack (the `up` that creates a network cannot reach a private server in it).
    Raises the error about `cluster.<key>`."""
    if not created:
        return
    if not public and not network_exists:
        raise bad("cluster.publicEndpoint", f"false: {private}, or keep a public API server limited to {cidrs_key}")
    if public and not cidrs:
        raise bad(
            f"cluster.{cidrs_key}",
            "list who may reach the public API server (your admins' and CI's CIDRs), or set "
            "cluster.publicEndpoint: false for a private one in an existing network",
        )
    if public and protect_key and any(ipaddress.ip_network(n).prefixlen == 0 for n in cidrs):
        raise bad(
            f"cluster.{cidrs_key}",
            f"0.0.0.0/0 opens a production API server to the whole internet ({protect_key} is true): list your "
            "admins' and CI's CIDRs",
        )


class AwsSettings(SettingsModel):
    region: str = Field(..., pattern=AWS_REGION, description="AWS region, e.g. eu-west-1.")
    network: AwsNetwork = Field(..., description="VPC: availabilityZones for a new one, or vpcId + privateSubnets.")
    cluster: AwsCluster = Field(default_factory=defaults(AwsCluster), description="EKS.")
    database: AwsDatabase = Field(default_factory=defaults(AwsDatabase), description="RDS PostgreSQL.")
    broker: AwsBroker = Field(default_factory=defaults(AwsBroker), description="ElastiCache.")
    log_retention_days: int = Field(90, ge=1, le=3650, description="Days task logs are kept in S3.")
    protect: bool = Field(
        True,
        description="Production safety: deletion protection, final snapshot, Pulumi `protect` on the database, "
        "file system and log bucket; false for test stacks that must destroy in one go.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every AWS resource.")
    ui: AwsUi = Field(default_factory=defaults(AwsUi), description="The ALB that serves ui.host.")

    @field_validator("region")
    @classmethod
    def _known_region(cls, v: str) -> str:
        if v not in AWS_REGIONS and "-iso" not in v:
            raise ValueError(f"{v!r} is not an AWS region (e.g. eu-west-1, us-east-1, ap-southeast-2)")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> AwsSettings:
        for z in self.network.availability_zones + [s.availability_zone for s in self.network.private_subnets]:
            if not (z.startswith(self.region) and len(z) == len(self.region) + 1):
                raise bad("network.availabilityZones", f"zone {z!r} is not in region {self.region!r}")
        if self.cluster.existing_name and not self.network.vpc_id:
            raise bad(
                "cluster.existingName",
                "an existing cluster needs its network: set network.vpcId and network.privateSubnets",
            )
        c = self.cluster
        api_server_access(
            created=not c.existing_name,
            public=c.public_endpoint,
            cidrs=c.public_access_cidrs,
            cidrs_key="publicAccessCidrs",
            network_exists=bool(self.network.vpc_id),
            protect_key="aws.protect" if self.protect else None,
            private=(
                "a private API server in a VPC this stack creates cannot be reached by the `pulumi up` that creates "
                "it (nothing routes into that VPC yet). Create the cluster in an existing VPC your runner reaches "
                "(network.vpcId, network.privateSubnets)"
            ),
        )
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
    "australiaeast",
    "brazilsouth",
    "canadacentral",
    "centralindia",
    "centralus",
    "eastasia",
    "eastus",
    "eastus2",
    "francecentral",
    "germanywestcentral",
    "israelcentral",
    "italynorth",
    "japaneast",
    "koreacentral",
    "mexicocentral",
    "newzealandnorth",
    "northeurope",
    "norwayeast",
    "polandcentral",
    "qatarcentral",
    "southafricanorth",
    "southcentralus",
    "southeastasia",
    "spaincentral",
    "swedencentral",
    "switzerlandnorth",
    "uaenorth",
    "uksouth",
    "westeurope",
    "westus2",
    "westus3",
}


class AzureSettings(SettingsModel):
    region: str = Field(..., description="Azure region, e.g. westeurope.")
    network: AzureNetwork = Field(default_factory=defaults(AzureNetwork), description="VNet.")
    cluster: AzureCluster = Field(default_factory=defaults(AzureCluster), description="AKS.")
    database: AzureDatabase = Field(default_factory=defaults(AzureDatabase), description="PostgreSQL Flexible Server.")
    broker: AzureBroker = Field(default_factory=defaults(AzureBroker), description="Azure Managed Redis.")
    dags: AzureDags = Field(default_factory=defaults(AzureDags), description="Azure Files DAG share.")
    log_retention_days: int = Field(90, ge=1, le=3650, description="Days task logs are kept in Blob storage.")
    protect: bool = Field(
        True,
        description="Production safety: Pulumi `protect` on the cluster, database, share and log "
        "container (and their storage accounts); false for test stacks.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every Azure resource.")
    ui: AzureUi = Field(
        default_factory=defaults(AzureUi),
        description="The Gateway of AKS's application routing add-on that serves ui.host.",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in AZURE_REGIONS:
            raise ValueError(f"{v!r} is not a known Azure region (e.g. westeurope, northeurope, eastus2, uksouth)")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> AzureSettings:
        net = self.network
        if self.cluster.existing_name and not net.existing:
            # The database, broker and share are reachable only from the VNet their private DNS zones are
            # linked to: a VNet of the stack's own would leave the cluster's pods (the migration Job
            # first) unable to reach them.
            raise bad(
                "network.existingVnetId",
                "an existing cluster (cluster.existingName) needs the VNet it runs in: set network.existingVnetId, "
                "existingPostgresSubnetId and existingEndpointsSubnetId",
            )
        if net.existing:
            if self.cluster.existing_name and net.existing_aks_subnet_id:
                raise bad(
                    "network.existingAksSubnetId", "only for a cluster the stack creates (cluster.existingName is set)"
                )
            if not self.cluster.existing_name and not net.existing_aks_subnet_id:
                raise bad(
                    "network.existingAksSubnetId",
                    "a cluster the stack creates in an existing VNet needs the subnet its nodes join",
                )
        elif ipaddress.ip_network(self.cluster.service_cidr).overlaps(ipaddress.ip_network(net.address_space)):
            raise bad("cluster.serviceCidr", f"{self.cluster.service_cidr} overlaps the VNet {net.address_space}")
        c = self.cluster
        api_server_access(
            created=not c.existing_name,
            public=c.public_endpoint,
            cidrs=c.authorized_ip_ranges,
            cidrs_key="authorizedIpRanges",
            network_exists=net.existing,
            protect_key="azure.protect" if self.protect else None,
            # AKS cannot make a public cluster private later either (outside API server VNet integration).
            private=(
                "a private cluster in a VNet this stack creates cannot be reached by the `pulumi up` that creates "
                "it (nothing is peered to that VNet yet). Create it in an existing VNet your runner reaches "
                "(network.existingVnetId and its subnets)"
            ),
        )
        return self


class StackConfig(SettingsModel):
    """All of `airflow-k8s:*`."""

    cloud: Literal["local", "aws", "azure"] = Field(
        "local", description="Which composition in stacks/ builds this stack."
    )
    kubernetes: KubernetesSettings = Field(default_factory=defaults(KubernetesSettings), description="Target cluster.")
    airflow: AirflowSettings = Field(default_factory=defaults(AirflowSettings), description="Airflow itself.")
    database: Database = Field(default_factory=defaults(Database), description="Metadata DB.")
    pgbouncer: PgBouncerSettings = Field(
        default_factory=defaults(PgBouncerSettings), description="PgBouncer in front of the metadata DB."
    )
    broker: Broker = Field(default_factory=defaults(Broker), description="Celery broker.")
    aws: AwsSettings | None = Field(None, description="The AWS stack (cloud: aws).")
    azure: AzureSettings | None = Field(None, description="The Azure stack (cloud: azure).")
    ui: UiSettings = Field(default_factory=defaults(UiSettings), description="The UI at an HTTPS URL.")

    @model_validator(mode="after")
    def _per_cloud(self) -> StackConfig:
        if self.cloud == "local" and not self.kubernetes.context:
            raise bad("kubernetes.context", "the local stack needs a kubeconfig context name")
        if self.cloud == "local":
            check_local(self.ui)
        else:
            check_cloud(self.ui, self.cloud)
        if self.cloud == "aws":
            if self.aws is None:
                raise bad("aws", "cloud 'aws' needs the 'aws' settings (region, network, ...)")
            if self.database.mode != "inCluster" or self.broker.mode != "inCluster":
                raise bad("database.mode", "the aws stack provides RDS and ElastiCache; leave database/broker unset")
            a = self.aws
            check_aws_ui(self.ui.host, a.ui, region=a.region, created_cluster=not a.cluster.existing_name, tags=a.tags)
            for g in self.airflow.worker_groups() or [None]:
                w = g.settings if g is not None else self.airflow.workers
                key = g.key if g is not None else "workers"
                if not (self.aws.cluster.existing_name and w.storage_size and not w.storage_class):
                    continue
                raise bad(
                    f"airflow.{key}.storageClass",
                    "EKS has no default StorageClass (since Kubernetes 1.30), so worker log claims on an existing "
                    "cluster need one of its classes named here (the stack installs its own gp3 class only in a "
                    "cluster it creates)",
                )
        elif self.aws is not None:
            raise bad("aws", f"only applies to cloud 'aws' (cloud is {self.cloud!r})")
        if self.cloud == "azure":
            if self.azure is None:
                raise bad("azure", "cloud 'azure' needs the 'azure' settings (region, ...)")
            if self.database.mode != "inCluster" or self.broker.mode != "inCluster":
                raise bad("database.mode", "the azure stack provides its database and broker; leave them unset")
            check_azure_ui(self.ui.host, self.azure.ui)
        elif self.azure is not None:
            raise bad("azure", f"only applies to cloud 'azure' (cloud is {self.cloud!r})")
        check_container_names(self.airflow)
        self._check_keda()
        for i, obj in enumerate(self.airflow.extra_objects):
            if obj.metadata.namespace not in (None, self.kubernetes.namespace):
                raise bad(
                    f"airflow.extraObjects.{i}.metadata.namespace",
                    f"extra objects go in Airflow's namespace {self.kubernetes.namespace!r} (leave it unset)",
                )
        if self.cloud != "local" and self.kubernetes.log_volume:
            store = "S3" if self.cloud == "aws" else "Blob storage"
            raise bad(
                "kubernetes.logVolume",
                f"the {self.cloud} stack keeps task logs remote, in {store}; the log volume is for the local stack",
            )
        return self

    def _check_keda(self) -> None:
        """KEDA's operator verifies the metadata DB as Airflow does: it needs the CA file where the
        stack can put it (components/keda.py mounts a shipped PEM into the operator it installs)."""
        a = self.airflow
        if not a.autoscaled:
            return
        ext = self.database.external if self.database.mode == "external" else None
        elsewhere = ext is not None and ext.ca is not None and ext.ca.pem is None
        shipped = (ext is not None and ext.ca is not None) or (
            self.aws is not None and self.aws.database.sslmode in VERIFYING_SSLMODES
        )
        if a.keda.source == "install" and elsewhere:
            raise bad(
                "database.external.ca",
                "KEDA's operator (its own namespace) cannot mount a ConfigMap or Secret of Airflow's namespace: give the "
                "CA as pem for autoscaled workers, or run your own KEDA (airflow.keda.source: existing, databaseCaFile)",
            )
        if a.keda.source == "existing" and shipped and a.keda.database_ca_file is None:
            raise bad(
                "airflow.keda.databaseCaFile",
                "the metadata DB is verified against a CA the stack ships; an existing KEDA's operator needs that CA "
                "mounted by you, at the path given here",
            )

    def database_limit(self) -> DatabaseLimit | None:
        """What the stack's metadata DB allows; None when the stack cannot know (an external server
        without database.external.maxConnections)."""
        return self._limit(self.db_budget().total)

    def _limit(self, peak: int | None) -> DatabaseLimit | None:
        """The limit, given the peak the in-cluster server is raised to when its setting is unset."""
        if self.cloud == "aws" and self.aws is not None:
            return self.aws.database.connection_limit()
        if self.cloud == "azure" and self.azure is not None:
            return self.azure.database.connection_limit()
        if self.database.mode == "external":
            return self.database.external.connection_limit() if self.database.external else None
        return self.database.in_cluster.connection_limit(peak)

    @property
    def in_cluster_max_connections(self) -> int | None:
        """The in-cluster server's max_connections: its setting, else PostgreSQL's default raised to
        the peak it sees (Airflow's, or PgBouncer's pools and the direct Jobs) when that is more
        (None: the default)."""
        return self.database.in_cluster.effective_max_connections(self.db_budget().total)

    def db_budget(self) -> ConnectionBudget:
        """The metadata-DB connections the database sees at peak: Airflow's own, or through PgBouncer
        its server-side pools and the clients that bypass it."""
        budget = connection_budget(self.airflow)
        if self.pgbouncer_enabled:
            p = self.pgbouncer
            return through_pooler(budget, p.replicas, p.default_pool_size + p.reserve_pool_size)
        return budget

    @model_validator(mode="after")
    def _connection_budget(self) -> StackConfig:
        """The peak metadata-DB connections must fit the database (components/airflow/budget.py)."""
        limit = self.database_limit()
        if limit is None:
            return self
        budget = self.db_budget()
        problem = check(budget, limit, pooler=self.pgbouncer_enabled)
        if problem:
            raise bad(over_budget_key(budget), problem)
        return self

    def budget_warnings(self) -> list[str]:
        """The connection budget where it cannot be checked."""
        if self.database_limit() is not None:
            return []
        total = self.db_budget().total
        return [
            f"{PROJECT}:database.external.maxConnections: unset, so the peak of "
            f"{'unbounded' if total is None else total} metadata-DB connections is not checked against the server; "
            "set it to the server's max_connections"
        ]

    def unused_settings(self) -> list[str]:
        """Settings that tune a piece these choices do not deploy: each a warning naming the key.

        The rule (README, "Bad input"): a setting is an error when the chosen mode would put something
        else in place of what it names (an in-cluster database instead of `database.external`, DAGs
        from the image instead of `dags.git`), since that is never what was meant; it is a warning when
        it names or tunes a piece the chosen executor or DAG source simply does not use (a broker or
        workers under the KubernetesExecutor), so switching the executor or the DAG source does not
        mean deleting blocks first.
        """
        out: list[str] = []

        def changed(key: str, model: BaseModel, why: str) -> None:
            fields = _non_default(model)
            if fields:
                keys = ", ".join(f"{PROJECT}:{key}.{f}" for f in fields)
                out.append(f"{keys}: {'has' if len(fields) == 1 else 'have'} no effect: {why}")

        celery = "CeleryExecutor" in self.airflow.executors
        if not self.airflow.autoscaled:
            changed("airflow.keda", self.airflow.keda, "no worker group has autoscaling on")
        if not celery:
            why = f"no Celery workers run under executor '{self.airflow.executor}'"
            changed("airflow.workers", self.airflow.workers, why)
            changed(
                "broker.inCluster", self.broker.in_cluster, f"no broker is deployed under '{self.airflow.executor}'"
            )
            if self.broker.mode == "external":
                out.append(
                    f"{PROJECT}:broker.external: has no effect: executor '{self.airflow.executor}' uses no broker"
                )
        if "KubernetesExecutor" not in self.airflow.executors:
            changed(
                "airflow.taskPods",
                self.airflow.task_pods,
                f"no KubernetesExecutor task pods run under executor '{self.airflow.executor}'",
            )
        if not self.airflow.flower.enabled:
            changed(
                "airflow.flower", self.airflow.flower.model_copy(update={"enabled": False}), "Flower is not enabled"
            )
        if not self.airflow.statsd.enabled:
            changed(
                "airflow.statsd",
                self.airflow.statsd.model_copy(update={"enabled": False}),
                "airflow.statsd.enabled is false",
            )
        if not self.airflow.pod_operator.enabled and self.airflow.pod_operator.placement is not None:
            out.append(f"{PROJECT}:airflow.podOperator.placement: has no effect: airflow.podOperator.enabled is false")
        if not self.pgbouncer_enabled:
            changed("pgbouncer", self.pgbouncer.model_copy(update={"enabled": None}), "PgBouncer is not enabled")
        if self.database.mode == "external":
            changed("database.inCluster", self.database.in_cluster, "database.mode is 'external'")
        if self.broker.mode == "external" and celery:
            changed("broker.inCluster", self.broker.in_cluster, "broker.mode is 'external'")
        d = self.airflow.dags
        makes_claim = self.cloud == "local" and d.source == "volume" and d.claim_name is None
        if not makes_claim:
            why = (
                f"the {self.cloud} stack provides the DAG volume itself"
                if self.cloud != "local" and d.source == "volume"
                else "the stack creates no DAG claim (airflow.dags.claimName is set, or the source is not 'volume')"
            )
            # Sizes and retention tune the claim; its class and access mode say what the cluster offers
            # (a one-node cluster's ReadWriteOnce), which a stack file may state before it needs it.
            for f in ("dag_volume_size",):
                if f in self.kubernetes.model_fields_set:
                    out.append(f"{PROJECT}:kubernetes.{to_camel(f)}: has no effect: {why}")
        if not self.log_volume:
            for f in ("log_volume_size", "log_retention_days"):
                if f in self.kubernetes.model_fields_set:
                    out.append(f"{PROJECT}:kubernetes.{to_camel(f)}: has no effect: no task-log claim is made")
        return out

    @property
    def pgbouncer_enabled(self) -> bool:
        """Whether PgBouncer pools the metadata DB's connections: the one place that decides it.
        `pgbouncer.enabled` when set; unset, on exactly when Airflow's own peak would not fit the
        database (components/airflow/budget.py), so a stack that fits keeps connecting directly."""
        if self.pgbouncer.enabled is not None:
            return self.pgbouncer.enabled
        budget = connection_budget(self.airflow)
        limit = self._limit(budget.total)
        return limit is not None and check(budget, limit) is not None

    @property
    def log_volume(self) -> bool:
        """Whether the local stack keeps task logs on a shared claim (unset: when task pods run)."""
        if self.cloud != "local":
            return False
        if self.kubernetes.log_volume is not None:
            return self.kubernetes.log_volume
        return "KubernetesExecutor" in self.airflow.executors


def _non_default(model: BaseModel) -> list[str]:
    """The camelCase keys whose values differ from the model's defaults (set or not)."""
    default = type(model).model_validate({})
    return [
        f.alias or name
        for name, f in type(model).model_fields.items()
        if getattr(model, name) != getattr(default, name)
    ]


def _loc_to_key(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return f"{PROJECT}:" + ".".join(parts) if parts else PROJECT


def _describe(err: ErrorDetails) -> str:
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
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys a model accepts at `loc` (for 'unknown key' errors)."""
    cur: Any = model
    for p in loc[:-1]:
        if isinstance(p, int):
            continue  # an index into the list the previous key named
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        f = next((f for f in cur.model_fields.values() if f.alias == p), None)
        if f is None:
            return None
        ann = f.annotation
        args = [a for a in getattr(ann, "__args__", ()) if a is not type(None)]
        cur = args[0] if args and typing.get_origin(ann) in (Union, types.UnionType) else ann
        if typing.get_origin(cur) is list:
            cur = typing.get_args(cur)[0]
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return sorted(f.alias for f in cur.model_fields.values() if f.alias)
    return None


def parse(raw: dict[str, Any], secret_keys: Collection[str] = ()) -> StackConfig:
    """Validate raw config (top-level key -> decoded JSON value) into a StackConfig; `secret_keys`
    are the top-level keys (without the namespace) Pulumi marked secret."""
    plain = _plain_secrets(raw, secret_keys)
    if plain:
        raise ConfigError("invalid stack config:\n  " + "\n  ".join(plain))
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
    return any(str(p) in ("password", "connections", "secretVariables", "privateKey", "clientSecret") for p in loc)


# Values that must arrive as Pulumi secrets (`pulumi config set --secret --path KEY VALUE`), as
# paths under the project's namespace. The program only learns which top-level keys are secret:
# Pulumi marks a structured key (`airflow-k8s:airflow`) secret as a whole when any value inside it
# is `secure:`, and a plain-text value in the same key then has no such mark.
SECRET_ONLY = ("airflow.dags.git.ssh.privateKey", "airflow.auth.sso.clientSecret")
# Maps whose every value must arrive as a Pulumi secret (issue 15.6): one message per entry.
SECRET_ONLY_MAPS = ("airflow.connections", "airflow.secretVariables")


def _fix(path: str) -> str:
    return (
        f"{PROJECT}:{path}: must be a Pulumi secret, not plain text: set it with "
        f"`pulumi config set --secret --path '{path}' ...` (and remove the plain value)"
    )


def _at(raw: Any, path: str) -> Any:
    node = raw
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _plain_secrets(raw: dict[str, Any], secret_keys: Collection[str]) -> list[str]:
    """The SECRET_ONLY paths that hold a value in a top-level key Pulumi did not mark secret."""
    out = []
    for path in SECRET_ONLY:
        top, *rest = path.split(".")
        node: Any = raw.get(top)
        for part in rest:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and top not in secret_keys:
            out.append(_fix(path))
    for path in SECRET_ONLY_MAPS:
        entries = _at(raw, path)
        if isinstance(entries, dict) and path.split(".")[0] not in secret_keys:
            out += [_fix(f"{path}.{name}") for name in entries]
    return out


def plain_in_stack_file(stack_file: Any, raw: dict[str, Any]) -> list[str]:
    """The SECRET_ONLY_MAPS entries a stack file holds as plain text (not `{secure: ...}`).

    Pulumi marks only a whole top-level key secret, so once any value under `airflow-k8s:airflow` is
    a secret, a plain-text connection beside it looks the same to the program. The stack file says
    which values are `secure:`; an entry counts only where the config the program got has that same
    value from the file (a value given some other way, e.g. an ESC environment, is checked by the
    top-level rule alone)."""
    block = (stack_file or {}).get("config") if isinstance(stack_file, dict) else None
    out = []
    for path in SECRET_ONLY_MAPS:
        top, rest = path.split(".", 1)
        entries = _at((block or {}).get(f"{PROJECT}:{top}"), rest)
        given = _at(raw.get(top), rest)
        if not isinstance(entries, dict) or not isinstance(given, dict):
            continue
        for name, value in entries.items():
            secure = isinstance(value, dict) and set(value) == {"secure"}
            if not secure and name in given and given[name] == value:
                out.append(_fix(f"{path}.{name}"))
    return out


def _stack_file(stack: str) -> Any:
    """This stack's `Pulumi.<stack>.yaml` (Pulumi.yaml's stackConfigDir is this folder), or None."""
    path = pathlib.Path(__file__).with_name(f"Pulumi.{stack}.yaml")
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


# What a key in another namespace would have meant here: the stack builds its own providers from
# `airflow-k8s:*`, so a provider namespace's settings would be ignored without a word.
PROVIDER_SETTINGS = {
    "aws": "the aws stack's provider takes airflow-k8s:aws.region (and the ambient AWS credentials)",
    "azure-native": "the azure stack's provider takes airflow-k8s:azure.region (and the ambient az login)",
    "kubernetes": "the Kubernetes provider takes airflow-k8s:kubernetes.context (local) or the created cluster",
}


def _foreign_key(ns: str, key: str) -> None:
    """Refuse a key outside `airflow-k8s:` that was surely meant for it: a misspelt project
    namespace (`airflow-k8:airflow`) would otherwise drop a whole block and deploy defaults, and a
    provider namespace's setting (`aws:region`) would be ignored by the stack's explicit providers."""
    top = key.split(".")[0]
    if ns in PROVIDER_SETTINGS:
        raise ConfigError(f"{ns}:{key}: is not read by this program: {PROVIDER_SETTINGS[ns]}")
    ours = {f.alias or name for name, f in StackConfig.model_fields.items()}
    if difflib.SequenceMatcher(None, ns.lower(), PROJECT).ratio() >= 0.8 or top in ours:
        raise ConfigError(
            f"{ns}:{key}: '{ns}' is not this project's config namespace: did you mean {PROJECT}:{key}? "
            f"(the project's keys: {', '.join(sorted(ours))})"
        )


def from_pulumi_config() -> StackConfig:
    """Read every `airflow-k8s:*` key from the running Pulumi program's config and validate it.

    Uses the raw config map rather than `Config.require_object`, which would hand secrets back as
    plain values with a warning; secret fields are SecretStr in the model and become secret Outputs
    where they are used.
    """
    from pulumi.runtime import config as rconfig

    raw: dict[str, Any] = {}
    secret: set[str] = set()
    # A real `pulumi up` passes config in PULUMI_CONFIG; tests and the render set it in-process.
    keys = set(rconfig.get_config_env()) | set(rconfig.CONFIG.get())
    secret_env = set(rconfig.get_config_secret_keys_env())
    for full_key in sorted(keys):
        value = rconfig.get_config(full_key)
        ns, _, key = full_key.partition(":")
        if ns != PROJECT:
            _foreign_key(ns, key)
            continue
        if "." in key or ":" in key:
            raise ConfigError(f"{full_key}: is not a known key (use --path to set nested values)")
        if rconfig.is_config_secret(full_key) or full_key in secret_env:
            secret.add(key)
        try:
            raw[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            raw[key] = value
    import pulumi

    plain = plain_in_stack_file(_stack_file(pulumi.get_stack()), raw)
    if plain:
        raise ConfigError("invalid stack config:\n  " + "\n  ".join(plain))
    config = parse(raw, secret)
    plain_secret_objects(config, secret="airflow" in secret)
    return config


def plain_secret_objects(config: StackConfig, *, secret: bool) -> None:
    """Refuse a Secret among `airflow.extraObjects` whose data came as plain text.

    Pulumi tells a program only which top-level keys hold a secret (`airflow-k8s:airflow` once any
    value under it was set with `--secret`), not which value: so this catches a stack whose
    `airflow` block holds no secret at all, and the program makes the Secret's data a Pulumi secret
    either way. Set each value with `pulumi config set --secret --path 'airflow.extraObjects[0].stringData.key'`.
    """
    if secret:
        return
    for i, obj in enumerate(config.airflow.extra_objects):
        if obj.secret_data:
            key = "stringData" if obj.body.get("stringData") else "data"
            raise ConfigError(
                f"{PROJECT}:airflow.extraObjects.{i}.{key}: Secret {obj.metadata.name!r} has data in plain text in the "
                f"stack config; set each value with `pulumi config set --secret --path "
                f"'airflow.extraObjects[{i}].{key}.<key>' <value>`"
            )
