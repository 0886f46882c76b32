"""AKS with the OIDC issuer and workload identity on (or an existing cluster by name), and the
explicit Kubernetes provider built from its credentials."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Literal

import pulumi
import pulumi_azure_native.containerservice as containerservice
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.settings import SettingsModel, bad


class AzureCluster(SettingsModel):
    """`azure.cluster`: the AKS cluster, created or an existing one by name and resource group."""

    existing_name: str | None = Field(
        None,
        description="Use this existing AKS cluster (OIDC issuer and workload "
        "identity enabled) instead of creating one.",
    )
    existing_resource_group: str | None = Field(None, description="Resource group of the existing cluster.")
    version: str = Field("1.33", pattern=r"^1\.(3[1-5])$", description="Kubernetes version of a created cluster.")
    service_cidr: str = Field("172.21.0.0/16", description="Service CIDR of a created cluster.")
    node_vm_size: str = Field("Standard_D4ds_v5", pattern=r"^Standard_[A-Za-z0-9_]+$", description="Node VM size.")
    node_min: int = Field(3, ge=1, le=100, description="Minimum nodes (autoscaler).")
    node_max: int = Field(6, ge=1, le=100, description="Maximum nodes (autoscaler).")
    zones: list[Literal["1", "2", "3"]] = Field(
        default_factory=lambda: ["1", "2", "3"], description="Availability zones of the node pool."
    )

    @model_validator(mode="after")
    def _shape(self) -> AzureCluster:
        if bool(self.existing_name) != bool(self.existing_resource_group):
            raise bad("existingResourceGroup", "set both existingName and existingResourceGroup, or neither")
        if self.node_min > self.node_max:
            raise bad("nodeMin", f"must not exceed nodeMax ({self.node_min} > {self.node_max})")
        return self


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()


class AksCluster(pulumi.ComponentResource):
    """The cluster Airflow runs on, and the Kubernetes provider for it.

    A created cluster has one autoscaling system node pool across the configured zones, Azure CNI
    overlay with Cilium (which enforces the NetworkPolicies), the OIDC issuer, workload identity, the
    Azure Files CSI driver and patch auto-upgrades. An existing cluster is only looked up.

    Attributes:
        name: the cluster name.
        oidc_issuer_url: the cluster's OIDC issuer ("" if it has none); BlobTaskLogs federates with it.
        provider: the Kubernetes provider built from the cluster's user credentials; on a created
            cluster it waits for the cluster.
        kubeconfig: the same kubeconfig as a secret Output for the stack output, for a created cluster
            only; None for an existing one.
    """

    name: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        settings: AzureCluster,
        cluster_name: str,
        resource_group: pulumi.Input[str],
        location: str,
        subnet_id: pulumi.Input[str] | None,
        tags: dict[str, str],
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the cluster, or look up `settings.existing_name`, and build its provider.

        Args:
            name: Pulumi name prefix of the children (`<name>-cluster`, `<name>-k8s`).
            settings: version, service CIDR, node size, count and zones (config `azure.cluster`); with
                `existing_name` set, that cluster is looked up in `existing_resource_group` and nothing
                is created.
            cluster_name: the AKS name and DNS prefix of a created cluster; the stack passes
                `airflow-<stack>` (or the existing name, which is then unused here).
            resource_group: resource group of a created cluster (the stack's own group); unused for an
                existing one.
            location: Azure region of a created cluster.
            subnet_id: the subnet the nodes join (the VNet's AKS subnet); None lets AKS make its own network.
            tags: tags on the created cluster.
            depends_on: what a created cluster must be created after and deleted before; the stack
                passes the VNet's subnets.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:AksCluster", name, None, opts)
        if settings.existing_name:
            rg: pulumi.Input[str] = settings.existing_resource_group or ""
            found = containerservice.get_managed_cluster_output(
                resource_group_name=rg,
                resource_name=settings.existing_name,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            self.name = pulumi.Output.from_input(settings.existing_name)
            self.oidc_issuer_url = found.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
            self.kubeconfig = None
            created: list[pulumi.Resource] = []
        else:
            rg = resource_group
            svc = ipaddress.ip_network(settings.service_cidr)
            cluster = containerservice.ManagedCluster(
                f"{name}-cluster",
                resource_name_=cluster_name,
                resource_group_name=resource_group,
                location=location,
                dns_prefix=cluster_name,
                kubernetes_version=settings.version,
                identity={"type": containerservice.ResourceIdentityType.SYSTEM_ASSIGNED},
                enable_rbac=True,
                agent_pool_profiles=[
                    {
                        "name": "system",
                        "mode": "System",
                        "os_type": "Linux",
                        "type": "VirtualMachineScaleSets",
                        "vm_size": settings.node_vm_size,
                        "count": settings.node_min,
                        "min_count": settings.node_min,
                        "max_count": settings.node_max,
                        "enable_auto_scaling": True,
                        "availability_zones": settings.zones,
                        "vnet_subnet_id": subnet_id,
                    }
                ],
                network_profile={
                    "network_plugin": "azure",
                    "network_plugin_mode": "overlay",
                    # Cilium enforces the NetworkPolicies the Airflow component creates.
                    "network_dataplane": "cilium",
                    "network_policy": "cilium",
                    "service_cidr": settings.service_cidr,
                    "dns_service_ip": str(svc.network_address + 10),
                },
                oidc_issuer_profile={"enabled": True},
                security_profile={"workload_identity": {"enabled": True}},
                storage_profile={"file_csi_driver": {"enabled": True}},
                auto_upgrade_profile={"upgrade_channel": "patch"},
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            )
            self.name = cluster.name
            self.oidc_issuer_url = cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
            created = [cluster]
        creds = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=rg, resource_name=self.name, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        config = pulumi.Output.secret(creds.kubeconfigs[0].value.apply(_decode))
        if created:
            self.kubeconfig = config
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=config, opts=pulumi.ResourceOptions(parent=self, depends_on=created)
        )
        self.register_outputs({"name": self.name})
