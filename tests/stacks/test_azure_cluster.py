"""The AKS cluster of the Azure stacks: identity and its subnet role, Entra ID sign-in through kubelogin,
API server access, tier, autoscaler drift, per-stack names and the Kubernetes version (issue 12)."""

from __future__ import annotations

import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from stacks.tooling import engine
from stacks.tooling.teardown import ancestors
from tests.render import drop_aborted_applies, objects, render
from tests.stacks.test_azure import _VNET, EXISTING  # an existing cluster and the VNet it runs in

AKS_SUBNET = f"{_VNET}/subnets/aks"

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["azure-dev", "azure-prod"]

NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
DEPLOYER = "00000000-0000-0000-0000-0000000000b1"  # the mock's authorization.getClientConfig objectId
CLUSTER = "azure-native:containerservice:ManagedCluster"


def cluster(run: engine.Run) -> engine.Resource:
    [r] = run.by_type(CLUSTER)
    return r


def roles(run: engine.Run, role: str) -> list[engine.Resource]:
    return [
        r
        for r in run.by_type("azure-native:authorization:RoleAssignment")
        if r.inputs["roleDefinitionId"].endswith("/" + role)
    ]


def provider_kubeconfig(run: engine.Run) -> dict:
    [p] = run.by_type("pulumi:providers:kubernetes")
    return yaml.safe_load(p.revealed["kubeconfig"])


# ---- item 2: the control-plane identity may manage its subnet ----------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_control_plane_identity_is_network_contributor_on_its_subnet_before_the_cluster(stack: str) -> None:
    """A system-assigned identity gets no role on a customer subnet from ARM (only the CLI adds one), and a
    LoadBalancer Service then fails with LinkedAuthorizationFailed: the identity and its role come first."""
    run = render(stack)
    aks = cluster(run)
    identity = run.get("azure-native:managedidentity:UserAssignedIdentity", "aks-identity")
    assert aks.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [f"{identity.name}-id"]}
    [role] = roles(run, NETWORK_CONTRIBUTOR)
    assert role.inputs["scope"] == "network-aks-id"  # the AKS subnet, nothing wider
    assert role.inputs["principalId"] == f"{identity.name}-principal-id"
    assert role.inputs["principalType"] == "ServicePrincipal"  # no Entra ID replication-delay failure
    assert role.urn in ancestors(run, aks.urn)
    assert uuid.UUID(role.inputs["roleAssignmentName"])  # a GUID named from its inputs: a re-run finds it
    assert (
        role.inputs["roleAssignmentName"] == roles(render(stack), NETWORK_CONTRIBUTOR)[0].inputs["roleAssignmentName"]
    )


# ---- item 4: Entra ID sign-in without a prompt, kubelogin named when missing -------------------------


@pytest.mark.parametrize("variant", [(), EXISTING])
@pytest.mark.parametrize("stack", STACKS)
def test_provider_signs_in_through_kubelogin_without_a_prompt_or_a_static_credential(
    stack: str, variant: tuple[str, ...]
) -> None:
    run = render(stack, *variant)
    [creds] = [i for i in run.invokes if i.token.endswith("listManagedClusterUserCredentials")]
    assert creds.args["format"] == "exec"
    assert not [i for i in run.invokes if "AdminCredentials" in i.token]
    config = provider_kubeconfig(run)
    [user] = config["users"]
    assert set(user["user"]) == {"exec"}  # no client certificate, key or token
    exec_ = user["user"]["exec"]
    assert exec_["command"] == "kubelogin"
    args = exec_["args"]
    assert args[:3] == ["get-token", "--login", "azurecli"] and "devicecode" not in args
    assert args[args.index("--server-id") + 1] == "6dae42f8-4368-4678-94ff-3960e28e3630"
    # The cloud AKS named is kept (kubelogin's convert-kubeconfig keeps it): a sovereign cloud's
    # token comes from its own authority.
    assert args[args.index("--environment") + 1] == "AzurePublicCloud"
    assert exec_["interactiveMode"] == "Never"  # a prompt would hang `pulumi up`
    assert "kubelogin" in exec_["installHint"] and "README" in exec_["installHint"]
    if not variant:
        assert yaml.safe_load(run.revealed_outputs["kubeconfig"]) == config
        assert run.outputs["kubeconfig"] == engine.SECRET


