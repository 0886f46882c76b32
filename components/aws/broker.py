"""ElastiCache for the Celery broker: Valkey (or Redis) with TLS and an AUTH token, non-clustered.

Celery's Redis transport (kombu) has no Redis Cluster support (celery#9019, #9436), so this is a
replication group with cluster mode disabled, never ElastiCache Serverless.
"""

from __future__ import annotations

from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pydantic import Field, field_validator

from components.aws.instance_classes import check_class
from components.aws.network import DataClients, cluster_only_security_group
from components.endpoints import BrokerEndpoint
from components.settings import SettingsModel

PORT = 6379


CACHE_FAMILIES = {"t3", "t4g", "m5", "m6g", "m7g", "r5", "r6g", "r6gd", "r7g", "c7gn"}


class AwsBroker(SettingsModel):
    """`aws.broker`: the ElastiCache replication group of the Celery broker."""

    engine: Literal["valkey", "redis"] = Field(
        "valkey", description="ElastiCache engine; Valkey is the Redis-compatible open-source default."
    )
    engine_version: str = Field("8.1", pattern=r"^\d+\.\d+$", description="Engine version.")
    node_type: str = Field("cache.m7g.large", description="Cache node type.")
    replicas: int = Field(1, ge=0, le=5, description="Read replicas; at least one enables automatic failover.")

    @field_validator("node_type")
    @classmethod
    def _node(cls, v: str) -> str:
        return check_class(v, "cache", CACHE_FAMILIES)


class ElastiCacheBroker(pulumi.ComponentResource):
    """An ElastiCache replication group (cluster mode disabled) with TLS required, encryption at rest
    and a generated AUTH token, in its own subnet group and a security group open to the cluster only.

    Attributes:
        endpoint: the primary's address on port 6379 with TLS (certificate verified) and the AUTH
            token as a secret Output; the aws stack passes it to the Airflow component.
        group: the ReplicationGroup.
    """

    endpoint: BrokerEndpoint

    def __init__(
        self,
        name: str,
        *,
        settings: AwsBroker,
        identifier: str,
        vpc_id: pulumi.Input[str],
        subnet_ids: list[pulumi.Input[str]],
        clients: DataClients,
        protect: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the broker.

        Args:
            name: Pulumi name prefix of the children (`<name>-auth-token`, `<name>-sg`, `<name>-subnets`,
                `<name>-group`).
            settings: engine, engine version, node type and read replicas (config `aws.broker`). With
                one replica or more, automatic failover and Multi-AZ are on; with none, both are off.
            identifier: the replication group id in AWS, unique in the account and region; the stack
                passes `airflow-<stack>`.
            vpc_id: the VPC the security group is made in.
            subnet_ids: subnets of the cache subnet group, where the nodes land; the stack passes the
                VPC's private subnets.
            clients: the security groups whose members may connect on 6379
                (`EksCluster.data_clients`); no CIDR is ever admitted.
            protect: Pulumi `protect` on the replication group (config `aws.protect`): a change that
                would replace it (a new id, encryption at rest, subnet group) stops at preview.
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            opts: options of the component; pass the AWS provider as `providers=[...]` (the stack also
                makes it depend on the network's subnets).
        """
        super().__init__("airflow-k8s:aws:Broker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # AUTH tokens: 16-128 characters, symbols limited to ! & # $ ^ < > -.
        token = random.RandomPassword(
            f"{name}-auth-token", length=48, special=True, override_special="!&#$^<>-", opts=child
        )
        sg = cluster_only_security_group(
            self,
            name,
            vpc_id=vpc_id,
            port=PORT,
            clients=clients,
            description="Airflow Celery broker: Redis protocol from the EKS cluster only",
            tags=tags,
        )
        subnets = aws.elasticache.SubnetGroup(f"{name}-subnets", subnet_ids=subnet_ids, tags=tags, opts=child)
        failover = settings.replicas >= 1
        self.group = aws.elasticache.ReplicationGroup(
            f"{name}-group",
            replication_group_id=identifier,
            description="Airflow Celery broker",
            engine=settings.engine,
            engine_version=settings.engine_version,
            node_type=settings.node_type,
            port=PORT,
            cluster_mode="disabled",
            num_cache_clusters=1 + settings.replicas,
            automatic_failover_enabled=failover,
            multi_az_enabled=failover,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            auth_token=token.result,
            subnet_group_name=subnets.name,
            security_group_ids=[sg.id],
            snapshot_retention_limit=0,  # a broker queue, not data to restore
            apply_immediately=True,
            tags=tags,
            # The id is fixed, so a replacement cannot create first ("already exists"): it deletes
            # first, and queued messages go with it. Production's protect stops that at preview.
            opts=pulumi.ResourceOptions(parent=self, protect=protect, delete_before_replace=True),
        )
        self.endpoint = BrokerEndpoint(
            host=self.group.primary_endpoint_address,
            port=PORT,
            password=pulumi.Output.secret(token.result),
            tls=True,
            cert_reqs="required",
            depends_on=[self.group],
        )
        self.register_outputs({"address": self.group.primary_endpoint_address})
