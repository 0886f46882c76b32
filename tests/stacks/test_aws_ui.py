"""Issue 14, item 1 on AWS: the UI at https://<ui.host>/ through an ALB of the AWS Load Balancer
Controller, which the stack installs (Pod Identity role with the published policy, Helm chart) or
finds running; and the teardown order that keeps the controller-made ALB from outliving the stack."""

from __future__ import annotations

import hashlib
import json
import re

import kubernetes_validate
import pytest

import stacks.aws
from components.aws.eks import POD_IDENTITY_TRUST
from components.aws.load_balancer_controller import CHART_VERSION, POLICY_DIR, POLICY_FILES, iam_policy
from stacks.main import program
from stacks.tooling import critpath, engine
from stacks.tooling.render import load_stack_config
from stacks.tooling.teardown import ancestors, destroy_order, findings
from tests.render import K8S_VERSIONS, named, objects, render
from tests.stacks.test_aws import EXISTING, of_type, one

CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
UI = ("ui.host=airflow.example.com", f"aws.ui.certificateArn={CERT}")
PUBLIC = (*UI, "aws.ui.scheme=internet-facing", "aws.ui.inboundCidrs=[198.51.100.0/24, 203.0.113.0/24]")
WAF = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/airflow/a1b2c3d4-5678-90ab-cdef-1234567890ab"
RELEASE = "kubernetes:helm.sh/v3:Release"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ALB = "alb.ingress.kubernetes.io/"


def ingress(run: engine.Run) -> engine.Resource:
    [r] = run.by_type(INGRESS)
    return r


@pytest.mark.parametrize("stack", ["aws-dev", "aws-prod"])
def test_without_a_host_nothing_of_the_ui_is_made(stack: str) -> None:
    run = render(stack)
    assert not run.by_type(RELEASE) and not run.by_type(INGRESS)
    assert not [r for r in run.resources if r.name.startswith("lb-controller")]
    assert "uiLoadBalancer" not in run.outputs


def test_the_controller_is_installed_with_its_published_policy_through_pod_identity() -> None:
    run = render("aws-dev", *UI)
    role = run.get("aws:iam/role:Role", "lb-controller-role")
    assert json.loads(role.inputs["assumeRolePolicy"]) == POD_IDENTITY_TRUST
    policy = run.get("aws:iam/policy:Policy", "lb-controller-policy")
    assert json.loads(policy.inputs["policy"]) == json.loads((POLICY_DIR / "iam_policy.json").read_text())
    attach = run.get("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "lb-controller-policy")
    assert {role.urn, policy.urn} <= set(attach.dependencies)
    association = run.get("aws:eks/podIdentityAssociation:PodIdentityAssociation", "lb-controller-identity")
    [release] = run.by_type(RELEASE)
    values = release.inputs["values"]
    # The association names the service account the chart makes, in the release's namespace.
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        release.inputs["namespace"],
        values["serviceAccount"]["name"],
    )
    assert values["serviceAccount"]["create"] is True
    assert association.inputs["clusterName"] == values["clusterName"] == "airflow-aws-dev"
    assert values["region"] == "eu-west-1" and values["vpcId"] == "network-vpc-id"
    assert values["replicaCount"] == 2 and values["ingressClass"] == "alb"
    assert values["enableServiceMutatorWebhook"] is False  # LoadBalancer Services stay as they were
    assert values["defaultTags"] == {"app": "airflow-k8s", "pulumi-stack": "aws-dev"}
    assert release.inputs["chart"] == "aws-load-balancer-controller" and release.inputs["version"] == CHART_VERSION
    assert release.inputs["repositoryOpts"] == {"repo": "https://aws.github.io/eks-charts"}
    # Its pods start only once their identity and rights exist.
    assert {association.urn, attach.urn} <= set(release.dependencies)


def test_every_new_aws_resource_and_the_release_use_the_stacks_providers() -> None:
    run = render("aws-dev", *UI)
    [aws_provider] = run.by_type("pulumi:providers:aws")
    [k8s_provider] = run.by_type("pulumi:providers:kubernetes")
    made = [r for r in run.resources if r.custom and r.name.startswith("lb-controller")]
    assert {r.type for r in made} == {
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:eks/podIdentityAssociation:PodIdentityAssociation",
        RELEASE,
    }
    for r in made:
        assert r.provider == (k8s_provider.urn if r.type == RELEASE else aws_provider.urn), r.name


