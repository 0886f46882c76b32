"""The Azure network: a VNet with a subnet for AKS, one delegated to PostgreSQL Flexible Server and
one for private endpoints, plus the private DNS zones that make private endpoints resolvable."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_azure_native.network as network
import pulumi_azure_native.privatedns as privatedns
from pydantic import Field, model_validator
from pydantic.alias_generators import to_camel

from components.settings import SettingsModel, bad


class AzureNetwork(SettingsModel):
    """`azure.network`: the VNet's address space and its three subnets."""

    address_space: str = Field("10.50.0.0/16", description="VNet address space.")
    aks_subnet: str = Field("10.50.0.0/18", description="Subnet for AKS nodes.")
    postgres_subnet: str = Field("10.50.64.0/24", description="Subnet delegated to PostgreSQL Flexible Server.")
    endpoints_subnet: str = Field("10.50.65.0/24", description="Subnet for private endpoints (Redis, Files).")

    @model_validator(mode="after")
    def _layout(self) -> AzureNetwork:
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


class AzureVnet(pulumi.ComponentResource):
    """A VNet with three subnets (AKS nodes; one delegated to PostgreSQL Flexible Server; private
    endpoints), and the helpers the data services use to add private DNS zones and endpoints to it.

    Attributes:
        resource_group: the resource group it was given; the data services create their resources in it.
        vnet: the VirtualNetwork.
        aks_subnet: the subnet AKS nodes join.
        postgres_subnet: the subnet delegated to `Microsoft.DBforPostgreSQL/flexibleServers`.
        endpoints_subnet: the subnet of the private endpoints (Redis, Files).
        subnets: all three; the cluster and the database server are created after them.
    """

    def __init__(
        self,
        name: str,
        *,
        settings: AzureNetwork,
        resource_group: pulumi.Input[str],
        location: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the VNet and its subnets, one after another.

        Args:
            name: Pulumi name prefix of the children (`<name>-vnet`, `<name>-aks`, `<name>-postgres`,
                `<name>-endpoints`).
            settings: address space and subnet prefixes (config `azure.network`).
            resource_group: the resource group of the VNet (the stack's own group).
            location: Azure region of the VNet.
            tags: tags on the VNet.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.resource_group = resource_group
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=resource_group,
            location=location,
            address_space={"address_prefixes": [settings.address_space]},
            tags=tags,
            # Subnets are their own resources; an inline list would fight them on every update.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        self.aks_subnet = network.Subnet(
            f"{name}-aks",
            resource_group_name=resource_group,
            virtual_network_name=self.vnet.name,
            address_prefix=settings.aks_subnet,
            opts=child,
        )
        self.postgres_subnet = network.Subnet(
            f"{name}-postgres",
            resource_group_name=resource_group,
            virtual_network_name=self.vnet.name,
            address_prefix=settings.postgres_subnet,
            delegations=[{"name": "postgres", "service_name": "Microsoft.DBforPostgreSQL/flexibleServers"}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.aks_subnet]),
        )  # one subnet write at a time
        self.endpoints_subnet = network.Subnet(
            f"{name}-endpoints",
            resource_group_name=resource_group,
            virtual_network_name=self.vnet.name,
            address_prefix=settings.endpoints_subnet,
            private_endpoint_network_policies="Disabled",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.postgres_subnet]),
        )
        self.subnets = [self.aks_subnet, self.postgres_subnet, self.endpoints_subnet]
        self.register_outputs({"vnet_id": self.vnet.id})

    def private_zone(self, name: str, zone: pulumi.Input[str], parent: pulumi.Resource) -> privatedns.PrivateZone:
        """A private DNS zone linked to this VNet."""
        z = privatedns.PrivateZone(
            f"{name}-zone",
            private_zone_name=zone,
            resource_group_name=self.resource_group,
            location="Global",
            opts=pulumi.ResourceOptions(parent=parent),
        )
        privatedns.VirtualNetworkLink(
            f"{name}-zone-link",
            private_zone_name=z.name,
            resource_group_name=self.resource_group,
            location="Global",
            virtual_network={"id": self.vnet.id},
            registration_enabled=False,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return z

    def private_endpoint(
        self, name: str, *, target_id: pulumi.Input[str], group: str, zone: str, location: str, parent: pulumi.Resource
    ) -> network.PrivateEndpoint:
        """A private endpoint for `target_id` in the endpoints subnet, registered in `zone`."""
        dns = self.private_zone(name, zone, parent)
        ep = network.PrivateEndpoint(
            f"{name}-endpoint",
            resource_group_name=self.resource_group,
            location=location,
            subnet={"id": self.endpoints_subnet.id},
            private_link_service_connections=[
                {"name": f"{name}-link", "private_link_service_id": target_id, "group_ids": [group]}
            ],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        network.PrivateDnsZoneGroup(
            f"{name}-dns",
            resource_group_name=self.resource_group,
            private_endpoint_name=ep.name,
            private_dns_zone_group_name="default",
            private_dns_zone_configs=[{"name": "default", "private_dns_zone_id": dns.id}],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return ep
