"""The UI over HTTPS on Azure: a Gateway of AKS's application routing add-on, TLS from Key Vault.

Decision (issue 14, item 1; facts as of 2026-12): the issue names the add-on's managed NGINX, but
Microsoft supported that NGINX with critical security patches only through November 2026 (the
Ingress NGINX project's maintenance ended in March 2026): it is out of support today. Its successor is
the same add-on's Gateway API implementation (GatewayClass `approuting-istio`, a managed Istio that
serves Gateway API only), generally available since the AKS 20260428 release, with Key Vault
certificates wired by the add-on's operator since the 20260529 release: a Gateway listener with the TLS
options `kubernetes.azure.com/tls-cert-keyvault-uri` (a versionless certificate URI, so a renewed
certificate is picked up) and `kubernetes.azure.com/tls-cert-service-account` (a service account that
workload identity binds to a user-assigned identity with Key Vault Secrets User) makes the operator
sync the certificate through the Secrets Store CSI driver into a kubernetes.io/tls Secret and point the
listener at it. Application Gateway for Containers was the other managed option: its AKS add-on is
still a preview, and it needs a delegated subnet and its own identity and roles; it was not chosen.
Sources: learn.microsoft.com/azure/aks/app-routing-gateway-api, .../app-routing-gateway-api-dns-tls,
.../app-routing-nginx-to-gateway-api-migration; blog.aks.azure.com "App Routing Gateway API is
generally available" (2026-06-08).

What the stack makes: the identity, its federated credential for the service account, the role on the
certificate's secret (nothing wider), the service account, the Gateway (HTTPS only, internal unless
`azure.ui.scheme: external`) and the HTTPRoute to the api-server. On a cluster it creates it also
turns on the add-on (with no default NGINX controller, so no NGINX load balancer exists) and the Key
Vault secrets provider with rotation. What it cannot make: the pinned pulumi-azure-native 3.29.0
writes ManagedCluster at API 2025-09-01, which has no field for the add-on's Gateway API mode
(`ingressProfile.webAppRouting.gatewayAPIImplementations`) nor the managed Gateway API CRDs
(`ingressProfile.gatewayAPI`): until the pin moves, `az aks update --enable-app-routing-istio
--enable-gateway-api` turns them on once per cluster (README: "UI over HTTPS on Azure").

The Gateway's load balancer (a LoadBalancer Service the add-on makes, and its frontend IP) lives
outside Pulumi's state: the Gateway is deleted while the add-on still runs, before the cluster and
the network, which the Gateway's dependency on the cluster's provider orders.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator

from components.azure.aks import assignment_name, role_definition
from components.azure.storage import WORKLOAD_IDENTITY_CLIENT_ID, WORKLOAD_IDENTITY_USE
from components.k8s import labels
from components.namespace import pod_security_labels
from components.settings import SettingsModel, bad

# The add-on's Gateway API implementation (GatewayClass and controller istio.aks.azure.com/gateway-controller).
GATEWAY_CLASS = "approuting-istio"
GATEWAY_API = "gateway.networking.k8s.io/v1"
# The operator's listener TLS options (app-routing-gateway-api-dns-tls).
TLS_CERT_URI = "kubernetes.azure.com/tls-cert-keyvault-uri"
TLS_CERT_SERVICE_ACCOUNT = "kubernetes.azure.com/tls-cert-service-account"
# pulumi-kubernetes' generic await (v4.18+): wait for a condition or a JSONPath of a custom resource.
WAIT_FOR = "pulumi.com/waitFor"
# Built-in role: read secret contents. A certificate's private key is read through its secret, which is
# what the operator's sync reads; Microsoft's guide for the Gateway API implementation grants this role
# (app-routing-gateway-api-dns-tls), and the stack scopes it to that one secret, not the vault.
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# The cloud provider's annotation for a private frontend (cloud-provider-azure); the Gateway's
# `spec.infrastructure.annotations` are copied onto the Service the add-on makes for it.
INTERNAL_LB = "service.beta.kubernetes.io/azure-load-balancer-internal"
# Key Vault DNS suffixes per cloud (public, China, US Government).
_VAULT_HOST = r"(?P<vault>[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9])\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)"
_CERT_URI = re.compile(
    rf"^https://{_VAULT_HOST}/certificates/(?P<name>[a-zA-Z0-9-]{{1,127}})(?P<version>/[0-9a-f]{{32}})?/?$"
)
_VAULT_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{0,89}[-\w_()]"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<vault>[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9])$",
    re.IGNORECASE,
)


class AzureUi(SettingsModel):
    """`azure.ui`: the Gateway that serves `ui.host`, and its Key Vault certificate."""

    certificate_uri: str | None = Field(
        None,
        description="The Key Vault certificate for ui.host, versionless: https://<vault>.vault.azure.net/"
        "certificates/<name> (a renewed version is picked up); required with ui.host.",
    )
    key_vault_id: str | None = Field(
        None,
        description="ARM id of the certificate's vault (Azure RBAC permission model): the Gateway's identity gets "
        "Key Vault Secrets User on the certificate's secret in it; required with ui.host.",
    )
    scheme: Literal["internal", "external"] = Field(
        "internal",
        description="internal: the Gateway's address is private, in the cluster's VNet (reached over VPN, peering, "
        "ExpressRoute); the UI runs DAGs and shows connections, so the internet sees it only when chosen. "
        "external: a public IP.",
    )

    @field_validator("certificate_uri")
    @classmethod
    def _versionless(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _CERT_URI.fullmatch(v)
        if m is None:
            raise ValueError(
                f"{v!r} is not a Key Vault certificate URI: https://<vault>.vault.azure.net/certificates/<name> "
                "(`az keyvault certificate show --query id`, without the version)"
            )
        if m["version"]:
            raise ValueError(
                "names one version of the certificate, which would be served after its renewal: drop the version "
                f"(https://{m['vault']}.{v.split('.', 1)[1].split('/', 1)[0]}/certificates/{m['name']})"
            )
        return v.rstrip("/")

    @field_validator("key_vault_id")
    @classmethod
    def _vault(cls, v: str | None) -> str | None:
        if v is not None and not _VAULT_ID.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a Key Vault id: /subscriptions/<id>/resourceGroups/<group>/providers/"
                "Microsoft.KeyVault/vaults/<name> (`az keyvault show -n NAME --query id`)"
            )
        return v

    def secret_scope(self) -> str:
        """The certificate's secret, the least scope its reader needs."""
        assert self.certificate_uri is not None and self.key_vault_id is not None
        return f"{self.key_vault_id}/secrets/{self.certificate_uri.rsplit('/', 1)[1]}"


