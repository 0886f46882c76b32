"""The Azure network: a VNet with a subnet for AKS, one delegated to PostgreSQL Flexible Server and
one for private endpoints, plus the private DNS zones that make private endpoints resolvable; or an
existing VNet and its subnets, which the stack only uses (the cluster's own network, when the cluster
exists already)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network
import pulumi_azure_native.privatedns as privatedns
from pydantic import Field, model_validator
from pydantic.alias_generators import to_camel

from components.settings import Ipv4Cidr, SettingsModel, bad

# ARM resource IDs (the form `az network vnet show --query id` prints). Resource group names: 1-90
# letters, digits, `_ - . ( )`; VNet names 2-64 and subnet names 1-80 letters, digits, `_ - .`
# (learn.microsoft.com "Naming rules and restrictions for Azure resources", Microsoft.Network).
_VNET_ID = (
    r"/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"/resourceGroups/[-\w.()]{1,90}/providers/Microsoft\.Network/virtualNetworks/[-\w.]{2,64}"
)
VNET_ID = re.compile(f"^{_VNET_ID}$", re.IGNORECASE)
SUBNET_ID = re.compile(f"^({_VNET_ID})/subnets/[-\\w.]{{1,80}}$", re.IGNORECASE)
VNET_ID_FORM = "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>"
_EXISTING_SUBNETS = ("existing_postgres_subnet_id", "existing_endpoints_subnet_id", "existing_aks_subnet_id")


# The privatelink zones the stack's private endpoints register in, by service.
PRIVATELINK_ZONES = {"redis": "privatelink.redis.azure.net", "file": "privatelink.file.core.windows.net"}
ZONE_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w.()]{1,90}/providers/Microsoft\.Network"
    r"/privateDnsZones/(?P<zone>[-\w.]+)$",
    re.IGNORECASE,
)


class ExistingPrivateDnsZones(SettingsModel):
    """`azure.network.existingPrivateDnsZoneIds`: a hub's privatelink zones, already linked to the VNet."""

    redis: str | None = Field(None, description="ARM ID of the existing privatelink.redis.azure.net zone.")
    file: str | None = Field(None, description="ARM ID of the existing privatelink.file.core.windows.net zone.")

    @model_validator(mode="after")
    def _zones(self) -> ExistingPrivateDnsZones:
        for key, zone in PRIVATELINK_ZONES.items():
            value = getattr(self, key)
            if value is None:
                continue
            match = ZONE_ID.match(value)
            if not match:
                raise bad(
                    key,
                    f"{value!r} is not a private DNS zone ID (/subscriptions/<id>/resourceGroups/<group>/providers/"
                    "Microsoft.Network/privateDnsZones/<zone>)",
                )
            if match.group("zone").lower() != zone:
                raise bad(key, f"{value!r} names zone {match.group('zone')!r}; the {key} endpoint registers in {zone}")
        return self


class AzureNetwork(SettingsModel):
    """`azure.network`: the VNet's address space and its three subnets, or an existing VNet's subnets."""

    address_space: Ipv4Cidr = Field("10.50.0.0/16", description="VNet address space (a VNet the stack creates).")
    aks_subnet: Ipv4Cidr = Field("10.50.0.0/18", description="Subnet for AKS nodes (a VNet the stack creates).")
    postgres_subnet: Ipv4Cidr = Field(
        "10.50.64.0/24", description="Subnet delegated to PostgreSQL Flexible Server (a VNet the stack creates)."
    )
    endpoints_subnet: Ipv4Cidr = Field(
        "10.50.65.0/24", description="Subnet for private endpoints, Redis and Files (a VNet the stack creates)."
    )
    existing_vnet_id: str | None = Field(
        None,
        description="Use this existing VNet (ARM ID) instead of creating one; required with cluster.existingName "
        "(the cluster's own VNet). The stack creates, changes and deletes nothing of it: it links its private "
        "DNS zones to it and puts the server and private endpoints in the subnets below.",
    )
    existing_postgres_subnet_id: str | None = Field(
        None,
        description="With existingVnetId: a subnet of it delegated to Microsoft.DBforPostgreSQL/flexibleServers "
        "(ARM ID).",
    )
    existing_endpoints_subnet_id: str | None = Field(
        None, description="With existingVnetId: a subnet of it for the private endpoints of Redis and Files (ARM ID)."
    )
    existing_aks_subnet_id: str | None = Field(
        None, description="With existingVnetId and a cluster the stack creates: the subnet its nodes join (ARM ID)."
    )
    existing_private_dns_zone_ids: ExistingPrivateDnsZones | None = Field(
        None,
        description="With existingVnetId in a hub-and-spoke network: the hub's privatelink zones (redis, file), "
        "already linked to that VNet, for the private endpoints to register in; the stack then makes neither "
        "the zone nor a link (a VNet takes one link per zone name).",
    )

    @model_validator(mode="after")
    def _layout(self) -> AzureNetwork:
        if self.existing_vnet_id is not None:
            return self._existing()
        if self.existing_private_dns_zone_ids is not None:
            raise bad("existingPrivateDnsZoneIds", "only with existingVnetId (the VNet the zones are linked to)")
        for key in _EXISTING_SUBNETS:
            if getattr(self, key) is not None:
                raise bad(to_camel(key), "only with existingVnetId (the VNet it belongs to)")
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

    def _existing(self) -> AzureNetwork:
        vnet = self.existing_vnet_id or ""
        if not VNET_ID.match(vnet):
            raise bad("existingVnetId", f"{vnet!r} is not a VNet resource ID ({VNET_ID_FORM})")
        for key in _EXISTING_SUBNETS:
            alias, value = to_camel(key), getattr(self, key)
            if value is None:
                if key != "existing_aks_subnet_id":
                    raise bad(alias, "an existing VNet (existingVnetId) needs it: the ARM ID of a subnet of that VNet")
                continue
            match = SUBNET_ID.match(value)
            if not match:
                raise bad(alias, f"{value!r} is not a subnet resource ID ({VNET_ID_FORM}/subnets/<subnet>)")
            if match.group(1).lower() != vnet.lower():
                raise bad(alias, f"{value!r} is not a subnet of existingVnetId {vnet!r}")
        if (self.existing_postgres_subnet_id or "").lower() == (self.existing_endpoints_subnet_id or "").lower():
            # A subnet delegated to Flexible Server holds only Flexible Servers.
            raise bad("existingEndpointsSubnetId", "must differ from existingPostgresSubnetId (a delegated subnet)")
        return self

    @property
    def existing(self) -> bool:
        return self.existing_vnet_id is not None


@dataclass(frozen=True)
class PrivateDns:
    """A private DNS zone and its link to the VNet: a name in the zone resolves in the VNet only once
    both exist.

    Attributes:
        zone_id: the zone's ID (a PrivateZone the stack made, or an existing hub zone).
        link: its VirtualNetworkLink to the VNet, or None for an existing zone its owner links.
    """

    zone_id: pulumi.Input[str]
    link: privatedns.VirtualNetworkLink | None  # None: an existing zone, linked by its owner


@dataclass(frozen=True)
class PrivateAccess:
    """A private endpoint and what makes its name resolve to it inside the VNet.

    Attributes:
        endpoint: the PrivateEndpoint.
        dns: its zone and the zone's VNet link.
        zone_group: the PrivateDnsZoneGroup that writes the endpoint's A record into the zone.
        ready: what a client must wait for before it resolves the service's name: until the zone
            group and the link exist, the name resolves to the service's public address (refused:
            public network access is off), and a pod may cache that answer.
    """

    endpoint: network.PrivateEndpoint
    dns: PrivateDns
    zone_group: network.PrivateDnsZoneGroup

    @property
    def ready(self) -> list[pulumi.Resource]:
        return [self.zone_group, *([self.dns.link] if self.dns.link is not None else [])]


