"""The Azure data services and network against what a real subscription rejects or breaks (issue 12):
one operation at a time on a Flexible Server, an existing cluster's own VNet, storage autogrow
drift, a dev broker without high availability, private DNS before anything resolves a name, and
resource group names two stacks cannot share."""

from __future__ import annotations

import pytest

from stacks.tooling import critpath, engine
from stacks.tooling.teardown import ancestors
from tests.render import render
from tests.stacks.test_azure import STACKS, of_type, one

SUB = "1b2c3d4e-0000-4000-8000-00000000abcd"
VNET = f"/subscriptions/{SUB}/resourceGroups/team-net/providers/Microsoft.Network/virtualNetworks/team-vnet"
PG_SUBNET, EP_SUBNET, AKS_SUBNET = (f"{VNET}/subnets/{s}" for s in ("postgres", "endpoints", "aks"))
EXISTING_CLUSTER = ("azure.cluster.existingName=team-aks", "azure.cluster.existingResourceGroup=team-rg")
EXISTING_VNET = (
    f"azure.network.existingVnetId={VNET}",
    f"azure.network.existingPostgresSubnetId={PG_SUBNET}",
    f"azure.network.existingEndpointsSubnetId={EP_SUBNET}",
)
EXISTING = (*EXISTING_CLUSTER, *EXISTING_VNET)
SUFFIX = "994464"  # the mock's `unique-suffix`


def server_children(run: engine.Run) -> list[engine.Resource]:
    """Everything the program writes on the PostgreSQL server (each is an operation on it)."""
    server = one(run, "dbforpostgresql:Server")
    return [r for r in run.resources if r.custom and server.urn in r.property_dependencies.get("serverName", [])]


# ---- 1. Flexible Server runs one operation at a time ------------------------------------------------


@pytest.mark.parametrize("variant", [(), EXISTING])
@pytest.mark.parametrize("stack", STACKS)
def test_no_two_operations_on_the_server_can_run_at_once(stack: str, variant: tuple[str, ...]) -> None:
    run = render(stack, *variant)
    children = server_children(run)
    assert "azure-native:dbforpostgresql:Database" in {r.type for r in children}
    for a in children:
        for b in children:
            if a is not b:
                assert a.urn in ancestors(run, b.urn) or b.urn in ancestors(run, a.urn), (a.name, b.name)


@pytest.mark.parametrize("stack", STACKS)
def test_tls_is_the_servers_default_and_not_written_again(stack: str) -> None:
    """`require_secure_transport` is on by default on Flexible Server; writing it raced the Database."""
    assert not of_type(render(stack), "dbforpostgresql:Configuration")


# ---- 3. an existing cluster brings its VNet ---------------------------------------------------------


def test_existing_vnet_is_used_not_created_and_its_zones_are_linked_to_it() -> None:
    run = render("azure-dev", *EXISTING)
    assert not of_type(run, "network:VirtualNetwork") and not of_type(run, "network:Subnet")
    server = one(run, "dbforpostgresql:Server").inputs
    assert server["network"]["delegatedSubnetResourceId"] == PG_SUBNET
    assert {e.inputs["subnet"]["id"] for e in of_type(run, "network:PrivateEndpoint")} == {EP_SUBNET}
    links = of_type(run, "privatedns:VirtualNetworkLink")
    assert len(links) == len(of_type(run, "privatedns:PrivateZone")) == 3
    assert {link.inputs["virtualNetwork"]["id"] for link in links} == {VNET}
    # Nothing is created in, or changes, the user's network resource group.
    assert not [r.name for r in run.resources if r.custom and r.inputs.get("resourceGroupName") == "team-net"]


def test_created_cluster_in_an_existing_vnet_joins_the_given_subnet() -> None:
    run = render("azure-dev", *EXISTING_VNET, f"azure.network.existingAksSubnetId={AKS_SUBNET}")
    assert not of_type(run, "network:VirtualNetwork")
    aks = one(run, "containerservice:ManagedCluster").inputs
    assert aks["agentPoolProfiles"][0]["vnetSubnetID"] == AKS_SUBNET


