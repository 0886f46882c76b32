"""RDS PostgreSQL for the Airflow metadata DB: private, encrypted, TLS required, backed up."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws_network import cluster_only_security_group
from components.endpoints import DatabaseEndpoint
from stacks.config import AwsDatabase

PORT = 5432


class RdsPostgres(pulumi.ComponentResource):
    """A PostgreSQL instance reachable only from the cluster's security group."""

    endpoint: DatabaseEndpoint

    def __init__(self, name: str, *, settings: AwsDatabase, identifier: str, vpc_id: pulumi.Input[str],
                 subnet_ids: list[pulumi.Input[str]], client_security_group_id: pulumi.Input[str], protect: bool,
                 tags: dict[str, str], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("airflow-k8s:aws:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # A generated password kept in state, not `manage_master_user_password`: RDS rotates a managed
        # one every 7 days, which would break the static connection string Airflow holds.
        password = random.RandomPassword(f"{name}-password", length=32, special=True,
                                         override_special="!#%&*()-_=+[]{}<>:?", opts=child)
        sg = cluster_only_security_group(self, name, vpc_id=vpc_id, port=PORT,
                                         client_security_group_id=client_security_group_id,
                                         description="Airflow metadata DB: PostgreSQL from the EKS cluster only", tags=tags)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=subnet_ids, tags=tags, opts=child)
        major = settings.engine_version.split(".")[0]
        params = aws.rds.ParameterGroup(
            f"{name}-params", family=f"postgres{major}",
            # Refuse unencrypted connections at the server, whatever a client asks for.
            parameters=[{"name": "rds.force_ssl", "value": "1"}], tags=tags, opts=child,
        )
        monitoring_role = None
        if settings.monitoring_interval_seconds:
            monitoring_role = aws.iam.Role(
                f"{name}-monitoring-role",
                assume_role_policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}),
                tags=tags, opts=child)
            aws.iam.RolePolicyAttachment(
                f"{name}-monitoring-policy", role=monitoring_role.name,
                policy_arn="arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole", opts=child)
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
            auto_minor_version_upgrade=True,
            deletion_protection=protect,
            # Production keeps a final snapshot; its name carries the identifier only once, so a second
            # destroy of a recreated test stack cannot fail on DBSnapshotAlreadyExists: test stacks skip it.
            skip_final_snapshot=not protect,
            final_snapshot_identifier=f"{identifier}-final" if protect else None,
            delete_automated_backups=not protect,
            apply_immediately=not protect,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        self.endpoint = DatabaseEndpoint(
            host=self.instance.address, port=PORT, name="airflow", user="airflow",
            password=pulumi.Output.secret(password.result), sslmode="require",
            depends_on=[self.instance],
        )
        self.register_outputs({"address": self.instance.address})
