"""PostgreSQL Flexible Server for the Airflow metadata DB: VNet-integrated (no public access), TLS
required (the server's default), resolvable through a private DNS zone linked to the VNet."""

from __future__ import annotations

import re
from typing import Literal

import pulumi
import pulumi_azure_native.dbforpostgresql as postgresql
import pulumi_random as random
from pydantic import Field, model_validator

from components.azure.network import AzureVnet
from components.endpoints import VERIFYING_SSLMODES, CaBundle, DatabaseEndpoint, DatabaseLimit
from components.settings import SettingsModel, bad

# Microsoft's "Limits in Azure Database for PostgreSQL flexible server" table, maximum connections by
# the SKU's memory (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/concepts-limits):
# 2 GiB (B1ms) 50, 4 GiB 429, 8 GiB 859, 16 GiB 1718, 32 GiB 3437, 48 GiB and more 5000; the server
# keeps 15 of them for its own replication and monitoring ("max user connections").
FLEXIBLE_MAX_CONNECTIONS = {2: 50, 4: 429, 8: 859, 16: 1718, 32: 3437}
FLEXIBLE_RESERVED = 15
BURSTABLE_GIB = {"B1ms": 2, "B2s": 4, "B2ms": 8, "B4ms": 16, "B8ms": 32, "B12ms": 48, "B16ms": 64, "B20ms": 80}


def flexible_memory_gib(sku_name: str) -> int | None:
    """Memory of a Flexible Server SKU: the Burstable ones by name, D-series 4 GiB and E-series 8 GiB
    per vCore; None for a SKU the table does not list."""
    name = sku_name.removeprefix("Standard_")
    if name.startswith("B"):
        return BURSTABLE_GIB.get(name)
    m = re.match(r"^([DE])([0-9]+)", name)
    return int(m.group(2)) * (4 if m.group(1) == "D" else 8) if m else None


class AzureDatabase(SettingsModel):
    """`azure.database`: the PostgreSQL Flexible Server."""

    tier: Literal["Burstable", "GeneralPurpose", "MemoryOptimized"] = Field(
        "GeneralPurpose", description="Compute tier."
    )
    sku_name: str = Field(
        "Standard_D2ds_v5",
        pattern=r"^Standard_(B|D|E)[0-9]+[a-z]*(_v[0-9])?$",
        description="Compute SKU (Standard_B*, Standard_D*, Standard_E*).",
    )
    version: Literal["14", "15", "16", "17"] = Field("17", description="PostgreSQL major version.")
    storage_gib: Literal[32, 64, 128, 256, 512, 1024, 2048, 4096] = Field(
        64,
        description="Storage size the server is created with; storage autogrow grows it, and the stack never "
        "changes it afterwards (grow it with `az postgres flexible-server update --storage-size`).",
    )
    backup_retention_days: int = Field(7, ge=7, le=35, description="Backups kept (Azure's minimum is 7).")
    high_availability: bool = Field(True, description="Zone-redundant standby.")
    sslmode: Literal["require", "verify-ca", "verify-full"] = Field(
        "verify-full",
        description="How Airflow's connections check the server: 'verify-full' against the image's system CA "
        "bundle (it holds the roots Azure names) and the host name; 'require' only encrypts.",
    )

    @model_validator(mode="after")
    def _sku(self) -> AzureDatabase:
        family = self.sku_name.split("_")[1][0]
        want = {"Burstable": "B", "GeneralPurpose": "D", "MemoryOptimized": "E"}[self.tier]
        if family != want:
            raise bad("skuName", f"{self.sku_name} is not a {self.tier} SKU (Standard_{want}...)")
        if self.high_availability and self.tier == "Burstable":
            raise bad("highAvailability", "is not offered on the Burstable tier")
        return self

    @model_validator(mode="after")
    def _known_sku(self) -> AzureDatabase:
        if flexible_memory_gib(self.sku_name) is None:
            raise bad("skuName", f"{self.sku_name} is not a Flexible Server SKU ({', '.join(f'Standard_{b}' for b in BURSTABLE_GIB)}, "
                      "Standard_D<n>ds_v5, Standard_E<n>ds_v5, ...)")  # fmt: skip
        return self

    def connection_limit(self) -> DatabaseLimit:
        """The server's default max_connections for its SKU (the stack sets no `max_connections`)."""
        gib = flexible_memory_gib(self.sku_name) or 0
        return DatabaseLimit(
            max_connections=FLEXIBLE_MAX_CONNECTIONS.get(gib, 5000 if gib >= 48 else 0),
            reserved=FLEXIBLE_RESERVED,
            source=f"Flexible Server {self.sku_name} ({gib} GiB): Microsoft's limits table, less the 15 Azure reserves",
            larger="a larger azure.database.skuName (and tier)",
        )


