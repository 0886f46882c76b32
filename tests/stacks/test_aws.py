"""The AWS stack files: render, strict validation, and the AWS rules as graph invariants."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from stacks.tooling import engine
from stacks.tooling.teardown import ancestors
from tests.render import K8S_VERSIONS, dumps, named, objects, render
from tests.stacks.test_invariants import _secret_leaves

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["aws-dev", "aws-prod"]
EXISTING = (
    "aws.cluster.existingName=team-eks",
    "aws.network={vpcId: vpc-0abc12345678, privateSubnets: [{id: subnet-0aaa11112222, availabilityZone: eu-west-1a},"
    " {id: subnet-0bbb11112222, availabilityZone: eu-west-1b}]}",
)
DATA_PORTS = {5432, 6379, 2049}


def of_type(run: engine.Run, suffix: str) -> list[engine.Resource]:
    return [r for r in run.resources if r.type.endswith(suffix)]


def one(run: engine.Run, suffix: str) -> engine.Resource:
    [r] = of_type(run, suffix)
    return r


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_object_is_strictly_valid(stack: str, version: str) -> None:
    for obj in objects(render(stack), reveal=True):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("stack", STACKS)
def test_explicit_providers_from_the_cluster_and_region(stack: str) -> None:
    run = render(stack)
    [k8s_provider] = run.by_type("pulumi:providers:kubernetes")
    assert "kubeconfig" in k8s_provider.inputs and "context" not in k8s_provider.inputs
    assert all(r.provider == k8s_provider.urn for r in run.kubernetes())
    assert one(run, "eks/cluster:Cluster").urn in ancestors(run, k8s_provider.urn)
    [aws_provider] = run.by_type("pulumi:providers:aws")
    assert aws_provider.inputs["region"] == "eu-west-1"
    assert json.loads(aws_provider.inputs["defaultTags"])["tags"]["pulumi-stack"] == stack
    aws_resources = [r for r in run.resources if r.type.startswith("aws:") and r.custom]
    assert aws_resources and all(r.provider == aws_provider.urn for r in aws_resources)


def test_existing_cluster_is_looked_up_not_created() -> None:
    run = render("aws-dev", *EXISTING)
    assert not of_type(run, "eks/cluster:Cluster") and not of_type(run, "ec2/vpc:Vpc")
    assert not of_type(run, "eks/nodeGroup:NodeGroup")
    assert "kubeconfig" not in run.outputs  # no cluster created, no kubeconfig to hand out
    groups = of_type(run, "rds/subnetGroup:SubnetGroup")
    assert groups[0].inputs["subnetIds"] == ["subnet-0aaa11112222", "subnet-0bbb11112222"]
    sg = run.get("aws:ec2/securityGroup:SecurityGroup", "database-sg")
    assert sg.inputs["ingress"][0]["securityGroups"] == ["sg-0mockcluster"]


@pytest.mark.parametrize("stack", STACKS)
def test_data_services_and_nodes_live_in_private_subnets_only(stack: str) -> None:
    run = render(stack)
    subnets = {r.urn: r for r in of_type(run, "ec2/subnet:Subnet")}
    private_ids = {f"{r.name}-id" for r in subnets.values() if "-private-" in r.name}
    public_ids = {f"{r.name}-id" for r in subnets.values() if "-public-" in r.name}
    assert len(private_ids) >= 2 and len(public_ids) >= 2
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in subnets.values())
    assert {s.inputs["availabilityZone"] for s in subnets.values() if "-private-" in s.name} >= {
        "eu-west-1a",
        "eu-west-1b",
    }
    for r in of_type(run, "subnetGroup:SubnetGroup"):
        assert set(r.inputs["subnetIds"]) <= private_ids, r.name
    assert set(one(run, "eks/nodeGroup:NodeGroup").inputs["subnetIds"]) <= private_ids
    assert {m.inputs["subnetId"] for m in of_type(run, "efs/mountTarget:MountTarget")} == private_ids
    assert one(run, "rds/instance:Instance").inputs["publiclyAccessible"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_encryption_at_rest_and_in_transit(stack: str) -> None:
    run = render(stack)
    db = one(run, "rds/instance:Instance").inputs
    assert db["storageEncrypted"] is True
    params = one(run, "rds/parameterGroup:ParameterGroup").inputs["parameters"]
    assert {"name": "rds.force_ssl", "value": "1"} in params
    cache = one(run, "elasticache/replicationGroup:ReplicationGroup").inputs
    assert cache["transitEncryptionEnabled"] and cache["atRestEncryptionEnabled"] and cache["clusterMode"] == "disabled"
    assert cache["authToken"] == engine.SECRET
    assert one(run, "efs/fileSystem:FileSystem").inputs["encrypted"] is True
    sse = one(run, "BucketServerSideEncryptionConfiguration").inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    policy = json.loads(one(run, "s3/bucketPolicy:BucketPolicy").revealed["policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    pab = one(run, "BucketPublicAccessBlock").inputs
    assert all(pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    pv = named(run, "PersistentVolume", "airflow-dags")
    assert pv["spec"]["mountOptions"] == ["tls"]


@pytest.mark.parametrize("stack", STACKS)
def test_airflow_urls_use_tls(stack: str) -> None:
    secret = named(render(stack), "Secret", "airflow-secrets", reveal=True)["stringData"]
    assert "sslmode=verify-full&sslrootcert=" in secret["sql-alchemy-conn"]
    broker = urlsplit(named(render(stack), "Secret", "airflow-broker", reveal=True)["stringData"]["broker-url"])
    assert broker.scheme == "rediss" and broker.query == "ssl_cert_reqs=required" and broker.username == ""


DATA_GROUPS = {"database-sg": 5432, "broker-sg": 6379, "dags-sg": 2049}


def admitted(run: engine.Run, group: str) -> dict[str, engine.Resource]:
    """The standalone ingress rules of a data security group, by the group each one admits."""
    rules = of_type(run, "vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    return {r.inputs["referencedSecurityGroupId"]: r for r in rules if r.inputs["securityGroupId"] == f"{group}-id"}


@pytest.mark.parametrize("stack", STACKS)
def test_security_groups_admit_data_ports_only_from_the_clients_group(stack: str) -> None:
    run = render(stack)
    groups = of_type(run, "ec2/securityGroup:SecurityGroup")
    assert len(groups) == 4  # database, broker, DAG volume, and the clients group (no ingress)
    assert not [sg.name for sg in groups if "ingress" in sg.inputs]
    rules = of_type(run, "vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert len(rules) == len(DATA_GROUPS)
    for group, port in DATA_GROUPS.items():
        [rule] = admitted(run, group).values()
        assert rule.inputs["referencedSecurityGroupId"] == "eks-clients-sg-id", group
        assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == ("tcp", port, port)
        assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule.inputs), group


@pytest.mark.parametrize("stack", STACKS)
def test_old_nodes_keep_reaching_the_data_services_while_their_replacements_start(stack: str) -> None:
    """Finding 2 of issue 11's review: a stack made before the clients group admits the cluster
    security group through the data groups' inline rules, and its old nodes carry only that group
    until the replacement node group (a new launch template) is up, 10-25 minutes later. The data
    groups therefore manage no inline rules at all (`ingress` omitted: pulumi-aws keeps whatever the
    group has; `ingress=[]` would revoke it) and admit the clients group, and any configured group,
    through rules of their own that start at the VPC."""
    run = render(stack, "aws.cluster.clientSecurityGroupIds=[sg-0123456789abcdef0]")
    eks = {r.urn for r in run.resources if r.type.startswith(("aws:eks/", "aws:ec2/launchTemplate"))}
    for group, port in DATA_GROUPS.items():
        assert "ingress" not in run.get("aws:ec2/securityGroup:SecurityGroup", group).inputs, group
        rules = admitted(run, group)
        assert set(rules) == {"eks-clients-sg-id", "sg-0123456789abcdef0"}, group
        assert all(r.inputs["fromPort"] == port for r in rules.values())
        for rule in rules.values():
            assert not ancestors(run, rule.urn) & eks, rule.name
    # Named after what they admit, not their position: a reordered list re-creates no rule.
    names = {r.name for r in admitted(run, "database-sg").values()}
    assert names == {"database-sg-from-clients", "database-sg-from-sg-0123456789abcdef0"}


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_in_plain_text(stack: str) -> None:
    run = render(stack)
    secrets = {s for s in _secret_leaves(run) if len(s) >= 8}
    assert len(secrets) >= 6
    text = dumps(run)
    assert not [s[:4] for s in secrets if s in text]
    assert run.outputs["kubeconfig"] == engine.SECRET and run.outputs["adminPassword"] == engine.SECRET


def test_dev_destroys_in_one_go() -> None:
    run = render("aws-dev")
    assert not [r.name for r in run.resources if r.options.get("protect") or r.options.get("retainOnDelete")]
    db = one(run, "rds/instance:Instance").inputs
    assert db["deletionProtection"] is False and db["skipFinalSnapshot"] is True
    assert "finalSnapshotIdentifier" not in db
    assert one(run, "s3/bucket:Bucket").inputs["forceDestroy"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_control_plane_log_group_is_owned_by_the_stack(stack: str) -> None:
    """EKS would otherwise create it on its own, and destroy would leave it behind."""
    run = render(stack)
    group = one(run, "cloudwatch/logGroup:LogGroup")
    cluster = one(run, "eks/cluster:Cluster")
    assert group.inputs["name"] == f"/aws/eks/{cluster.inputs['name']}/cluster"
    assert group.urn in cluster.dependencies and cluster.inputs["enabledClusterLogTypes"]


def test_prod_protects_database_file_system_and_log_bucket() -> None:
    run = render("aws-prod")
    protected = {r.type.split(":")[-1] for r in run.resources if r.options.get("protect")}
    assert protected == {"Instance", "FileSystem", "Bucket", "Cluster", "ReplicationGroup"}
    db = one(run, "rds/instance:Instance").inputs
    assert db["deletionProtection"] is True and db["skipFinalSnapshot"] is False and db["multiAz"] is True
    assert db["backupRetentionPeriod"] >= 7
    cache = one(run, "elasticache/replicationGroup:ReplicationGroup").inputs
    assert cache["automaticFailoverEnabled"] is True and cache["numCacheClusters"] >= 2
    assert len(of_type(run, "ec2/natGateway:NatGateway")) == 3


@pytest.mark.parametrize("stack", STACKS)
def test_a_load_balancer_service_is_deleted_before_the_network(stack: str) -> None:
    """Kubernetes objects that make AWS resources depend (through the provider) on the cluster, and
    the cluster on every subnet, so destroy removes the load balancer before any subnet or VPC."""
    run = render(stack, "airflow.apiServer.serviceType=LoadBalancer")
    svc = run.get("kubernetes:core/v1:Service", "airflow-api-server-svc")
    assert svc.inputs["spec"]["type"] == "LoadBalancer"
    before = ancestors(run, svc.urn)
    subnets = {r.urn for r in of_type(run, "ec2/subnet:Subnet")}
    assert subnets <= before
    assert one(run, "ec2/vpc:Vpc").urn in before


@pytest.mark.parametrize("stack", STACKS)
def test_log_identity_is_scoped_to_the_bucket_and_the_log_writers(stack: str) -> None:
    run = render(stack)
    assocs = {r.inputs["serviceAccount"] for r in of_type(run, "eks/podIdentityAssociation:PodIdentityAssociation")}
    assert assocs == {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    }
    policy = json.loads(run.get("aws:iam/rolePolicy:RolePolicy", "logs-policy").revealed["policy"])
    resources = {
        r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert all(r.startswith("arn:aws:s3:::airflow-logs-") for r in resources)
    env = {
        e["name"]: e.get("value")
        for e in named(run, "Deployment", "airflow-scheduler")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True" and env[
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"
    ].startswith("s3://airflow-logs-")
    assert env["AIRFLOW_CONN_AWS_TASK_LOGS"] == "aws://?region_name=eu-west-1"
    assert "aws_access_key_id" not in dumps(run).lower()


def test_dag_volume_is_a_static_pv_bound_to_the_access_point() -> None:
    run = render("aws-dev")
    pv = named(run, "PersistentVolume", "airflow-dags")
    pvc = named(run, "PersistentVolumeClaim", "airflow-dags")
    assert pv["spec"]["csi"]["driver"] == "efs.csi.aws.com"
    assert pv["spec"]["csi"]["volumeHandle"] == "dags-fs-id::dags-access-point-id"
    assert pvc["spec"]["volumeName"] == "airflow-dags" and pvc["spec"]["storageClassName"] == ""
    ap = one(run, "efs/accessPoint:AccessPoint").inputs
    assert ap["posixUser"] == {"uid": 50000, "gid": 0}
    assert run.outputs["dagVolume"] == "dags-fs-id::dags-access-point-id"


def test_outputs_match_the_local_stack_plus_kubeconfig() -> None:
    assert set(render("aws-dev").outputs) == set(render("local").outputs) | {"kubeconfig"}


BAD = [
    (
        "aws.database.instanceClass=db.m9z.large",
        "airflow-k8s:aws.database.instanceClass",
        "is not a db.<family>.<size>",
    ),
    ("aws.broker.nodeType=cache.huge", "airflow-k8s:aws.broker.nodeType", "is not a cache.<family>.<size>"),
    (
        "aws.network.availabilityZones=[eu-west-1a]",
        "airflow-k8s:aws.network.availabilityZones",
        "at least two distinct",
    ),
    (
        "aws.network.availabilityZones=[eu-west-1a, us-east-1b]",
        "airflow-k8s:aws.network.availabilityZones",
        "not in region",
    ),
    ("aws.cluster.serviceCidr=10.40.128.0/17", "airflow-k8s:aws.cluster.serviceCidr", "overlaps the VPC CIDR"),
    ("aws.network.cidr=10.0.0.0/8", "airflow-k8s:aws.network.cidr", "/16 to /20"),
    ("aws.cluster.existingName=team-eks", "airflow-k8s:aws.cluster.existingName", "needs its network"),
    (
        "aws.network={vpcId: vpc-0abc12345678, privateSubnets: [{id: subnet-0aaa11112222, availabilityZone: eu-west-1a}]}",
        "airflow-k8s:aws.network.privateSubnets",
        "at least two availability zones",
    ),
    ("aws.region=Ireland", "airflow-k8s:aws.region", "must match"),
    ("aws.cluster.nodeDesired=10", "airflow-k8s:aws.cluster.nodeDesired", "nodeMin <= nodeDesired <= nodeMax"),
    (
        "aws.database.backupRetentionDays=0",
        "airflow-k8s:aws.database.backupRetentionDays",
        "greater than or equal to 1",
    ),
    ("database.mode=external", "airflow-k8s:database.", ""),
    # The API server is public only to CIDRs someone chose: no silent 0.0.0.0/0.
    ("aws.cluster.publicAccessCidrs=[]", "airflow-k8s:aws.cluster.publicAccessCidrs", "publicEndpoint: false"),
    ("aws.cluster.publicAccessCidrs=[10.0.0.0/33]", "airflow-k8s:aws.cluster.publicAccessCidrs.0", "10.0.0.0/33"),
    (
        "aws.cluster.publicAccessCidrs=[10.0.0.0/8, 10.1.2.3/8]",
        "airflow-k8s:aws.cluster.publicAccessCidrs.1",
        "host bits",
    ),
    ("aws.cluster.clientSecurityGroupIds=[sg-nothex]", "airflow-k8s:aws.cluster.clientSecurityGroupIds", "sg-"),
    # Security group ids have 8 or 17 hex digits, nothing between (review finding 15).
    ("aws.cluster.clientSecurityGroupIds=[sg-0123456789]", "airflow-k8s:aws.cluster.clientSecurityGroupIds", "8 or 17"),
    # A pinned minor with AWS's minor upgrades on fails the next `up` once AWS has upgraded.
    ("aws.database.engineVersion=17.6", "airflow-k8s:aws.database.engineVersion", "autoMinorVersionUpgrade"),
    ("aws.cluster.version=1.33", "airflow-k8s:aws.cluster.version", "1.34"),
    ("aws.cluster.supportType=FOREVER", "airflow-k8s:aws.cluster.supportType", "STANDARD"),
    # 1.34 left standard support on 2026-12-02: the step up from 1.33 runs in extended support.
    ("aws.cluster.version=1.34", "airflow-k8s:aws.cluster.supportType", "EXTENDED"),
    # Who else reaches and administers the API server: checked ids, CIDRs and IAM ARNs.
    ("aws.cluster.apiAccessSecurityGroupIds=[sg-x]", "airflow-k8s:aws.cluster.apiAccessSecurityGroupIds", "sg-"),
    ("aws.cluster.apiAccessCidrs=[0.0.0.0/0]", "airflow-k8s:aws.cluster.apiAccessCidrs", "/0"),
    ("aws.cluster.adminPrincipalArns=[ci-deployer]", "airflow-k8s:aws.cluster.adminPrincipalArns", "arn:aws:iam::"),
    (
        ("aws.cluster.adminPrincipalArns=[arn:aws:iam::123456789012:role/ci]", *EXISTING),
        "airflow-k8s:aws.cluster.adminPrincipalArns",
        "created cluster",
    ),
    (
        ("aws.cluster.existingName=team-eks", EXISTING[1], "airflow.workers.storageSize=20Gi"),
        "airflow-k8s:airflow.workers.storageClass",
        "no default StorageClass",
    ),
    # Issue 15: a worker set's log claims too.
    (
        ("aws.cluster.existingName=team-eks", EXISTING[1],
         "airflow.workerSets=[{name: gpu, queues: [gpu], storageSize: 20Gi}]"),
        "airflow-k8s:airflow.workerSets.0.storageClass",
        "no default StorageClass",
    ),
]  # fmt: skip

PROD_BAD = [
    (
        ("aws.cluster.publicEndpoint=true", "aws.cluster.publicAccessCidrs=[0.0.0.0/0]"),
        "airflow-k8s:aws.cluster.publicAccessCidrs",
        "opens a production API server to the whole internet",
    ),
    (("aws.cluster.publicAccessCidrs=[]",), "airflow-k8s:aws.cluster.publicAccessCidrs", "publicEndpoint: false"),
    # The `up` that creates a VPC cannot reach a private API server inside it: nothing routes there yet.
    (("aws.cluster.publicEndpoint=false",), "airflow-k8s:aws.cluster.publicEndpoint", "cannot be reached by the"),
]


@pytest.mark.parametrize("override,key,fragment", BAD)
def test_bad_aws_input(override: str | tuple[str, ...], key: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    overrides = list(override) if isinstance(override, tuple) else [override]
    config, keys = load_stack_config("aws-dev", overrides)
    run = engine.run(program, config=config, secret_keys=keys, stack="aws-dev")
    assert run.error is not None and key in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


def test_enhanced_monitoring_waits_for_the_roles_policy() -> None:
    """RDS checks the role's permissions when the instance is made: a role without its policy yet
    fails with 'IAM role ARN value is invalid or does not include the required permissions'."""
    run = render("aws-prod")
    db = one(run, "rds/instance:Instance")
    assert db.inputs["monitoringInterval"] == 60
    attach = run.get("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "database-monitoring-policy")
    assert attach.inputs["policyArn"].endswith("service-role/AmazonRDSEnhancedMonitoringRole")
    assert attach.urn in db.dependencies


def test_each_prod_database_keeps_a_final_snapshot_of_its_own_name() -> None:
    """A fixed `<identifier>-final` fails the destroy of a re-created stack with
    DBSnapshotAlreadyExists (the first destroy's snapshot is still there): the name carries a
    generated suffix that a re-created stack generates anew."""
    run = render("aws-prod")
    db = one(run, "rds/instance:Instance")
    name = db.inputs["finalSnapshotIdentifier"]
    suffix = one(run, "index/randomId:RandomId")
    assert suffix.urn in db.property_dependencies["finalSnapshotIdentifier"]
    assert name.startswith("airflow-aws-prod-final-") and name != "airflow-aws-prod-final-"
    assert suffix.inputs["keepers"] == {"identifier": "airflow-aws-prod"}


@pytest.mark.parametrize("stack", STACKS)
def test_a_protected_cluster_has_eks_deletion_protection(stack: str) -> None:
    """Review finding 15: Pulumi `protect` guards against this program; EKS's own deletion
    protection (pulumi-aws 7.51.1 eks.Cluster `deletion_protection`) also against a console or CLI
    delete. A test stack has neither, so it destroys in one go."""
    from stacks.tooling.teardown import findings

    run = render(stack)
    cluster = one(run, "eks/cluster:Cluster")
    assert cluster.inputs["deletionProtection"] is (stack == "aws-prod")
    blocks = [f for f in findings(run) if f.resource == cluster.urn and "deletion protection" in f.message]
    assert [f.severity for f in blocks] == (["blocks"] if stack == "aws-prod" else [])


@pytest.mark.parametrize("stack", STACKS)
def test_fixed_name_cluster_database_and_broker_can_be_replaced(stack: str) -> None:
    """Their AWS names are fixed, so create-before-delete fails with 'already exists': a replacing
    change deletes first. Production protects all three, so such a change stops at preview with
    'protected' until someone runs `pulumi state unprotect` on purpose."""
    run = render(stack)
    prod = stack == "aws-prod"
    for suffix in ("eks/cluster:Cluster", "rds/instance:Instance", "elasticache/replicationGroup:ReplicationGroup"):
        r = one(run, suffix)
        assert r.options.get("deleteBeforeReplace") is True, suffix
        assert bool(r.options.get("protect")) is prod, suffix


@pytest.mark.parametrize("stack", STACKS)
def test_s3_traffic_of_the_private_subnets_skips_the_nat_gateway(stack: str) -> None:
    """ECR serves image layers from S3 and task logs go to S3: a gateway endpoint (free) on every
    private route table keeps that traffic off the NAT gateway (billed per GB)."""
    run = render(stack)
    [endpoint] = of_type(run, "ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["serviceName"] == "com.amazonaws.eu-west-1.s3"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    private_tables = {f"{r.name}-id" for r in of_type(run, "ec2/routeTable:RouteTable") if "-private-" in r.name}
    assert private_tables and set(endpoint.inputs["routeTableIds"]) == private_tables


def test_an_existing_vpc_gets_no_endpoint() -> None:
    assert not of_type(render("aws-dev", *EXISTING), "ec2/vpcEndpoint:VpcEndpoint")


@pytest.mark.parametrize("stack", STACKS)
def test_log_writers_start_after_their_pod_identity_association(stack: str) -> None:
    """EKS injects Pod Identity credentials when a pod is admitted: a pod created before its
    service account's association runs without them (task logs never reach S3) until it restarts."""
    run = render(stack)
    assocs = {r.inputs["serviceAccount"]: r.urn for r in of_type(run, "PodIdentityAssociation")}
    for r in run.resources:
        if r.type.endswith(("apps/v1:Deployment", "apps/v1:StatefulSet")):
            sa = r.inputs["spec"]["template"]["spec"]["serviceAccountName"]
            if sa in assocs:
                assert assocs[sa] in ancestors(run, r.urn), r.name


@pytest.mark.parametrize("overrides,key,fragment", PROD_BAD)
def test_bad_aws_prod_input(overrides: tuple[str, ...], key: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("aws-prod", list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack="aws-prod")
    assert run.error is not None and key in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


# A private endpoint in an existing VPC (the one the deployer's runner can reach).
PRIVATE = ("aws.cluster.publicEndpoint=false", EXISTING[1])


def test_the_api_server_is_reachable_only_from_listed_cidrs_or_privately_in_a_reachable_vpc() -> None:
    prod = one(render("aws-prod"), "eks/cluster:Cluster").inputs["vpcConfig"]
    listed = yaml.safe_load((ROOT / "stacks/Pulumi.aws-prod.yaml").read_text())["config"]["airflow-k8s:aws"]
    assert prod["endpointPublicAccess"] is True and prod["endpointPrivateAccess"] is True
    assert prod["publicAccessCidrs"] == listed["cluster"]["publicAccessCidrs"]
    assert all(ipaddress.ip_network(c).prefixlen > 0 for c in prod["publicAccessCidrs"])
    dev = one(render("aws-dev", "aws.cluster.publicAccessCidrs=[198.51.100.0/24]"), "eks/cluster:Cluster")
    assert dev.inputs["vpcConfig"]["publicAccessCidrs"] == ["198.51.100.0/24"]
    private = one(render("aws-prod", *PRIVATE), "eks/cluster:Cluster").inputs["vpcConfig"]
    assert private["endpointPublicAccess"] is False and not private.get("publicAccessCidrs")


ADMIN = "arn:aws:iam::123456789012:role/ci-deployer"


def test_a_private_api_server_admits_the_listed_networks_and_administrators() -> None:
    """Review finding 5: with a private endpoint, traffic from a runner outside the cluster
    security group needs a 443 rule on it (EKS user guide, "Cluster API server endpoint"), and
    only the cluster's creator is admin unless an access entry says otherwise: a CI role got 401."""
    plain = render("aws-prod", *PRIVATE)
    assert not of_type(plain, "eks/accessEntry:AccessEntry")
    assert not [r for r in of_type(plain, "SecurityGroupIngressRule") if r.inputs.get("fromPort") == 443]
    run = render(
        "aws-prod",
        *PRIVATE,
        "aws.cluster.apiAccessSecurityGroupIds=[sg-0aaa1111bbbb2222c]",
        "aws.cluster.apiAccessCidrs=[10.60.0.0/16]",
        f"aws.cluster.adminPrincipalArns=[{ADMIN}]",
    )
    cluster = one(run, "eks/cluster:Cluster")
    api = [r for r in of_type(run, "SecurityGroupIngressRule") if r.inputs["securityGroupId"] == "sg-eks-cluster"]
    assert {(r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"]) for r in api} == {("tcp", 443, 443)}
    assert {r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4") for r in api} == {
        "sg-0aaa1111bbbb2222c",
        "10.60.0.0/16",
    }
    [entry] = of_type(run, "eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == ADMIN and entry.inputs["type"] == "STANDARD"
    assert cluster.urn in entry.dependencies
    [policy] = of_type(run, "eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert policy.inputs["principalArn"] == ADMIN and policy.inputs["accessScope"] == {"type": "cluster"}
    assert policy.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert entry.urn in policy.dependencies  # the association names an entry that must exist


def test_an_existing_clusters_own_node_groups_reach_the_data_services() -> None:
    """Clusters made by terraform-aws-eks (or with custom launch templates) put nodes in a node
    security group, not the cluster security group: list it and the data services admit it."""
    run = render("aws-dev", *EXISTING, "aws.cluster.clientSecurityGroupIds=[sg-0123456789abcdef0]")
    for name in ("database-sg", "broker-sg", "dags-sg"):
        [rule] = run.get("aws:ec2/securityGroup:SecurityGroup", name).inputs["ingress"]
        assert rule["securityGroups"] == ["sg-0mockcluster", "sg-0123456789abcdef0"], name


@pytest.mark.parametrize("stack", STACKS)
def test_database_pins_the_major_version_and_takes_aws_minor_upgrades(stack: str) -> None:
    """With a minor pinned, the first `up` after AWS's automatic minor upgrade asks to go back."""
    db = one(render(stack), "rds/instance:Instance").inputs
    assert db["engineVersion"] == "17" and db["autoMinorVersionUpgrade"] is True
    assert db["allowMajorVersionUpgrade"] is True  # a major change in config is a real upgrade
    params = one(render(stack), "rds/parameterGroup:ParameterGroup").inputs
    assert params["family"] == "postgres17"
    pinned = one(
        render(stack, "aws.database.engineVersion=17.6", "aws.database.autoMinorVersionUpgrade=false"),
        "rds/instance:Instance",
    ).inputs
    assert pinned["engineVersion"] == "17.6" and pinned["autoMinorVersionUpgrade"] is False


def addons(run: engine.Run) -> dict[str, engine.Resource]:
    return {r.inputs["addonName"]: r for r in of_type(run, "eks/addon:Addon")}


def attached(run: engine.Run, role: engine.Resource) -> set[str]:
    return {
        a.inputs["policyArn"].rsplit("/", 1)[-1]
        for a in of_type(run, "iam/rolePolicyAttachment:RolePolicyAttachment")
        if role.urn in a.dependencies
    }


@pytest.mark.parametrize("stack", STACKS)
def test_cluster_networking_is_managed_pinned_and_enforces_network_policies(stack: str) -> None:
    """The VPC CNI's policy agent is off unless its add-on turns it on: without it every
    NetworkPolicy the stack makes is ignored. vpc-cni, kube-proxy and CoreDNS are managed add-ons
    with pinned versions (upgraded with the cluster), taking over the self-managed ones EKS installs."""
    from components.aws.eks import ADDON_VERSIONS

    run = render(stack)
    cluster = one(run, "eks/cluster:Cluster")
    version = cluster.inputs["version"]
    found = addons(run)
    assert set(found) >= {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-efs-csi-driver"}
    for name, addon in found.items():
        assert addon.inputs["addonVersion"] == ADDON_VERSIONS[version][name], name
        assert addon.inputs["resolveConflictsOnCreate"] == "OVERWRITE", name
        assert addon.inputs["resolveConflictsOnUpdate"] == "OVERWRITE", name
    cni = found["vpc-cni"]
    assert json.loads(cni.inputs["configurationValues"])["enableNetworkPolicy"] == "true"
    # The CNI's AWS rights go to its own service account, not to every pod through the node role.
    [assoc] = cni.inputs["podIdentityAssociations"]
    assert assoc["serviceAccount"] == "aws-node"
    [cni_role] = [
        r
        for r in of_type(run, "iam/role:Role")
        if f"{r.name}-id" in json.dumps(assoc) or r.urn in cni.dependencies and "cni" in r.name
    ]
    assert attached(run, cni_role) == {"AmazonEKS_CNI_Policy"}
    node_role = run.get("aws:iam/role:Role", "eks-node-role")
    assert "AmazonEKS_CNI_Policy" not in attached(run, node_role)
    # Nodes join with the managed CNI (and the agent that hands it credentials) already in place;
    # CoreDNS needs nodes to become active.
    nodes = one(run, "eks/nodeGroup:NodeGroup")
    before_nodes = ancestors(run, nodes.urn)
    assert {found["vpc-cni"].urn, found["eks-pod-identity-agent"].urn} <= before_nodes
    assert nodes.urn in ancestors(run, found["coredns"].urn)
    # Nodes follow the control plane's version.
    assert cluster.urn in nodes.property_dependencies.get("version", [])


@pytest.mark.parametrize("stack", STACKS)
def test_replacing_a_networking_addon_leaves_its_daemonsets_on_live_nodes(stack: str) -> None:
    """Review finding 10: deleting a managed add-on (a replace, or dropping it) removes what it
    installed unless `preserve`; without the CNI, kube-proxy or CoreDNS running pods lose their
    network (terraform-aws-eks keeps them: preserve = true)."""
    found = addons(render(stack, "airflow.workers.storageSize=20Gi"))
    assert {n for n, a in found.items() if a.inputs.get("preserve")} == {"vpc-cni", "kube-proxy", "coredns"}


@pytest.mark.parametrize("stack", STACKS)
def test_kubernetes_version_is_in_standard_support_and_never_silently_extended(stack: str) -> None:
    cluster = one(render(stack), "eks/cluster:Cluster").inputs
    assert cluster["version"] == "1.35"  # standard support until 2027-03-27 (EKS release calendar)
    assert cluster["upgradePolicy"] == {"supportType": "STANDARD"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_readme_upgrade_path_from_the_last_release_renders_step_by_step(stack: str) -> None:
    """Review finding 1: stacks of release 03ea502 run 1.33 (EXTENDED, the API's default policy,
    since 2026-07-29). EKS upgrades one minor at a time, and the policy can only be changed in
    standard support: 1.34 with EXTENDED first, then 1.35 with STANDARD (the provider updates the
    version before the policy)."""
    from components.aws.eks import ADDON_VERSIONS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    upgrading = readme.split("### Upgrading an AWS stack made before this release")[1].split("\n## ")[0]
    steps = [("1.34", "EXTENDED"), ("1.35", "STANDARD")]
    for version, support in steps:
        assert f'`version: "{version}"`, `supportType: {support}`' in upgrading
        run = render(stack, f"aws.cluster.version={version}", f"aws.cluster.supportType={support}")
        cluster = one(run, "eks/cluster:Cluster").inputs
        assert cluster["version"] == version and cluster["upgradePolicy"] == {"supportType": support}
        assert {a.inputs["addonVersion"] for a in addons(run).values()} <= set(ADDON_VERSIONS[version].values())


@pytest.mark.parametrize("stack", STACKS)
def test_the_readme_database_steps_for_existing_stacks_render(stack: str) -> None:
    """Review findings 3 and 8: a 03ea502 stack has "17.6" in state, and "17" in config would send
    ModifyDBInstance EngineVersion=17 (alphagov/govuk-infrastructure#2954); a production major
    upgrade leaves the old parameter group in use until the maintenance window. The README's
    steps must be ones the config accepts."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    upgrading = readme.split("### Upgrading an AWS stack made before this release")[1].split("\n## ")[0]
    assert '`engineVersion: "<running major.minor>"`, `autoMinorVersionUpgrade: false`' in upgrading
    assert "InvalidDBParameterGroupState" in upgrading and "maintenance window" in upgrading
    db = one(
        render(stack, "aws.database.engineVersion=17.6", "aws.database.autoMinorVersionUpgrade=false"),
        "rds/instance:Instance",
    ).inputs
    assert db["engineVersion"] == "17.6" and db["autoMinorVersionUpgrade"] is False


def test_worker_log_claims_get_an_encrypted_gp3_class_and_its_csi_driver() -> None:
    """EKS (1.30+) has no default StorageClass: a claim without a class stays Pending."""
    run = render("aws-dev", "airflow.workers.storageSize=20Gi")
    ebs = addons(run)["aws-ebs-csi-driver"]
    [assoc] = ebs.inputs["podIdentityAssociations"]
    assert assoc["serviceAccount"] == "ebs-csi-controller-sa"
    [role] = [r for r in of_type(run, "iam/role:Role") if "ebs" in r.name]
    assert attached(run, role) == {"AmazonEBSCSIDriverPolicy"}
    [sc] = objects(run, "StorageClass")
    assert sc["provisioner"] == "ebs.csi.aws.com" and sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["parameters"]["type"] == "gp3" and sc["parameters"]["encrypted"] == "true"
    assert sc["allowVolumeExpansion"] is True
    [worker] = [w for w in objects(run, "StatefulSet") if w["metadata"]["name"].startswith("airflow-worker-")]
    [claim] = worker["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == sc["metadata"]["name"]
    assert "aws-ebs-csi-driver" not in addons(render("aws-dev"))
    assert not objects(render("aws-dev"), "StorageClass")


def test_worker_volumes_carry_the_stack_tag_the_destroy_cleanup_looks_for() -> None:
    """Review finding 7: a worker claim's EBS volume is made by the CSI driver, outside the state;
    if the driver's add-on goes before the volume, destroy leaves it. The driver tags each volume
    it makes with the class's `tagSpecification_<n>: "key=value"` parameters (aws-ebs-csi-driver
    docs/tagging.md), so the cleanup can find this stack's volumes."""
    [sc] = objects(render("aws-dev", "airflow.workers.storageSize=20Gi"), "StorageClass")
    tags = dict(v.split("=", 1) for k, v in sc["parameters"].items() if k.startswith("tagSpecification_"))
    assert tags == {"pulumi-stack": "aws-dev", "app": "airflow-k8s"}


@pytest.mark.parametrize("stack", STACKS)
def test_data_services_start_at_the_vpc_not_after_the_cluster(stack: str) -> None:
    """RDS, ElastiCache, EFS and the log bucket need their subnets and a security group, nothing of
    the cluster: the groups admit the stack's client security group (which the nodes carry through
    their launch template) instead of the cluster security group EKS makes with the cluster."""
    run = render(stack)
    eks = {
        r.urn for r in run.resources if r.type.startswith(("aws:eks/", "aws:ec2/natGateway", "aws:ec2/launchTemplate"))
    }
    for suffix in (
        "rds/instance:Instance",
        "elasticache/replicationGroup:ReplicationGroup",
        "efs/fileSystem:FileSystem",
        "efs/mountTarget:MountTarget",
        "s3/bucket:Bucket",
    ):
        for r in of_type(run, suffix):
            assert not ancestors(run, r.urn) & eks, (r.name, sorted(ancestors(run, r.urn) & eks))
    clients = run.get("aws:ec2/securityGroup:SecurityGroup", "eks-clients-sg")
    template = one(run, "ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["vpcSecurityGroupIds"] == ["sg-eks-cluster", "eks-clients-sg-id"]
    for name in DATA_GROUPS:
        assert set(admitted(run, name)) == {"eks-clients-sg-id"}, name
    assert clients.inputs.get("ingress", []) == []


@pytest.mark.parametrize("stack", STACKS)
def test_nodes_keep_pods_off_the_instance_metadata_and_encrypt_their_disk(stack: str) -> None:
    run = render(stack)
    template = one(run, "ec2/launchTemplate:LaunchTemplate").inputs
    assert template["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,  # a pod's extra network hop never reaches IMDS
    }
    [disk] = template["blockDeviceMappings"]
    assert disk["deviceName"] == "/dev/xvda" and disk["ebs"]["encrypted"] == "true"
    assert disk["ebs"]["volumeType"] == "gp3" and disk["ebs"]["volumeSize"] >= 20
    nodes = one(run, "eks/nodeGroup:NodeGroup").inputs
    assert "diskSize" not in nodes and nodes["launchTemplate"]["id"] == "eks-nodes-template-id"


@pytest.mark.parametrize("stack", STACKS)
def test_node_instances_disks_and_interfaces_carry_the_stack_tags(stack: str) -> None:
    """Review finding 13: the provider's default tags do not reach what the node group's Auto
    Scaling group launches (pulumi-aws LaunchTemplate docstring): the template tags them itself."""
    run = render(stack, "aws.tags={team: data}")
    spec = {
        t["resourceType"]: t["tags"] for t in one(run, "ec2/launchTemplate:LaunchTemplate").inputs["tagSpecifications"]
    }
    assert set(spec) == {"instance", "volume", "network-interface"}
    for tags in spec.values():
        assert {"pulumi-stack": stack, "app": "airflow-k8s", "team": "data"}.items() <= tags.items()
    assert spec["instance"]["Name"] == f"airflow-{stack}-node"


@pytest.mark.parametrize("stack", STACKS)
def test_the_migration_waits_for_the_database_not_the_broker(stack: str) -> None:
    """The broker URL has a Secret of its own, so the Secret the migration reads (and so the
    migration) need not wait for ElastiCache, which can take longer than RDS."""
    run = render(stack)
    [migrate] = [r for r in run.resources if r.type.endswith("batch/v1:Job") and r.name.endswith("-migrate")]
    before = ancestors(run, migrate.urn)
    assert one(run, "rds/instance:Instance").urn in before
    assert one(run, "elasticache/replicationGroup:ReplicationGroup").urn not in before
    assert "broker-url" not in named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]
    assert set(named(run, "Secret", "airflow-broker", reveal=True)["stringData"]) == {"broker-url"}
