"""Issue 14, item 1 on Azure: the UI at https://<ui.host>/ through a Gateway of AKS's application routing
add-on (its Gateway API implementation, `approuting-istio`), the certificate synced from Key Vault by
the add-on's operator as a service account with workload identity; and the teardown order that keeps
the add-on-made load balancer frontend from outliving the stack (components/azure/app_routing.py says
why this and not the add-on's NGINX)."""

from __future__ import annotations

import uuid

import kubernetes_validate
import pytest

from components.azure.app_routing import GATEWAY_CLASS, KEY_VAULT_SECRETS_USER
from stacks.main import program
from stacks.tooling import critpath, engine
from stacks.tooling.render import load_stack_config
from stacks.tooling.teardown import ancestors, destroy_order, findings
from tests.render import K8S_VERSIONS, drop_aborted_applies, named, objects, render
from tests.stacks.test_azure import EXISTING, of_type

SUB = "/subscriptions/1b2c3d4e-0000-4000-8000-00000000abcd"
VAULT = f"{SUB}/resourceGroups/team-sec/providers/Microsoft.KeyVault/vaults/team-kv"
CERT = "https://team-kv.vault.azure.net/certificates/airflow-ui"
UI = ("ui.host=airflow.example.com", f"azure.ui.certificateUri={CERT}", f"azure.ui.keyVaultId={VAULT}")
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
CLUSTER = "azure-native:containerservice:ManagedCluster"


def gateway(run: engine.Run) -> engine.Resource:
    [r] = run.by_type(GATEWAY)
    return r


@pytest.mark.parametrize("stack", ["azure-dev", "azure-prod"])
def test_without_a_host_nothing_of_the_ui_is_made_and_the_cluster_is_as_before(stack: str) -> None:
    run = render(stack)
    assert not run.by_type(GATEWAY) and not run.by_type(ROUTE)
    assert not [r for r in run.resources if r.name.startswith("ui")]
    [aks] = run.by_type(CLUSTER)
    assert "ingressProfile" not in aks.inputs and "addonProfiles" not in aks.inputs
    assert "uiLoadBalancer" not in run.outputs


