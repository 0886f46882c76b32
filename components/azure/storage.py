"""Azure storage for Airflow: an Azure Files share as the ReadWriteMany DAG volume (static PV bound
to the share, nothing provisioned dynamically) and Blob task logs written through a user-assigned
managed identity federated with Airflow's service accounts (workload identity, no account keys)."""

from __future__ import annotations

import json
from typing import Literal

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_azure_native.storage as storage
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.azure.network import AzureVnet
from components.endpoints import RemoteLogs
from components.k8s import CLAIM_SIZE, Manifest, labels, static_claim
from components.settings import SettingsModel, bad


class AzureDags(SettingsModel):
    """`azure.dags`: the Azure Files share of the DAG volume."""

    protocol: Literal["nfs", "smb"] = Field(
        "nfs",
        description="Azure Files protocol: NFS (premium, no account keys, POSIX permissions) or SMB (account key).",
    )
    quota_gib: int = Field(100, ge=1, le=102400, description="Share quota (premium shares start at 100 GiB).")

    @model_validator(mode="after")
    def _premium_minimum(self) -> AzureDags:
        if self.protocol == "nfs" and self.quota_gib < 100:
            raise bad("quotaGib", f"premium NFS shares start at 100 GiB (got {self.quota_gib})")
        return self


# Built-in role "Storage Blob Data Contributor".
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
WORKLOAD_IDENTITY_USE = "azure.workload.identity/use"


def account_name(prefix: str, stack: str, suffix: pulumi.Input[str]) -> pulumi.Output[str]:
    """Storage account names: 3-24 lowercase letters and digits, globally unique (hence the suffix,
    generated once per stack and kept in state)."""
    return pulumi.Output.concat((prefix + "".join(c for c in stack.lower() if c.isalnum()))[:18], suffix)


