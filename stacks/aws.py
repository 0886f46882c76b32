"""The `aws` stack: EKS (created or existing), RDS PostgreSQL, an ElastiCache broker with TLS and
AUTH, EFS as the ReadWriteMany DAG volume, S3 task logs written through EKS Pod Identity."""

from __future__ import annotations

import shlex
from typing import Any

import pulumi
import pulumi_aws as aws

from components.airflow import AIRFLOW_GID, AIRFLOW_UID, DagSource
from components.aws.broker import ElastiCacheBroker
from components.aws.database import RdsPostgres, rds_root_cas
from components.aws.eks import EksCluster
from components.aws.load_balancer_controller import (
    READINESS_GATE_LABELS,
    AwsLoadBalancerController,
    alb_annotations,
    installs_controller,
)
from components.aws.network import AwsVpc
from components.aws.storage import EfsDagVolume, S3TaskLogs
from components.endpoints import VERIFYING_SSLMODES, BrokerEndpoint
from stacks.common import INSTANCE, compose, expose_ui, make_namespace, outputs, roster
from stacks.config import PROJECT, StackConfig


def build(cfg: StackConfig) -> dict[str, Any]:
    a = cfg.aws
    assert a is not None  # the config model guarantees it for cloud 'aws'
    if a.database.sslmode in VERIFYING_SSLMODES:
        # Before any resource: a region the vendored RDS CA bundle does not cover fails here.
        try:
            rds_root_cas(a.region, a.database.ca_cert_identifier)
        except ValueError as e:
            raise pulumi.RunError(f"{PROJECT}:aws.region: {e}") from None
    stack = pulumi.get_stack()
    # Explicit region: nothing depends on the ambient AWS profile's region. Tags go on every
    # resource through the provider's default tags, once; components add only their Name tags.
    identity = {"app": "airflow-k8s", "pulumi-stack": stack}
    default_tags = {**identity, **a.tags}
    aws_provider = aws.Provider("aws", region=a.region, default_tags={"tags": default_tags})
    tags: dict[str, str] = {}
    aws_opts = pulumi.ResourceOptions(providers=[aws_provider])
    name = f"airflow-{stack}"
    cluster_name = a.cluster.existing_name or name

    net = AwsVpc("network", a.network, cluster_name, a.region, tags, opts=aws_opts)
    eks = EksCluster(
        "eks",
        settings=a.cluster,
        cluster_name=cluster_name,
        region=a.region,
        vpc_id=net.subnets.vpc_id,
        subnet_ids=net.subnets.private_ids,
        public_subnet_ids=net.subnets.public_ids,
        depends_on=net.subnets.resources,
        egress=net.subnets.egress,
        # Any worker group with a log claim (airflow.workers or a worker set) needs the gp3 class.
        block_storage=any(g.settings.storage_size is not None for g in cfg.airflow.worker_groups()),
        volume_tags=identity,
        launched_tags=default_tags,
        protect=a.protect,
        tags=tags,
        opts=aws_opts,
    )
    provider = eks.provider
    d = cfg.airflow.dags
    git_writer = d.git_writer
    ns = make_namespace(cfg, provider, git_writer, namespace_labels=READINESS_GATE_LABELS if cfg.ui.host else None)
    # The data services need only their subnets and security groups (which the subnet group and
    # the group's VPC reference): nothing from the cluster, its nodes or the NAT gateways.
    data_opts = aws_opts

    db = RdsPostgres(
        "database",
        settings=a.database,
        identifier=name,
        region=a.region,
        vpc_id=net.subnets.vpc_id,
        subnet_ids=net.subnets.private_ids,
        clients=eks.data_clients,
        protect=a.protect,
        tags=tags,
        opts=data_opts,
    )
    broker: BrokerEndpoint | None = None
    if roster(cfg, git_writer).conditions.celery:
        broker = ElastiCacheBroker(
            "broker",
            settings=a.broker,
            identifier=name,
            vpc_id=net.subnets.vpc_id,
            subnet_ids=net.subnets.private_ids,
            clients=eks.data_clients,
            protect=a.protect,
            tags=tags,
            opts=data_opts,
        ).endpoint

    claim: pulumi.Input[str] | None = d.claim_name
    dag_volume: pulumi.Input[str] | None = d.claim_name
    if d.source == "volume" and claim is None:
        efs = EfsDagVolume(
            "dags",
            vpc_id=net.subnets.vpc_id,
            subnet_ids=net.subnets.private_ids,
            clients=eks.data_clients,
            namespace=ns.namespace,
            instance=INSTANCE,
            uid=AIRFLOW_UID,
            gid=AIRFLOW_GID,
            size=cfg.kubernetes.dag_volume_size,
            protect=a.protect,
            tags=tags,
            driver=[eks.storage_drivers["efs"]] if "efs" in eks.storage_drivers else [],
            kubernetes=provider,
            opts=aws_opts,
        )
        claim, dag_volume = efs.claim_name, efs.volume_handle

    # Who reads or writes task logs (the api-server reads them for the UI): the components table says.
    log_users = roster(cfg, git_writer).task_log_users
    logs = S3TaskLogs(
        "logs",
        cluster_name=eks.name,
        namespace=cfg.kubernetes.namespace,
        region=a.region,
        service_accounts={c: ns.service_accounts[c] for c in log_users},
        retention_days=a.log_retention_days,
        protect=a.protect,
        tags=tags,
        opts=aws_opts,
    )
    airflow = compose(
        cfg,
        provider=provider,
        database=db.endpoint,
        broker=broker,
        dags=DagSource(kind=d.source, claim_name=claim, git_writer=git_writer),
        remote_logs=logs.remote_logs,
        namespace=ns,
        worker_storage_class=eks.storage_class,
        worker_storage_ready=eks.storage_class_ready,
    )
    ui = None
    if cfg.ui.host:
        # The UI at https://<ui.host>/ through an ALB. The Ingress depends on the controller and its AWS
        # rights, so `pulumi destroy` deletes it first, and waits while the controller deletes the ALB
        # and its security groups (its finalizer holds the Ingress until then); the cluster and the
        # subnets go only after that.
        ready: list[pulumi.Resource] = []
        if installs_controller(a.ui, created_cluster=not a.cluster.existing_name):
            ready = AwsLoadBalancerController(
                "lb-controller",
                cluster_name=eks.name,
                region=a.region,
                vpc_id=net.subnets.vpc_id,
                class_name=a.ui.ingress_class_name,
                default_tags=default_tags,
                kubernetes=provider,
                tags=tags,
                opts=aws_opts,
            ).ready
        ui = expose_ui(
            cfg,
            airflow,
            provider=provider,
            class_name=a.ui.ingress_class_name,
            annotations=alb_annotations(
                a.ui, inbound=list(a.ui.inbound_cidrs) or [net.subnets.vpc_cidr], tags=default_tags
            ),
            depends_on=ready,
        )
    # A command people paste into a shell: every value is quoted.
    forward = shlex.join(
        ["kubectl", "-n", cfg.kubernetes.namespace, "port-forward", f"svc/{airflow.api_service_name}", "8080:8080"]
    )
    kubeconfig_cmd = shlex.join(["aws", "eks", "update-kubeconfig", "--region", a.region, "--name", cluster_name])
    result = outputs(
        cfg,
        namespace=ns,
        airflow=airflow,
        database=db.endpoint,
        broker=broker,
        ui_access=f"{kubeconfig_cmd} && {forward}",
        dag_volume=dag_volume,
        log_location=logs.remote_logs.base_folder,
        kubeconfig=eks.kubeconfig,
        ui=ui,
    )
    if ui is not None:
        # The name to point ui.host at (a CNAME, or a Route 53 alias record): the ALB's DNS name, which
        # the Ingress's status carries once the controller has made it (Pulumi waits for it on create).
        result["uiLoadBalancer"] = ui.ingress.status.apply(
            lambda s: s.load_balancer.ingress[0].hostname if s and s.load_balancer and s.load_balancer.ingress else None
        )
    return result