def test_the_vendored_policies_are_the_published_files_for_each_partition() -> None:
    source = (POLICY_DIR / "SOURCE.md").read_text()
    for file in POLICY_FILES.values():
        digest = hashlib.sha256((POLICY_DIR / file).read_bytes()).hexdigest()
        assert re.search(rf"\| {re.escape(file)} .*\| {digest} \|", source), f"{file} differs from SOURCE.md's sha256"
    assert iam_policy("cn-north-1") == json.loads((POLICY_DIR / "iam_policy_cn.json").read_text())
    assert iam_policy("us-gov-west-1") == json.loads((POLICY_DIR / "iam_policy_us-gov.json").read_text())
    assert "arn:aws-cn:" in json.dumps(iam_policy("cn-north-1")) and "arn:aws-cn:" not in json.dumps(
        iam_policy("eu-west-1")
    )
    # Under the 6,144-character quota of a managed policy, as the stack sends it (compact).
    assert all(
        len(json.dumps(iam_policy(r), separators=(",", ":"))) < 6144
        for r in ("eu-west-1", "cn-north-1", "us-gov-west-1")
    )


def test_the_ingress_is_https_only_to_the_api_server_pods() -> None:
    run = render("aws-dev", *UI)
    ing = named(run, "Ingress", "airflow-ui")
    assert ing["spec"]["ingressClassName"] == "alb"
    annotations = ing["metadata"]["annotations"]
    assert annotations == {
        ALB + "scheme": "internal",
        ALB + "target-type": "ip",
        ALB + "listen-ports": '[{"HTTPS": 443}]',
        ALB + "certificate-arn": CERT,
        ALB + "ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        ALB + "backend-protocol": "HTTP",
        ALB + "healthcheck-path": "/api/v2/monitor/health",
        # An internal ALB admits the VPC unless told otherwise.
        ALB + "inbound-cidrs": "10.40.0.0/16",
        ALB + "tags": "app=airflow-k8s,pulumi-stack=aws-dev",
        ALB + "target-group-attributes": "deregistration_delay.timeout_seconds=30",
    }
    # The ALB checks what the kubelet checks.
    api = named(run, "Deployment", "airflow-api-server")["spec"]["template"]["spec"]["containers"][0]
    assert annotations[ALB + "healthcheck-path"] == api["readinessProbe"]["httpGet"]["path"]
    assert run.outputs["uiUrl"] == "https://airflow.example.com/"
    assert run.outputs["uiLoadBalancer"] == "ui.lb.mock"  # the Ingress status's hostname (mocked)


def test_every_annotation_is_one_the_pinned_controller_documents() -> None:
    """The names are those of docs/guide/ingress/annotations.md at tag v3.5.0 (its table's first column)."""
    documented = {
        "scheme", "target-type", "listen-ports", "certificate-arn", "ssl-policy", "backend-protocol",
        "healthcheck-path", "inbound-cidrs", "tags", "wafv2-acl-arn", "subnets", "target-group-attributes",
    }  # fmt: skip
    run = render("aws-dev", *PUBLIC, f"aws.ui.wafv2AclArn={WAF}", "aws.ui.subnetIds=[subnet-0aaa1111, subnet-0bbb2222]")
    annotations = named(run, "Ingress", "airflow-ui")["metadata"]["annotations"]
    assert {k.removeprefix(ALB) for k in annotations} == documented
    assert annotations[ALB + "scheme"] == "internet-facing"
    assert annotations[ALB + "inbound-cidrs"] == "198.51.100.0/24,203.0.113.0/24"
    assert annotations[ALB + "wafv2-acl-arn"] == WAF
    assert annotations[ALB + "subnets"] == "subnet-0aaa1111,subnet-0bbb2222"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_aws_ingress_is_strictly_valid(version: str) -> None:
    """The Ingress is; the chart's objects are rendered by Helm in the cluster (a Release), not here."""
    run = render("aws-dev", *PUBLIC)
    for obj in objects(run, "Ingress", reveal=True):
        kubernetes_validate.validate(obj, version, strict=True)
    assert not [o for o in objects(run) if "kind" not in o]  # the Release is no manifest


def test_an_existing_controller_gets_no_controller_pieces() -> None:
    run = render("aws-dev", *UI, *EXISTING, "aws.ui.loadBalancerController=existing")
    assert not run.by_type(RELEASE) and not [r for r in run.resources if r.name.startswith("lb-controller")]
    ing = named(run, "Ingress", "airflow-ui")
    assert ing["spec"]["ingressClassName"] == "alb"
    # The existing VPC's CIDR (looked up) is what an internal ALB admits.
    assert ing["metadata"]["annotations"][ALB + "inbound-cidrs"] == "10.90.0.0/16"