def check_azure_ui(host: str | None, ui: AzureUi) -> None:
    """The rules between `ui.host` and `azure.ui` (called by the stack config: keys named from the top)."""
    if not host:
        if ui.model_fields_set:
            raise bad("azure.ui", "applies only with ui.host (the name the UI is served at)")
        return
    if not ui.certificate_uri:
        raise bad(
            "azure.ui.certificateUri",
            f"the UI is served over HTTPS only: give the versionless URI of a Key Vault certificate for {host}",
        )
    if not ui.key_vault_id:
        raise bad("azure.ui.keyVaultId", "give the ARM id of the certificate's vault (its reader is granted on it)")
    uri_vault = _CERT_URI.fullmatch(ui.certificate_uri)
    id_vault = _VAULT_ID.fullmatch(ui.key_vault_id)
    assert uri_vault is not None and id_vault is not None  # the field validators
    if uri_vault["vault"].lower() != id_vault["vault"].lower():
        raise bad(
            "azure.ui.keyVaultId",
            f"names vault {id_vault['vault']!r}, the certificate URI vault {uri_vault['vault']!r}: the same vault",
        )


class GatewayObject(pulumi.CustomResource):
    """A Gateway API object (a custom resource) whose `status` the stack reads, which
    `apiextensions.CustomResource` does not expose."""

    status: pulumi.Output[Any]

    def __init__(
        self, name: str, *, kind: str, metadata: dict[str, Any], spec: dict[str, Any], opts: pulumi.ResourceOptions
    ) -> None:
        super().__init__(
            f"kubernetes:{GATEWAY_API}:{kind}",
            name,
            # `status` is an output only (None is not sent): listed so the resource exposes it.
            {"apiVersion": GATEWAY_API, "kind": kind, "metadata": metadata, "spec": spec, "status": None},
            opts,
        )


