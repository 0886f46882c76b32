"""The UI over HTTPS on AWS: an ALB made by the AWS Load Balancer Controller for the UI's Ingress.

The controller is installed by the stack (its published IAM policy on a Pod Identity role, its Helm
chart at a pinned version) or is one the cluster already runs. Either way the ALB, its security
groups and its target group are made by the controller, outside Pulumi's state: the Ingress must be
deleted while the controller (and its AWS rights) still exist, and before the subnets and cluster.
The stack passes `AwsLoadBalancerController.ready` as the Ingress's `depends_on` for that.

Sources (all at the pinned version, github.com/kubernetes-sigs/aws-load-balancer-controller, tag
v3.5.0): the chart's values (helm/aws-load-balancer-controller/values.yaml), the annotations
(docs/guide/ingress/annotations.md), subnet discovery (docs/deploy/subnet_discovery.md) and the
security groups it manages (docs/deploy/security_groups.md).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator, model_validator

from components.aws.eks import POD_IDENTITY_TRUST
from components.settings import Ipv4Cidr, SettingsModel, bad

# The controller's Helm chart (aws/eks-charts) and its image are released together: chart 3.5.0 is
# controller v3.5.0 (helm/aws-load-balancer-controller/Chart.yaml at tag v3.5.0). The IAM policy in
# lbc_iam_policy/ is that tag's (lbc_iam_policy/SOURCE.md); raise them together.
CHART = "aws-load-balancer-controller"
CHART_VERSION = "3.5.0"
CHART_REPO = "https://aws.github.io/eks-charts"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
POLICY_DIR = Path(__file__).parent / "lbc_iam_policy"
# The published policy per partition (the ISO partitions' variants are not vendored).
POLICY_FILES = {"aws": "iam_policy.json", "aws-cn": "iam_policy_cn.json", "aws-us-gov": "iam_policy_us-gov.json"}
# The api-server's own health endpoint (its probes use it too: components/airflow/component.py).
HEALTH_PATH = "/api/v2/monitor/health"
# TLS 1.3 and 1.2 only, forward-secret ciphers: what the ELB guide recommends for new HTTPS listeners
# ("Security policies for your Application Load Balancer"); the controller's own default is the
# 2016 policy that still admits TLS 1.0 (annotations.md, `ssl-policy`).
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"

_PARTITION = r"aws(-cn|-us-gov)?"
_REGION = r"[a-z]{2}(-gov)?-[a-z]+-\d"
_ACM_ARN = rf"^arn:{_PARTITION}:acm:{_REGION}:\d{{12}}:certificate/[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$"
_WAF_ARN = rf"^arn:{_PARTITION}:wafv2:{_REGION}:\d{{12}}:regional/webacl/[\w-]{{1,128}}/[0-9a-f-]{{36}}$"


def partition(region: str) -> str:
    """The ARN partition of a region (the China and GovCloud regions have their own)."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def iam_policy(region: str) -> dict[str, Any]:
    """The controller's published IAM policy for the region's partition, as vendored."""
    return json.loads((POLICY_DIR / POLICY_FILES[partition(region)]).read_text())


