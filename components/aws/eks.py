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

from components.settings import SettingsModel, bad


class AwsCluster(SettingsModel):
    """`aws.cluster`: the EKS cluster, created with its node group or an existing one by name."""

    existing_name: str | None = Field(
        None,
        description="Use this existing EKS cluster instead of creating one; it needs the eks-pod-identity-agent and "
        "aws-efs-csi-driver add-ons.",
    )
    version: str = Field("1.33", pattern=r"^1\.(3[1-5])$", description="Kubernetes version of a created cluster.")
    service_cidr: str = Field("172.20.0.0/16", description="Service IPv4 CIDR of a created cluster.")
    node_instance_types: list[str] = Field(default_factory=lambda: ["m6i.xlarge"], description="Node instance types.")
    node_min: int = Field(3, ge=1, le=100, description="Minimum nodes.")
    node_desired: int = Field(3, ge=1, le=100, description="Desired nodes.")
    node_max: int = Field(6, ge=1, le=100, description="Maximum nodes.")
    node_disk_gib: int = Field(50, ge=20, le=2000, description="Node root volume size.")
    public_endpoint: bool = Field(
        True,
        description="Expose the API server endpoint publicly (IAM auth still required), to publicAccessCidrs only. "
        "False: private to the VPC, so Pulumi (and CI's preview) must run from inside it.",
    )
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653] = (
        Field(90, description="Days the control-plane logs (api, audit, authenticator) are kept in CloudWatch.")
    )
    public_access_cidrs: list[str] = Field(
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

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as e:
                raise ValueError(f"{cidr!r} is not a CIDR without host bits ({e})") from None
            if net.version != 4:
                raise ValueError(f"{cidr!r}: EKS takes IPv4 CIDRs here")
        return v

    @field_validator("client_security_group_ids")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        bad_ids = [g for g in v if not re.fullmatch(r"sg-[0-9a-f]{8,17}", g)]
        if bad_ids:
            raise ValueError(f"{bad_ids} are not security group ids (sg- and 8 or 17 hex digits)")
        return v

    @model_validator(mode="after")
    def _nodes(self) -> AwsCluster:
        if not self.node_min <= self.node_desired <= self.node_max:
            raise bad(
                "nodeDesired",
                f"must satisfy nodeMin <= nodeDesired <= nodeMax (got {self.node_min}, "
                f"{self.node_desired}, {self.node_max})",
            )
        if self.public_endpoint and not self.public_access_cidrs:
            raise bad(
                "publicAccessCidrs",
                "list who may reach the public API endpoint (your admins' and CI's CIDRs), "
                "or set publicEndpoint: false for an API server private to the VPC",
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
        security_group_id: the EKS cluster security group; the data services admit only its members.
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
        subnet_ids: list[pulumi.Input[str]],
        public_subnet_ids: list[pulumi.Input[str]],
        depends_on: list[pulumi.Resource],
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
            subnet_ids: private subnets for the control plane's interfaces and the node group.
            public_subnet_ids: public subnets, given to the control plane only so that the cluster (and
                the load balancers it makes there) is deleted before them; none for an existing VPC.
            depends_on: what a created cluster must be created after and deleted before; the stack
                passes the network's subnets and NAT gateways (`Subnets.resources`).
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            opts: options of the component; pass the AWS provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:aws:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.created: list[pulumi.Resource] = []
        if settings.existing_name:
            found = aws.eks.get_cluster_output(
                name=settings.existing_name, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.name = pulumi.Output.from_input(settings.existing_name)
            self.security_group_id = found.vpc_config.cluster_security_group_id
            endpoint, ca = found.endpoint, found.certificate_authorities[0].data
            self.kubeconfig = None
        else:
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
                tags=tags,
                # The name is fixed, so a replacement cannot create first ("already exists").
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[attach, log_group, *depends_on],
                    protect=protect,
                    delete_before_replace=True,
                ),
            )
            node_role = aws.iam.Role(
                f"{name}-node-role", assume_role_policy=json.dumps(NODE_TRUST), tags=tags, opts=child
            )
            node_attach = [
                aws.iam.RolePolicyAttachment(
                    f"{name}-node-{p}", role=node_role.name, policy_arn=MANAGED + p, opts=child
                )
                for p in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
            ]
            nodes = aws.eks.NodeGroup(
                f"{name}-nodes",
                cluster_name=cluster.name,
                node_role_arn=node_role.arn,
                subnet_ids=subnet_ids,  # private only
                instance_types=settings.node_instance_types,
                disk_size=settings.node_disk_gib,
                scaling_config={
                    "min_size": settings.node_min,
                    "desired_size": settings.node_desired,
                    "max_size": settings.node_max,
                },
                update_config={"max_unavailable": 1},
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=node_attach),
            )
            agent = aws.eks.Addon(
                f"{name}-pod-identity-agent",
                cluster_name=cluster.name,
                addon_name="eks-pod-identity-agent",
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[nodes]),
            )
            efs_role = aws.iam.Role(
                f"{name}-efs-csi-role", assume_role_policy=json.dumps(POD_IDENTITY_TRUST), tags=tags, opts=child
            )
            efs_attach = aws.iam.RolePolicyAttachment(
                f"{name}-efs-csi-policy",
                role=efs_role.name,
                policy_arn=MANAGED + "service-role/AmazonEFSCSIDriverPolicy",
                opts=child,
            )
            efs = aws.eks.Addon(
                f"{name}-efs-csi-driver",
                cluster_name=cluster.name,
                addon_name="aws-efs-csi-driver",
                pod_identity_associations=[{"role_arn": efs_role.arn, "service_account": "efs-csi-controller-sa"}],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[agent, efs_attach]),
            )
            self.created = [nodes, agent, efs]
            self.name = cluster.name
            self.security_group_id = cluster.vpc_config.cluster_security_group_id
            endpoint, ca = cluster.endpoint, cluster.certificate_authority.data
            self.kubeconfig = pulumi.Output.secret(kubeconfig(cluster.name, endpoint, ca, region))
        self.client_security_group_ids: list[pulumi.Input[str]] = [
            self.security_group_id,
            *settings.client_security_group_ids,
        ]

        config = kubeconfig(self.name, endpoint, ca, region)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=config,
            # Workloads need nodes and the CSI driver before anything is applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.created),
        )
        self.register_outputs({"name": self.name})