BAD = [
    # An existing cluster's pods cannot reach a VNet the stack made for itself.
    (EXISTING_CLUSTER, "airflow-k8s:azure.network.existingVnetId", "an existing cluster"),
    (
        (*EXISTING_CLUSTER, "azure.network.existingVnetId=team-vnet"),
        "airflow-k8s:azure.network.existingVnetId",
        "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>",
    ),
    (
        (*EXISTING, f"azure.network.existingPostgresSubnetId={VNET}"),
        "airflow-k8s:azure.network.existingPostgresSubnetId",
        "/virtualNetworks/<name>/subnets/<subnet>",
    ),
    (
        (*EXISTING, f"azure.network.existingEndpointsSubnetId={VNET.replace('team-vnet', 'other')}/subnets/x"),
        "airflow-k8s:azure.network.existingEndpointsSubnetId",
        "is not a subnet of existingVnetId",
    ),
    (
        (*EXISTING, f"azure.network.existingEndpointsSubnetId={PG_SUBNET}"),
        "airflow-k8s:azure.network.existingEndpointsSubnetId",
        "must differ from existingPostgresSubnetId",
    ),
    (
        (*EXISTING_CLUSTER, f"azure.network.existingVnetId={VNET}"),
        "airflow-k8s:azure.network.existingPostgresSubnetId",
        "needs",
    ),
    (EXISTING_VNET, "airflow-k8s:azure.network.existingAksSubnetId", "a cluster the stack creates"),
    (
        (*EXISTING, f"azure.network.existingAksSubnetId={AKS_SUBNET}"),
        "airflow-k8s:azure.network.existingAksSubnetId",
        "only for a cluster the stack creates",
    ),
    (
        (f"azure.network.existingPostgresSubnetId={PG_SUBNET}",),
        "airflow-k8s:azure.network.existingPostgresSubnetId",
        "only with existingVnetId",
    ),
]