class AwsUi(SettingsModel):
    """`aws.ui`: the ALB that serves `ui.host`."""

    certificate_arn: str | None = Field(
        None,
        pattern=_ACM_ARN,
        description="The ACM certificate for ui.host, in aws.region (an ALB uses certificates of its own region "
        "only); required with ui.host.",
    )
    scheme: Literal["internal", "internet-facing"] = Field(
        "internal",
        description="internal: the ALB has private addresses in the VPC and admits the VPC's CIDR unless inboundCidrs "
        "lists other ranges (a VPN's, a peered network's); the UI runs DAGs and shows connections, so the internet sees it only when chosen. "
        "internet-facing: in the public subnets, to inboundCidrs.",
    )
    inbound_cidrs: list[Ipv4Cidr] = Field(
        default_factory=list,
        description="Who may reach the ALB on 443 (its security group). Required for internet-facing; 0.0.0.0/0 "
        "only with allowAnyInbound. Unset on an internal ALB: the VPC's CIDR.",
    )
    allow_any_inbound: bool = Field(
        False, description="Allow 0.0.0.0/0 in inboundCidrs: the UI open to the whole internet (say it twice)."
    )
    ssl_policy: str = Field(
        DEFAULT_SSL_POLICY,
        pattern=r"^ELBSecurityPolicy-[A-Za-z0-9-]{1,100}$",
        description="The ALB's TLS security policy (TLS 1.3 and 1.2 by default).",
    )
    wafv2_acl_arn: str | None = Field(
        None, pattern=_WAF_ARN, description="A regional WAFv2 web ACL in aws.region to put in front of the UI."
    )
    subnet_ids: list[str] = Field(
        default_factory=list,
        description="The ALB's subnets (two zones at least), instead of discovery by the kubernetes.io/role/elb or "
        "internal-elb tag: for an existing VPC whose subnets are not tagged.",
    )
    load_balancer_controller: Literal["install", "existing"] | None = Field(
        None,
        description="install: the stack installs the AWS Load Balancer Controller (Pod Identity role, Helm chart); "
        "existing: the cluster runs one that serves ingressClassName. Unset: install on a cluster the stack creates; "
        "an existing cluster must say which.",
    )
    ingress_class_name: str = Field(
        "alb",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The IngressClass of the controller (the installed controller's class gets this name).",
    )

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, v: list[str]) -> list[str]:
        bad_ids = [s for s in v if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s)]
        if bad_ids:
            raise ValueError(f"{bad_ids} are not subnet ids (subnet- and 8 to 17 hex digits)")
        if len(v) == 1:
            raise ValueError("an ALB needs subnets in at least two availability zones: list two or more")
        return v

    @model_validator(mode="after")
    def _inbound(self) -> AwsUi:
        world = [c for c in self.inbound_cidrs if ipaddress.ip_network(c).prefixlen == 0]
        if world and not self.allow_any_inbound:
            raise bad(
                "inboundCidrs",
                f"{world[0]} opens the UI to every address: list the networks of its users, or set allowAnyInbound: "
                "true to mean it",
            )
        if self.scheme == "internet-facing" and not self.inbound_cidrs:
            raise bad(
                "inboundCidrs",
                "an internet-facing ALB needs the CIDRs that may reach the UI (your offices', your VPN's egress), "
                "or scheme: internal",
            )
        return self


