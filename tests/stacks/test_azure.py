"""The Azure stack files: render, strict validation, and the Azure rules as graph invariants."""

from __future__ import annotations

from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from stacks.tooling import engine
from stacks.tooling.teardown import ancestors
from tests.render import K8S_VERSIONS, dumps, named, objects, pod_spec, render, workloads
from tests.stacks.test_invariants import _secret_leaves

STACKS = ["azure-dev", "azure-prod"]
SMB = ("azure.dags.protocol=smb",)
_VNET = "/subscriptions/1b2c3d4e-0000-4000-8000-00000000abcd/resourceGroups/team-net/providers/Microsoft.Network/virtualNetworks/team-vnet"
EXISTING = (
    "azure.cluster.existingName=team-aks",
    "azure.cluster.existingResourceGroup=team-rg",
    # An existing cluster brings the VNet it runs in (tests/stacks/test_azure_data.py).
    f"azure.network.existingVnetId={_VNET}",
    f"azure.network.existingPostgresSubnetId={_VNET}/subnets/postgres",
    f"azure.network.existingEndpointsSubnetId={_VNET}/subnets/endpoints",
)
LOG_WRITERS = {
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


def of_type(run: engine.Run, token: str) -> list[engine.Resource]:
    return [r for r in run.resources if r.type == f"azure-native:{token}"]


def one(run: engine.Run, token: str) -> engine.Resource:
    [r] = of_type(run, token)
    return r


@pytest.mark.parametrize("variant", [(), SMB, EXISTING])
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_object_is_strictly_valid(stack: str, variant: tuple[str, ...], version: str) -> None:
    for obj in objects(render(stack, *variant), reveal=True):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("stack", STACKS)
def test_explicit_providers(stack: str) -> None:
    run = render(stack)
    [k8s_provider] = run.by_type("pulumi:providers:kubernetes")
    assert k8s_provider.inputs["kubeconfig"] == engine.SECRET and "context" not in k8s_provider.inputs
    assert all(r.provider == k8s_provider.urn for r in run.kubernetes())
    assert one(run, "containerservice:ManagedCluster").urn in ancestors(run, k8s_provider.urn)
    [az] = run.by_type("pulumi:providers:azure-native")
    assert az.inputs["location"] == "westeurope"
    arm = [r for r in run.resources if r.type.startswith("azure-native:") and r.custom]
    assert arm and all(r.provider == az.urn for r in arm)


@pytest.mark.parametrize("stack", STACKS)
def test_cluster_has_oidc_issuer_workload_identity_and_a_policy_engine(stack: str) -> None:
    aks = one(render(stack), "containerservice:ManagedCluster").inputs
    assert aks["oidcIssuerProfile"] == {"enabled": True}
    assert aks["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert aks["networkProfile"]["networkPolicy"] == "cilium"  # the NetworkPolicies are enforced
    assert aks["agentPoolProfiles"][0]["vnetSubnetID"] == "network-aks-id"


@pytest.mark.parametrize("stack", STACKS)
def test_data_services_have_no_public_network_access(stack: str) -> None:
    run = render(stack)
    server = one(run, "dbforpostgresql:Server").inputs
    assert server["network"]["publicNetworkAccess"] == "Disabled"
    assert server["network"]["delegatedSubnetResourceId"] == "network-postgres-id"
    assert one(run, "redisenterprise:RedisEnterprise").inputs["publicNetworkAccess"] == "Disabled"
    files = [a.inputs for a in of_type(run, "storage:StorageAccount") if a.inputs["kind"] == "FileStorage"][0]
    assert files["publicNetworkAccess"] == "Disabled" and files["networkRuleSet"]["defaultAction"] == "Deny"
    groups = {
        e.inputs["privateLinkServiceConnections"][0]["groupIds"][0] for e in of_type(run, "network:PrivateEndpoint")
    }
    assert groups == {"redisEnterprise", "file"}
    zones = {z.inputs["privateZoneName"] for z in of_type(run, "privatedns:PrivateZone")}
    assert {"privatelink.redis.azure.net", "privatelink.file.core.windows.net"} <= zones
    assert any(z.endswith(".private.postgres.database.azure.com") for z in zones)


@pytest.mark.parametrize("stack", STACKS)
def test_tls_everywhere(stack: str) -> None:
    run = render(stack)
    # `require_secure_transport` is on by default on Flexible Server; nothing turns it off.
    assert not of_type(run, "dbforpostgresql:Configuration")
    db = one(run, "redisenterprise:Database").inputs
    assert db["clientProtocol"] == "Encrypted" and db["port"] == 10000 and db["clusteringPolicy"] == "NoCluster"
    assert one(run, "redisenterprise:RedisEnterprise").inputs["minimumTlsVersion"] == "1.2"
    secret = named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]
    assert "sslmode=verify-full&sslrootcert=" in secret["sql-alchemy-conn"]
    broker = urlsplit(named(run, "Secret", "airflow-broker", reveal=True)["stringData"]["broker-url"])
    assert broker.scheme == "rediss" and broker.port == 10000 and broker.query == "ssl_cert_reqs=required"
    blob = [a.inputs for a in of_type(run, "storage:StorageAccount") if a.inputs["kind"] == "StorageV2"][0]
    assert blob["enableHttpsTrafficOnly"] is True and blob["minimumTlsVersion"] == "TLS1_2"
    assert blob["allowSharedKeyAccess"] is False and blob["allowBlobPublicAccess"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_log_identity_is_federated_with_log_writers_and_scoped_to_the_container(stack: str) -> None:
    run = render(stack)
    creds = of_type(run, "managedidentity:FederatedIdentityCredential")
    assert {c.inputs["subject"] for c in creds} == {f"system:serviceaccount:airflow:{sa}" for sa in LOG_WRITERS}
    assert all(c.inputs["issuer"] == "https://oidc.mock/aks-cluster/" for c in creds)
    [role] = [r for r in of_type(run, "authorization:RoleAssignment") if r.name == "logs-blob-writer"]
    container = one(run, "storage:BlobContainer")
    assert role.inputs["scope"] == f"{container.name}-id"  # the container, not the account or group
    assert role.inputs["roleDefinitionId"].endswith("ba92f5b4-2d11-453d-a403-e96b0029c9fe")
    sas = {o["metadata"]["name"]: o for o in objects(run, "ServiceAccount")}
    annotated = {
        n for n, o in sas.items() if "azure.workload.identity/client-id" in o["metadata"].get("annotations", {})
    }
    assert annotated == LOG_WRITERS
    for obj in workloads(run):
        labelled = obj["spec"]["template"]["metadata"]["labels"].get("azure.workload.identity/use") == "true"
        assert labelled == (pod_spec(obj)["serviceAccountName"] in LOG_WRITERS), obj["metadata"]["name"]
    env = {
        e["name"]: e.get("value")
        for e in pod_spec(named(run, "Deployment", "airflow-scheduler"))["containers"][0]["env"]
    }
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith("wasb")
    assert env["AIRFLOW__AZURE_REMOTE_LOGGING__REMOTE_WASB_LOG_CONTAINER"] == "airflow-logs"
    assert '"conn_type": "wasb"' in env["AIRFLOW_CONN_AZURE_TASK_LOGS"] and "key" not in env[
        "AIRFLOW_CONN_AZURE_TASK_LOGS"
    ].replace("tenant", "")


def test_nfs_share_is_a_static_pv_without_keys_and_smb_uses_a_secret() -> None:
    run = render("azure-dev")
    pv = named(run, "PersistentVolume", "airflow-dags")
    assert pv["spec"]["csi"]["volumeHandle"] == "airflow-azure-dev-994464#afdagsazuredev994464#dags"  # mock suffix
    assert "nodeStageSecretRef" not in pv["spec"]["csi"]
    assert named(run, "PersistentVolumeClaim", "airflow-dags")["spec"]["volumeName"] == "airflow-dags"
    assert one(run, "storage:FileShare").inputs["enabledProtocols"] == "NFS"
    smb = render("azure-dev", *SMB)
    spv = named(smb, "PersistentVolume", "airflow-dags")
    assert spv["spec"]["csi"]["nodeStageSecretRef"]["name"] == "airflow-dags-smb"
    key = named(smb, "Secret", "airflow-dags-smb")["stringData"]["azurestorageaccountkey"]
    assert key == engine.SECRET


@pytest.mark.parametrize("variant", [(), SMB])
@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_in_plain_text(stack: str, variant: tuple[str, ...]) -> None:
    run = render(stack, *variant)
    # The SMB Secret carries the storage account's name beside its key; the name is public (it is in
    # the PV's volumeAttributes), only the key is secret.
    public = {named(run, "PersistentVolume", "airflow-dags")["spec"]["csi"]["volumeAttributes"]["storageAccount"]}
    secrets = {s for s in _secret_leaves(run) if len(s) >= 8} - public
    assert len(secrets) >= 6
    text = dumps(run)
    assert not [s[:4] for s in secrets if s in text]


def test_dev_destroys_in_one_go() -> None:
    run = render("azure-dev")
    assert not [r.name for r in run.resources if r.options.get("protect") or r.options.get("retainOnDelete")]
    assert not of_type(run, "authorization:ManagementLockByScope")


def test_prod_protects_database_share_and_log_container() -> None:
    run = render("azure-prod")
    protected = {r.type.split(":")[-1] + "/" + r.name for r in run.resources if r.options.get("protect")}
    assert protected == {
        "ManagedCluster/aks-cluster",
        "Server/database-server",
        "StorageAccount/dags-account",
        "FileShare/dags-share",
        "StorageAccount/logs-account",
        "BlobContainer/logs-container",
    }
    assert one(run, "dbforpostgresql:Server").inputs["highAvailability"] == {"mode": "ZoneRedundant"}


@pytest.mark.parametrize("stack", STACKS)
def test_a_load_balancer_service_is_deleted_before_the_cluster_and_network(stack: str) -> None:
    run = render(stack, "airflow.apiServer.serviceType=LoadBalancer")
    svc = run.get("kubernetes:core/v1:Service", "airflow-api-server-svc")
    before = ancestors(run, svc.urn)
    assert one(run, "containerservice:ManagedCluster").urn in before
    assert {s.urn for s in of_type(run, "network:Subnet")} <= before


def test_existing_cluster_is_looked_up_not_created() -> None:
    run = render("azure-dev", *EXISTING)
    assert not of_type(run, "containerservice:ManagedCluster")
    creds = of_type(run, "managedidentity:FederatedIdentityCredential")
    assert {c.inputs["issuer"] for c in creds} == {"https://oidc.mock/existing/"}
    assert "kubeconfig" not in run.outputs


def test_aws_and_azure_export_the_same_outputs() -> None:
    assert set(render("azure-dev").outputs) == set(render("aws-dev").outputs)
    assert set(render("azure-prod").outputs) == set(render("aws-prod").outputs)


BAD = [
    ("azure.region=westeurop", "airflow-k8s:azure.region", "not a known Azure region"),
    ("azure.broker.sku=Premium_P1", "airflow-k8s:azure.broker.sku", "not an Azure Managed Redis SKU"),
    ("azure.database.skuName=Standard_D2ds_v5", "airflow-k8s:azure.database.skuName", "not a Burstable SKU"),
    ("azure.network.postgresSubnet=10.50.1.0/24", "airflow-k8s:azure.network.postgresSubnet", "overlaps aksSubnet"),
    ("azure.network.endpointsSubnet=10.60.0.0/24", "airflow-k8s:azure.network.endpointsSubnet", "is not inside"),
    ("azure.cluster.serviceCidr=10.50.128.0/17", "airflow-k8s:azure.cluster.serviceCidr", "overlaps the VNet"),
    ("azure.dags.quotaGib=50", "airflow-k8s:azure.dags.quotaGib", "start at 100 GiB"),
    ("azure.cluster.existingName=team-aks", "airflow-k8s:azure.cluster.existingResourceGroup", "set both"),
    (
        "azure.database.backupRetentionDays=3",
        "airflow-k8s:azure.database.backupRetentionDays",
        "greater than or equal to 7",
    ),
    ("azure.database.highAvailability=true", "airflow-k8s:azure.database.highAvailability", "Burstable"),
]


@pytest.mark.parametrize("override,key,fragment", BAD)
def test_bad_azure_input(override: str, key: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("azure-dev", [override])
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


def test_globally_unique_names_carry_a_per_stack_suffix() -> None:
    """Server, cache and storage account names are DNS names across all of Azure."""
    run = render("azure-dev")
    [suffix] = [r for r in run.resources if r.type == "random:index/randomString:RandomString"]
    assert suffix.inputs["upper"] is False and suffix.inputs["special"] is False
    server = one(run, "dbforpostgresql:Server").inputs["serverName"]
    cache = one(run, "redisenterprise:RedisEnterprise").inputs["clusterName"]
    accounts = [a.inputs["accountName"] for a in of_type(run, "storage:StorageAccount")]
    assert server == cache == "airflow-azure-dev-994464"  # the mock's suffix
    assert all(a.endswith("994464") and len(a) <= 24 and a.isalnum() and a.islower() for a in accounts)
