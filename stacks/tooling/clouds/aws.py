"""AWS (`aws:` types): what the offline tooling knows about the resources stacks/aws.py makes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from stacks.tooling.clouds import kubernetes
from stacks.tooling.clouds.facts import CloudFacts, CreationTime, DestroyView, Severity, estimate

if TYPE_CHECKING:
    from stacks.tooling.engine import Resource

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ADDON_TYPE = "aws:eks/addon:Addon"


def mock_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Computed outputs a real AWS provider returns, so dependants get realistic values."""
    arn = f"arn:aws:mock:::{name}"
    out: dict[str, Any] = {"arn": arn}
    if typ == "aws:iam/role:Role":
        out["name"] = name
    elif typ == "aws:eks/cluster:Cluster":
        out.update(
            endpoint=f"https://{name}.eks.mock",
            certificateAuthority={"data": "bW9jay1jYQ=="},
            vpcConfig={**(state.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{name}"},
        )
    elif typ == "aws:rds/instance:Instance":
        out.update(
            address=f"{state.get('identifier', name)}.mock.eu-west-1.rds.amazonaws.com",
            endpoint=f"{state.get('identifier', name)}.mock:5432",
        )
    elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        out["primaryEndpointAddress"] = f"master.{state.get('replicationGroupId', name)}.mock.cache.amazonaws.com"
    elif typ == "aws:s3/bucket:Bucket":
        out["bucket"] = (
            state.get("bucket") or f"{state.get('bucketPrefix', '')}{hashlib.sha256(name.encode()).hexdigest()[:12]}"
        )
        out["arn"] = f"arn:aws:s3:::{out['bucket']}"
    elif typ in (
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:rds/parameterGroup:ParameterGroup",
        "aws:elasticache/subnetGroup:SubnetGroup",
    ):
        out["name"] = state.get("name", name)
    return out


def _get_cluster(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": args["name"],
        "endpoint": f"https://{args['name']}.eks.mock",
        "certificateAuthorities": [{"data": "bW9jay1jYQ=="}],
        "vpcConfig": {"clusterSecurityGroupId": "sg-0mockcluster"},
    }


def _get_vpc(args: dict[str, Any]) -> dict[str, Any]:
    return {"id": args["id"], "cidrBlock": "10.90.0.0/16"}


def destroy_checks(r: Resource, view: DestroyView) -> Iterator[tuple[Severity, str]]:
    i = r.inputs
    if r.type == "aws:rds/instance:Instance":
        if i.get("deletionProtection"):
            yield "blocks", "RDS deletion protection is on"
        if not i.get("skipFinalSnapshot"):
            name = str(i.get("finalSnapshotIdentifier"))
            yield "leaves", f"final snapshot {name!r} is kept"
            if not re.search(r"-[0-9a-f]{8}$", name):
                yield "blocks", f"final snapshot name {name!r} is fixed: a re-created stack's destroy collides with it"
    if r.type == "aws:eks/cluster:Cluster" and i.get("deletionProtection"):
        yield "blocks", "EKS deletion protection is on"
    if r.type == "aws:s3/bucket:Bucket" and not i.get("forceDestroy"):
        yield "blocks", "bucket is not force_destroy: a non-empty bucket cannot be deleted"
    if r.type == ADDON_TYPE and i.get("addonName") == "aws-ebs-csi-driver":
        tags = [
            v.split("=", 1)
            for sc in view.run.by_type("kubernetes:storage.k8s.io/v1:StorageClass")
            if sc.inputs.get("provisioner") == "ebs.csi.aws.com"
            for k, v in (sc.inputs.get("parameters") or {}).items()
            if k.startswith("tagSpecification_")
        ]
        filters = " ".join(f"Name=tag:{k},Values={v}" for k, v in tags)
        yield (
            "note",
            "EBS volumes of worker claims are made by the CSI driver outside the state; one the driver has not "
            "deleted when its add-on goes is left `available`: the destroy workflows run "
            ".github/scripts/ebs-volume-cleanup.sh; after a manual destroy run it, or list them with "
            f"`aws ec2 describe-volumes --filters {filters} Name=status,Values=available`",
        )
    if r.type == "aws:eks/cluster:Cluster" and i.get("enabledClusterLogTypes"):
        name = f"/aws/eks/{i.get('name')}/cluster"
        if name not in {g.inputs.get("name") for g in view.run.by_type(LOG_GROUP)}:
            yield "leaves", f"EKS creates log group {name} outside the state"
        else:
            yield (
                "note",
                f"late log deliveries can re-create {name} after destroy (and fail the next `up` of this stack "
                "name): the destroy workflows run .github/scripts/eks-log-group-cleanup.sh; run it after a manual "
                "destroy",
            )


# ---- `pulumi up` timing (stacks/tooling/critpath.py) -------------------------------------------------

VPC, SUBNET, IGW, EIP, NAT = (
    "aws:ec2/vpc:Vpc",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/natGateway:NatGateway",
)
ROUTE_TABLE, ROUTE_ASSOC, SG, LAUNCH_TEMPLATE = (
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/launchTemplate:LaunchTemplate",
)
ROLE, POLICY, ATTACH = "aws:iam/role:Role", "aws:iam/policy:Policy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
EKS, NODES, ADDON, POD_IDENTITY, ACCESS_ENTRY = (
    "aws:eks/cluster:Cluster",
    "aws:eks/nodeGroup:NodeGroup",
    "aws:eks/addon:Addon",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation",
    "aws:eks/accessEntry:AccessEntry",
)
RDS, RDS_SUBNETS, RDS_PARAMS = (
    "aws:rds/instance:Instance",
    "aws:rds/subnetGroup:SubnetGroup",
    "aws:rds/parameterGroup:ParameterGroup",
)
CACHE, CACHE_SUBNETS, CACHE_PARAMS = (
    "aws:elasticache/replicationGroup:ReplicationGroup",
    "aws:elasticache/subnetGroup:SubnetGroup",
    "aws:elasticache/parameterGroup:ParameterGroup",
)
EFS, MOUNT_TARGET, ACCESS_POINT, BUCKET = (
    "aws:efs/fileSystem:FileSystem",
    "aws:efs/mountTarget:MountTarget",
    "aws:efs/accessPoint:AccessPoint",
    "aws:s3/bucket:Bucket",
)
_BUCKET_SETTINGS = (
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
)
_SG_RULES = (
    "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
)

_STEAMPIPE = (
    "terraform logs in turbot/steampipe-plugin-aws#184, #246, #426 (aws_vpc 18-39 s, aws_subnet 5-8 s, "
    "aws_elasticache_subnet_group 2-8 s, aws_efs_file_system 12 s)"
)
_RULE_LOG = "terraform-aws-modules/terraform-aws-eks#2203 log (aws_security_group_rule 3 s)"


def _rds_seconds(inputs: Mapping[str, Any]) -> float:
    return 15 * 60 if inputs.get("multiAz") else 7 * 60


CREATION_TIMES: dict[str, CreationTime] = {
    VPC: CreationTime(20, _STEAMPIPE),
    SUBNET: CreationTime(10, "terraform-aws-modules/terraform-aws-eks#2203 log (aws_subnet 10 s); " + _STEAMPIPE),
    IGW: estimate(5),
    EIP: estimate(5),
    NAT: estimate(
        90,
        "issue 11's figure; no measured typical time found (kubernetes/kops#944: Pending to Available "
        "'up to 5 min'; the terraform-provider-aws create timeout is 10 min)",
    ),
    ROUTE_TABLE: estimate(3),
    "aws:ec2/route:Route": estimate(3),
    ROUTE_ASSOC: CreationTime(1, "terraform-aws-modules/terraform-aws-eks#2203 log (aws_route_table_association 1 s)"),
    SG: estimate(5),
    **{rule: CreationTime(3, _RULE_LOG) for rule in _SG_RULES},
    "aws:ec2/vpcEndpoint:VpcEndpoint": estimate(60, "a gateway endpoint is quicker, an interface endpoint slower"),
    LAUNCH_TEMPLATE: estimate(3),
    ROLE: estimate(2),
    POLICY: estimate(2),
    "aws:iam/rolePolicy:RolePolicy": estimate(2),
    ATTACH: estimate(2),
    LOG_GROUP: estimate(2),
    EKS: CreationTime(
        10 * 60,
        "AWS What's New 2021-03-19 'control plane in 9 minutes or less, on average' (quoted in "
        "aws-samples/eks-workshop#1101); terraform-aws-modules/terraform-aws-eks#3218 log "
        "(aws_eks_cluster 10m6s); DevopsArtFactory/terraform-provisioning#46 log (8m33s)",
    ),
    NODES: CreationTime(
        3 * 60,
        "DevopsArtFactory/terraform-provisioning#46 log (aws_eks_node_group 1m48s, 1m59s); "
        "eksctl-io/eksctl#482 (node group stack 3m36s)",
    ),
    ADDON: estimate(90, "no measured figure found"),
    POD_IDENTITY: estimate(5),
    ACCESS_ENTRY: estimate(5),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": estimate(5),
    RDS_SUBNETS: estimate(5, "like aws_elasticache_subnet_group, " + _STEAMPIPE),
    RDS_PARAMS: estimate(5),
    RDS: CreationTime(
        7 * 60,
        "hashicorp/terraform#498: 'up to 5/10 minutes with multi_az off', '15/20 minutes' with it on "
        "(7 min single-AZ, 15 min Multi-AZ, issue 11's figures, by the input multiAz)",
        by_inputs=_rds_seconds,
    ),
    CACHE_SUBNETS: CreationTime(5, _STEAMPIPE),
    CACHE_PARAMS: estimate(5),
    CACHE: estimate(
        8 * 60,
        "issue 11's figure; no measured creation time found (hashicorp/terraform#8275: a whole "
        "ElastiCache cluster acceptance test, create and destroy, 395 s); none either for how "
        "replicas or Multi-AZ change it, so one figure for all",
    ),
    EFS: CreationTime(15, _STEAMPIPE),
    MOUNT_TARGET: CreationTime(
        90,
        "the EFS docs' 'wait 90 seconds after creating a mount target' (quoted in "
        "aws-observability/aws-otel-test-framework#1782); turbot/steampipe-plugin-aws#426 log (still "
        "creating after 1 min); hashicorp/terraform-provider-aws#15278 (sometimes over 10 min)",
    ),
    ACCESS_POINT: estimate(5),
    BUCKET: estimate(3),
    **{t: estimate(2) for t in _BUCKET_SETTINGS},
}

PHYSICAL: dict[str, frozenset[str]] = {
    # Nothing but the account (and the provider).
    **{t: frozenset() for t in (VPC, EIP, ROLE, POLICY, EFS, BUCKET, LOG_GROUP, RDS_PARAMS, CACHE_PARAMS)},
    # A subnet, a security group and a gateway belong to a VPC. A NAT gateway needs its address, its
    # public subnet and an attached internet gateway (else it fails with Gateway.NotAttached). A route
    # names its target (kubernetes/kops#944: InvalidNatGatewayID.NotFound); an association its table
    # and subnet.
    SUBNET: frozenset({VPC}),
    IGW: frozenset({VPC}),
    SG: frozenset({VPC}),
    NAT: frozenset({EIP, SUBNET, IGW}),
    ROUTE_TABLE: frozenset({VPC, IGW, NAT}),
    "aws:ec2/route:Route": frozenset({ROUTE_TABLE, IGW, NAT}),
    ROUTE_ASSOC: frozenset({ROUTE_TABLE, SUBNET}),
    "aws:ec2/vpcEndpoint:VpcEndpoint": frozenset({VPC, ROUTE_TABLE, SUBNET, SG}),
    # A rule needs its group and the group it names (the cluster's group exists with the cluster).
    # What is NOT here: a security group needs only its VPC, since a rule naming the EKS cluster's
    # group can be added once the cluster exists; a data service never needs the cluster.
    **{rule: frozenset({SG, EKS}) for rule in _SG_RULES},
    LAUNCH_TEMPLATE: frozenset({SG}),
    # An attachment or inline policy needs its role and the policy or bucket ARN it names.
    ATTACH: frozenset({ROLE, POLICY}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({ROLE, BUCKET}),
    # The cluster needs its (usable) role, its subnets, any extra security group, and the log group it
    # writes to (else EKS makes one outside the state). Not the NAT gateways: the control plane needs no
    # egress from the VPC. Nodes need the cluster, their role, subnets and template, and egress from
    # the private subnets to join (route tables, associations, NAT). An add-on needs the cluster and its
    # role; one that runs a Deployment also needs nodes (`physical_rule`).
    EKS: frozenset({ROLE, ATTACH, SUBNET, SG, LOG_GROUP}),
    NODES: frozenset({EKS, ROLE, ATTACH, SUBNET, NAT, ROUTE_TABLE, ROUTE_ASSOC, LAUNCH_TEMPLATE}),
    ADDON: frozenset({EKS, ROLE, ATTACH, POD_IDENTITY}),
    POD_IDENTITY: frozenset({EKS, ROLE}),
    ACCESS_ENTRY: frozenset({EKS, ROLE}),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": frozenset({EKS, ACCESS_ENTRY}),
    # Data services: what their create call names (subnet group, security groups, parameter group, the
    # enhanced-monitoring role and its policy, the generated password).
    RDS_SUBNETS: frozenset({SUBNET}),
    RDS: frozenset({RDS_SUBNETS, RDS_PARAMS, SG, ROLE, ATTACH, "@generated"}),
    CACHE_SUBNETS: frozenset({SUBNET}),
    CACHE: frozenset({CACHE_SUBNETS, CACHE_PARAMS, SG, "@generated"}),
    MOUNT_TARGET: frozenset({EFS, SUBNET, SG}),
    ACCESS_POINT: frozenset({EFS}),
    **{t: frozenset({BUCKET, ROLE}) for t in _BUCKET_SETTINGS},
}

# Add-ons that run only DaemonSets become active without nodes, and must be there before nodes that
# need them (terraform-aws-modules/terraform-aws-eks#2478: "daemonsets need to be configured and
# deployed BEFORE compute"); add-ons with a Deployment stay degraded until nodes run it
# (terraform-aws-modules/terraform-aws-eks#1801, #1840 quoting the EKS docs: "add-ons run on the
# nodes"). A pod needs networking and DNS to start, and a CSI driver only to mount a claim; the pod
# identity agent only hands out credentials later, on request.
ADDONS_WITH_DEPLOYMENTS = frozenset({"coredns", "aws-efs-csi-driver", "aws-ebs-csi-driver", "snapshot-controller"})
ADDONS_EVERY_POD_NEEDS = frozenset({"vpc-cni", "kube-proxy", "coredns"})
ADDONS_FOR_VOLUMES = frozenset({"aws-efs-csi-driver", "aws-ebs-csi-driver"})


def physical_rule(dependent: Resource, prereq: Resource) -> bool | None:
    if prereq.type == ADDON:
        name = prereq.inputs.get("addonName")
        if dependent.type == ADDON:
            return False  # add-ons do not need each other to be created
        if dependent.type == NODES:
            return name == "vpc-cni"  # nodes stay NotReady without the CNI
        if kubernetes.runs_pods(dependent):
            return name in ADDONS_EVERY_POD_NEEDS or (name in ADDONS_FOR_VOLUMES and kubernetes.mounts_claim(dependent))
    if dependent.type == ADDON and prereq.type == NODES:
        return dependent.inputs.get("addonName") in ADDONS_WITH_DEPLOYMENTS
    return None


FACTS = CloudFacts(
    prefix="aws:",
    mock_outputs=mock_outputs,
    # Look-ups an existing-infrastructure stack makes; shaped like the provider's results.
    mock_invokes={
        "aws:eks/getCluster:getCluster": _get_cluster,
        "aws:ec2/getVpc:getVpc": _get_vpc,
    },
    stateful={
        # The network and the cluster: replacing them replaces everything that lives in them.
        "aws:ec2/vpc:Vpc": ("cidrBlock",),
        "aws:ec2/subnet:Subnet": ("cidrBlock", "availabilityZone", "vpcId"),
        "aws:eks/cluster:Cluster": ("name", "vpcConfig.subnetIds", "kubernetesNetworkConfig"),
        "aws:rds/instance:Instance": (
            "identifier",
            "engine",
            "dbName",
            "username",
            "storageEncrypted",
            "kmsKeyId",
            "availabilityZone",
            "dbSubnetGroupName",
        ),
        "aws:elasticache/replicationGroup:ReplicationGroup": (
            "replicationGroupId",
            "atRestEncryptionEnabled",
            "kmsKeyId",
            "subnetGroupName",
        ),
        "aws:efs/fileSystem:FileSystem": (
            "encrypted",
            "performanceMode",
            "kmsKeyId",
            "creationToken",
            "availabilityZoneName",
        ),
        "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix", "objectLockEnabled"),
    },
    network_and_cluster=("aws:ec2/subnet:Subnet", "aws:ec2/vpc:Vpc", "aws:eks/cluster:Cluster"),
    destroy_checks=destroy_checks,
    creation_times=CREATION_TIMES,
    physical=PHYSICAL,
    roles={
        "kubernetes-api": frozenset({EKS}),
        "kubernetes-nodes": frozenset({NODES}),
        "pod-addon": frozenset({ADDON}),
        # What gives a pod its AWS rights: its service account's association and the role's policy.
        "pod-identity": frozenset({POD_IDENTITY, ATTACH}),
        # What a Kubernetes object can carry only once it exists: an address, a role ARN, a name.
        "value": frozenset({RDS, CACHE, BUCKET, EFS, ACCESS_POINT, ROLE}),
        "volume": frozenset({EFS, ACCESS_POINT, MOUNT_TARGET}),
        "data-service": frozenset({RDS, CACHE, EFS, BUCKET}),
    },
    physical_rule=physical_rule,
)
