"""Azure data services for Airflow: PostgreSQL Flexible Server (VNet-integrated, TLS required) and
Azure Managed Redis as the Celery broker (private endpoint, TLS port only, access key).

Why Azure Managed Redis (`redisenterprise`): Azure Cache for Redis is retiring in every SKU
(Enterprise and Enterprise Flash on 2027-03-31, Basic/Standard/Premium on 2028-09-30, announced
2025-10); Azure Managed Redis, its successor, is GA since 2025-05. A new deployment should not start
on a retiring service.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_azure_native.dbforpostgresql as postgresql
import pulumi_azure_native.redisenterprise as redisenterprise
import pulumi_random as random

from components.azure_network import AzureVnet
from components.endpoints import BrokerEndpoint, DatabaseEndpoint
from stacks.config import AzureBroker, AzureDatabase

REDIS_PORT = 10000  # Azure Managed Redis serves TLS on 10000 only


class FlexiblePostgres(pulumi.ComponentResource):
    endpoint: DatabaseEndpoint

    def __init__(self, name: str, *, settings: AzureDatabase, server_name: pulumi.Input[str], net: AzureVnet, location: str,
                 protect: bool, tags: dict[str, str], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("airflow-k8s:azure:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(f"{name}-password", length=32, special=True,
                                         override_special="!#%&*()-_=+[]{}<>:?", opts=child)
        # Private access: the server lives in the delegated subnet and resolves through this zone.
        zone = net.private_zone(name, pulumi.Output.concat(server_name, ".private.postgres.database.azure.com"), self)
        self.server = postgresql.Server(
            f"{name}-server",
            server_name=server_name,
            resource_group_name=net.resource_group,
            location=location,
            version=settings.version,
            sku={"name": settings.sku_name, "tier": settings.tier},
            storage={"storage_size_gb": settings.storage_gib, "auto_grow": "Enabled"},
            backup={"backup_retention_days": settings.backup_retention_days, "geo_redundant_backup": "Disabled"},
            high_availability={"mode": "ZoneRedundant" if settings.high_availability else "Disabled"},
            network={"delegated_subnet_resource_id": net.postgres_subnet.id,
                     "private_dns_zone_arm_resource_id": zone.id, "public_network_access": "Disabled"},
            auth_config={"password_auth": "Enabled", "active_directory_auth": "Disabled"},
            administrator_login="airflow",
            administrator_login_password=password.result,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect, depends_on=net.subnets),
        )
        postgresql.Configuration(
            f"{name}-require-tls", server_name=self.server.name, resource_group_name=net.resource_group,
            configuration_name="require_secure_transport", value="on", source="user-override", opts=child)
        db = postgresql.Database(f"{name}-db", server_name=self.server.name, resource_group_name=net.resource_group,
                                 database_name="airflow", charset="UTF8", collation="en_US.utf8", opts=child)
        self.endpoint = DatabaseEndpoint(
            host=self.server.fully_qualified_domain_name, port=5432, name="airflow", user="airflow",
            password=pulumi.Output.secret(password.result), sslmode="require", depends_on=[db],
        )
        self.register_outputs({"host": self.server.fully_qualified_domain_name})


class ManagedRedis(pulumi.ComponentResource):
    endpoint: BrokerEndpoint

    def __init__(self, name: str, *, settings: AzureBroker, cluster_name: pulumi.Input[str], net: AzureVnet, location: str,
                 tags: dict[str, str], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("airflow-k8s:azure:Broker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = redisenterprise.RedisEnterprise(
            f"{name}-cluster", cluster_name=cluster_name, resource_group_name=net.resource_group, location=location,
            sku={"name": settings.sku}, minimum_tls_version="1.2", public_network_access="Disabled", tags=tags,
            opts=child)
        db = redisenterprise.Database(
            f"{name}-db", cluster_name=cluster.name, resource_group_name=net.resource_group, database_name="default",
            client_protocol="Encrypted", port=REDIS_PORT,
            # kombu has no Redis Cluster support. The SDK documents that only a NoCluster database can
            # change its policy; once clustered it never comes back, so a change here is a replacement.
            clustering_policy="NoCluster",
            eviction_policy="NoEviction",  # a broker must never drop queued tasks
            access_keys_authentication="Enabled",
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["clusteringPolicy"]))
        net.private_endpoint(name, target_id=cluster.id, group="redisEnterprise", zone="privatelink.redis.azure.net",
                             location=location, parent=self)
        keys = redisenterprise.list_database_keys_output(
            cluster_name=cluster.name, database_name=db.name, resource_group_name=net.resource_group,
            opts=pulumi.InvokeOutputOptions(parent=self))
        self.endpoint = BrokerEndpoint(
            host=cluster.host_name, port=REDIS_PORT, password=pulumi.Output.secret(keys.primary_key), tls=True,
            cert_reqs="required", depends_on=[db],
        )
        self.register_outputs({"host": cluster.host_name})
