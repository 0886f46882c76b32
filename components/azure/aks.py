"""AKS with the OIDC issuer and workload identity on (or an existing cluster by name), and the
explicit Kubernetes provider built from its credentials."""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.containerservice as containerservice
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field, field_validator, model_validator

from components.settings import Ipv4Cidr, SettingsModel, bad

# Built-in role definition ids (the same GUID in every subscription).
# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
# The AKS AAD server application every managed-Entra-ID cluster trusts (the `--server-id` AKS writes).
AKS_AAD_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
KUBELOGIN_HINT = (
    "kubelogin (https://azure.github.io/kubelogin/) is required to reach this Entra ID cluster: install it "
    "(`az aks install-cli`, `brew install Azure/kubelogin/kubelogin`, or a release binary) and sign in with "
    "`az login`; see the README's Azure quick start."
)
VERSIONS = ("1.34", "1.35", "1.36", "1.37")
# An ARM id of a container registry (ARM's registry name rule: 5-50 letters and digits).
_ACR_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{0,89}[-\w_()]"
    r"/providers/Microsoft\.ContainerRegistry/registries/[a-zA-Z0-9]{5,50}$",
    re.IGNORECASE,
)
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class AzureCluster(SettingsModel):
    """`azure.cluster`: the AKS cluster, created or an existing one by name and resource group."""

    existing_name: str | None = Field(
        None,
        # ARM's rule for managedClusters names.
        pattern=r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$",
        description="Use this existing AKS cluster (OIDC issuer and workload "
        "identity enabled) instead of creating one.",
    )
    existing_resource_group: str | None = Field(
        None,
        # ARM's resource group rule: 1-90 of letters, digits, '-', '_', '.', '(', ')', not ending in '.'.
        pattern=r"^[-\w._()]{0,89}[-\w_()]$",
        description="Resource group of the existing cluster.",
    )
    # AKS calendar (supported-kubernetes-versions.md): 1.34 ends Nov 2026, 1.35 Mar 2027, 1.36 Jun 2027,
    # 1.37 Oct 2027. AKS upgrades one minor at a time, so 1.34 stays accepted as the step of a 1.33 cluster.
    version: str = Field(
        "1.35",
        description="Kubernetes version of a created cluster: 1.35 to 1.37 (1.34 only as the step of an "
        "existing 1.33 cluster's upgrade: AKS upgrades one minor version at a time).",
    )
    service_cidr: Ipv4Cidr = Field("172.21.0.0/16", description="Service CIDR of a created cluster.")
    node_vm_size: str = Field("Standard_D4ds_v5", pattern=r"^Standard_[A-Za-z0-9_]+$", description="Node VM size.")
    node_min: int = Field(3, ge=1, le=100, description="Minimum nodes (autoscaler).")
    node_max: int = Field(6, ge=1, le=100, description="Maximum nodes (autoscaler).")
    zones: list[Literal["1", "2", "3"]] = Field(
        default_factory=lambda: ["1", "2", "3"], description="Availability zones of the node pool."
    )
    tier: Literal["Free", "Standard", "Premium"] = Field(
        "Standard",
        description="AKS pricing tier of a created cluster: Standard carries the API server uptime SLA; Free "
        "has none (test stacks).",
    )
    public_endpoint: bool = Field(
        True,
        description="A public API server (Entra ID sign-in still required), reachable from authorizedIpRanges "
        "only. False: a private cluster, so Pulumi (and CI's preview) must run from inside the VNet; only in an "
        "existing VNet (network.existingVnetId), since the `up` that creates a VNet cannot reach into it. Fixed "
        "when the cluster is created.",
    )
    authorized_ip_ranges: list[Ipv4Cidr] = Field(
        default_factory=list,
        description="Who may reach a public API server: the IPv4 CIDRs of your admins and CI runners; required "
        "when publicEndpoint is true (0.0.0.0/0 only if listed explicitly, and never with azure.protect).",
    )
    admin_principal_ids: list[str] = Field(
        default_factory=list,
        description="Entra ID object ids (users, groups, service principals such as CI's) granted Azure "
        "Kubernetes Service RBAC Cluster Admin on a created cluster, besides the principal that creates it.",
    )

    acr_ids: list[str] = Field(
        default_factory=list,
        description="Azure Container Registries the nodes pull images from (a custom Airflow image): ARM ids "
        "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ContainerRegistry/registries/<name>); "
        "the cluster's kubelet identity gets AcrPull on each registry, created or existing cluster alike.",
    )

    @field_validator("acr_ids")
    @classmethod
    def _registries(cls, v: list[str]) -> list[str]:
        wrong = [r for r in v if not _ACR_ID.fullmatch(r)]
        if wrong:
            raise ValueError(
                f"{wrong} are not container registry ids: /subscriptions/<subscription id>/resourceGroups/<group>"
                "/providers/Microsoft.ContainerRegistry/registries/<name> (`az acr show -n NAME --query id`)"
            )
        if len({r.rsplit("/", 1)[1].lower() for r in v}) != len(v):
            raise ValueError("lists a registry twice (registry names are unique across Azure)")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v not in VERSIONS:
            raise ValueError(f"{v!r} is not an AKS version this stack creates: one of {', '.join(VERSIONS)}")
        return v

    @field_validator("admin_principal_ids")
    @classmethod
    def _principals(cls, v: list[str]) -> list[str]:
        wrong = [p for p in v if not _OBJECT_ID.fullmatch(p)]
        if wrong:
            raise ValueError(f"{wrong} are not Entra ID object ids (GUIDs such as `az ad user show` prints)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> AzureCluster:
        if bool(self.existing_name) != bool(self.existing_resource_group):
            raise bad("existingResourceGroup", "set both existingName and existingResourceGroup, or neither")
        if self.node_min > self.node_max:
            raise bad("nodeMin", f"must not exceed nodeMax ({self.node_min} > {self.node_max})")
        return self


def assignment_name(*parts: str) -> str:
    """A role assignment name from what the assignment is (Bicep's `guid(scope, principal, role)`): the
    same inputs give the same GUID, so a re-run or an import finds the assignment instead of adding one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def role_definition(subscription: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription, "/providers/Microsoft.Authorization/roleDefinitions/", role
    )


def kubelogin_kubeconfig(raw: str) -> str:
    """The AKS user kubeconfig (exec format) with every kubelogin user signing in non-interactively.

    AKS writes `kubelogin get-token --login devicecode ...`, which prompts; `azurecli` takes the token of
    the `az login` session (kubelogin's `convert-kubeconfig -l azurecli` writes the same arguments). The
    `AAD_LOGIN_METHOD` environment variable overrides `--login` (kubelogin reads it after the flags), so CI
    may use `workloadidentity` without a config change. `interactiveMode: Never` fails instead of waiting
    for input; client-go prints `installHint` when kubelogin is not on the PATH. A cluster without Entra
    ID (an existing one) keeps what AKS returned.
    """
    config: dict[str, Any] = yaml.safe_load(raw)
    for user in config.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec")
        if not exec_ or "kubelogin" not in str(exec_.get("command", "")):
            continue
        args = list(exec_.get("args") or [])
        server = args[args.index("--server-id") + 1] if "--server-id" in args[:-1] else AKS_AAD_SERVER_ID
        # The cloud AKS named (AzureChinaCloud, AzureUSGovernmentCloud, ...), as convert-kubeconfig keeps it.
        cloud = ["--environment", args[args.index("--environment") + 1]] if "--environment" in args[:-1] else []
        user["user"] = {
            "exec": {
                "apiVersion": exec_.get("apiVersion", "client.authentication.k8s.io/v1beta1"),
                "command": "kubelogin",
                "args": ["get-token", "--login", "azurecli", "--server-id", server, *cloud],
                "interactiveMode": "Never",
                "installHint": KUBELOGIN_HINT,
                "provideClusterInfo": False,
            }
        }
    return yaml.safe_dump(config, sort_keys=False)


class AksCluster(pulumi.ComponentResource):
    """The cluster Airflow runs on, and the Kubernetes provider for it.

    A created cluster has one autoscaling system node pool across the configured zones, Azure CNI
    overlay with Cilium (which enforces the NetworkPolicies), the OIDC issuer, workload identity, the
    Azure Files CSI driver and patch auto-upgrades; managed Entra ID with Azure RBAC and no local
    accounts; a user-assigned control-plane identity that is Network Contributor on the AKS subnet
    before the cluster exists. An existing cluster is only looked up.

    Attributes:
        name: the cluster name.
        oidc_issuer_url: the cluster's OIDC issuer ("" if it has none); BlobTaskLogs federates with it.
        provider: the Kubernetes provider, signing in through kubelogin with the `az login` session; on a
            created cluster it waits for the cluster and for the deployer's RBAC role on it.
        kubeconfig: the same kubeconfig as a secret Output for the stack output, for a created cluster
            only; None for an existing one. It holds no credential: kubelogin fetches a token each time.
    """

    name: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    app_routing_ready: pulumi.Output[bool]
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        settings: AzureCluster,
        cluster_name: pulumi.Input[str],
        resource_group: pulumi.Input[str],
        location: str,
        subnet_id: pulumi.Input[str] | None,
        protect: bool,
        tags: dict[str, str],
        depends_on: Sequence[pulumi.Resource],
        app_routing: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the cluster, or look up `settings.existing_name`, and build its provider.

        Args:
            name: Pulumi name prefix of the children (`<name>-cluster`, `<name>-identity`, `<name>-k8s`, ...).
            settings: version, tier, API server access, admins, service CIDR, node size, count and zones
                (config `azure.cluster`); with `existing_name` set, that cluster is looked up in
                `existing_resource_group` and nothing is created.
            cluster_name: the AKS name and DNS prefix of a created cluster; the stack passes
                `airflow-<stack>-<suffix>`. A cluster already in the state keeps the name it has.
            resource_group: resource group of a created cluster (the stack's own group); unused for an
                existing one.
            location: Azure region of a created cluster.
            subnet_id: the subnet the nodes join (the VNet's AKS subnet); None lets AKS make its own network.
            protect: Pulumi `protect` on a created cluster (production): a replacing change stops at preview.
            tags: tags on the created cluster and its identity.
            depends_on: what a created cluster must be created after and deleted before; the stack
                passes the VNet's subnets.
            app_routing: turn on the application routing add-on (without its default NGINX controller)
                and the Key Vault secrets provider with rotation on a created cluster: what the UI's
                Gateway needs (components/azure/app_routing.py). Off: the cluster's inputs are as before.
            opts: options of the component; pass the Azure provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:azure:AksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        grants: list[pulumi.Resource] = []
        if settings.existing_name:
            rg: pulumi.Input[str] = settings.existing_resource_group or ""
            found = containerservice.get_managed_cluster_output(
                resource_group_name=rg,
                resource_name=settings.existing_name,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            self.app_routing_ready = pulumi.Output.from_input(False)
            self.name = pulumi.Output.from_input(settings.existing_name)
            self.oidc_issuer_url = found.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
            self.kubeconfig = None
            created: list[pulumi.Resource] = []
            kubelet_profile: pulumi.Output[Any] = found.identity_profile
            if app_routing:
                self.app_routing_ready = pulumi.Output.all(found.ingress_profile, found.addon_profiles).apply(
                    lambda p: _require_app_routing(settings.existing_name or "", p[0], p[1])
                )
        else:
            rg = resource_group
            svc = ipaddress.ip_network(settings.service_cidr)
            client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
            # A system-assigned identity exists only with the cluster, so nothing can grant it a role on
            # the subnet beforehand; ARM and Pulumi never do (only the CLI assigns it with the caller's
            # rights: Azure/karpenter-provider-azure#332), and a LoadBalancer Service then fails with
            # LinkedAuthorizationFailed (Azure/AKS#357). A user-assigned identity gets the role first.
            identity = managedidentity.UserAssignedIdentity(
                f"{name}-identity",
                resource_name_=pulumi.Output.concat(cluster_name, "-control-plane"),
                resource_group_name=resource_group,
                location=location,
                tags=tags,
                opts=child,
            )
            before: list[pulumi.Resource] = list(depends_on)
            if subnet_id is not None:
                before.append(
                    authorization.RoleAssignment(
                        f"{name}-network-contributor",
                        role_assignment_name=pulumi.Output.all(subnet_id, identity.principal_id).apply(
                            lambda a: assignment_name(a[0], a[1], NETWORK_CONTRIBUTOR)
                        ),
                        principal_id=identity.principal_id,
                        # A new identity's principal may not have replicated through Entra ID yet; with
                        # its type given, ARM does not look it up (PrincipalNotFound otherwise).
                        principal_type="ServicePrincipal",
                        role_definition_id=role_definition(client.subscription_id, NETWORK_CONTRIBUTOR),
                        scope=subnet_id,
                        opts=child,
                    )
                )
            access: containerservice.ManagedClusterAPIServerAccessProfileArgsDict = (
                {"authorized_ip_ranges": list(settings.authorized_ip_ranges)}
                if settings.public_endpoint
                else {"enable_private_cluster": True}
            )
            cluster = containerservice.ManagedCluster(
                f"{name}-cluster",
                resource_name_=cluster_name,
                resource_group_name=resource_group,
                location=location,
                dns_prefix=cluster_name,
                kubernetes_version=settings.version,
                sku={"name": containerservice.ManagedClusterSKUName.BASE, "tier": settings.tier},
                # An existing system-assigned cluster switches in place (ARM supports the update; the
                # control plane moves to the new identity as its tokens expire).
                # https://learn.microsoft.com/azure/aks/use-managed-identity
                identity={
                    "type": containerservice.ResourceIdentityType.USER_ASSIGNED,
                    "user_assigned_identities": [identity.id],
                },
                enable_rbac=True,
                # Sign-in through Entra ID, authorization by Azure RBAC, no certificate-based accounts:
                # nothing in the credentials can be kept or leaked.
                aad_profile={"managed": True, "enable_azure_rbac": True},
                disable_local_accounts=True,
                api_server_access_profile=access,
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
                **(_app_routing() if app_routing else {}),
                tags=tags,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=before,
                    protect=protect,
                    ignore_changes=[
                        # A stack made before the name carried the stack's suffix keeps `airflow-<stack>`:
                        # an ignored input takes its value from the state, so it cannot force a replace
                        # (https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/).
                        "resourceName",
                        "dnsPrefix",
                        # The cluster autoscaler owns the node count between min and max.
                        "agentPoolProfiles[0].count",
                    ],
                ),
            )
            self.name = cluster.name
            self.oidc_issuer_url = cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
            created = [cluster]
            self.app_routing_ready = pulumi.Output.from_input(app_routing)
            kubelet_profile = cluster.identity_profile
            # With Azure RBAC, whoever deploys needs a data-plane role before the provider can create
            # anything. The principal that creates the stack keeps the grant (a later deployer does not
            # take it over: list further principals in adminPrincipalIds). Its type is not known (user or
            # service principal), so ARM looks it up: it exists already, no replication delay.
            grants.append(
                authorization.RoleAssignment(
                    f"{name}-deployer-admin",
                    role_assignment_name=pulumi.Output.all(cluster.id, client.object_id).apply(
                        lambda a: assignment_name(a[0], a[1], AKS_RBAC_CLUSTER_ADMIN)
                    ),
                    principal_id=client.object_id,
                    role_definition_id=role_definition(client.subscription_id, AKS_RBAC_CLUSTER_ADMIN),
                    scope=cluster.id,
                    opts=pulumi.ResourceOptions(parent=self, ignore_changes=["principalId", "roleAssignmentName"]),
                )
            )
            for principal in settings.admin_principal_ids:
                grants.append(
                    authorization.RoleAssignment(
                        f"{name}-admin-{principal}",
                        role_assignment_name=cluster.id.apply(
                            lambda cid, p=principal: assignment_name(cid, p, AKS_RBAC_CLUSTER_ADMIN)
                        ),
                        principal_id=principal,
                        role_definition_id=role_definition(client.subscription_id, AKS_RBAC_CLUSTER_ADMIN),
                        scope=cluster.id,
                        opts=child,
                    )
                )
        # The nodes pull from the configured registries as the kubelet identity (what `az aks update
        # --attach-acr` grants): AcrPull on each registry, nothing wider. AKS made that identity with the
        # cluster, created or existing; a cluster with a service principal instead has none.
        if settings.acr_ids:
            self._grant_acr_pull(name, settings.acr_ids, kubelet_profile.apply(_kubelet_object_id))
        # `format: exec` gives a kubeconfig without credentials for an Entra ID cluster (`azure`, the other
        # format, is the auth-provider client-go removed in 1.26); kubelogin_kubeconfig makes it non-interactive.
        creds = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=rg,
            resource_name=self.name,
            format="exec",
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        config = pulumi.Output.secret(creds.kubeconfigs[0].value.apply(lambda v: kubelogin_kubeconfig(_decode(v))))
        if created:
            self.kubeconfig = config
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=config, opts=pulumi.ResourceOptions(parent=self, depends_on=[*created, *grants])
        )
        self.register_outputs({"name": self.name})

    def _grant_acr_pull(self, name: str, registries: Sequence[str], kubelet: pulumi.Output[str]) -> None:
        subscription = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        for registry in registries:
            authorization.RoleAssignment(
                f"{name}-acr-pull-{registry.rsplit('/', 1)[1].lower()}",
                # The same registry, identity and role give the same name: a second `up` finds it.
                role_assignment_name=kubelet.apply(lambda k, r=registry: assignment_name(r.lower(), k, ACR_PULL)),
                principal_id=kubelet,
                principal_type="ServicePrincipal",
                role_definition_id=role_definition(subscription.subscription_id, ACR_PULL),
                scope=registry,
                opts=pulumi.ResourceOptions(parent=self),
            )


def _app_routing() -> dict[str, Any]:
    """The add-on's operator, which reconciles the Gateway's Key Vault certificate (no NGINX controller,
    hence no NGINX load balancer: `None`), and the Secrets Store CSI driver's Key Vault provider it syncs
    the certificate with, polling for a renewed version (every two minutes by default)."""
    return {
        "ingress_profile": {"web_app_routing": {"enabled": True, "nginx": {"default_ingress_controller_type": "None"}}},
        "addon_profiles": {
            "azureKeyvaultSecretsProvider": {"enabled": True, "config": {"enableSecretRotation": "true"}}
        },
    }


def _require_app_routing(cluster: str, ingress: Any, addons: Any) -> bool:
    """An existing cluster serves the UI's Gateway only if it runs what a created one gets: the
    application routing add-on (its operator syncs the Key Vault certificate) and the Key Vault secrets
    provider it syncs with. The Gateway API mode itself is not in the API version read here (README)."""
    routing = _field(ingress, "web_app_routing", "webAppRouting")
    if not _field(routing, "enabled", "enabled"):
        # RunError: Pulumi ends the program with the message alone (no traceback), as for bad config.
        raise pulumi.RunError(
            f"airflow-k8s:ui.host: the existing cluster {cluster} has no application routing add-on; run `az aks update "
            "--enable-app-routing --enable-app-routing-istio --enable-gateway-api` on it (README: UI over HTTPS on "
            "Azure), or unset ui.host"
        )
    # ARM spells the add-on's key as it was written (the CLI writes azureKeyvaultSecretsProvider).
    provider = next((v for k, v in (addons or {}).items() if k.lower() == "azurekeyvaultsecretsprovider"), None)
    if not _field(provider, "enabled", "enabled"):
        raise pulumi.RunError(
            f"airflow-k8s:ui.host: the existing cluster {cluster} has no Key Vault secrets provider; run `az aks enable-addons "
            "--addons azure-keyvault-secrets-provider --enable-secret-rotation` on it, or unset ui.host"
        )
    return True


def _field(value: Any, attribute: str, key: str) -> Any:
    """A field of an invoke result: a typed object, or a plain dict (snake_case keys, as the SDK gives a
    nested result it does not type)."""
    if isinstance(value, dict):
        return value.get(attribute, value.get(key))  # pyright: ignore[reportUnknownMemberType]
    return getattr(value, attribute, None)


def _kubelet_object_id(profile: Any) -> str:
    identity = (profile or {}).get("kubeletidentity")
    if identity is None or not identity.object_id:
        raise pulumi.RunError(
            "airflow-k8s:azure.cluster.acrIds: the cluster has no kubelet managed identity to grant AcrPull to (a cluster with a "
            "service principal: `az aks update --enable-managed-identity`)"
        )
    return identity.object_id


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()