class AzureVnet(pulumi.ComponentResource):
    """A VNet with three subnets (AKS nodes; one delegated to PostgreSQL Flexible Server; private
    endpoints), or an existing VNet and its subnets; and the helpers the data services use to add
    private DNS zones linked to it and private endpoints in it.

    An existing VNet is only referenced by ID: nothing of it is registered, so nothing of it is ever
    changed or deleted. What the stack adds lives in its own resource group: the zones' VNet links
    (children of the zones), the private endpoints (their NICs take addresses in the endpoints
    subnet) and the server (in the delegated subnet).

    Attributes:
        resource_group: the resource group it was given; the data services create their resources in it.
        vnet_id: the VNet's ID.
        aks_subnet_id: the subnet a created cluster's nodes join (None: an existing VNet given no
            existingAksSubnetId, which the config allows only with an existing cluster).
        postgres_subnet_id: the subnet delegated to `Microsoft.DBforPostgreSQL/flexibleServers`.
        endpoints_subnet_id: the subnet of the private endpoints (Redis, Files).
        subnets: the created subnets (none for an existing VNet); the cluster and the database
            server are created after them.
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
        """Create the VNet and its subnets, one after another, or take the existing ones.

        Args:
            name: Pulumi name prefix of the children (`<name>-vnet`, `<name>-aks`, `<name>-postgres`,
                `<name>-endpoints`).
            settings: address space and subnet prefixes, or the existing VNet and subnet IDs
                (config `azure.network`).
            resource_group: the resource group of a created VNet, and of the zones and endpoints
                (the stack's own group).
            location: Azure region of a created VNet.
            tags: tags on a created VNet.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:Network", name, None, opts)
        self.resource_group = resource_group
        self.subnets: list[pulumi.Resource] = []
        hubs = settings.existing_private_dns_zone_ids
        self._hub_zones: dict[str, str] = {
            k: v for k, v in (hubs.model_dump() if hubs else {}).items() if isinstance(v, str)
        }
        if settings.existing_vnet_id is not None:
            self.vnet_id: pulumi.Input[str] = settings.existing_vnet_id
            self.aks_subnet_id: pulumi.Input[str] | None = settings.existing_aks_subnet_id
            self.postgres_subnet_id: pulumi.Input[str] = settings.existing_postgres_subnet_id or ""
            self.endpoints_subnet_id: pulumi.Input[str] = settings.existing_endpoints_subnet_id or ""
            self.register_outputs({"vnet_id": self.vnet_id})
            return
        child = pulumi.ResourceOptions(parent=self)
        vnet = network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=resource_group,
            location=location,
            address_space={"address_prefixes": [settings.address_space]},
            tags=tags,
            # Subnets are their own resources; an inline list would fight them on every update.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        aks_subnet = network.Subnet(
            f"{name}-aks",
            resource_group_name=resource_group,
            virtual_network_name=vnet.name,
            address_prefix=settings.aks_subnet,
            opts=child,
        )
        postgres_subnet = network.Subnet(
            f"{name}-postgres",
            resource_group_name=resource_group,
            virtual_network_name=vnet.name,
            address_prefix=settings.postgres_subnet,
            delegations=[{"name": "postgres", "service_name": "Microsoft.DBforPostgreSQL/flexibleServers"}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[aks_subnet]),
        )  # one subnet write at a time
        endpoints_subnet = network.Subnet(
            f"{name}-endpoints",
            resource_group_name=resource_group,
            virtual_network_name=vnet.name,
            address_prefix=settings.endpoints_subnet,
            private_endpoint_network_policies="Disabled",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[postgres_subnet]),
        )
        self.vnet_id = vnet.id
        self.aks_subnet_id = aks_subnet.id
        self.postgres_subnet_id = postgres_subnet.id
        self.endpoints_subnet_id = endpoints_subnet.id
        self.subnets = [aks_subnet, postgres_subnet, endpoints_subnet]
        self.register_outputs({"vnet_id": vnet.id})

    def private_zone(self, name: str, zone: pulumi.Input[str], parent: pulumi.Resource) -> PrivateDns:
        """A private DNS zone linked to this VNet."""
        z = privatedns.PrivateZone(
            f"{name}-zone",
            private_zone_name=zone,
            resource_group_name=self.resource_group,
            location="Global",
            opts=pulumi.ResourceOptions(parent=parent),
        )
        link = privatedns.VirtualNetworkLink(
            f"{name}-zone-link",
            private_zone_name=z.name,
            resource_group_name=self.resource_group,
            location="Global",
            virtual_network={"id": self.vnet_id},
            registration_enabled=False,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return PrivateDns(zone_id=z.id, link=link)

    def private_endpoint(
        self, name: str, *, target_id: pulumi.Input[str], group: str, zone: str, location: str, parent: pulumi.Resource
    ) -> PrivateAccess:
        """A private endpoint for `target_id` in the endpoints subnet, registered in `zone`: the hub's
        existing zone of that name when configured, else a zone of the stack's own linked to the VNet."""
        hub = next((self._hub_zones.get(k) for k, z in PRIVATELINK_ZONES.items() if z == zone), None)
        dns = PrivateDns(zone_id=hub, link=None) if hub else self.private_zone(name, zone, parent)
        ep = network.PrivateEndpoint(
            f"{name}-endpoint",
            resource_group_name=self.resource_group,
            location=location,
            subnet={"id": self.endpoints_subnet_id},
            private_link_service_connections=[
                {"name": f"{name}-link", "private_link_service_id": target_id, "group_ids": [group]}
            ],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        zone_group = network.PrivateDnsZoneGroup(
            f"{name}-dns",
            resource_group_name=self.resource_group,
            private_endpoint_name=ep.name,
            private_dns_zone_group_name="default",
            private_dns_zone_configs=[{"name": "default", "private_dns_zone_id": dns.zone_id}],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return PrivateAccess(endpoint=ep, dns=dns, zone_group=zone_group)