# ---- item 5: production hardening ----------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_entra_id_with_azure_rbac_and_no_local_accounts(stack: str) -> None:
    run = render(stack)
    aks = cluster(run).inputs
    assert aks["aadProfile"] == {"managed": True, "enableAzureRBAC": True}
    assert aks["disableLocalAccounts"] is True
    # Whoever runs `pulumi up` may create the Airflow objects: the provider waits for the grant.
    [grant] = roles(run, AKS_RBAC_CLUSTER_ADMIN)
    assert grant.inputs["principalId"] == DEPLOYER and grant.inputs["scope"] == f"{cluster(run).name}-id"
    assert set(grant.options["ignoreChanges"]) == {"principalId", "roleAssignmentName"}
    [p] = run.by_type("pulumi:providers:kubernetes")
    assert grant.urn in ancestors(run, p.urn)


def test_further_cluster_admins_are_granted_by_object_id() -> None:
    ids = ["11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"]
    run = render("azure-dev", f"azure.cluster.adminPrincipalIds=[{', '.join(ids)}]")
    grants = roles(run, AKS_RBAC_CLUSTER_ADMIN)
    assert sorted(g.inputs["principalId"] for g in grants) == sorted([DEPLOYER, *ids])
    assert len({g.inputs["roleAssignmentName"] for g in grants}) == 3


def test_the_api_server_is_limited_to_listed_ranges_or_private_in_a_reachable_vnet() -> None:
    for stack in STACKS:
        access = cluster(render(stack)).inputs["apiServerAccessProfile"]
        listed = yaml.safe_load((ROOT / f"stacks/Pulumi.{stack}.yaml").read_text())["config"]["airflow-k8s:azure"]
        assert access == {"authorizedIPRanges": listed["cluster"]["authorizedIpRanges"]}, stack
    # Private: only in an existing VNet, the one the deployer's runner can reach.
    vnet = [o for o in EXISTING if ".network." in o]
    private = render(
        "azure-prod", "azure.cluster.publicEndpoint=false", *vnet, f"azure.network.existingAksSubnetId={AKS_SUBNET}"
    )
    assert cluster(private).inputs["apiServerAccessProfile"] == {"enablePrivateCluster": True}


def test_a_private_cluster_in_a_vnet_the_stack_creates_is_refused() -> None:
    """The `up` that creates a VNet cannot reach a private API server inside it (nothing is peered
    to it yet), and AKS cannot make a public cluster private later (review of issue 12)."""
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("azure-prod", ["azure.cluster.publicEndpoint=false"])
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-prod")
    assert "airflow-k8s:azure.cluster.publicEndpoint: " in str(run.error) and "cannot be reached by the" in str(
        run.error
    )
    assert run.resources == []