@pytest.mark.parametrize("overrides,key,fragment", BAD)
def test_bad_network_input_names_the_key(overrides: tuple[str, ...], key: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("azure-dev", list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


# ---- 6b. storage autogrow is not undone -------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_storage_grown_by_autogrow_is_never_shrunk_back(stack: str) -> None:
    server = one(render(stack), "dbforpostgresql:Server")
    assert server.inputs["storage"]["autoGrow"] == "Enabled"
    assert "storage.storageSizeGB" in server.options.get("ignoreChanges", [])
    # The ignored path names a property the server really sends (Pulumi paths use its wire names).
    head, leaf = "storage.storageSizeGB".split(".")
    assert leaf in server.inputs[head]


# ---- 7. a dev broker without high availability -------------------------------------------------------


@pytest.mark.parametrize(("stack", "mode"), [("azure-dev", "Disabled"), ("azure-prod", "Enabled")])
def test_broker_high_availability_per_stack_and_never_flipped_on_an_existing_broker(stack: str, mode: str) -> None:
    cluster = one(render(stack), "redisenterprise:RedisEnterprise")
    assert cluster.inputs["highAvailability"] == mode
    # Azure cannot change it in place: an existing broker (created with it unset, i.e. enabled)
    # keeps what it has rather than being replaced.
    assert "highAvailability" in cluster.options.get("ignoreChanges", [])
    assert "highAvailability" not in cluster.options.get("replaceOnChanges", [])


# ---- 8. nothing resolves a private name before its private DNS exists --------------------------------


def _dns(run: engine.Run, prefix: str) -> set[str]:
    return {
        run.get("azure-native:network:PrivateDnsZoneGroup", f"{prefix}-dns").urn,
        run.get("azure-native:privatedns:VirtualNetworkLink", f"{prefix}-zone-link").urn,
    }


@pytest.mark.parametrize("variant", [(), EXISTING])
@pytest.mark.parametrize("stack", STACKS)
def test_private_dns_is_in_place_before_anything_resolves_a_name(stack: str, variant: tuple[str, ...]) -> None:
    run = render(stack, *variant)
    server = one(run, "dbforpostgresql:Server")
    assert run.get("azure-native:privatedns:VirtualNetworkLink", "database-zone-link").urn in server.dependencies
    broker_url = run.get("kubernetes:core/v1:Secret", "airflow-secrets-broker")  # the `airflow-broker` Secret
    assert _dns(run, "broker") <= ancestors(run, broker_url.urn)
    for prefix in ("broker", "dags"):  # the A record is written for an endpoint that exists
        endpoint = run.get("azure-native:network:PrivateEndpoint", f"{prefix}-endpoint")
        assert endpoint.urn in run.get("azure-native:network:PrivateDnsZoneGroup", f"{prefix}-dns").dependencies
    pv = next(r for r in run.kubernetes() if r.type == "kubernetes:core/v1:PersistentVolume")
    assert _dns(run, "dags") <= ancestors(run, pv.urn)
    # ... and the deploy-time report sees it: the consumers start after the DNS, also in the forced chain.
    for forced in (False, True):
        slots = critpath.schedule(run, forced=forced)
        for consumer, prefix in ((broker_url, "broker"), (pv, "dags")):
            assert all(slots[consumer.urn].start >= slots[u].finish for u in _dns(run, prefix)), (forced, prefix)
        link = run.get("azure-native:privatedns:VirtualNetworkLink", "database-zone-link")
        assert slots[server.urn].start >= slots[link.urn].finish


# ---- 9a. resource group names two stacks cannot share -------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_a_new_stacks_resource_group_carries_the_suffix_and_an_existing_one_keeps_its_name(stack: str) -> None:
    run = render(stack)
    rg = one(run, "resources:ResourceGroup")
    assert rg.inputs["resourceGroupName"] == f"airflow-{stack}-{SUFFIX}"
    # An existing stack's group is `airflow-<stack>`: the name forces a replacement, which would delete
    # everything in it, so the stack keeps the name it has in its state.
    assert rg.options.get("ignoreChanges") == ["resourceGroupName"]
    suffix = run.get("random:index/randomString:RandomString", "unique-suffix")
    assert suffix.urn in rg.dependencies or suffix.urn in rg.property_dependencies.get("resourceGroupName", [])
    assert f"--resource-group airflow-{stack}-{SUFFIX} " in run.revealed_outputs["uiAccess"]


def test_an_existing_clusters_group_is_the_one_in_ui_access() -> None:
    assert "--resource-group team-rg " in render("azure-dev", *EXISTING).revealed_outputs["uiAccess"]


# ---- an existing VNet whose hub already holds the privatelink zones ----------------------------------------

_HUB = "/subscriptions/1b2c3d4e-0000-4000-8000-00000000abcd/resourceGroups/hub-dns/providers/Microsoft.Network"
HUB_ZONES = (
    "azure.network.existingPrivateDnsZoneIds="
    f"{{redis: '{_HUB}/privateDnsZones/privatelink.redis.azure.net', "
    f"file: '{_HUB}/privateDnsZones/privatelink.file.core.windows.net'}}",
)


def test_an_existing_vnet_can_use_the_hubs_privatelink_zones_instead_of_its_own() -> None:
    """A VNet can be linked to only one private DNS zone of a name: in a hub-and-spoke network the
    spoke is already linked to the hub's privatelink.redis.azure.net and privatelink.file.core.windows.net,
    so a zone and link of the stack's own would fail. With their IDs the stack makes neither, and the
    endpoints register in the hub's zones (the hub's owner keeps them linked to the VNet)."""
    run = render("azure-dev", *EXISTING, *HUB_ZONES)
    zones = {z.inputs["privateZoneName"] for z in of_type(run, "privatedns:PrivateZone")}
    assert not any(z.startswith("privatelink.") for z in zones)  # only the server's own zone is made
    links = of_type(run, "privatedns:VirtualNetworkLink")
    assert [lk.name for lk in links] == ["database-zone-link"]
    groups = {
        g.name: g.inputs["privateDnsZoneConfigs"][0]["privateDnsZoneId"]
        for g in of_type(run, "network:PrivateDnsZoneGroup")
    }
    assert groups == {
        "broker-dns": f"{_HUB}/privateDnsZones/privatelink.redis.azure.net",
        "dags-dns": f"{_HUB}/privateDnsZones/privatelink.file.core.windows.net",
    }
    # Still: the broker's users and the DAG volume wait for the endpoint's A record.
    [pv] = [r for r in run.resources if r.type == "kubernetes:core/v1:PersistentVolume"]
    dns = [g for g in of_type(run, "network:PrivateDnsZoneGroup") if g.name == "dags-dns"][0]
    assert dns.urn in pv.dependencies


@pytest.mark.parametrize(
    "overrides,key,fragment",
    [
        (HUB_ZONES, "airflow-k8s:azure.network.existingPrivateDnsZoneIds", "only with existingVnetId"),
        (
            (*EXISTING, f"azure.network.existingPrivateDnsZoneIds={{redis: '{_HUB}/privateDnsZones/example.com'}}"),
            "airflow-k8s:azure.network.existingPrivateDnsZoneIds.redis",
            "privatelink.redis.azure.net",
        ),
        (
            (*EXISTING, "azure.network.existingPrivateDnsZoneIds={file: not-an-id}"),
            "airflow-k8s:azure.network.existingPrivateDnsZoneIds.file",
            "privateDnsZones",
        ),
        (
            (*EXISTING, f"azure.network.existingPrivateDnsZoneIds={{blob: '{_HUB}/privateDnsZones/x'}}"),
            "airflow-k8s:azure.network.existingPrivateDnsZoneIds.blob",
            "not a known key",
        ),
    ],
)
def test_bad_hub_zone_ids(overrides: tuple[str, ...], key: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("azure-dev", list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []
