"""RDS PostgreSQL for the Airflow metadata DB: private, encrypted, TLS required and verified, backed up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pydantic import Field, field_validator, model_validator

from components.aws.instance_classes import check_class, rds_memory_gib
from components.aws.network import DataClients, cluster_only_security_group
from components.endpoints import (
    VERIFYING_SSLMODES,
    CaBundle,
    DatabaseEndpoint,
    DatabaseLimit,
    ca_certificates,
    common_name,
)
from components.settings import SettingsModel, bad

PORT = 5432

# AWS's bundle of RDS root CAs (provenance and checks in rds_ca/SOURCE.md).
RDS_CA_BUNDLE = Path(__file__).parent / "rds_ca" / "global-bundle.pem"
# The CA that signs an instance's server certificate -> the key type in its root's CN.
RDS_CAS = {"rds-ca-rsa2048-g1": "RSA2048", "rds-ca-rsa4096-g1": "RSA4096", "rds-ca-ecc384-g1": "ECC384"}
RdsCa = Literal["rds-ca-rsa2048-g1", "rds-ca-rsa4096-g1", "rds-ca-ecc384-g1"]


def rds_root_cas(region: str, ca_cert_identifier: str) -> str:
    """The RDS root CAs of `region` from the vendored bundle, as PEM (all three key types, so a
    change of the instance's CA keeps verifying). ValueError if the root that signs
    `ca_cert_identifier` certificates in that region is not in the bundle."""
    prefix = f"Amazon RDS {region} Root CA "
    roots = [(pem, common_name(fields)) for pem, fields in ca_certificates(RDS_CA_BUNDLE.read_text())]
    mine = [(pem, cn) for pem, cn in roots if cn.startswith(prefix)]
    wanted = f"{prefix}{RDS_CAS[ca_cert_identifier]} G1"
    if wanted not in {cn for _, cn in mine}:
        raise ValueError(
            f"the vendored RDS CA bundle has no '{wanted}' (components/aws/rds_ca/SOURCE.md): "
            f"update it, or set aws.database.sslmode to 'require'"
        )
    return "".join(pem + "\n" for pem, _ in mine)


# RDS PostgreSQL instance families (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Support.html).
RDS_FAMILIES = {
    "t3",
    "t4g",
    "m5",
    "m5d",
    "m6g",
    "m6gd",
    "m6i",
    "m6id",
    "m6in",
    "m6idn",
    "m7g",
    "m7gd",
    "m7i",
    "m8g",
    "r5",
    "r5b",
    "r5d",
    "r6g",
    "r6gd",
    "r6i",
    "r6id",
    "r6in",
    "r6idn",
    "r7g",
    "r7gd",
    "r7i",
    "r8g",
    "x2g",
    "x2idn",
    "x2iedn",
    "x2iezn",
    "z1d",
}


class AwsDatabase(SettingsModel):
    """`aws.database`: the RDS PostgreSQL instance."""

    instance_class: str = Field("db.m7g.large", description="RDS instance class.")
    engine_version: str = Field(
        "17",
        pattern=r"^1[4-8](\.\d+)?$",
        description="PostgreSQL major version (AWS applies minor upgrades); a major.minor only with "
        "autoMinorVersionUpgrade false. Raising the major upgrades the instance in place.",
    )
    auto_minor_version_upgrade: bool = Field(
        True, description="Let AWS apply minor engine upgrades in the maintenance window."
    )
    allocated_storage_gib: int = Field(50, ge=20, le=65536, description="Initial storage.")
    max_allocated_storage_gib: int = Field(200, ge=20, le=65536, description="Storage autoscaling ceiling.")
    multi_az: bool = Field(True, description="Standby in a second zone.")
    backup_retention_days: int = Field(7, ge=1, le=35, description="Automated backups kept (never 0).")
    performance_insights: bool = Field(True, description="Performance Insights.")
    monitoring_interval_seconds: Literal[0, 1, 5, 10, 15, 30, 60] = Field(
        60, description="Enhanced monitoring interval (0 turns it off)."
    )
    sslmode: Literal["require", "verify-ca", "verify-full"] = Field(
        "verify-full",
        description="How Airflow's connections check the server: 'verify-full' against the region's RDS root CAs "
        "(vendored from AWS's bundle) and the host name; 'require' only encrypts.",
    )
    ca_cert_identifier: RdsCa = Field(
        "rds-ca-rsa2048-g1", description="The CA that signs the instance's certificate (AWS's default for new ones)."
    )

    @model_validator(mode="after")
    def _storage(self) -> AwsDatabase:
        # RDS refuses an autoscaling ceiling that is not above the allocated size (and 10% more at least).
        if self.max_allocated_storage_gib <= self.allocated_storage_gib:
            raise bad(
                "maxAllocatedStorageGib",
                f"must be above allocatedStorageGib ({self.max_allocated_storage_gib} <= {self.allocated_storage_gib})",
            )
        return self

    @model_validator(mode="after")
    def _version(self) -> AwsDatabase:
        if "." in self.engine_version and self.auto_minor_version_upgrade:
            major = self.engine_version.split(".")[0]
            raise bad(
                "engineVersion",
                f"give the major version only ({major!r}): with autoMinorVersionUpgrade, AWS moves the minor "
                f"and a pinned {self.engine_version!r} fails the next `up`; or set autoMinorVersionUpgrade: false",
            )
        return self

    @field_validator("instance_class")
    @classmethod
    def _class(cls, v: str) -> str:
        return check_class(v, "db", RDS_FAMILIES)

    def connection_limit(self) -> DatabaseLimit:
        """max_connections of the instance: the parameter group below leaves it to the default
        formula of every RDS PostgreSQL parameter group family, LEAST({DBInstanceClassMemory/9531392}, 5000)
        (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections).
        DBInstanceClassMemory is the class's memory less what RDS keeps for the OS and its own
        processes, and AWS publishes no figure per class: this takes 95% of the nominal memory less
        250 MiB, below every value reported from `SHOW max_connections` (db.t3.micro 81, db.t2.small
        198, db.t2.medium 413, db.m4.large 856, db.r4.large 1660). 5 slots stay free: PostgreSQL's 3
        superuser-reserved ones (the `rdsadmin` agent's) and 2 for an operator's rds_superuser session."""
        memory = rds_memory_gib(self.instance_class) * 2**30
        estimate = 0.95 * memory - 250 * 2**20
        return DatabaseLimit(
            max_connections=min(int(estimate // 9531392), 5000),
            reserved=5,
            source=f"RDS {self.instance_class} ({rds_memory_gib(self.instance_class):g} GiB): "
            "LEAST({DBInstanceClassMemory/9531392}, 5000), less 5 reserved",
            larger="a larger aws.database.instanceClass",
        )


class RdsPostgres(pulumi.ComponentResource):
    """A PostgreSQL instance reachable only from the cluster's security group.

    gp3 storage, encrypted, not publicly accessible, `rds.force_ssl` on, automated backups kept,
    database and user both `airflow` with a generated password.

    Attributes:
        endpoint: the instance's address on 5432 with the configured sslmode (`verify-full` with the
            region's RDS root CAs by default) and the password as a secret Output; the aws stack
            passes it to the Airflow component.
        instance: the RDS Instance.
    """

    endpoint: DatabaseEndpoint

    def __init__(
        self,
        name: str,
        *,
        settings: AwsDatabase,
        identifier: str,
        region: str,
        vpc_id: pulumi.Input[str],
        subnet_ids: list[pulumi.Input[str]],
        clients: DataClients,
        protect: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the database.

        Args:
            name: Pulumi name prefix of the children (`<name>-password`, `<name>-sg`, `<name>-subnets`,
                `<name>-params`, `<name>-instance`, ...).
            settings: instance class, engine version, storage, Multi-AZ, backups and monitoring (config
                `aws.database`); the parameter group's family follows the major version.
            identifier: the RDS instance identifier, unique in the account and region; the stack passes
                `airflow-<stack>`. A kept final snapshot is named `<identifier>-final-<8 hex digits>`,
                generated once per instance.
            region: the AWS region; its RDS root CAs are what a verifying connection trusts (the
                stack checks first that the vendored bundle has them: `rds_root_cas`).
            vpc_id: the VPC the security group is made in.
            subnet_ids: subnets of the DB subnet group (RDS wants at least two zones); the stack passes
                the VPC's private subnets.
            clients: the security groups whose members may connect on 5432
                (`EksCluster.data_clients`); no CIDR is ever admitted.
            protect: production safety (config `aws.protect`): deletion protection and Pulumi `protect`
                on the instance, a final snapshot and the automated backups kept on delete, changes
                applied in the maintenance window. False (test stacks): none of that, changes applied
                immediately, so `pulumi destroy` removes everything in one go.
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            opts: options of the component; pass the AWS provider as `providers=[...]` (the stack also
                makes it depend on the network's subnets).
        """
        super().__init__("airflow-k8s:aws:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # A generated password kept in state, not `manage_master_user_password`: RDS rotates a managed
        # one every 7 days, which would break the static connection string Airflow holds.
        password = random.RandomPassword(
            f"{name}-password", length=32, special=True, override_special="!#%&*()-_=+[]{}<>:?", opts=child
        )
        sg = cluster_only_security_group(
            self,
            name,
            vpc_id=vpc_id,
            port=PORT,
            clients=clients,
            description="Airflow metadata DB: PostgreSQL from the EKS cluster only",
            tags=tags,
        )
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=subnet_ids, tags=tags, opts=child)
        major = settings.engine_version.split(".")[0]
        params = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            # Refuse unencrypted connections at the server, whatever a client asks for.
            parameters=[{"name": "rds.force_ssl", "value": "1"}],
            tags=tags,
            opts=child,
        )
        monitoring_role = None
        monitoring_ready: list[pulumi.Resource] = []
        if settings.monitoring_interval_seconds:
            monitoring_role = aws.iam.Role(
                f"{name}-monitoring-role",
                assume_role_policy=pulumi.Output.json_dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                ),
                tags=tags,
                opts=child,
            )
            # RDS checks the role's permissions when it is given: the instance waits for the policy.
            monitoring_ready.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-monitoring-policy",
                    role=monitoring_role.name,
                    policy_arn="arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
                    opts=child,
                )
            )
        snapshot_suffix = (
            random.RandomId(f"{name}-snapshot-suffix", byte_length=4, keepers={"identifier": identifier}, opts=child)
            if protect
            else None
        )
        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=identifier,
            engine="postgres",
            engine_version=settings.engine_version,
            instance_class=settings.instance_class,
            allocated_storage=settings.allocated_storage_gib,
            max_allocated_storage=settings.max_allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,  # the provider's default is false
            db_name="airflow",
            username="airflow",
            password=password.result,
            port=PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[sg.id],
            parameter_group_name=params.name,
            publicly_accessible=False,
            multi_az=settings.multi_az,
            backup_retention_period=settings.backup_retention_days,  # the provider's default is 0
            copy_tags_to_snapshot=True,
            performance_insights_enabled=settings.performance_insights,
            monitoring_interval=settings.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn if monitoring_role else None,
            # A major version only: the provider keeps it in state while the running version starts
            # with it (engine_version_actual has the minor), so AWS's minor upgrades are no drift.
            auto_minor_version_upgrade=settings.auto_minor_version_upgrade,
            # A raised major in config is an upgrade (with the new family's parameter group).
            allow_major_version_upgrade=True,
            # Explicit, so the roots handed to Airflow are known to sign it (rds_root_cas checks).
            ca_cert_identifier=settings.ca_cert_identifier,
            deletion_protection=protect,
            # Production keeps a final snapshot, named with a suffix generated once per instance: a
            # re-created stack's destroy would otherwise fail on DBSnapshotAlreadyExists (the first
            # destroy's snapshot is kept). Test stacks skip it.
            skip_final_snapshot=not protect,
            final_snapshot_identifier=pulumi.Output.concat(identifier, "-final-", snapshot_suffix.hex)
            if snapshot_suffix
            else None,
            delete_automated_backups=not protect,
            apply_immediately=not protect,
            tags=tags,
            # The identifier is fixed, so a replacement cannot create first ("already exists").
            # Production's protect stops a replacing change at preview instead.
            opts=pulumi.ResourceOptions(
                parent=self, protect=protect, depends_on=monitoring_ready, delete_before_replace=True
            ),
        )
        self.endpoint = DatabaseEndpoint(
            host=self.instance.address,
            port=PORT,
            name="airflow",
            user="airflow",
            password=pulumi.Output.secret(password.result),
            sslmode=settings.sslmode,
            ca=CaBundle(pem=rds_root_cas(region, settings.ca_cert_identifier))
            if settings.sslmode in VERIFYING_SSLMODES
            else None,
            depends_on=[self.instance],
        )
        self.register_outputs({"address": self.instance.address})
