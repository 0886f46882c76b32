"""EKS: a created cluster (IAM roles, managed node group, Pod Identity agent, EFS CSI driver) or an
existing one by name; either way, the explicit Kubernetes provider built from its endpoint."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator, model_validator

from components.aws.network import DataClients
from components.settings import Ipv4Cidr, SettingsModel, bad

# Accepted versions past their end of standard support (EKS release calendar, endoflife.date/amazon-eks).
EXTENDED_ONLY = {"1.34": "2026-12-02"}


class AwsCluster(SettingsModel):
    """`aws.cluster`: the EKS cluster, created with its node group or an existing one by name."""

    existing_name: str | None = Field(
        None,
        # EKS's CreateCluster name rule.
        pattern=r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$",
        description="Use this existing EKS cluster instead of creating one; it needs the eks-pod-identity-agent and "
        "aws-efs-csi-driver add-ons.",
    )
    version: Literal["1.34", "1.35"] = Field(
        "1.35",
        description="Kubernetes version of a created cluster, with add-on versions pinned (components/aws/eks.py "
        "ADDON_VERSIONS). EKS upgrades one minor at a time; 1.34 (past standard support) only with supportType "
        "EXTENDED, as the step up from 1.33.",
    )
    support_type: Literal["STANDARD", "EXTENDED"] = Field(
        "STANDARD",
        description="At the end of standard support: STANDARD lets EKS upgrade the cluster (then set version to "
        "match); EXTENDED keeps it and bills extended-support rates.",
    )
    service_cidr: Ipv4Cidr = Field("172.20.0.0/16", description="Service IPv4 CIDR of a created cluster.")
    node_instance_types: list[str] = Field(default_factory=lambda: ["m6i.xlarge"], description="Node instance types.")
    node_min: int = Field(3, ge=1, le=100, description="Minimum nodes.")
    node_desired: int = Field(3, ge=1, le=100, description="Desired nodes.")
    node_max: int = Field(6, ge=1, le=100, description="Maximum nodes.")
    node_disk_gib: int = Field(50, ge=20, le=2000, description="Node root volume size.")
    public_endpoint: bool = Field(
        True,
        description="Expose the API server endpoint publicly (IAM auth still required), to publicAccessCidrs only. "
        "False: private to the VPC, so Pulumi (and CI's preview) must run from inside it; only with an existing "
        "VPC (network.vpcId), since the `up` that creates a VPC cannot reach into it.",
    )
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653] = (
        Field(90, description="Days the control-plane logs (api, audit, authenticator) are kept in CloudWatch.")
    )
    public_access_cidrs: list[Ipv4Cidr] = Field(
        default_factory=list,
        description="Who may reach a public API endpoint: the CIDRs of your admins and CI runners; required when "
        "publicEndpoint is true (0.0.0.0/0 only if listed explicitly, and never with aws.protect).",
    )
    client_security_group_ids: list[str] = Field(
        default_factory=list,
        description="Further security groups whose members may reach the database, broker and DAG volume: the "
        "node security group of an existing cluster whose nodes are not in its cluster security group "
        "(terraform-aws-eks, custom launch templates).",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _unquoted(cls, v: object) -> object:
        # `version: 1.34` unquoted in a stack file is a YAML number; two decimals keep 1.30 as "1.30".
        return f"{v:.2f}" if isinstance(v, float) else v

    api_access_security_group_ids: list[str] = Field(
        default_factory=list,
        description="Security groups whose members may reach the private API endpoint on 443 (a CI runner's, a "
        "bastion's): rules on the cluster security group of a created cluster.",
    )
    api_access_cidrs: list[Ipv4Cidr] = Field(
        default_factory=list,
        description="IPv4 CIDRs that may reach the private API endpoint on 443 (a peered VPC, a VPN), routed to the "
        "VPC: rules on the cluster security group of a created cluster.",
    )
    admin_principal_arns: list[str] = Field(
        default_factory=list,
        description="IAM roles or users made cluster admins of a created cluster (EKS access entry with "
        "AmazonEKSClusterAdminPolicy), besides its creator: CI's deploy role, your admins' role.",
    )

    @field_validator("api_access_cidrs")
    @classmethod
    def _no_world(cls, v: list[str]) -> list[str]:
        for cidr in v:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                raise ValueError(f"{cidr!r}: a /0 admits every address; list the networks that need the API server")
        return v

    @field_validator("client_security_group_ids", "api_access_security_group_ids")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        bad_ids = [g for g in v if not re.fullmatch(r"sg-([0-9a-f]{8}|[0-9a-f]{17})", g)]
        if bad_ids:
            raise ValueError(f"{bad_ids} are not security group ids (sg- and 8 or 17 hex digits)")
        return v

    @field_validator("admin_principal_arns")
    @classmethod
    def _principals(cls, v: list[str]) -> list[str]:
        bad_arns = [a for a in v if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+", a)]
        if bad_arns:
            raise ValueError(f"{bad_arns} are not IAM role or user ARNs (arn:aws:iam::<account>:role/<name>)")
        return v

    @model_validator(mode="after")
    def _created_only(self) -> AwsCluster:
        if self.existing_name:
            for key, value in (
                ("adminPrincipalArns", self.admin_principal_arns),
                ("apiAccessSecurityGroupIds", self.api_access_security_group_ids),
                ("apiAccessCidrs", self.api_access_cidrs),
            ):
                if value:
                    raise bad(key, "only for a created cluster: an existing cluster's access is its owner's to manage")
        return self

    @model_validator(mode="after")
    def _support(self) -> AwsCluster:
        # EKS changes a cluster's upgrade policy only while its version is in standard support, and
        # a cluster in extended support cannot leave it by policy (EKS user guide: "Disable EKS
        # extended support"); 1.34 left standard support on 2026-12-02 (EKS release calendar).
        if self.version in EXTENDED_ONLY and self.support_type != "EXTENDED":
            raise bad(
                "supportType",
                f"must be EXTENDED with version {self.version}: it left EKS standard support on "
                f"{EXTENDED_ONLY[self.version]}, when EKS no longer changes the policy to STANDARD; it is the step "
                "up from 1.33 (README: Upgrading an AWS stack made before this release); a new stack uses 1.35",
            )
        return self

    @model_validator(mode="after")
    def _nodes(self) -> AwsCluster:
        if not self.node_min <= self.node_desired <= self.node_max:
            raise bad(
                "nodeDesired",
                f"must satisfy nodeMin <= nodeDesired <= nodeMax (got {self.node_min}, "
                f"{self.node_desired}, {self.node_max})",
            )
        return self


EKS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
NODE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
# EKS Pod Identity: the agent on each node hands these credentials to pods of associated service accounts.
POD_IDENTITY_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
MANAGED = "arn:aws:iam::aws:policy/"

# Add-on versions per Kubernetes version, pinned so a `pulumi up` never changes them unasked and
# they move with the cluster's version. Project policy: a pin is only ever raised (a lowered one
# would ask EKS for a downgrade this program never tests). Sources: the EKS user guide's version tables for kube-proxy ("Manage kube-proxy") and
# CoreDNS ("Manage CoreDNS"); vpc-cni, the Pod Identity agent and the CSI drivers as listed by
# `aws eks describe-addon-versions --kubernetes-version <v>` in public configs of 1.34/1.35
# clusters (re-check with that command before raising a pin).
ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.34": {
        "vpc-cni": "v1.21.1-eksbuild.7",
        "kube-proxy": "v1.34.6-eksbuild.2",
        "coredns": "v1.13.2-eksbuild.4",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
        "aws-efs-csi-driver": "v2.3.0-eksbuild.1",
        "aws-ebs-csi-driver": "v1.57.1-eksbuild.1",
    },
    "1.35": {
        "vpc-cni": "v1.21.1-eksbuild.7",
        "kube-proxy": "v1.35.3-eksbuild.2",
        "coredns": "v1.13.2-eksbuild.4",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
        "aws-efs-csi-driver": "v2.3.0-eksbuild.1",
        "aws-ebs-csi-driver": "v1.57.1-eksbuild.1",
    },
}
# Add-ons whose DaemonSets/Deployment every running pod needs: `preserve` keeps them on delete.
ADDONS_KEPT_ON_DELETE = frozenset({"vpc-cni", "kube-proxy", "coredns"})
# The encrypted gp3 class a created cluster gets when something asks for block volumes.
GP3_CLASS = "airflow-gp3"


def kubeconfig(
    name: pulumi.Input[str], endpoint: pulumi.Input[str], ca: pulumi.Input[str], region: str
) -> pulumi.Output[str]:
    """A kubeconfig that authenticates with `aws eks get-token` (no static credentials in it)."""
    return pulumi.Output.all(name, endpoint, ca).apply(
        lambda a: json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": a[0], "cluster": {"server": a[1], "certificate-authority-data": a[2]}}],
                "contexts": [{"name": a[0], "context": {"cluster": a[0], "user": a[0]}}],
                "current-context": a[0],
                "users": [
                    {
                        "name": a[0],
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "aws",
                                "args": [
                                    "eks",
                                    "get-token",
                                    "--cluster-name",
                                    a[0],
                                    "--region",
                                    region,
                                    "--output",
                                    "json",
                                ],
                            }
                        },
                    }
                ],
            }
        )
    )


class EksCluster(pulumi.ComponentResource):
    """The cluster Airflow runs on, and the Kubernetes provider for it.

    A created cluster has API access entries (the creator is admin), control-plane logs in a log
    group the stack owns, one managed node group in the private subnets, and the
    eks-pod-identity-agent and aws-efs-csi-driver add-ons. An existing cluster is only looked up.

    Attributes:
        name: the cluster name; S3TaskLogs makes its Pod Identity associations in it.
        security_group_id: the EKS cluster security group.
        data_clients: the groups the data services admit: for a created cluster the stack's client
            group (made before the cluster, carried by the nodes through their launch template, so
            the data services need not wait for the cluster), through standalone rules; for an
            existing one its cluster security group, through inline rules. Either way plus
            `clientSecurityGroupIds` from config.
        storage_drivers: the CSI driver add-ons of a created cluster ("efs", and "ebs" with
            `block_storage`): what mounts their volumes is made after and deleted before them.
        storage_class: the gp3 StorageClass's name with `block_storage` on a created cluster, else None.
        provider: the Kubernetes provider for the cluster, authenticating with `aws eks get-token` (the
            AWS CLI must be where Pulumi runs); on a created cluster it waits for the nodes and add-ons.
        kubeconfig: the same kubeconfig as a secret Output for the stack output, for a created cluster
            only; None for an existing one.
        created: what the provider waits for (node group and add-ons); empty for an existing cluster.
    """

    name: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        settings: AwsCluster,
        cluster_name: str,
        region: str,
        vpc_id: pulumi.Input[str],
        subnet_ids: list[pulumi.Input[str]],
        public_subnet_ids: list[pulumi.Input[str]],
        depends_on: list[pulumi.Resource],
        egress: list[pulumi.Resource],
        block_storage: bool,
        volume_tags: dict[str, str],
        launched_tags: dict[str, str],
        protect: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the cluster, or look up `settings.existing_name`, and build its provider.

        Args:
            name: Pulumi name prefix of the children (`<name>-cluster`, `<name>-nodes`, `<name>-k8s`, ...).
            settings: version, service CIDR, nodes, endpoint access and log retention (config
                `aws.cluster`); with `existing_name` set, nothing is created and only that name is used.
            cluster_name: the EKS name of a created cluster, also in its log group
                `/aws/eks/<cluster_name>/cluster`; the stack passes `airflow-<stack>` (or the existing
                name, which is then unused here).
            region: the AWS region, written into the kubeconfig's `aws eks get-token` command.
            vpc_id: the VPC, for the client security group of a created cluster.
            subnet_ids: private subnets for the control plane's interfaces and the node group.
            public_subnet_ids: public subnets, given to the control plane only so that the cluster (and
                the load balancers it makes there) is deleted before them; none for an existing VPC.
            depends_on: what a created cluster must be created after and deleted before; the stack
                passes the network's subnets (`Subnets.resources`).
            egress: what nodes in the private subnets need to join (NAT gateways and the private
                route tables' associations: `Subnets.egress`); the control plane does not wait for it.
            block_storage: something asks for EBS volumes (worker log claims): a created cluster gets
                the EBS CSI driver and the encrypted gp3 StorageClass `airflow-gp3`.
            launched_tags: the provider's default tags, for the nodes, their disks and network
                interfaces, which the node group's Auto Scaling group launches without them.
            volume_tags: tags the EBS CSI driver puts on the volumes it makes for that class (they are
                outside the state: the provider's default tags never reach them).
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            opts: options of the component; pass the AWS provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:aws:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.created: list[pulumi.Resource] = []
        self.storage_drivers: dict[str, pulumi.Resource] = {}
        if settings.existing_name:
            found = aws.eks.get_cluster_output(
                name=settings.existing_name, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.name = pulumi.Output.from_input(settings.existing_name)
            self.security_group_id = found.vpc_config.cluster_security_group_id
            endpoint, ca = found.endpoint, found.certificate_authorities[0].data
            self.kubeconfig = None
            # Its cluster group, inline as in the stacks made before the client group (no transition).
            self.data_clients = DataClients(
                {"cluster": self.security_group_id, **{g: g for g in settings.client_security_group_ids}},
                inline=True,
            )
        else:
            # The data services admit this group, which exists before the cluster: they need not
            # wait ten minutes for the cluster security group EKS makes.
            clients = aws.ec2.SecurityGroup(
                f"{name}-clients-sg",
                vpc_id=vpc_id,
                description="Airflow nodes: the data services admit this group",
                tags={**tags, "Name": f"{cluster_name}-clients"},
                opts=child,
            )
            self.data_clients = DataClients(
                {"clients": clients.id, **{g: g for g in settings.client_security_group_ids}}
            )
            role = aws.iam.Role(f"{name}-cluster-role", assume_role_policy=json.dumps(EKS_TRUST), tags=tags, opts=child)
            attach = aws.iam.RolePolicyAttachment(
                f"{name}-cluster-policy", role=role.name, policy_arn=MANAGED + "AmazonEKSClusterPolicy", opts=child
            )
            # EKS would create this log group itself on first use, outside Pulumi's state, and
            # `pulumi destroy` would leave it behind; created here, it goes with the stack.
            log_group = aws.cloudwatch.LogGroup(
                f"{name}-control-plane-logs",
                name=f"/aws/eks/{cluster_name}/cluster",
                retention_in_days=settings.log_retention_days,
                tags=tags,
                opts=child,
            )
            cluster = aws.eks.Cluster(
                f"{name}-cluster",
                name=cluster_name,
                version=settings.version,
                role_arn=role.arn,
                # API access entries, not the aws-auth ConfigMap; the creator is admin.
                access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
                vpc_config={
                    # Public subnets are listed so the cluster (and what it creates there, such as load
                    # balancers) is deleted before them on destroy.
                    "subnet_ids": [*subnet_ids, *public_subnet_ids],
                    "endpoint_private_access": True,
                    "endpoint_public_access": settings.public_endpoint,
                    "public_access_cidrs": settings.public_access_cidrs if settings.public_endpoint else None,
                },
                kubernetes_network_config={"service_ipv4_cidr": settings.service_cidr},
                enabled_cluster_log_types=["api", "audit", "authenticator"],
                # STANDARD: at the end of standard support EKS upgrades the cluster rather than
                # billing extended-support rates without anyone deciding to.
                upgrade_policy={"support_type": settings.support_type},
                # EKS's own guard, against a delete from the console or CLI too; Pulumi `protect`
                # guards only against this program. Off for test stacks: destroy in one go.
                deletion_protection=protect,
                tags=tags,
                # The name is fixed, so a replacement cannot create first ("already exists").
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[attach, log_group, *depends_on],
                    protect=protect,
                    delete_before_replace=True,
                ),
            )
            # A private endpoint admits what the cluster security group admits (EKS user guide, "Cluster
            # API server endpoint"): runners and networks outside the VPC's nodes need a 443 rule.
            api_sources = [(g, g, None) for g in settings.api_access_security_group_ids] + [
                (c.replace("/", "_"), None, c) for c in settings.api_access_cidrs
            ]
            for label, group, cidr in api_sources:
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-api-from-{label}",
                    security_group_id=cluster.vpc_config.cluster_security_group_id,
                    referenced_security_group_id=group,
                    cidr_ipv4=cidr,
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    description="Kubernetes API",
                    tags=tags,
                    opts=child,
                )
            # Only the creator is admin (bootstrap_cluster_creator_admin_permissions); anyone else,
            # such as CI's deploy role, needs an access entry and a policy, or gets 401.
            for arn in settings.admin_principal_arns:
                label = re.sub(r"[^A-Za-z0-9-]", "-", arn.split(":", 5)[5])
                entry = aws.eks.AccessEntry(
                    f"{name}-admin-{label}", cluster_name=cluster.name, principal_arn=arn, type="STANDARD", opts=child
                )
                aws.eks.AccessPolicyAssociation(
                    f"{name}-admin-{label}",
                    cluster_name=cluster.name,
                    principal_arn=entry.principal_arn,
                    policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                    access_scope={"type": "cluster"},
                    opts=child,
                )
            versions = ADDON_VERSIONS[settings.version]

            def addon(
                addon_name: str,
                after: list[pulumi.Resource],
                *,
                policy: str | None = None,
                service_account: str | None = None,
                config: dict[str, str] | None = None,
            ) -> aws.eks.Addon:
                """A managed add-on at its pinned version; with `policy`, its controller's service
                account gets an IAM role with that policy through EKS Pod Identity (no node rights)."""
                identities: list[aws.eks.AddonPodIdentityAssociationArgsDict] | None = None
                if policy and service_account:
                    short = addon_name.removeprefix("aws-").removesuffix("-driver")
                    role = aws.iam.Role(
                        f"{name}-{short}-role", assume_role_policy=json.dumps(POD_IDENTITY_TRUST), tags=tags, opts=child
                    )
                    after = [
                        *after,
                        aws.iam.RolePolicyAttachment(
                            f"{name}-{short}-policy", role=role.name, policy_arn=MANAGED + policy, opts=child
                        ),
                    ]
                    identities = [{"role_arn": role.arn, "service_account": service_account}]
                return aws.eks.Addon(
                    f"{name}-{addon_name.removeprefix('aws-').removeprefix('eks-')}",
                    cluster_name=cluster.name,
                    addon_name=addon_name,
                    addon_version=versions[addon_name],
                    # EKS installs self-managed vpc-cni, kube-proxy and CoreDNS with a new cluster;
                    # the managed add-on takes them over, and keeps the stack's settings on update.
                    resolve_conflicts_on_create="OVERWRITE",
                    resolve_conflicts_on_update="OVERWRITE",
                    configuration_values=json.dumps(config) if config else None,
                    # What every pod's network and DNS run on stays on live nodes when the add-on is
                    # deleted or replaced (terraform-aws-eks sets the same for these three).
                    preserve=addon_name in ADDONS_KEPT_ON_DELETE or None,
                    pod_identity_associations=identities,
                    tags=tags,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=after),
                )

            # Before the nodes: the agent that hands pods their credentials, the CNI (which takes
            # its AWS rights through it, not from the node role every pod can reach) with its
            # NetworkPolicy agent on, and kube-proxy. All three are DaemonSets, active with no nodes.
            agent = addon("eks-pod-identity-agent", [])
            cni = addon(
                "vpc-cni",
                [],
                policy="AmazonEKS_CNI_Policy",
                service_account="aws-node",
                config={"enableNetworkPolicy": "true"},
            )
            proxy = addon("kube-proxy", [])
            node_role = aws.iam.Role(
                f"{name}-node-role", assume_role_policy=json.dumps(NODE_TRUST), tags=tags, opts=child
            )
            node_attach = [
                aws.iam.RolePolicyAttachment(
                    f"{name}-node-{p}", role=node_role.name, policy_arn=MANAGED + p, opts=child
                )
                for p in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
            ]
            # With security groups in a launch template EKS adds none itself: the nodes get the
            # cluster group (node <-> control plane) and the client group the data services admit.
            template = aws.ec2.LaunchTemplate(
                f"{name}-nodes-template",
                vpc_security_group_ids=[cluster.vpc_config.cluster_security_group_id, clients.id],
                # IMDSv2 only, and one hop: a pod (one network hop further) cannot reach the node's
                # instance metadata and its role's credentials.
                metadata_options={
                    "http_endpoint": "enabled",
                    "http_tokens": "required",
                    "http_put_response_hop_limit": 1,
                },
                block_device_mappings=[
                    {
                        "device_name": "/dev/xvda",  # the root volume of the EKS AL2023 AMIs
                        "ebs": {
                            "volume_size": settings.node_disk_gib,
                            "volume_type": "gp3",
                            "encrypted": "true",
                            "delete_on_termination": "true",
                        },
                    }
                ],
                # The provider's default tags never reach what the Auto Scaling group launches
                # (pulumi-aws LaunchTemplate docstring): the template tags nodes, disks and interfaces.
                tag_specifications=[
                    {
                        "resource_type": kind,
                        "tags": {**launched_tags, **({"Name": f"{cluster_name}-node"} if kind == "instance" else {})},
                    }
                    for kind in ("instance", "volume", "network-interface")
                ],
                tags=tags,
                opts=child,
            )
            nodes = aws.eks.NodeGroup(
                f"{name}-nodes",
                cluster_name=cluster.name,
                # Nodes follow the control plane's version (an in-place rolling update).
                version=cluster.version,
                node_role_arn=node_role.arn,
                subnet_ids=subnet_ids,  # private only
                instance_types=settings.node_instance_types,
                launch_template={"id": template.id, "version": template.latest_version.apply(str)},
                scaling_config={
                    "min_size": settings.node_min,
                    "desired_size": settings.node_desired,
                    "max_size": settings.node_max,
                },
                update_config={"max_unavailable": 1},
                tags=tags,
                # Nodes in private subnets join through their NAT route.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*node_attach, agent, cni, proxy, *egress]),
            )
            # CoreDNS and the CSI controllers are Deployments: they need nodes to become active.
            dns = addon("coredns", [nodes])
            efs = addon(
                "aws-efs-csi-driver",
                [nodes],
                policy="service-role/AmazonEFSCSIDriverPolicy",
                service_account="efs-csi-controller-sa",
            )
            self.storage_drivers["efs"] = efs
            if block_storage:
                self.storage_drivers["ebs"] = addon(
                    "aws-ebs-csi-driver",
                    [nodes],
                    policy="service-role/AmazonEBSCSIDriverPolicy",
                    service_account="ebs-csi-controller-sa",
                )
            # What any pod needs: a node, its network and DNS (the data services are found by name).
            self.created = [nodes, cni, proxy, dns]
            self.name = cluster.name
            self.security_group_id = cluster.vpc_config.cluster_security_group_id
            endpoint, ca = cluster.endpoint, cluster.certificate_authority.data
            self.kubeconfig = pulumi.Output.secret(kubeconfig(cluster.name, endpoint, ca, region))

        config = kubeconfig(self.name, endpoint, ca, region)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=config,
            # Workloads need nodes, their network and DNS; what mounts a volume waits for its
            # driver (`storage_drivers`) itself. Destroy removes Kubernetes objects before these.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.created),
        )
        # Worker log claims: EKS (1.30+) has no default StorageClass, so a claim without a class
        # would stay Pending. An existing cluster brings its own (airflow.workers.storageClass).
        self.storage_class: str | None = None
        self.storage_class_ready: list[pulumi.Resource] = []
        if "ebs" in self.storage_drivers:
            gp3 = k8s.storage.v1.StorageClass(
                f"{name}-gp3",
                metadata={"name": GP3_CLASS},
                provisioner="ebs.csi.aws.com",
                # The driver tags each volume it makes with these (aws-ebs-csi-driver docs/tagging.md):
                # a volume it had no time to delete before its add-on went on destroy is found by
                # them (.github/scripts/ebs-volume-cleanup.sh).
                parameters={
                    "type": "gp3",
                    "encrypted": "true",
                    **{f"tagSpecification_{i}": f"{k}={v}" for i, (k, v) in enumerate(volume_tags.items(), 1)},
                },
                volume_binding_mode="WaitForFirstConsumer",  # the volume in the pod's zone
                allow_volume_expansion=True,
                reclaim_policy="Delete",
                opts=pulumi.ResourceOptions(
                    parent=self, provider=self.provider, depends_on=[self.storage_drivers["ebs"]]
                ),
            )
            self.storage_class, self.storage_class_ready = GP3_CLASS, [gp3]
        self.register_outputs({"name": self.name})