class AzureFilesDagVolume(pulumi.ComponentResource):
    """A `dags` share in its own storage account, bound to a static PersistentVolume and claim.

    NFS (default: premium FileStorage, no account keys, POSIX permissions, reachable only through
    a private endpoint) or SMB (account key in a Kubernetes Secret, as the CSI driver requires).

    Attributes:
        claim_name: the PersistentVolumeClaim's name (`<instance>-dags`), for the Airflow component.
        volume_handle: the CSI volume handle `<resource group>#<account>#<share>`, the stack's
            `dagVolume` output.
    """

    claim_name: pulumi.Output[str]
    volume_handle: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        settings: AzureDags,
        account: pulumi.Input[str],
        net: AzureVnet,
        location: str,
        namespace: pulumi.Input[str],
        instance: str,
        zone_redundant: bool,
        protect: bool,
        tags: dict[str, str],
        kubernetes: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the account, share and private endpoint, and the PV and PVC.

        Args:
            name: Pulumi name prefix of the children (`<name>-account`, `<name>-share`, `<name>-pv`, ...).
            settings: protocol and quota (config `azure.dags`); the quota in GiB is also the PV's capacity.
            account: the storage account name: 3-24 lowercase letters and digits, unique across Azure;
                the stack passes `account_name("afdags", stack, suffix)`.
            net: the VNet: its resource group holds the account, its endpoints subnet the private
                endpoint, registered in a linked `privatelink.file.core.windows.net` zone.
            location: Azure region of the account and the private endpoint.
            namespace: namespace of the claim (and of the SMB key Secret); the PV is cluster-scoped.
            instance: the Airflow instance name: PV and PVC are `<instance>-dags`, the SMB key Secret
                `<instance>-dags-smb`.
            zone_redundant: Premium_ZRS instead of Premium_LRS; the stack passes `azure.protect`.
            protect: Pulumi `protect` on the account and the share (config `azure.protect`).
            tags: tags on the account.
            kubernetes: the Kubernetes provider, for the PV, the PVC and the SMB key Secret only. Not
                in the component's `providers` (nor a namespace in its `depends_on`): every child of a
                component waits for those, and the storage account must not wait for the cluster.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:DagVolume", name, None, opts)
        nfs = settings.protocol == "nfs"
        acct = storage.StorageAccount(
            f"{name}-account",
            account_name=account,
            resource_group_name=net.resource_group,
            location=location,
            kind="FileStorage",
            sku={"name": "Premium_ZRS" if zone_redundant else "Premium_LRS"},
            # NFS shares refuse "secure transfer required": the private endpoint is the boundary.
            enable_https_traffic_only=not nfs,
            minimum_tls_version="TLS1_2",
            public_network_access="Disabled",
            allow_blob_public_access=False,
            allow_shared_key_access=not nfs,
            network_rule_set={"default_action": storage.DefaultAction.DENY, "bypass": storage.Bypass.NONE},
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        share = storage.FileShare(
            f"{name}-share",
            account_name=acct.name,
            resource_group_name=net.resource_group,
            share_name="dags",
            share_quota=settings.quota_gib,
            enabled_protocols="NFS" if nfs else "SMB",
            root_squash="NoRootSquash" if nfs else None,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        access = net.private_endpoint(
            name,
            target_id=acct.id,
            group="file",
            zone="privatelink.file.core.windows.net",
            location=location,
            parent=self,
        )
        handle = pulumi.Output.concat(net.resource_group, "#", acct.name, "#", share.name)
        csi: dict = {
            "driver": "file.csi.azure.com",
            "volumeHandle": handle,
            "volumeAttributes": {
                "resourceGroup": net.resource_group,
                "storageAccount": acct.name,
                "shareName": share.name,
                "protocol": "nfs" if nfs else "smb",
            },
        }
        if nfs:
            # A new NFS share's root belongs to root; the driver sets these permissions on mount so
            # the git-sync writer (uid 50000, gid 0) can write while everyone else only reads.
            csi["volumeAttributes"]["mountPermissions"] = "0775"
        mount_options = (
            ["nconnect=4", "noresvport", "actimeo=30"]
            if nfs
            else ["dir_mode=0775", "file_mode=0664", "uid=50000", "gid=0", "mfsymlinks", "cache=strict", "nosharesock"]
        )
        if not nfs:
            keys = storage.list_storage_account_keys_output(
                account_name=acct.name,
                resource_group_name=net.resource_group,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            secret = k8s.core.v1.Secret(
                f"{name}-smb-key",
                metadata={"name": f"{instance}-dags-smb", "namespace": namespace, "labels": labels(instance, "dags")},
                string_data={
                    "azurestorageaccountname": acct.name,
                    "azurestorageaccountkey": pulumi.Output.secret(keys.keys[0].value),
                },
                opts=pulumi.ResourceOptions(parent=self, provider=kubernetes),
            )
            csi["nodeStageSecretRef"] = {"name": secret.metadata["name"], "namespace": namespace}
        pv_spec: Manifest = {
            "capacity": {"storage": f"{settings.quota_gib}Gi"}, "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "", "csi": csi, "mountOptions": mount_options,
        }  # fmt: skip
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-pv",
            metadata={"name": f"{instance}-dags", "labels": labels(instance, "dags")},
            spec=pv_spec,
            # The CSI driver mounts `<account>.file.core.windows.net`: until the endpoint's A record and
            # the zone's VNet link exist, that name resolves to the public address, which refuses.
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, depends_on=access.ready),
        )
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-pvc",
            metadata={"name": f"{instance}-dags", "namespace": namespace, "labels": labels(instance, "dags")},
            spec=static_claim(pv.metadata["name"], f"{settings.quota_gib}Gi"),
            # The share's quota (above) is the real limit and changes in place; the claim keeps its size.
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, ignore_changes=CLAIM_SIZE),
        )
        self.claim_name = pvc.metadata["name"]
        self.volume_handle = handle
        self.register_outputs({"volume_handle": handle})