class AppRoutingGateway(pulumi.ComponentResource):
    """The UI's Gateway and HTTPRoute on the add-on's `approuting-istio` class, with the identity that reads
    its Key Vault certificate.

    Attributes:
        gateway: the Gateway (deleted while the add-on runs, before the cluster: the add-on then deletes its
            load balancer frontend, which Pulumi's state does not hold).
        address: the Gateway's address from its status (the IP ui.host resolves to).
        url: https://<host>/
    """

    def __init__(
        self,
        name: str,
        *,
        settings: AzureUi,
        host: str,
        namespace: pulumi.Input[str],
        instance: str,
        service_name: str,
        service_port: int,
        resource_group: pulumi.Input[str],
        location: str,
        oidc_issuer_url: pulumi.Input[str],
        kubernetes: k8s.Provider,
        add_on_ready: pulumi.Input[bool],
        depends_on: list[pulumi.Resource],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("airflow-k8s:azure:AppRoutingGateway", name, None, opts)
        azure = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=kubernetes)
        assert settings.certificate_uri is not None  # check_azure_ui guarantees both with ui.host
        # The add-on runs the Gateway's proxy (a Deployment it owns, `<gateway>-approuting-istio`) and the
        # operator's certificate-sync pod in the Gateway's namespace. Not Airflow's: that one enforces
        # Pod Security `restricted` and denies all ingress but the api-server's port, and Istio's gateway
        # template sets no seccomp profile (istio/istio kube-gateway template) and binds 443 through the
        # `net.ipv4.ip_unprivileged_port_start` sysctl, which `baseline` allows. The route stays beside
        # the api-server's Service (no ReferenceGrant), admitted by the listener from Airflow's namespace.
        gateway_namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                # After the check that an existing cluster runs the add-on (AksCluster.app_routing_ready):
                # nothing of the UI is made on a cluster that cannot serve it.
                "name": pulumi.Output.all(namespace, add_on_ready).apply(lambda a: f"{a[0]}-ui"),
                "labels": {**labels(instance, "ui-gateway"), **pod_security_labels("baseline")},
            },
            opts=k8s_opts,
        )
        gateway_ns = gateway_namespace.metadata["name"]
        account = f"{instance}-ui-tls"
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-tls-identity", resource_group_name=resource_group, location=location, tags=tags, opts=azure
        )
        federated = managedidentity.FederatedIdentityCredential(
            f"{name}-tls-federated",
            resource_group_name=resource_group,
            resource_name_=identity.name,
            issuer=oidc_issuer_url,
            subject=pulumi.Output.concat("system:serviceaccount:", gateway_ns, ":", account),
            audiences=["api://AzureADTokenExchange"],
            opts=azure,
        )
        client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        scope = settings.secret_scope()
        reader = authorization.RoleAssignment(
            f"{name}-tls-reader",
            role_assignment_name=identity.principal_id.apply(
                lambda p: assignment_name(scope.lower(), p, KEY_VAULT_SECRETS_USER)
            ),
            principal_id=identity.principal_id,
            # A new identity may not have replicated through Entra ID yet: with its type, ARM does not look it up.
            principal_type="ServicePrincipal",
            role_definition_id=role_definition(client.subscription_id, KEY_VAULT_SECRETS_USER),
            scope=scope,
            opts=azure,
        )
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-tls",
            metadata={
                "name": account,
                "namespace": gateway_ns,
                "labels": {**labels(instance, "ui-tls"), WORKLOAD_IDENTITY_USE: "true"},
                "annotations": {WORKLOAD_IDENTITY_CLIENT_ID: identity.client_id},
            },
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        infrastructure: dict[str, Any] = {"labels": labels(instance, "ui-gateway")}
        if settings.scheme == "internal":
            infrastructure["annotations"] = {INTERNAL_LB: "true"}
        gateway_name = f"{instance}-ui"
        self.gateway = GatewayObject(
            f"{name}-gateway",
            kind="Gateway",
            metadata={
                "name": gateway_name,
                "namespace": gateway_ns,
                "labels": labels(instance, "ui-gateway"),
                # pulumi-kubernetes has no await logic for a custom resource; this makes `up` wait until the
                # Gateway API's Programmed condition is True (its proxy runs, its load balancer has an
                # address), so `uiLoadBalancer` is there on create and a Gateway that never comes up fails
                # the update instead of passing silently.
                "annotations": {WAIT_FOR: "condition=Programmed"},
            },
            spec={
                "gatewayClassName": GATEWAY_CLASS,
                "infrastructure": infrastructure,
                # HTTPS only: no port 80, not even for a redirect, so nothing (a session cookie, a password
                # form) ever crosses a plaintext listener.
                "listeners": [
                    {
                        "name": "https",
                        "hostname": host,
                        "port": 443,
                        "protocol": "HTTPS",
                        "tls": {
                            "mode": "Terminate",
                            "options": {TLS_CERT_URI: settings.certificate_uri, TLS_CERT_SERVICE_ACCOUNT: account},
                        },
                        # Routes of Airflow's namespace only.
                        "allowedRoutes": {
                            "namespaces": {
                                "from": "Selector",
                                "selector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                            }
                        },
                    }
                ],
            },
            # The certificate sync needs the identity's credential and role when the Gateway appears.
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[*depends_on, service_account, federated, reader])
            ),
        )
        self.route = GatewayObject(
            f"{name}-route",
            kind="HTTPRoute",
            metadata={"name": gateway_name, "namespace": namespace, "labels": labels(instance, "api-server")},
            spec={
                "parentRefs": [{"name": gateway_name, "namespace": gateway_ns, "sectionName": "https"}],
                "hostnames": [host],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": service_name, "port": service_port}],
                    }
                ],
            },
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.gateway, *depends_on])),
        )
        self.address = self.gateway.status.apply(_address)
        self.url = f"https://{host}/"
        self.register_outputs({"url": self.url})


def _address(status: Any) -> str | None:
    addresses = (status or {}).get("addresses") or []
    return addresses[0].get("value") if addresses else None