def check_aws_ui(host: str | None, ui: AwsUi, *, region: str, created_cluster: bool, tags: Mapping[str, str]) -> None:
    """The rules between `ui.host` and `aws.ui` (called by the stack config: keys named from the top)."""
    if not host:
        if ui.model_fields_set:
            raise bad("aws.ui", "applies only with ui.host (the name the UI is served at)")
        return
    if not ui.certificate_arn:
        raise bad(
            "aws.ui.certificateArn",
            f"the UI is served over HTTPS only: give the ARN of an ACM certificate for {host} in {region}",
        )
    for key, arn in (("certificateArn", ui.certificate_arn), ("wafv2AclArn", ui.wafv2_acl_arn)):
        if arn is None:
            continue
        arn_partition, arn_region = arn.split(":")[1], arn.split(":")[3]
        if arn_region != region:
            raise bad(
                f"aws.ui.{key}",
                f"is in {arn_region}, the stack in {region}: an ALB uses certificates and web ACLs of its own region "
                "only (request or import the certificate in aws.region)",
            )
        if arn_partition != partition(region):
            raise bad(f"aws.ui.{key}", f"partition {arn_partition!r} is not {region}'s ({partition(region)!r})")
    if "-iso" in region:
        raise bad("aws.region", "the UI's controller policy is vendored for the aws, aws-cn and aws-us-gov partitions")
    if ui.load_balancer_controller == "existing" and created_cluster:
        raise bad(
            "aws.ui.loadBalancerController",
            "'existing' is for an existing cluster that already runs the controller; on the cluster the stack "
            "creates, the stack installs it (install, or leave the key unset)",
        )
    if ui.load_balancer_controller is None and not created_cluster:
        raise bad(
            "aws.ui.loadBalancerController",
            "on an existing cluster, say whether it runs an AWS Load Balancer Controller (existing) or the stack "
            "installs one (install)",
        )
    # The controller reads `alb.ingress.kubernetes.io/tags` as k1=v1,k2=v2 (annotations.md, `tags`).
    # The controller adds its backend rule to the one security group of the pods' interfaces tagged
    # kubernetes.io/cluster/<cluster> (pkg/networking/networking_manager.go): a default tag with that
    # key would put it on the client group too, and the controller would find two.
    if any(k.startswith("kubernetes.io/cluster/") for k in tags):
        raise bad(
            "aws.tags", "a kubernetes.io/cluster/ tag on every resource leaves the ALB controller two node groups"
        )
    odd = sorted(k for k, v in tags.items() if re.search(r"[,=]", k + v))
    if odd:
        raise bad(
            "aws.tags", f"{odd}: with ui.host the tags also go on the ALB, whose tag list cannot carry ',' or '='"
        )


# The controller's pod mutator injects a readiness gate into the pods of a namespace with this label
# (docs/deploy/pod_readiness_gate.md at v3.5.0): a new api-server pod counts as ready only once the
# ALB finds its target healthy, so a rolling update (maxUnavailable 0) keeps the old pod serving until
# then, instead of leaving the ALB with no healthy target for a health-check interval or two. The
# webhook's failurePolicy is Ignore: with the controller down, pods are made without the gate.
READINESS_GATE_LABELS = {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}
# How long the ALB lets requests in flight on a stopping target finish (the default is 300 s, far past
# the api-server's grace period); the pod keeps serving meanwhile for its preStop sleep.
DEREGISTRATION_DELAY_SECONDS = 30


def installs_controller(ui: AwsUi, created_cluster: bool) -> bool:
    return ui.load_balancer_controller == "install" or (ui.load_balancer_controller is None and created_cluster)


def alb_annotations(
    ui: AwsUi, *, inbound: list[pulumi.Input[str]], tags: Mapping[str, str]
) -> dict[str, pulumi.Input[str]]:
    """The Ingress's annotations for the controller (each name as in annotations.md at v3.5.0)."""
    assert ui.certificate_arn is not None  # check_aws_ui guarantees it with ui.host
    prefix = "alb.ingress.kubernetes.io/"
    out: dict[str, pulumi.Input[str]] = {
        "scheme": ui.scheme,
        # Pods are the targets: the ALB reaches the api-server pods' VPC addresses directly (no NodePort).
        "target-type": "ip",
        # HTTPS only: no port 80, not even for a redirect, so nothing (a session cookie, a password form)
        # ever crosses a plaintext listener; people open the https:// URL the stack outputs.
        "listen-ports": json.dumps([{"HTTPS": 443}]),
        "certificate-arn": ui.certificate_arn,
        "ssl-policy": ui.ssl_policy,
        "backend-protocol": "HTTP",
        "healthcheck-path": HEALTH_PATH,
        # The controller's format is k1=v1,k2=v2 (the stack config refuses tags with ',' or '=' here).
        "tags": ",".join(f"{k}={v}" for k, v in sorted(tags.items())),
        "target-group-attributes": f"deregistration_delay.timeout_seconds={DEREGISTRATION_DELAY_SECONDS}",
    }
    out["inbound-cidrs"] = pulumi.Output.all(*inbound).apply(lambda cidrs: ",".join(str(c) for c in cidrs))
    if ui.wafv2_acl_arn:
        out["wafv2-acl-arn"] = ui.wafv2_acl_arn
    if ui.subnet_ids:
        out["subnets"] = ",".join(ui.subnet_ids)
    return {prefix + k: v for k, v in out.items()}