class FlexiblePostgres(pulumi.ComponentResource):
    """A PostgreSQL Flexible Server in the VNet's delegated subnet (no public access), with
    `require_secure_transport` left at its default (on), password auth for the `airflow` administrator (a generated
    password) and an `airflow` database.

    Attributes:
        endpoint: the server's FQDN on 5432 with the configured sslmode (`verify-full` against the
            image's system CA bundle by default) and the password as a secret Output, usable once the
            database exists; the azure stack passes it to Airflow.
        server: the Flexible Server.
    """

    endpoint: DatabaseEndpoint

    def __init__(
        self,
        name: str,
        *,
        settings: AzureDatabase,
        server_name: pulumi.Input[str],
        net: AzureVnet,
        location: str,
        protect: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the database.

        Args:
            name: Pulumi name prefix of the children (`<name>-password`, `<name>-zone`, `<name>-server`,
                `<name>-db`, ...).
            settings: tier, SKU, version, storage, backups and high availability (config `azure.database`).
            server_name: the server's name, part of its DNS name and so unique across Azure; the stack
                passes `airflow-<stack>-<suffix>`. The private DNS zone is
                `<server_name>.private.postgres.database.azure.com`.
            net: the VNet: its resource group holds the server, its PostgreSQL subnet is the delegated
                one, the private DNS zone is linked to it; the server waits for all its subnets.
            location: Azure region of the server.
            protect: Pulumi `protect` on the server (config `azure.protect`).
            tags: tags on the server.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(
            f"{name}-password", length=32, special=True, override_special="!#%&*()-_=+[]{}<>:?", opts=child
        )
        # Private access: the server lives in the delegated subnet and resolves through this zone. The
        # zone must be linked to the VNet before the server exists, or its name first resolves publicly.
        dns = net.private_zone(name, pulumi.Output.concat(server_name, ".private.postgres.database.azure.com"), self)
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
            network={
                "delegated_subnet_resource_id": net.postgres_subnet_id,
                "private_dns_zone_arm_resource_id": dns.zone_id,
                "public_network_access": "Disabled",
            },
            auth_config={"password_auth": "Enabled", "active_directory_auth": "Disabled"},
            administrator_login="airflow",
            administrator_login_password=password.result,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=protect,
                depends_on=[*net.subnets, *([dns.link] if dns.link else [])],
                # Autogrow grows the storage; the configured size is only where it starts, and a
                # Flexible Server's storage can never shrink, so a later `up` must not send it back.
                ignore_changes=["storage.storageSizeGB"],
            ),
        )
        # A Flexible Server runs one operation at a time: a second write beside this one fails with
        # ServerIsBusy (Azure/azure-postgresql#134, hashicorp/terraform-provider-azurerm#28298). So the
        # server gets no Configuration: `require_secure_transport` is on by default ("Encryption is
        # enforced by default", learn.microsoft.com, flexible-server/concepts-security). Anything
        # written on the server later chains after the previous write.
        db = postgresql.Database(
            f"{name}-db",
            server_name=self.server.name,
            resource_group_name=net.resource_group,
            database_name="airflow",
            charset="UTF8",
            collation="en_US.utf8",
            opts=child,
        )
        self.endpoint = DatabaseEndpoint(
            host=self.server.fully_qualified_domain_name,
            port=5432,
            name="airflow",
            user="airflow",
            password=pulumi.Output.secret(password.result),
            sslmode=settings.sslmode,
            # Azure's server certificates chain to DigiCert Global Root G2, Microsoft RSA Root CA 2017
            # or DigiCert Global Root CA (Microsoft's list); Debian's ca-certificates, in the image,
            # holds all three, and follows Microsoft's CA changes with the image.
            ca=CaBundle.system() if settings.sslmode in VERIFYING_SSLMODES else None,
            depends_on=[db],
        )
        self.register_outputs({"host": self.server.fully_qualified_domain_name})
