"""The `azure` stack: AKS (created or existing) with workload identity, PostgreSQL Flexible Server,
Azure Managed Redis, Azure Files as the DAG volume, Blob task logs through workload identity."""

from __future__ import annotations

import shlex
from typing import Any

import pulumi
import pulumi_azure_native as azure_native
import pulumi_azure_native.resources as resources
import pulumi_random as random

from components.airflow import DagSource
from components.azure.aks import AksCluster
from components.azure.app_routing import AppRoutingGateway
from components.azure.broker import ManagedRedis
from components.azure.database import FlexiblePostgres
from components.azure.network import AzureVnet
from components.azure.storage import (
    WORKLOAD_IDENTITY_CLIENT_ID,
    WORKLOAD_IDENTITY_USE,
    AzureFilesDagVolume,
    BlobTaskLogs,
    account_name,
)
from components.endpoints import BrokerEndpoint
from stacks.common import INSTANCE, compose, make_namespace, outputs, roster
from stacks.config import StackConfig


def build(cfg: StackConfig) -> dict[str, Any]:
    z = cfg.azure
    assert z is not None  # the config model guarantees it for cloud 'azure'
    stack = pulumi.get_stack()
    name = f"airflow-{stack}"
    tags = {"app": "airflow-k8s", "pulumi-stack": stack, **z.tags}
    # Explicit location: nothing depends on the ambient `az` defaults.
    provider_az = azure_native.Provider("azure-native", location=z.region)
    az_opts = pulumi.ResourceOptions(providers=[provider_az])
    zone_redundant = z.protect  # production: zone-redundant storage; test stacks: locally redundant

    # PostgreSQL, Redis and storage account names are DNS names, unique across all of Azure: a short
    # suffix generated once per stack (kept in state) keeps two teams' `azure-dev` apart.
    unique = random.RandomString("unique-suffix", length=6, special=False, upper=False, opts=az_opts).result
    global_name = pulumi.Output.concat(name, "-", unique)
    # A resource group name is unique in its subscription: with the suffix, two stacks of one name (or
    # a stack re-created before Azure has finished deleting the old group) do not collide. Stacks made
    # before it have `airflow-<stack>`, and a new name would replace the group, deleting everything in
    # it: Pulumi uses an ignored input only on create, so they keep their name.
    rg = resources.ResourceGroup(
        "resource-group",
        resource_group_name=global_name,
        location=z.region,
        tags=tags,
        opts=pulumi.ResourceOptions.merge(az_opts, pulumi.ResourceOptions(ignore_changes=["resourceGroupName"])),
    )
    net = AzureVnet("network", settings=z.network, resource_group=rg.name, location=z.region, tags=tags, opts=az_opts)
    aks = AksCluster(
        "aks",
        settings=z.cluster,
        # The stack's suffix keeps two same-named stacks in one subscription apart; a cluster made
        # before it keeps `airflow-<stack>` (AksCluster ignores changes to its name).
        cluster_name=z.cluster.existing_name or global_name,
        resource_group=rg.name,
        location=z.region,
        subnet_id=net.aks_subnet_id,
        protect=z.protect,
        tags=tags,
        depends_on=net.subnets,
        app_routing=bool(cfg.ui.host),
        opts=az_opts,
    )
    provider = aks.provider
    d = cfg.airflow.dags
    git_writer = d.git_writer
    # Who reads or writes task logs (the api-server reads them for the UI): the components table says.
    log_users = roster(cfg, git_writer).task_log_users
    writers = {c: f"{INSTANCE}-{c}" for c in log_users}
    logs = BlobTaskLogs(
        "logs",
        account=account_name("aflogs", stack, unique),
        resource_group=rg.name,
        location=z.region,
        oidc_issuer_url=aks.oidc_issuer_url,
        namespace=cfg.kubernetes.namespace,
        service_accounts=writers,
        retention_days=z.log_retention_days,
        zone_redundant=zone_redundant,
        protect=z.protect,
        tags=tags,
        opts=az_opts,
    )
    # Workload identity needs both: the client id on the service account, the label on the pod.
    annotations = {c: {WORKLOAD_IDENTITY_CLIENT_ID: logs.client_id} for c in writers}
    pod_labels = {c: {WORKLOAD_IDENTITY_USE: "true"} for c in writers}
    ns = make_namespace(cfg, provider, git_writer, annotations)

    db = FlexiblePostgres(
        "database",
        settings=z.database,
        server_name=global_name,
        net=net,
        location=z.region,
        protect=z.protect,
        tags=tags,
        opts=az_opts,
    )
    broker: BrokerEndpoint | None = None
    if roster(cfg, git_writer).conditions.celery:
        broker = ManagedRedis(
            "broker", settings=z.broker, cluster_name=global_name, net=net, location=z.region, tags=tags, opts=az_opts
        ).endpoint

    claim: pulumi.Input[str] | None = d.claim_name
    dag_volume: pulumi.Input[str] | None = d.claim_name
    if d.source == "volume" and claim is None:
        files = AzureFilesDagVolume(
            "dags",
            settings=z.dags,
            account=account_name("afdags", stack, unique),
            net=net,
            location=z.region,
            namespace=ns.namespace,
            instance=INSTANCE,
            zone_redundant=zone_redundant,
            protect=z.protect,
            tags=tags,
            kubernetes=provider,
            opts=az_opts,
        )
        claim, dag_volume = files.claim_name, files.volume_handle

    airflow = compose(
        cfg,
        provider=provider,
        database=db.endpoint,
        broker=broker,
        dags=DagSource(kind=d.source, claim_name=claim, git_writer=git_writer),
        remote_logs=logs.remote_logs,
        pod_labels=pod_labels,
        namespace=ns,
    )
    ui = None
    if cfg.ui.host:
        # The UI at https://<ui.host>/ through a Gateway of the application routing add-on. The Gateway
        # lives in the cluster (its provider waits for the cluster), so `pulumi destroy` deletes it, and
        # the add-on its load balancer frontend, before the cluster and the subnets.
        ui = AppRoutingGateway(
            "ui",
            settings=z.ui,
            host=cfg.ui.host,
            namespace=airflow.namespace,
            instance=INSTANCE,
            service_name=airflow.api_service_name,
            service_port=airflow.api_port,
            resource_group=rg.name,
            location=z.region,
            oidc_issuer_url=aks.oidc_issuer_url,
            kubernetes=provider,
            add_on_ready=aks.app_routing_ready,
            depends_on=[airflow.api_service],
            tags=tags,
            opts=az_opts,
        )
    group: pulumi.Input[str] = z.cluster.existing_resource_group or rg.name
    forward = shlex.join(
        ["kubectl", "-n", cfg.kubernetes.namespace, "port-forward", f"svc/{airflow.api_service_name}", "8080:8080"]
    )
    # The names as they are (state, not config): a cluster from before the suffix keeps its old name.
    # `kubelogin convert-kubeconfig -l azurecli` makes the Entra ID credentials non-interactive. A
    # command people paste into a shell: every value is quoted (a resource group may hold '(' and ')').
    ui_access = pulumi.Output.all(group, aks.name).apply(
        lambda names: (
            shlex.join(["az", "aks", "get-credentials", "--resource-group", names[0], "--name", names[1]])
            + " && kubelogin convert-kubeconfig -l azurecli && "
            + forward
        )
    )
    result = outputs(
        cfg,
        namespace=ns,
        airflow=airflow,
        database=db.endpoint,
        broker=broker,
        ui_access=ui_access,
        dag_volume=dag_volume,
        log_location=logs.location,
        kubeconfig=aks.kubeconfig,
        ui_url=ui.url if ui is not None else None,
    )
    if ui is not None:
        # What ui.host must resolve to (an A record): the Gateway's address, from its status once the
        # add-on has made the load balancer frontend.
        result["uiLoadBalancer"] = ui.address
    return result
