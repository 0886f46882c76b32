"""Azure (`azure-native:` types): what the offline tooling knows about the resources stacks/azure.py makes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacks.tooling.clouds.facts import CloudFacts, CreationTime, DestroyView, Severity, estimate, mock_secret

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
    # Without a name input azure-native autonames the resource; ARM returns its `name` either way, and
    # a reader of it (a Subnet of its VNet, a zone group of its private endpoint) waits for it.
    out.setdefault("name", name)
    if typ == "azure-native:resources:ResourceGroup":
        out["name"] = state.get("resourceGroupName", name)
    elif typ == "azure-native:containerservice:ManagedCluster":
        out["oidcIssuerProfile"] = {"enabled": True, "issuerURL": f"https://oidc.mock/{name}/"}
        # The input lists user-assigned identity ids; ARM answers with a map of id to client and principal.
        identity = dict(state.get("identity") or {})
        if isinstance(identity.get("userAssignedIdentities"), list):
            identity["userAssignedIdentities"] = {
                i: {"clientId": f"{i}-client", "principalId": f"{i}-principal"}
                for i in identity["userAssignedIdentities"]
            }
            out["identity"] = identity
        # AKS makes the kubelet identity (in the node resource group) with the cluster.
        out["identityProfile"] = {"kubeletidentity": _kubelet(state.get("resourceName", name))}
    elif typ == "azure-native:dbforpostgresql:Server":
        out["fullyQualifiedDomainName"] = f"{state.get('serverName', name)}.postgres.database.azure.com"
    elif typ == "azure-native:redisenterprise:RedisEnterprise":
        out["hostName"] = f"{state.get('clusterName', name)}.westeurope.redis.azure.net"
    elif typ == "azure-native:managedidentity:UserAssignedIdentity":
        out.update(clientId=f"{name}-client-id", principalId=f"{name}-principal-id")
    return out


def _cluster_credentials(args: dict[str, Any]) -> dict[str, Any]:
    """What `listClusterUserCredential` returns: with `format: exec` (an Entra ID cluster) a kubelogin exec
    user whose login prompts (devicecode); without it, a local-account cluster's client certificate, key and
    token (the credentials that must never reach the state)."""
    name = args["resourceName"]
    if args.get("format") == "exec":
        user: dict[str, Any] = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": [
                    "get-token",
                    "--environment",
                    "AzurePublicCloud",
                    "--server-id",
                    "6dae42f8-4368-4678-94ff-3960e28e3630",
                    "--client-id",
                    "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
                    "--tenant-id",
                    "00000000-0000-0000-0000-00000000fe11",
                    "--login",
                    "devicecode",
                ],
                "env": None,
                "installHint": "\nkubelogin is not installed which is required to connect to AAD enabled cluster.\n",
                "provideClusterInfo": False,
            }
        }
    else:
        user = {
            "client-certificate-data": mock_secret("aks-client-cert", 40),
            "client-key-data": mock_secret("aks-client-key", 40),
            "token": mock_secret("aks-user-token", 40),
        }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "certificate-authority-data": "bW9jay1jYQ==",
                    "server": f"https://{name}-dns.hcp.westeurope.azmk8s.io:443",
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"clusterUser_rg_{name}"}}],
        "current-context": name,
        "users": [{"name": f"clusterUser_rg_{name}", "user": user}],
    }
    return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(json.dumps(config).encode()).decode()}]}


def _kubelet(cluster: str) -> dict[str, str]:
    return {
        "resourceId": f"/subscriptions/mock/resourceGroups/MC_{cluster}/providers/Microsoft.ManagedIdentity/"
        f"userAssignedIdentities/{cluster}-agentpool",
        "clientId": f"{cluster}-kubelet-client-id",
        "objectId": f"{cluster}-kubelet-object-id",
    }


def _get_cluster(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": args["resourceName"],
        "location": "westeurope",
        "oidcIssuerProfile": {"enabled": True, "issuerURL": "https://oidc.mock/existing/"},
        "identityProfile": {"kubeletidentity": _kubelet(args["resourceName"])},
        # A cluster with the application routing add-on and the Key Vault secrets provider (what the UI's
        # Gateway needs of an existing cluster).
        "ingressProfile": {
            "webAppRouting": {
                "enabled": True,
                "identity": {
                    "resourceId": f"/subscriptions/mock/resourceGroups/MC_{args['resourceName']}/providers/"
                    f"Microsoft.ManagedIdentity/userAssignedIdentities/webapprouting-{args['resourceName']}",
                    "clientId": "webapprouting-client-id",
                    "objectId": "webapprouting-object-id",
                },
            }
        },
        "addonProfiles": {
            "azureKeyvaultSecretsProvider": {"enabled": True, "config": {"enableSecretRotation": "true"}}
        },
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


# ---- `pulumi up` timing (stacks/tooling/critpath.py) -------------------------------------------------

RG, VNET, SUBNET, ZONE, ZONE_LINK, ENDPOINT, ZONE_GROUP = (
    "azure-native:resources:ResourceGroup",
    "azure-native:network:VirtualNetwork",
    "azure-native:network:Subnet",
    "azure-native:privatedns:PrivateZone",
    "azure-native:privatedns:VirtualNetworkLink",
    "azure-native:network:PrivateEndpoint",
    "azure-native:network:PrivateDnsZoneGroup",
)
AKS, POOL = "azure-native:containerservice:ManagedCluster", "azure-native:containerservice:AgentPool"
PG, PG_DB, PG_CONF, REDIS, REDIS_DB = (
    "azure-native:dbforpostgresql:Server",
    "azure-native:dbforpostgresql:Database",
    "azure-native:dbforpostgresql:Configuration",
    "azure-native:redisenterprise:RedisEnterprise",
    "azure-native:redisenterprise:Database",
)
STORAGE, CONTAINER, SHARE, LIFECYCLE = (
    "azure-native:storage:StorageAccount",
    "azure-native:storage:BlobContainer",
    "azure-native:storage:FileShare",
    "azure-native:storage:ManagementPolicy",
)
IDENTITY, FEDERATED, ROLE_ASSIGNMENT = (
    "azure-native:managedidentity:UserAssignedIdentity",
    "azure-native:managedidentity:FederatedIdentityCredential",
    "azure-native:authorization:RoleAssignment",
)
_STEAMPIPE = (
    "terraform log in turbot/steampipe-plugin-azure#824 (azurerm_virtual_network 8 s, azurerm_subnet 6 s, "
    "azurerm_private_dns_zone 35 s); #64, #299 (azurerm_resource_group 2-5 s)"
)

CREATION_TIMES: dict[str, CreationTime] = {
    RG: CreationTime(3, _STEAMPIPE),
    VNET: CreationTime(8, _STEAMPIPE),
    SUBNET: CreationTime(6, _STEAMPIPE),
    ZONE: CreationTime(35, _STEAMPIPE),
    ZONE_LINK: estimate(30, "turbot/steampipe-plugin-azure#824 log: over 10 s"),
    ENDPOINT: estimate(90),
    ZONE_GROUP: estimate(10),
    AKS: estimate(
        7 * 60,
        "within the ranges reported: Azure/AKS#1017 ('should be completed in 5-15 mins'), "
        "Azure/acs-engine#3721 (about 4 min for 3 nodes in acs-engine, 'AKS ... needs additional time')",
    ),
    POOL: estimate(3 * 60),
    PG: estimate(7 * 60, "no measured creation time found"),
    PG_DB: estimate(20),
    PG_CONF: estimate(20),
    REDIS: estimate(
        20 * 60,
        "no figure found for Azure Managed Redis; its predecessor Azure Cache for Redis: '20+ minutes "
        "is a typical provisioning duration' (Microsoft, Azure/AzureCacheForRedis#6), 'like 30 "
        "minutes' (microsoft/aspire#9468)",
    ),
    REDIS_DB: estimate(60),
    STORAGE: estimate(30),
    CONTAINER: estimate(3),
    SHARE: estimate(3),
    LIFECYCLE: estimate(3),
    IDENTITY: estimate(5),
    FEDERATED: estimate(5),
    ROLE_ASSIGNMENT: estimate(5),
}

PHYSICAL: dict[str, frozenset[str]] = {
    # Everything lives in its resource group. Subnets of one VNet are written one at a time (ARM
    # rejects concurrent writes to a VNet), as are the federated credentials of one identity
    # ("Concurrent write request to federated identity credential resources under the same
    # user-assigned identity has been denied", MicrosoftDocs/entra-docs
    # docs/workload-id/workload-identity-federation-considerations.md).
    RG: frozenset(),
    VNET: frozenset({RG}),
    SUBNET: frozenset({RG, VNET, SUBNET}),
    ZONE: frozenset({RG, "@generated"}),
    ZONE_LINK: frozenset({RG, ZONE, VNET}),
    ENDPOINT: frozenset({RG, SUBNET, PG, REDIS, STORAGE}),
    ZONE_GROUP: frozenset({RG, ENDPOINT, ZONE}),
    AKS: frozenset({RG, SUBNET, IDENTITY}),
    POOL: frozenset({RG, AKS, SUBNET}),
    # A VNet-integrated server needs its delegated subnet and its private DNS zone, linked to the VNet.
    # A server runs one operation at a time (FIELD-NOTES: ServerIsBusy), so its databases and
    # configurations wait for each other where the program orders them.
    PG: frozenset({RG, SUBNET, ZONE, ZONE_LINK, IDENTITY, "@generated"}),
    PG_DB: frozenset({RG, PG, PG_CONF}),
    PG_CONF: frozenset({RG, PG, PG_DB}),
    REDIS: frozenset({RG, "@generated"}),
    REDIS_DB: frozenset({RG, REDIS}),
    STORAGE: frozenset({RG, SUBNET, "@generated"}),
    CONTAINER: frozenset({RG, STORAGE}),
    SHARE: frozenset({RG, STORAGE}),
    LIFECYCLE: frozenset({RG, STORAGE, CONTAINER}),
    IDENTITY: frozenset({RG, "@generated"}),
    # A federated credential trusts the cluster's OIDC issuer URL, which exists with the cluster.
    FEDERATED: frozenset({RG, IDENTITY, AKS, FEDERATED}),
    ROLE_ASSIGNMENT: frozenset({RG, IDENTITY, AKS, STORAGE, CONTAINER, SUBNET}),
}


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
        # pulumi-azure-native's forceNewMap (provider/pkg/gen/properties.go) plus the ARM name and scope.
        "azure-native:containerservice:ManagedCluster": (
            "resourceName",
            "resourceGroupName",
            "location",
            "dnsPrefix",
            "fqdnSubdomain",
            "nodeResourceGroup",
            "networkProfile",
            "linuxProfile",
            "diskEncryptionSetID",
        ),
        # A replaced resource group takes everything in it.
        "azure-native:resources:ResourceGroup": ("resourceGroupName", "location"),
        "azure-native:dbforpostgresql:Server": ("serverName", "resourceGroupName", "location", "administratorLogin"),
        "azure-native:redisenterprise:RedisEnterprise": ("clusterName", "resourceGroupName", "location"),
        "azure-native:redisenterprise:Database": ("databaseName", "clusteringPolicy", "port"),
        "azure-native:storage:StorageAccount": ("accountName", "resourceGroupName", "location", "kind"),
        "azure-native:storage:FileShare": ("shareName", "accountName", "enabledProtocols"),
        "azure-native:storage:BlobContainer": ("containerName", "accountName"),
    },
    network_and_cluster=("azure-native:network:Subnet", "azure-native:containerservice:ManagedCluster"),
    destroy_checks=destroy_checks,
    creation_times=CREATION_TIMES,
    physical=PHYSICAL,
    roles={
        "kubernetes-api": frozenset({AKS}),
        # A created cluster brings its system node pool.
        "kubernetes-nodes": frozenset({AKS, POOL}),
        # What a Kubernetes object can carry only once it exists: a host, a client id, an account name.
        # A private host name is usable only once it resolves privately: the endpoint's A record (the
        # zone group) and the zone's VNet link; before that it resolves to a public address that
        # refuses (public network access is off), and a pod may cache that answer.
        "value": frozenset({PG, PG_DB, REDIS, REDIS_DB, STORAGE, CONTAINER, IDENTITY, ZONE_GROUP, ZONE_LINK}),
        "volume": frozenset({STORAGE, SHARE, ZONE_GROUP, ZONE_LINK}),
        "data-service": frozenset({PG, REDIS, STORAGE}),
        # What gives a pod (or the add-on acting as a service account) Azure rights: the federated
        # credential and the role assignment.
        "pod-identity": frozenset({FEDERATED, ROLE_ASSIGNMENT}),
    },
)