def test_prod_is_on_the_standard_tier_and_dev_on_free() -> None:
    assert cluster(render("azure-prod")).inputs["sku"] == {"name": "Base", "tier": "Standard"}
    assert cluster(render("azure-dev")).inputs["sku"] == {"name": "Base", "tier": "Free"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_cluster_is_protected_where_the_stack_protects(stack: str) -> None:
    assert bool(cluster(render(stack)).options.get("protect")) == (stack == "azure-prod")


# ---- item 6a: the autoscaler's node count is not drift --------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_autoscaled_node_count_is_ignored(stack: str) -> None:
    aks = cluster(render(stack))
    assert "agentPoolProfiles[0].count" in aks.options["ignoreChanges"]
    assert aks.inputs["agentPoolProfiles"][0]["enableAutoScaling"] is True


# ---- item 9b: per-stack cluster names ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_a_new_cluster_name_carries_the_stack_suffix_and_an_existing_one_is_kept(stack: str) -> None:
    run = render(stack)
    aks = cluster(run)
    assert aks.inputs["resourceName"] == aks.inputs["dnsPrefix"] == f"airflow-{stack}-994464"  # mock suffix
    # A stack that already has `airflow-<stack>` keeps it: the name is taken from state, not replaced.
    assert {"resourceName", "dnsPrefix"} <= set(aks.options["ignoreChanges"])
    assert f"--name airflow-{stack}-994464 " in run.revealed_outputs["uiAccess"]


def test_ui_access_names_the_existing_cluster() -> None:
    access = render("azure-dev", *EXISTING).revealed_outputs["uiAccess"]
    assert "--resource-group team-rg --name team-aks " in access


# ---- Kubernetes version ---------------------------------------------------------------------------------


def test_default_version_is_in_aks_standard_support_through_2026_12() -> None:
    """AKS calendar (MicrosoftDocs/azure-aks-docs supported-kubernetes-versions.md): 1.33 ends Jul 2026,
    1.34 Nov 2026, 1.35 Mar 2027."""
    assert cluster(render("azure-prod")).inputs["kubernetesVersion"] == "1.35"


@pytest.mark.parametrize("version", ["1.36", "1.37"])
def test_objects_are_valid_on_the_newer_accepted_versions(version: str) -> None:
    run = render("azure-dev", f"azure.cluster.version={version}")
    assert cluster(run).inputs["kubernetesVersion"] == version
    for obj in objects(run, reveal=True):
        kubernetes_validate.validate(obj, version, strict=True)


# ---- bad input ---------------------------------------------------------------------------------------------

BAD = [
    ("azure.cluster.version=1.33", "airflow-k8s:azure.cluster.version", "1.35"),
    ("azure.cluster.authorizedIpRanges=[]", "airflow-k8s:azure.cluster.authorizedIpRanges", "publicEndpoint: false"),
    ("azure.cluster.authorizedIpRanges=[10.0.0.1/8]", "airflow-k8s:azure.cluster.authorizedIpRanges.0", "host bits"),
    ("azure.cluster.authorizedIpRanges=[2001:db8::/32]", "airflow-k8s:azure.cluster.authorizedIpRanges.0", "IPv4"),
    ("azure.cluster.adminPrincipalIds=[alice]", "airflow-k8s:azure.cluster.adminPrincipalIds", "object id"),
    ("azure.cluster.tier=Gold", "airflow-k8s:azure.cluster.tier", "Standard"),
]


@pytest.mark.parametrize("override,key,fragment", BAD)
def test_bad_cluster_input(override: str, key: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("azure-dev", [override])
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


def test_a_protected_stack_refuses_an_api_server_open_to_the_internet() -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    sets = ["azure.cluster.publicEndpoint=true", "azure.cluster.authorizedIpRanges=[0.0.0.0/0]"]
    config, keys = load_stack_config("azure-prod", sets)
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-prod")
    assert run.error is not None and "airflow-k8s:azure.cluster.authorizedIpRanges:" in str(run.error)
    assert "0.0.0.0/0" in str(run.error) and run.resources == []


# ---- CI -----------------------------------------------------------------------------------------------------


def test_preview_installs_kubelogin_and_previews_private_azure_prod_from_inside_its_vnet() -> None:
    [job] = yaml.safe_load((ROOT / ".github/workflows/preview.yml").read_text())["jobs"].values()
    assert "matrix.stack == 'azure-prod' && vars.AZURE_PRIVATE_API_RUNNER" in job["runs-on"]
    assert "vars.AZURE_PRIVATE_API_RUNNER != ''" in job["env"]["CLOUD_CONFIGURED"]
    kubelogin = [s for s in job["steps"] if str(s.get("uses", "")).startswith("azure/use-kubelogin@")]
    assert kubelogin and "startsWith(matrix.stack, 'azure')" in kubelogin[0]["if"]


# ---- issue 14, item 4: the nodes pull from ACR as the kubelet identity ----------------------------------

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
_RG = "/subscriptions/1b2c3d4e-0000-4000-8000-00000000abcd/resourceGroups/team-images"
ACR_A = f"{_RG}/providers/Microsoft.ContainerRegistry/registries/teamimages"
ACR_B = f"{_RG}/providers/Microsoft.ContainerRegistry/registries/Sharedbase01"
ACRS = (f"azure.cluster.acrIds=[{ACR_A}, {ACR_B}]",)


def test_without_registries_no_acr_role_is_made() -> None:
    assert not roles(render("azure-dev"), ACR_PULL)


@pytest.mark.parametrize("variant", [(), EXISTING])
def test_each_registry_grants_acr_pull_to_the_kubelet_identity_on_that_registry_only(variant: tuple[str, ...]) -> None:
    run = render("azure-dev", *variant, *ACRS)
    grants = {r.inputs["scope"]: r for r in roles(run, ACR_PULL)}
    assert set(grants) == {ACR_A, ACR_B}  # least scope: the registry itself
    cluster_name = "team-aks" if variant else cluster(run).inputs["resourceName"]
    kubelet = f"{cluster_name}-kubelet-object-id"  # the mock's identityProfile.kubeletidentity
    for registry, grant in grants.items():
        assert grant.inputs["principalId"] == kubelet
        assert grant.inputs["principalType"] == "ServicePrincipal"
        assert (
            grant.inputs["roleDefinitionId"]
            == f"/subscriptions/00000000-0000-0000-0000-000000005ub0/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
        )
        # Deterministic: the name is the GUID of registry, principal and role, so a second `up` (or
        # an import) finds the assignment, and destroy removes exactly it.
        assert grant.inputs["roleAssignmentName"] == str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{registry.lower()}/{kubelet}/{ACR_PULL}")
        )
    # Pulumi names from the registry names: reordering the list changes nothing.
    assert {r.name for r in grants.values()} == {"aks-acr-pull-teamimages", "aks-acr-pull-sharedbase01"}
    again = render("azure-dev", *variant, f"azure.cluster.acrIds=[{ACR_B}, {ACR_A}]")
    assert {(r.name, r.inputs["roleAssignmentName"]) for r in roles(again, ACR_PULL)} == {
        (r.name, r.inputs["roleAssignmentName"]) for r in grants.values()
    }


def test_acr_grants_leave_the_existing_stacks_resources_as_they_are() -> None:
    before = {(r.type, r.name): r.inputs for r in render("azure-dev").resources}
    after = {(r.type, r.name): r.inputs for r in render("azure-dev", *ACRS).resources}
    assert {k: v for k, v in after.items() if k in before} == before
    assert {k[1] for k in after.keys() - before.keys()} == {"aks-acr-pull-teamimages", "aks-acr-pull-sharedbase01"}


@pytest.mark.parametrize(
    "value,fragment",
    [
        (f"[{_RG}/providers/Microsoft.ContainerRegistry/registry/teamimages]", "not container registry ids"),
        (f"[{_RG}/providers/Microsoft.KeyVault/vaults/teamimages]", "not container registry ids"),
        ("[teamimages.azurecr.io]", "not container registry ids"),
        (f"[{_RG}/providers/Microsoft.ContainerRegistry/registries/ab]", "not container registry ids"),
        (f"[{ACR_A}, {ACR_A.upper().replace('SUBSCRIPTIONS', 'subscriptions')}]", "twice"),
    ],
)
def test_a_malformed_registry_id_names_the_key_and_registers_nothing(value: str, fragment: str) -> None:
    from stacks.main import program
    from stacks.tooling.render import load_stack_config

    config, keys = load_stack_config("azure-dev", [f"azure.cluster.acrIds={value}"])
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is not None and "airflow-k8s:azure.cluster.acrIds" in str(run.error), str(run.error)
    assert fragment in str(run.error) and run.resources == []


def test_an_existing_cluster_without_a_kubelet_identity_fails_at_preview(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster that still runs with a service principal has no kubelet identity to grant AcrPull to."""
    from stacks.main import program
    from stacks.tooling.clouds import azure as azure_facts
    from stacks.tooling.render import load_stack_config

    token = "azure-native:containerservice:getManagedCluster"
    real = azure_facts.FACTS.mock_invokes[token]
    monkeypatch.setitem(azure_facts.FACTS.mock_invokes, token, lambda args: {**real(args), "identityProfile": None})
    config, keys = load_stack_config("azure-dev", [*EXISTING, *ACRS])
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert type(run.error).__name__ == "RunError", run.error
    assert str(run.error).startswith("airflow-k8s:azure.cluster.acrIds: the cluster has no kubelet managed identity")
    assert not roles(run, ACR_PULL)
    drop_aborted_applies()
