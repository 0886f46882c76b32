"""The AWS network: a VPC with private subnets for the cluster and data services, public subnets
only for load balancers, and NAT for egress; or an existing VPC and its private subnets."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field, field_validator, model_validator

from components.settings import Ipv4Cidr, SettingsModel, bad


class AwsSubnet(SettingsModel):
    """`aws.network.privateSubnets[]`: one existing private subnet."""

    id: str = Field(..., pattern=r"^subnet-[0-9a-f]{8,17}$", description="Subnet id.")
    availability_zone: str = Field(
        ..., pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$", description="Its availability zone."
    )


class AwsNetwork(SettingsModel):
    """`aws.network`: the VPC, created or an existing one with its private subnets."""

    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="Existing VPC; unset creates one.")
    private_subnets: list[AwsSubnet] = Field(
        default_factory=list, description="Existing private subnets (with vpcId), at least two zones."
    )
    cidr: Ipv4Cidr = Field("10.40.0.0/16", description="CIDR of the VPC the stack creates.")
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
    def _shape(self) -> AwsNetwork:
        if self.vpc_id:
            zones = {s.availability_zone for s in self.private_subnets}
            if len(zones) < 2:
                raise bad("privateSubnets", f"need subnets in at least two availability zones (got {sorted(zones)})")
        else:
            if self.private_subnets:
                raise bad("privateSubnets", "only with an existing vpcId")
            if len(set(self.availability_zones)) < 2 or len(set(self.availability_zones)) != len(
                self.availability_zones
            ):
                raise bad("availabilityZones", f"need at least two distinct zones (got {self.availability_zones})")
        return self


@dataclass(frozen=True)
class Subnets:
    """What the rest of the aws stack needs from the network.

    Attributes:
        vpc_id: the VPC's id.
        vpc_cidr: its CIDR block (looked up for an existing VPC).
        private_ids: private subnet ids: the cluster, its nodes and the data services live there.
        public_ids: public subnet ids (load balancers only); empty for an existing VPC.
        resources: created subnets; empty for an existing VPC.
        egress: what gives the private subnets their way out (NAT gateways, the private route
            tables and their associations): nodes need it to join; the control plane and the data
            services do not. Empty for an existing VPC.
    """

    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    private_ids: list[pulumi.Input[str]]
    public_ids: list[pulumi.Input[str]]
    resources: list[pulumi.Resource]  # what data services and the cluster must outlive
    egress: list[pulumi.Resource] = field(default_factory=list)


def carve(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Private subnets get the big blocks (pods take VPC IPs on EKS), public ones small blocks."""
    net = ipaddress.ip_network(cidr)
    private = list(net.subnets(new_prefix=net.prefixlen + 2))[:zones] if zones <= 3 else []
    if zones > 3 or len(private) < zones:
        private = list(net.subnets(new_prefix=net.prefixlen + 3))[:zones]
    last = list(net.subnets(new_prefix=net.prefixlen + 2))[-1]
    public = list(last.subnets(new_prefix=last.prefixlen + 3))[:zones]
    return [str(p) for p in private], [str(p) for p in public]