class BlobTaskLogs(pulumi.ComponentResource):
    """A private log container, expiry, and one user-assigned identity federated with each log
    writer's service account, allowed Blob Data Contributor on that container only.

    Attributes:
        remote_logs: base folder `wasb-airflow-logs`, the key-less `azure_task_logs` connection (the
            identity's client id and tenant) and the container name, for the Airflow component.
        client_id: the identity's client id; the stack puts it on the log writers' ServiceAccounts
            (`azure.workload.identity/client-id`).
        location: the container's URL, the stack's `logLocation` output.
    """

    remote_logs: RemoteLogs
    client_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        account: pulumi.Input[str],
        resource_group: pulumi.Input[str],
        location: str,
        oidc_issuer_url: pulumi.Input[str],
        namespace: str,
        service_accounts: dict[str, str],
        retention_days: int,
        zone_redundant: bool,
        protect: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the account, container, expiry, identity, federated credentials and role assignment.

        Args:
            name: Pulumi name prefix of the children (`<name>-account`, `<name>-container`,
                `<name>-identity`, `<name>-federation-<component>`, ...).
            account: the storage account name: 3-24 lowercase letters and digits, unique across Azure;
                the stack passes `account_name("aflogs", stack, suffix)`. The identity is `<account>-logs`.
            resource_group: the resource group of the account and the identity (the stack's own group).
            location: Azure region of the account and the identity.
            oidc_issuer_url: the AKS cluster's OIDC issuer, which the federated credentials trust.
            namespace: namespace of the service accounts (config `kubernetes.namespace`), part of each
                credential's subject `system:serviceaccount:<namespace>:<service account>`.
            service_accounts: component name -> ServiceAccount name; each gets a federated credential
                named after the component. The stack passes `<instance>-<component>` for the components
                that read or write task logs: plain names, because the namespace component needs this
                one's `client_id` for their annotations.
            retention_days: days after their last change that blobs under `airflow-logs/` are deleted
                (config `azure.logRetentionDays`).
            zone_redundant: Standard_ZRS instead of Standard_LRS; the stack passes `azure.protect`.
            protect: Pulumi `protect` on the account and the container (config `azure.protect`).
            tags: tags on the account and the identity.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:TaskLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        acct = storage.StorageAccount(
            f"{name}-account",
            account_name=account,
            resource_group_name=resource_group,
            location=location,
            kind="StorageV2",
            sku={"name": "Standard_ZRS" if zone_redundant else "Standard_LRS"},
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            # Entra ID only: no account key can be used, so none can leak into Airflow's config.
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        container = storage.BlobContainer(
            f"{name}-container",
            account_name=acct.name,
            resource_group_name=resource_group,
            container_name="airflow-logs",
            public_access=storage.PublicAccess.NONE,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        storage.ManagementPolicy(
            f"{name}-expiry",
            account_name=acct.name,
            resource_group_name=resource_group,
            management_policy_name="default",
            policy={
                "rules": [
                    {
                        "name": "expire-task-logs",
                        "enabled": True,
                        "type": "Lifecycle",
                        "definition": {
                            "filters": {"blob_types": ["blockBlob"], "prefix_match": ["airflow-logs/"]},
                            "actions": {
                                "base_blob": {"delete": {"days_after_modification_greater_than": retention_days}}
                            },
                        },
                    }
                ]
            },
            opts=child,
        )
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_name_=pulumi.Output.concat(account, "-logs"),
            resource_group_name=resource_group,
            location=location,
            tags=tags,
            opts=child,
        )
        previous: list[pulumi.Resource] = []
        for component, sa in sorted(service_accounts.items()):
            # Azure refuses concurrent writes of federated credentials on one identity: chain them.
            cred = managedidentity.FederatedIdentityCredential(
                f"{name}-federation-{component}",
                resource_name_=identity.name,
                resource_group_name=resource_group,
                federated_identity_credential_resource_name=f"{component}",
                issuer=oidc_issuer_url,
                subject=f"system:serviceaccount:{namespace}:{sa}",
                audiences=["api://AzureADTokenExchange"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            previous = [cred]
        client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        authorization.RoleAssignment(
            f"{name}-blob-writer",
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=pulumi.Output.concat(
                "/subscriptions/",
                client.subscription_id,
                "/providers/Microsoft.Authorization/roleDefinitions/",
                BLOB_DATA_CONTRIBUTOR,
            ),
            scope=container.id,
            opts=child,
        )
        self.client_id = identity.client_id
        connection = pulumi.Output.all(acct.name, identity.client_id, client.tenant_id).apply(
            lambda a: json.dumps(
                {
                    "conn_type": "wasb",
                    "host": f"https://{a[0]}.blob.core.windows.net",
                    "extra": {"managed_identity_client_id": a[1], "workload_identity_tenant_id": a[2]},
                }
            )
        )
        self.remote_logs = RemoteLogs(
            base_folder="wasb-airflow-logs",
            conn_id="azure_task_logs",
            connection=connection,
            extra_env={"AIRFLOW__AZURE_REMOTE_LOGGING__REMOTE_WASB_LOG_CONTAINER": container.name},
        )
        self.location = pulumi.Output.concat("https://", acct.name, ".blob.core.windows.net/", container.name)
        self.register_outputs({"container": container.name})