def test_the_stack_can_install_the_controller_on_an_existing_cluster() -> None:
    run = render("aws-dev", *UI, *EXISTING, "aws.ui.loadBalancerController=install")
    [release] = run.by_type(RELEASE)
    assert release.inputs["values"]["clusterName"] == "team-eks"
    assert release.inputs["values"]["vpcId"] == "vpc-0abc12345678"


# ---- teardown --------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), PUBLIC[2:]], ids=["internal", "internet-facing"])
def test_the_ingress_goes_before_its_controller_its_rights_the_cluster_and_the_network(extra: tuple[str, ...]) -> None:
    run = render("aws-dev", *UI, *extra)
    ing = ingress(run)
    before = ancestors(run, ing.urn)  # everything `pulumi destroy` deletes after the Ingress
    must_outlive = [
        *run.by_type(RELEASE),
        *[r for r in run.resources if r.custom and r.name.startswith("lb-controller")],
        one(run, "eks/nodeGroup:NodeGroup"),
        one(run, "eks/cluster:Cluster"),
        one(run, "ec2/vpc:Vpc"),
        *of_type(run, "ec2/subnet:Subnet"),
    ]
    assert len(must_outlive) > 9
    assert not [r.name for r in must_outlive if r.urn not in before]
    position = {r.urn: n for n, r in enumerate(destroy_order(run))}
    assert all(position[ing.urn] < position[r.urn] for r in must_outlive)


def test_the_dev_stack_with_the_ui_still_leaves_nothing_behind() -> None:
    found = findings(render("aws-dev", *UI))
    assert not [f for f in found if f.severity in ("blocks", "leaves")], found
    [note] = [f for f in found if "lb-controller" in f.message]
    assert note.severity == "note" and note.resource == ingress(render("aws-dev", *UI)).urn
    assert "Values=airflow-aws-dev" in note.message


def test_teardown_reports_an_ingress_not_ordered_before_its_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same stack with the Ingress's `depends_on` dropped: the controller could go first."""
    expose_ui = stacks.aws.expose_ui

    def without_order(*args: object, **kwargs: object) -> object:
        return expose_ui(*args, **{**kwargs, "depends_on": ()})  # type: ignore[arg-type]

    monkeypatch.setattr(stacks.aws, "expose_ui", without_order)
    config, keys = load_stack_config("aws-dev", list(UI))
    run = engine.run(program, config=config, secret_keys=keys, stack="aws-dev")
    assert run.error is None, run.error
    blocking = [f for f in findings(run) if f.severity == "blocks"]
    assert [f.resource for f in blocking] == [ingress(run).urn]
    assert "lb-controller is not ordered after it" in blocking[0].message


# ---- bad input ---------------------------------------------------------------------------------------

BAD = [
    (("ui.host=airflow.example.com",), "airflow-k8s:aws.ui.certificateArn", "HTTPS only"),
    (
        ("ui.host=airflow.example.com", f"aws.ui.certificateArn={CERT.replace('eu-west-1', 'us-east-1')}"),
        "airflow-k8s:aws.ui.certificateArn",
        "is in us-east-1, the stack in eu-west-1",
    ),
    (
        ("ui.host=airflow.example.com", f"aws.ui.certificateArn={CERT.replace('arn:aws:', 'arn:aws-cn:')}"),
        "airflow-k8s:aws.ui.certificateArn",
        "partition 'aws-cn'",
    ),
    (("ui.host=airflow.example.com", "aws.ui.certificateArn=my-cert"), "airflow-k8s:aws.ui.certificateArn", "match"),
    ((*UI, "aws.ui.inboundCidrs=[0.0.0.0/0]"), "airflow-k8s:aws.ui.inboundCidrs", "allowAnyInbound"),
    ((*UI, "aws.ui.scheme=internet-facing"), "airflow-k8s:aws.ui.inboundCidrs", "internet-facing ALB needs"),
    ((*UI, "aws.ui.scheme=public"), "airflow-k8s:aws.ui.scheme", "'internal', 'internet-facing'"),
    ((f"aws.ui.certificateArn={CERT}",), "airflow-k8s:aws.ui", "only with ui.host"),
    ((*UI, *EXISTING), "airflow-k8s:aws.ui.loadBalancerController", "existing cluster"),
    # Nothing would serve the `alb` class on a cluster the stack creates: the Ingress wait would fail.
    ((*UI, "aws.ui.loadBalancerController=existing"), "airflow-k8s:aws.ui.loadBalancerController", "installs"),
    ((*UI, "aws.ui.subnetIds=[subnet-0aaa1111]"), "airflow-k8s:aws.ui.subnetIds", "two availability zones"),
    (
        (*UI, f"aws.ui.wafv2AclArn={WAF.replace('eu-west-1', 'us-west-2')}"),
        "airflow-k8s:aws.ui.wafv2AclArn",
        "is in us-west-2",
    ),
    ((*UI, "aws.ui.sslPolicy=TLS-anything"), "airflow-k8s:aws.ui.sslPolicy", "match"),
    ((*UI, "aws.tags={team: 'a,b'}"), "airflow-k8s:aws.tags", "cannot carry ',' or '='"),
    ((*UI, "aws.tags={'kubernetes.io/cluster/x': owned}"), "airflow-k8s:aws.tags", "two node groups"),
]