class AwsVpc(pulumi.ComponentResource):
    """A created VPC, or a thin record of an existing one.

    A created VPC gets, per zone, a public subnet (load balancers only, no public IPs on launch) and
    a larger private subnet routed through a NAT gateway (one per zone, or one in the first zone),
    and an S3 gateway endpoint on the private route tables.

    Attributes:
        subnets: the VPC, its subnets and what must outlive the cluster and data services.
    """

    subnets: Subnets

    def __init__(
        self,
        name: str,
        settings: AwsNetwork,
        cluster_name: str,
        region: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the VPC, or record `settings.vpc_id` and its private subnets.

        Args:
            name: Pulumi name prefix of the children (`<name>-vpc`, `<name>-private-<zone>`,
                `<name>-nat-<zone>`, ...).
            settings: CIDR, zones and NAT layout, or the existing VPC (config `aws.network`).
            cluster_name: the EKS cluster's name: the `Name` tags, and the subnets'
                `kubernetes.io/cluster/<cluster_name>: shared` tag that lets its load balancers find them.
                An existing VPC's subnets are not tagged.
            region: the AWS region, for the S3 gateway endpoint's service name.
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            opts: options of the component; pass the AWS provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if settings.vpc_id:
            self.subnets = Subnets(
                settings.vpc_id,
                aws.ec2.get_vpc_output(id=settings.vpc_id, opts=pulumi.InvokeOutputOptions(parent=self)).cidr_block,
                [s.id for s in settings.private_subnets],
                [],
                [],
            )
            self.register_outputs({"vpc_id": settings.vpc_id})
            return

        zones = settings.availability_zones
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=settings.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{cluster_name}"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": cluster_name}, opts=child)
        private_cidrs, public_cidrs = carve(settings.cidr, len(zones))
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={**tags, "Name": f"{cluster_name}-public"},
            opts=child,
        )
        public, private, nats, private_tables, egress = [], [], [], [], []
        for i, (zone, pub_cidr, priv_cidr) in enumerate(zip(zones, public_cidrs, private_cidrs, strict=True)):
            pub = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                cidr_block=pub_cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                # Only internet-facing load balancers go here.
                tags={**tags, **cluster_tag, "Name": f"{cluster_name}-public-{zone}", "kubernetes.io/role/elb": "1"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=pub.id, route_table_id=public_rt.id, opts=child
            )
            public.append(pub)
            if settings.nat_gateways == "perZone" or i == 0:
                eip = aws.ec2.Eip(
                    f"{name}-nat-{zone}", domain="vpc", tags={**tags, "Name": f"{cluster_name}-nat-{zone}"}, opts=child
                )
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{zone}",
                        allocation_id=eip.id,
                        subnet_id=pub.id,
                        tags={**tags, "Name": f"{cluster_name}-{zone}"},
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                    )
                )
            nat = nats[-1]
            priv = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                cidr_block=priv_cidr,
                availability_zone=zone,
                tags={
                    **tags,
                    **cluster_tag,
                    "Name": f"{cluster_name}-private-{zone}",
                    "kubernetes.io/role/internal-elb": "1",
                },
                opts=child,
            )
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{zone}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags={**tags, "Name": f"{cluster_name}-private-{zone}"},
                opts=child,
            )
            assoc = aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}", subnet_id=priv.id, route_table_id=rt.id, opts=child
            )
            private.append(priv)
            private_tables.append(rt)
            egress.append(assoc)
        # ECR serves image layers from S3, and task logs go there: a gateway endpoint (no charge)
        # keeps that traffic off the NAT gateways, which bill per GB.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_tables],
            tags={**tags, "Name": f"{cluster_name}-s3"},
            opts=child,
        )
        self.subnets = Subnets(
            vpc.id,
            vpc.cidr_block,
            [s.id for s in private],
            [s.id for s in public],
            [*private, *public],
            [*nats, *egress],
        )
        self.register_outputs({"vpc_id": vpc.id})


@dataclass(frozen=True)
class DataClients:
    """Who may reach the data services (see `EksCluster.data_clients`).

    Attributes:
        groups: the admitted security groups, keyed by a stable label that names their rules
            (`clients` for the stack's client group, else the group id from config).
        inline: admit them through the data groups' inline `ingress` (an existing cluster: what
            stacks made before the client group have in state) instead of standalone rules.
    """

    groups: Mapping[str, pulumi.Input[str]]
    inline: bool = False


def cluster_only_security_group(
    parent: pulumi.Resource,
    name: str,
    *,
    vpc_id: pulumi.Input[str],
    port: int,
    clients: DataClients,
    description: str,
    tags: dict[str, str],
) -> aws.ec2.SecurityGroup:
    """A security group admitting one TCP port from the cluster's client security groups only:
    data services are never open to a CIDR, let alone 0.0.0.0/0.

    With a created cluster the group manages no inline rules: `ingress` is left out (pulumi-aws
    then keeps whatever rules the group has; `ingress=[]` would revoke them), and each client group
    gets a `vpc.SecurityGroupIngressRule`, the pattern the SDK recommends and the only one that
    mixes with rules made elsewhere (ec2/security_group.py docstring). So a stack made before the
    client group existed keeps its inline rule from the cluster security group, which its old nodes
    (no client group) need until the new node group replaces them (issue 11's review, finding 2)."""
    if clients.inline:
        # An existing cluster's own group, as stacks of the last release have it in state: the same
        # rule, so their next `up` changes nothing, and no standalone rule duplicating it
        # (AuthorizeSecurityGroupIngress fails with InvalidPermission.Duplicate).
        return aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc_id,
            description=description,
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": port,
                    "to_port": port,
                    "security_groups": list(clients.groups.values()),
                    "description": "EKS cluster",  # unchanged: a new description re-creates the rule
                }
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent),
        )
    sg = aws.ec2.SecurityGroup(
        f"{name}-sg", vpc_id=vpc_id, description=description, tags=tags, opts=pulumi.ResourceOptions(parent=parent)
    )
    for label, group in clients.groups.items():
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-sg-from-{label}",
            security_group_id=sg.id,
            referenced_security_group_id=group,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=f"Airflow nodes ({label})",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent),
        )
    return sg