class AwsLoadBalancerController(pulumi.ComponentResource):
    """The AWS Load Balancer Controller, installed with its published IAM policy through EKS Pod Identity.

    Attributes:
        release: the Helm release (one Pulumi resource: deleted by `helm uninstall` after the Ingress).
        ready: what an Ingress of its class must depend on: the release, and the role's policy
            attachment and Pod Identity association (the controller needs its AWS rights to delete the
            ALB when the Ingress goes).
    """

    def __init__(
        self,
        name: str,
        *,
        cluster_name: pulumi.Input[str],
        region: str,
        vpc_id: pulumi.Input[str],
        class_name: str,
        default_tags: Mapping[str, str],
        kubernetes: k8s.Provider,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("airflow-k8s:aws:LoadBalancerController", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps(POD_IDENTITY_TRUST), tags=tags, opts=child)
        # A managed policy as upstream installs it (aws iam create-policy): 5.2 KB compact, under the
        # 6,144-character managed-policy quota; an inline policy would share the role's 10,240.
        policy = aws.iam.Policy(
            f"{name}-policy",
            policy=json.dumps(iam_policy(region), separators=(",", ":")),
            # No version here: IAM cannot change a policy's description, so a version in it would replace
            # the policy (and its attachment) on every controller upgrade instead of adding a version.
            description="AWS Load Balancer Controller (its docs/install/iam_policy.json at the pinned chart)",
            tags=tags,
            opts=child,
        )
        attach = aws.iam.RolePolicyAttachment(f"{name}-policy", role=role.name, policy_arn=policy.arn, opts=child)
        # Before the pods start: the Pod Identity agent hands credentials only to pods whose service
        # account has an association when they are created.
        association = aws.eks.PodIdentityAssociation(
            f"{name}-identity",
            cluster_name=cluster_name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=role.arn,
            tags=tags,
            opts=child,
        )
        # helm.v3.Release, not helm.v4.Chart: one resource whose delete (`helm uninstall`, waited for)
        # comes after everything that depends on it, the Ingress first. A Chart v4 is a component
        # whose objects are children: a dependency on it orders nothing against the controller's
        # Deployment on destroy. Its webhook certificate is generated at each render (genCA), which
        # a Chart would show as a diff on every preview; Helm keeps it (keepTLSSecret). The cost: a
        # preview shows the values, not the chart's objects, and Helm installs the chart's CRDs on
        # first install only (README: "UI over HTTPS on AWS", upgrading the controller).
        self.release = k8s.helm.v3.Release(
            name,
            name=CHART,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts={"repo": CHART_REPO},
            namespace=NAMESPACE,
            values={
                "clusterName": cluster_name,
                "region": region,
                "vpcId": vpc_id,  # no instance-metadata lookup: the nodes' IMDS is one hop only
                "replicaCount": 2,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "ingressClass": class_name,
                "createIngressClassResource": True,
                "ingressClassParams": {"create": False},
                # The Service mutator (failurePolicy Fail on every Service create) would hand
                # LoadBalancer Services to this controller; the stack uses it for the UI's Ingress only.
                "enableServiceMutatorWebhook": False,
                "keepTLSSecret": True,
                # On everything the controller makes (ALB, security groups, target groups): a leftover
                # is found by the stack's tags.
                "defaultTags": dict(default_tags),
            },
            # Waits for the controller's pods (not skipAwait): its Ingress webhook must answer before
            # the Ingress is created; a failed install is rolled back.
            atomic=True,
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, depends_on=[association, attach]),
        )
        self.ready: list[pulumi.Resource] = [self.release, association, attach]
        self.register_outputs({})