@pytest.mark.parametrize("overrides,key,fragment", BAD)
def test_bad_aws_ui_input_names_the_key_and_registers_nothing(
    overrides: tuple[str, ...], key: str, fragment: str
) -> None:
    config, keys = load_stack_config("aws-dev", list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack="aws-dev")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


def test_a_world_open_ui_is_said_twice() -> None:
    run = render("aws-dev", *PUBLIC[:3], "aws.ui.inboundCidrs=[0.0.0.0/0]", "aws.ui.allowAnyInbound=true")
    assert named(run, "Ingress", "airflow-ui")["metadata"]["annotations"][ALB + "inbound-cidrs"] == "0.0.0.0/0"


def test_the_deploy_time_report_knows_every_new_type() -> None:
    run = render("aws-dev", *UI)
    assert critpath.defaulted_types(run) == [] and critpath.unjudged_types(run) == []
    slots = critpath.schedule(run, forced=True)
    # The Ingress is created only once the controller runs with its rights, and the Service exists.
    ing = slots[ingress(run).urn]
    [release] = run.by_type(RELEASE)
    assert ing.start >= slots[release.urn].finish
    association = run.get("aws:eks/podIdentityAssociation:PodIdentityAssociation", "lb-controller-identity")
    assert slots[release.urn].start >= slots[association.urn].finish


def test_the_alb_reaches_the_api_server_pods() -> None:
    """With target-type ip the ALB connects from its own interfaces in the VPC: the api-server's
    NetworkPolicy admits its port from any source, and of the nodes' security groups exactly one can
    carry the cluster tag the controller looks for (EKS tags the cluster group; the client group has none)."""
    run = render("aws-dev", *UI)
    policy = named(run, "NetworkPolicy", "airflow-api-server")
    [rule] = policy["spec"]["ingress"]
    assert "from" not in rule and rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    clients = run.get("aws:ec2/securityGroup:SecurityGroup", "eks-clients-sg")
    assert not [k for k in clients.inputs.get("tags") or {} if k.startswith("kubernetes.io/cluster/")]
    template = one(run, "ec2/launchTemplate:LaunchTemplate")
    assert len(template.inputs["vpcSecurityGroupIds"]) == 2  # the cluster group and the client group


# ---- rollouts behind the ALB (review of issue 14, item 1) -----------------------------------------


def test_an_api_server_rollout_keeps_a_healthy_target_behind_the_alb() -> None:
    """The controller's pod readiness gate (docs/deploy/pod_readiness_gate.md at v3.5.0) holds a new
    api-server pod unready until the ALB reports its target healthy, so the rollout (maxUnavailable 0)
    keeps the old pod until then; it is injected only in namespaces carrying this label. A stopping pod
    keeps serving while the ALB deregisters it, and the target group drains within the pod's grace."""
    run = render("aws-dev", *UI)
    [ns] = [o for o in objects(run, "Namespace") if o["metadata"]["name"] == "airflow"]
    assert ns["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    annotations = named(run, "Ingress", "airflow-ui")["metadata"]["annotations"]
    drain = int(annotations[ALB + "target-group-attributes"].removeprefix("deregistration_delay.timeout_seconds="))
    pod = named(run, "Deployment", "airflow-api-server")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < drain <= pod["terminationGracePeriodSeconds"]
    # Only the namespace the ALB targets, and only when there is an ALB.
    assert not [o for o in objects(render("aws-dev"), "Namespace") if "elbv2.k8s.aws/pod-readiness-gate-inject"
                in o["metadata"].get("labels", {})]  # fmt: skip
    tasks = [o for o in objects(run, "Namespace") if o["metadata"]["name"] != "airflow"]
    assert tasks and not [o for o in tasks if "elbv2.k8s.aws/pod-readiness-gate-inject" in o["metadata"]["labels"]]


def test_the_ingress_may_wait_for_the_controller_to_delete_the_alb() -> None:
    """The controller removes the Ingress's finalizer only once the ALB and its security groups are gone,
    retrying while their interfaces drain: longer than the provider's default 10 minutes at times."""
    run = render("aws-dev", *UI)
    assert ingress(run).options["customTimeouts"]["delete"] == "20m"
