"""Azure Managed Redis as the Celery broker: a private endpoint, the TLS port only, an access key.

Why Azure Managed Redis (`redisenterprise`): Azure Cache for Redis is retiring in every SKU
(Enterprise and Enterprise Flash on 2027-03-31, Basic/Standard/Premium on 2028-09-30, announced
2025-10); Azure Managed Redis, its successor, is GA since 2025-05. A new deployment should not start
on a retiring service.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native.redisenterprise as redisenterprise
from pydantic import Field, field_validator

from components.azure.network import AzureVnet
from components.endpoints import BrokerEndpoint
from components.settings import SettingsModel

REDIS_PORT = 10000  # Azure Managed Redis serves TLS on 10000 only

# Azure Managed Redis SKUs (redisenterprise); Enterprise_* and EnterpriseFlash_* retire on 2027-03-31.
AZURE_REDIS_SKUS = {
    *(f"Balanced_B{n}" for n in (0, 1, 3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700, 1000)),
    *(f"MemoryOptimized_M{n}" for n in (10, 20, 50, 100, 150, 250, 350, 500, 700, 1000, 1500, 2000)),
    *(f"ComputeOptimized_X{n}" for n in (3, 5, 10, 20, 50, 100, 150, 250, 350, 500, 700)),
}


class AzureBroker(SettingsModel):
    """`azure.broker`: the Azure Managed Redis cluster of the Celery broker."""

    sku: str = Field("Balanced_B1", description="Azure Managed Redis SKU.")
    high_availability: bool = Field(
        True,
        description="Replicate the data set (Azure's default; off: one node, cheaper, and queued tasks are lost "
        "with it). Applies when the broker is created: an existing broker keeps its setting.",
    )

    @field_validator("sku")
    @classmethod
    def _sku(cls, v: str) -> str:
        if v not in AZURE_REDIS_SKUS:
            raise ValueError(
                f"{v!r} is not an Azure Managed Redis SKU (Balanced_B0..B1000, MemoryOptimized_M10.., "
                "ComputeOptimized_X3..)"
            )
        return v


class ManagedRedis(pulumi.ComponentResource):
    """An Azure Managed Redis cluster with one non-clustered, no-eviction database on the TLS port,
    public network access off, reachable through a private endpoint in the VNet.

    Attributes:
        endpoint: the cluster's host name on port 10000 with TLS (certificate verified) and the
            database's primary access key as a secret Output; the azure stack passes it to Airflow.
    """

    endpoint: BrokerEndpoint

    def __init__(
        self,
        name: str,
        *,
        settings: AzureBroker,
        cluster_name: pulumi.Input[str],
        net: AzureVnet,
        location: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the broker.

        Args:
            name: Pulumi name prefix of the children (`<name>-cluster`, `<name>-db`, and the private
                endpoint's `<name>-endpoint`, `<name>-zone`, ...).
            settings: the SKU (config `azure.broker`).
            cluster_name: the Redis cluster's name, part of its DNS host name and so unique across
                Azure; the stack passes `airflow-<stack>-<suffix>`.
            net: the VNet: its resource group holds the cluster, its endpoints subnet the private
                endpoint, registered in a linked `privatelink.redis.azure.net` zone.
            location: Azure region of the cluster and the private endpoint.
            tags: tags on the cluster.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:Broker", name, None, opts)
        cluster = redisenterprise.RedisEnterprise(
            f"{name}-cluster",
            cluster_name=cluster_name,
            resource_group_name=net.resource_group,
            location=location,
            sku={"name": settings.sku},
            minimum_tls_version="1.2",
            public_network_access="Disabled",
            high_availability="Enabled" if settings.high_availability else "Disabled",
            tags=tags,
            # Azure cannot switch replication on an existing cluster (hashicorp/terraform-provider-azurerm
            # marks `high_availability_enabled` ForceNew), and a broker created before this setting
            # existed has it unset (enabled): a change would replace the broker and drop its queue. Pulumi
            # uses the value only on create, and an old state without it keeps it unset.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["highAvailability"]),
        )
        db = redisenterprise.Database(
            f"{name}-db",
            cluster_name=cluster.name,
            resource_group_name=net.resource_group,
            database_name="default",
            client_protocol="Encrypted",
            port=REDIS_PORT,
            # kombu has no Redis Cluster support. The SDK documents that only a NoCluster database can
            # change its policy; once clustered it never comes back, so a change here is a replacement.
            clustering_policy="NoCluster",
            eviction_policy="NoEviction",  # a broker must never drop queued tasks
            access_keys_authentication="Enabled",
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["clusteringPolicy"]),
        )
        access = net.private_endpoint(
            name,
            target_id=cluster.id,
            group="redisEnterprise",
            zone="privatelink.redis.azure.net",
            location=location,
            parent=self,
        )
        keys = redisenterprise.list_database_keys_output(
            cluster_name=cluster.name,
            database_name=db.name,
            resource_group_name=net.resource_group,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        # The host name resolves to the private endpoint only once its A record and the zone's VNet link
        # exist; before that it resolves to the public address (refused). The host carries them, so
        # whatever is built from it (the broker-URL Secret, and the Celery pods reading it) waits.
        host = pulumi.Output.all(cluster.host_name, *(r.urn for r in access.ready)).apply(lambda v: str(v[0]))
        self.endpoint = BrokerEndpoint(
            host=host,
            port=REDIS_PORT,
            password=pulumi.Output.secret(keys.primary_key),
            tls=True,
            cert_reqs="required",
            depends_on=[db],
        )
        self.register_outputs({"host": cluster.host_name})
