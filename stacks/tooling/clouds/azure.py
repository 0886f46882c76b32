"""Azure (`azure-native:` types): what the offline tooling knows about the resources stacks/azure.py makes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacks.tooling.clouds.facts import CloudFacts, DestroyView, Severity, mock_secret

if TYPE_CHECKING:
    from stacks.tooling.engine import Resource

# Inputs that name the resource; Azure Resource Manager returns it as `name`.
_NAME_INPUTS = (
    "resourceGroupName",
    "accountName",
    "serverName",
    "clusterName",
    "resourceName",
    "privateZoneName",
    "virtualNetworkName",
    "privateEndpointName",
    "shareName",
    "containerName",
    "databaseName",
)


def mock_outputs(typ: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Computed outputs the Azure Resource Manager returns."""
    out: dict[str, Any] = {}
    for key in _NAME_INPUTS:
        if key in state and key != "resourceGroupName":
            out["name"] = state[key]
    if typ == "azure-native:resources:ResourceGroup":
        out["name"] = state.get("resourceGroupName", name)
    elif typ == "azure-native:containerservice:ManagedCluster":
        out["oidcIssuerProfile"] = {"enabled": True, "issuerURL": f"https://oidc.mock/{name}/"}
    elif typ == "azure-native:dbforpostgresql:Server":
        out["fullyQualifiedDomainName"] = f"{state.get('serverName', name)}.postgres.database.azure.com"
    elif typ == "azure-native:redisenterprise:RedisEnterprise":
        out["hostName"] = f"{state.get('clusterName', name)}.westeurope.redis.azure.net"
    elif typ == "azure-native:managedidentity:UserAssignedIdentity":
        out.update(clientId=f"{name}-client-id", principalId=f"{name}-principal-id")
    return out


def _cluster_credentials(args: dict[str, Any]) -> dict[str, Any]:
    kubeconfig = f"apiVersion: v1\nkind: Config\nclusters:\n- name: {args['resourceName']}\n"
    return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}


def _get_cluster(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": args["resourceName"],
        "location": "westeurope",
        "oidcIssuerProfile": {"enabled": True, "issuerURL": "https://oidc.mock/existing/"},
    }


def _redis_keys(args: dict[str, Any]) -> dict[str, Any]:
    return {"primaryKey": mock_secret("redis-primary-key", 44), "secondaryKey": mock_secret("redis-2", 44)}


def _storage_keys(args: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [{"keyName": "key1", "value": mock_secret("storage-key", 64), "permissions": "FULL"}]}


def _client_config(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "clientId": "00000000-0000-0000-0000-00000000c11e",
        "objectId": "00000000-0000-0000-0000-0000000000b1",
        "subscriptionId": "00000000-0000-0000-0000-000000005ub0",
        "tenantId": "00000000-0000-0000-0000-00000000fe11",
    }


def destroy_checks(r: Resource, view: DestroyView) -> Iterator[tuple[Severity, str]]:
    if r.type == "azure-native:authorization:ManagementLockByScope":
        yield "blocks", "management lock"


FACTS = CloudFacts(
    prefix="azure-native:",
    mock_outputs=mock_outputs,
    # Look-ups an existing-infrastructure stack makes, and the keys and identity the stack reads.
    mock_invokes={
        "azure-native:containerservice:listManagedClusterUserCredentials": _cluster_credentials,
        "azure-native:containerservice:getManagedCluster": _get_cluster,
        "azure-native:redisenterprise:listDatabaseKeys": _redis_keys,
        "azure-native:storage:listStorageAccountKeys": _storage_keys,
        "azure-native:authorization:getClientConfig": _client_config,
    },
    stateful={
        # The cluster: replacing it replaces everything that lives in it.
        "azure-native:containerservice:ManagedCluster": ("resourceName", "dnsPrefix", "networkProfile"),
        "azure-native:dbforpostgresql:Server": ("serverName", "resourceGroupName", "location", "administratorLogin"),
        "azure-native:redisenterprise:RedisEnterprise": ("clusterName", "resourceGroupName", "location"),
        "azure-native:redisenterprise:Database": ("databaseName", "clusteringPolicy", "port"),
        "azure-native:storage:StorageAccount": ("accountName", "resourceGroupName", "location", "kind"),
        "azure-native:storage:FileShare": ("shareName", "accountName", "enabledProtocols"),
        "azure-native:storage:BlobContainer": ("containerName", "accountName"),
    },
    network_and_cluster=("azure-native:network:Subnet", "azure-native:containerservice:ManagedCluster"),
    destroy_checks=destroy_checks,
)
