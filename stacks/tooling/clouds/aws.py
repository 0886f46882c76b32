"""AWS (`aws:` types): what the offline tooling knows about the resources stacks/aws.py makes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacks.tooling.clouds.facts import CloudFacts, DestroyView, Severity

if TYPE_CHECKING:
    from stacks.tooling.engine import Resource

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


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
    if r.type == "aws:s3/bucket:Bucket" and not i.get("forceDestroy"):
        yield "blocks", "bucket is not force_destroy: a non-empty bucket cannot be deleted"
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
)