def test_the_gateway_is_https_only_with_the_key_vault_certificate_to_the_api_server() -> None:
    run = render("azure-dev", *UI)
    gw = named(run, "Gateway", "airflow-ui")
    spec = gw["spec"]
    # `up` waits until the Gateway is programmed (its address exists): no silent half-made UI.
    assert gw["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Programmed"}
    assert spec["gatewayClassName"] == GATEWAY_CLASS == "approuting-istio"
    [listener] = spec["listeners"]  # one listener, 443: no plaintext port, not even a redirect
    assert (listener["port"], listener["protocol"], listener["hostname"]) == (443, "HTTPS", "airflow.example.com")
    assert listener["tls"] == {
        "mode": "Terminate",
        "options": {
            "kubernetes.azure.com/tls-cert-keyvault-uri": CERT,  # versionless: a renewal is picked up
            "kubernetes.azure.com/tls-cert-service-account": "airflow-ui-tls",
        },
    }
    # Routes of Airflow's namespace only.
    assert listener["allowedRoutes"] == {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "airflow"}}}
    }
    # Internal by default: the cloud provider gives the add-on's Service a private frontend.
    assert spec["infrastructure"]["annotations"] == {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}
    route = named(run, "HTTPRoute", "airflow-ui")
    assert route["spec"]["parentRefs"] == [{"name": "airflow-ui", "namespace": "airflow-ui", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["airflow.example.com"]
    [rule] = route["spec"]["rules"]
    api = named(run, "Service", "airflow-api-server")
    assert rule["backendRefs"] == [{"name": "airflow-api-server", "port": api["spec"]["ports"][0]["port"]}]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    # The route beside its backend (no ReferenceGrant); the Gateway in a namespace of its own.
    assert route["metadata"]["namespace"] == api["metadata"]["namespace"] == "airflow"
    assert gw["metadata"]["namespace"] == "airflow-ui"
    assert run.outputs["uiUrl"] == "https://airflow.example.com/"
    assert run.outputs["uiLoadBalancer"] == "10.50.0.100"  # the Gateway status's address (mocked)


def test_the_gateway_proxy_runs_in_a_baseline_namespace_outside_airflows_restricted_default_deny() -> None:
    """The add-on runs the Gateway's Envoy pods (and the certificate-sync pod) in the Gateway's namespace:
    Istio's gateway template binds 443 through a sysctl `baseline` allows and sets no seccomp profile
    `restricted` requires, and Airflow's namespace admits ingress to the api-server's port only."""
    run = render("azure-dev", *UI)
    ns = named(run, "Namespace", "airflow-ui")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    assert (
        named(run, "Namespace", "airflow")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    assert not [o for o in objects(run, "NetworkPolicy") if o["metadata"]["namespace"] == "airflow-ui"]
    # The proxy reaches the api-server pods: their policy admits the port from any source.
    [rule] = named(run, "NetworkPolicy", "airflow-api-server")["spec"]["ingress"]
    assert "from" not in rule


def test_an_external_gateway_has_no_internal_annotation() -> None:
    run = render("azure-dev", *UI, "azure.ui.scheme=external")
    assert "annotations" not in named(run, "Gateway", "airflow-ui")["spec"]["infrastructure"]


def test_the_certificate_reader_is_a_federated_identity_with_secrets_user_on_the_certificate_only() -> None:
    run = render("azure-dev", *UI)
    identity = run.get("azure-native:managedidentity:UserAssignedIdentity", "ui-tls-identity")
    federated = run.get("azure-native:managedidentity:FederatedIdentityCredential", "ui-tls-federated")
    # The operator reads the certificate as the account in the Gateway's namespace.
    assert federated.inputs["subject"] == "system:serviceaccount:airflow-ui:airflow-ui-tls"
    assert federated.inputs["audiences"] == ["api://AzureADTokenExchange"]
    [aks] = run.by_type(CLUSTER)
    assert federated.inputs["issuer"] == f"https://oidc.mock/{aks.name}/"
    reader = run.get("azure-native:authorization:RoleAssignment", "ui-tls-reader")
    scope = f"{VAULT}/secrets/airflow-ui"  # the certificate's secret, not the vault
    assert reader.inputs["scope"] == scope
    assert reader.inputs["roleDefinitionId"].endswith("/roleDefinitions/" + KEY_VAULT_SECRETS_USER)
    principal = f"{identity.name}-principal-id"
    assert reader.inputs["principalId"] == principal and reader.inputs["principalType"] == "ServicePrincipal"
    assert reader.inputs["roleAssignmentName"] == str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}/{principal}/{KEY_VAULT_SECRETS_USER}")
    )
    account = named(run, "ServiceAccount", "airflow-ui-tls")
    assert account["metadata"]["namespace"] == "airflow-ui"
    assert account["metadata"]["annotations"] == {"azure.workload.identity/client-id": f"{identity.name}-client-id"}
    assert account["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert account["automountServiceAccountToken"] is False
    # The operator syncs the certificate when the Gateway appears: the account and its rights come first.
    gw = gateway(run)
    assert {federated.urn, reader.urn} <= ancestors(run, gw.urn) and account_urn(run) in ancestors(run, gw.urn)


def account_urn(run: engine.Run) -> str:
    [sa] = [r for r in run.by_type("kubernetes:core/v1:ServiceAccount") if r.name == "ui-tls"]
    return sa.urn


def test_a_created_cluster_gets_the_add_on_without_nginx_and_the_key_vault_provider_with_rotation() -> None:
    run = render("azure-dev", *UI)
    [aks] = run.by_type(CLUSTER)
    assert aks.inputs["ingressProfile"] == {
        "webAppRouting": {"enabled": True, "nginx": {"defaultIngressControllerType": "None"}}
    }
    assert aks.inputs["addonProfiles"] == {
        "azureKeyvaultSecretsProvider": {"enabled": True, "config": {"enableSecretRotation": "true"}}
    }
    # Among the stack's Azure resources only the cluster's two profiles change (the Airflow workloads
    # learn their external URL with ui.host on every cloud: tests/stacks/test_proxy.py).
    before = {(r.type, r.name): r.inputs for r in render("azure-dev").resources if r.type.startswith("azure-native:")}
    after = {(r.type, r.name): r.inputs for r in run.resources}
    diff = {k for k in before if after.get(k) != before[k]}
    assert diff == {(CLUSTER, aks.name)}
    assert {
        k: v for k, v in after[(CLUSTER, aks.name)].items() if k not in ("ingressProfile", "addonProfiles")
    } == before[(CLUSTER, aks.name)]


def test_an_existing_cluster_gets_the_ui_objects_and_no_cluster_change() -> None:
    run = render("azure-dev", *EXISTING, *UI)
    assert not run.by_type(CLUSTER)
    assert gateway(run) and run.by_type(ROUTE)
    federated = run.get("azure-native:managedidentity:FederatedIdentityCredential", "ui-tls-federated")
    assert federated.inputs["issuer"] == "https://oidc.mock/existing/"


@pytest.mark.parametrize(
    "profiles,fragment",
    [
        ({"ingressProfile": None}, "has no application routing add-on"),
        ({"ingressProfile": {"webAppRouting": {"enabled": False}}}, "az aks update --enable-app-routing"),
        ({"addonProfiles": {}}, "has no Key Vault secrets provider"),
    ],
)
def test_an_existing_cluster_without_the_add_on_fails_at_preview_naming_the_command(
    profiles: dict, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacks.tooling.clouds import azure as azure_facts

    token = "azure-native:containerservice:getManagedCluster"
    real = azure_facts.FACTS.mock_invokes[token]
    monkeypatch.setitem(azure_facts.FACTS.mock_invokes, token, lambda args: {**real(args), **profiles})
    config, keys = load_stack_config("azure-dev", [*EXISTING, *UI])
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert type(run.error).__name__ == "RunError", run.error  # the message alone, no traceback
    assert str(run.error).startswith("airflow-k8s:ui.host: the existing cluster team-aks")
    assert fragment in str(run.error), run.error
    assert not run.by_type(GATEWAY) and not [r for r in run.resources if r.name == "ui-namespace"]
    drop_aborted_applies()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_ui_service_account_is_strictly_valid(version: str) -> None:
    """The Gateway API kinds are custom resources (no schema in kubernetes-validate): the tests above
    pin their fields; the core objects the UI adds are validated like every other."""
    for obj in objects(render("azure-dev", *UI)):
        if obj["apiVersion"].startswith("gateway.networking.k8s.io/"):
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_gateway_uses_only_gateway_api_v1_standard_fields() -> None:
    """The fields of Gateway API v1 (standard channel, v1.1+: `infrastructure`) the objects use, so a
    typo cannot pass unseen where no schema validates them."""
    run = render("azure-dev", *UI)
    gw, route = named(run, "Gateway", "airflow-ui"), named(run, "HTTPRoute", "airflow-ui")
    assert set(gw) == set(route) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(gw["spec"]) <= {"gatewayClassName", "listeners", "addresses", "infrastructure"}
    assert set(gw["spec"]["infrastructure"]) <= {"labels", "annotations", "parametersRef"}
    for listener in gw["spec"]["listeners"]:
        assert set(listener) <= {"name", "hostname", "port", "protocol", "tls", "allowedRoutes"}
        assert set(listener["tls"]) <= {"mode", "certificateRefs", "options"}
    assert set(route["spec"]) <= {"parentRefs", "hostnames", "rules"}
    for rule in route["spec"]["rules"]:
        assert set(rule) <= {"name", "matches", "filters", "backendRefs", "timeouts"}


# ---- teardown ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), EXISTING])
def test_the_gateway_goes_before_the_cluster_and_the_network(extra: tuple[str, ...]) -> None:
    run = render("azure-dev", *UI, *extra)
    gw = gateway(run)
    before = ancestors(run, gw.urn)  # everything `pulumi destroy` deletes after the Gateway
    must_outlive = [
        *run.by_type(CLUSTER),
        *of_type(run, "network:Subnet"),
        *of_type(run, "network:VirtualNetwork"),
        *[r for r in run.by_type("pulumi:providers:kubernetes")],
    ]
    assert len(must_outlive) >= (1 if extra else 5)
    assert not [r.name for r in must_outlive if r.urn not in before]
    position = {r.urn: n for n, r in enumerate(destroy_order(run))}
    assert all(position[gw.urn] < position[r.urn] for r in must_outlive if r.urn in position)
    [route] = run.by_type(ROUTE)
    assert position[route.urn] < position[gw.urn]


def test_the_dev_stack_with_the_ui_still_leaves_nothing_behind() -> None:
    run = render("azure-dev", *UI)
    found = findings(run)
    assert not [f for f in found if f.severity in ("blocks", "leaves")], found
    [note] = [f for f in found if f.resource == gateway(run).urn]
    assert note.severity == "note" and "load balancer" in note.message


def test_the_deploy_time_report_knows_every_new_type() -> None:
    run = render("azure-dev", *UI)
    assert critpath.defaulted_types(run) == [] and critpath.unjudged_types(run) == []
    slots = critpath.schedule(run, forced=True)
    gw = gateway(run)
    reader = run.get("azure-native:authorization:RoleAssignment", "ui-tls-reader")
    assert slots[gw.urn].start >= slots[reader.urn].finish
    [route] = run.by_type(ROUTE)
    assert slots[route.urn].start >= slots[gw.urn].finish


# ---- outputs -----------------------------------------------------------------------------------------


def test_aws_and_azure_export_the_same_outputs_with_the_ui() -> None:
    aws = render(
        "aws-dev",
        "ui.host=airflow.example.com",
        "aws.ui.certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    )
    azure = render("azure-dev", *UI)
    assert set(azure.outputs) == set(aws.outputs) and "uiLoadBalancer" in azure.outputs


# ---- bad input ---------------------------------------------------------------------------------------

BAD = [
    (("ui.host=airflow.example.com",), "airflow-k8s:azure.ui.certificateUri", "HTTPS only"),
    (("ui.host=airflow.example.com", f"azure.ui.certificateUri={CERT}"), "airflow-k8s:azure.ui.keyVaultId", "ARM id"),
    (
        (*UI[:2], f"azure.ui.keyVaultId={VAULT.replace('team-kv', 'other-kv')}"),
        "airflow-k8s:azure.ui.keyVaultId",
        "the same vault",
    ),
    (
        (UI[0], f"azure.ui.certificateUri={CERT}/0123456789abcdef0123456789abcdef", UI[2]),
        "airflow-k8s:azure.ui.certificateUri",
        "drop the version",
    ),
    (
        (UI[0], "azure.ui.certificateUri=https://team-kv.vault.azure.net/secrets/airflow-ui", UI[2]),
        "airflow-k8s:azure.ui.certificateUri",
        "not a Key Vault certificate URI",
    ),
    (
        (UI[0], "azure.ui.certificateUri=http://team-kv.vault.azure.net/certificates/airflow-ui", UI[2]),
        "airflow-k8s:azure.ui.certificateUri",
        "not a Key Vault certificate URI",
    ),
    (
        (
            *UI[:2],
            f"azure.ui.keyVaultId={SUB}/resourceGroups/team-sec/providers/Microsoft.KeyVault/managedHSMs/team-kv",
        ),
        "airflow-k8s:azure.ui.keyVaultId",
        "not a Key Vault id",
    ),
    ((*UI, "azure.ui.scheme=public"), "airflow-k8s:azure.ui.scheme", "'internal', 'external'"),
    ((f"azure.ui.certificateUri={CERT}",), "airflow-k8s:azure.ui", "only with ui.host"),
    ((*UI, "ui.ingressClassName=nginx"), "airflow-k8s:ui.ingressClassName", "local stack only"),
]


@pytest.mark.parametrize("overrides,key,fragment", BAD)
def test_bad_azure_ui_input_names_the_key_and_registers_nothing(
    overrides: tuple[str, ...], key: str, fragment: str
) -> None:
    config, keys = load_stack_config("azure-dev", list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []
