"""Single sign-on for the UI through FAB's OAuth support (`airflow.auth.sso`).

The typed settings and the `webserver_config.py` they render into. FabAuthManager reads that file
from `[fab] config_file` (providers-fab 3.10.2, www/app.py: `flask_app.config.from_pyfile`), in the
api-server only: it is the one component that serves the login. The client secret never enters the
file: it arrives in the api-server's env from a Secret (roster.SSO_CLIENT_SECRET) and the file reads
it from there.

What FAB does per provider (providers-fab 3.10.2, auth_manager/security_manager/override.py,
`get_oauth_user_info`), and what the rendered security manager adds:
- azure (Entra ID): FAB validates the id_token against the tenant's keys and issuer (it needs the
  tenant in the endpoints), username = the object id, email = `email` or `upn`, groups = the claim
  `AUTH_OAUTH_ROLE_KEYS["azure"]` names (`roles`: app roles, by default).
- google: username = `google_<id>`, email from the userinfo endpoint; Google sends no groups, and
  the rendered manager refuses an address Google has not verified.
- okta: username = `okta_<sub>`, email and `groups` from the userinfo endpoint.
- github: FAB keeps only the login; the rendered manager adds the primary verified e-mail address
  (`user/emails`) and team memberships as `<org>/<team-slug>` (`user/teams`).
- oidc (any OpenID Connect issuer): FAB takes `preferred_username` as the user name, which many
  issuers let users choose: someone could name themselves like the local admin and log in as it.
  The rendered manager uses `oidc_<sub>` (stable and unique per issuer) instead, and reads groups
  from `groupsClaim`.
Then it enforces `allowedDomains` and `allowedGroups` at every login (FAB's own allow-list checks
only an e-mail regex and nothing about groups).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urljoin

from pydantic import AfterValidator, Field, field_validator, model_validator

from components.settings import HostName, PrintableSecret, PrintableStr, SettingsModel, bad

Provider = Literal["azure", "google", "github", "okta", "oidc"]
# FAB's built-in roles (providers-fab's ROLE_CONFIGS plus Public). A mapping to a role that does not
# exist is dropped by FAB with only a log line, so names are checked here; the stack creates no
# custom roles.
FAB_ROLES = ("Admin", "Op", "User", "Viewer", "Public")
FabRole = Literal["Admin", "Op", "User", "Viewer", "Public"]
# The env variable the client secret reaches the api-server in (never the rendered file).
CLIENT_SECRET_VARIABLE = "AIRFLOW_K8S_SSO_CLIENT_SECRET"
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _https_url(value: str) -> str:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?", value):
        raise ValueError(f"{value!r} must be an https:// URL (no query, fragment or spaces)")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]


def _domain(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+", value):
        raise ValueError(f"{value!r} is not an e-mail domain in lower case such as 'example.com' (no '@')")
    return value


class Sso(SettingsModel):
    provider: Provider = Field(
        ...,
        description="The identity provider: 'azure' (Entra ID), 'google', 'github', 'okta' or 'oidc' (any OpenID "
        "Connect issuer).",
    )
    client_id: PrintableStr = Field(..., min_length=1, max_length=256, description="The OAuth client (app) id.")
    client_secret: PrintableSecret = Field(
        ...,
        description="The OAuth client secret: a Pulumi secret only (`pulumi config set --secret --path "
        "airflow.auth.sso.clientSecret`); a plain value is refused. It reaches the api-server alone, from a Secret.",
    )
    tenant_id: str | None = Field(None, pattern=_GUID, description="azure: the Entra ID tenant (directory) id, a GUID.")
    domain: HostName | None = Field(None, description="okta: the Okta org's domain, e.g. example.okta.com.")
    issuer: HttpsUrl | None = Field(
        None,
        description="oidc: the issuer URL; its discovery document is <issuer>/.well-known/openid-configuration.",
    )
    metadata_url: HttpsUrl | None = Field(
        None, description="oidc: the discovery document's URL, when it is not under the issuer."
    )
    allowed_domains: list[Annotated[str, AfterValidator(_domain)]] = Field(
        default_factory=list,
        description="Only users whose (verified) e-mail address is in one of these domains may log in.",
    )
    allowed_groups: list[PrintableStr] = Field(
        default_factory=list,
        description="Only members of one of these groups may log in (with allowedDomains too: both must hold). "
        "Groups as the provider names them: azure app roles (or group object ids), okta/oidc group names, github "
        "'<org>/<team-slug>'.",
    )
    groups_claim: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
        description="azure/oidc: the claim that lists a user's groups (default 'roles' on azure, app roles; "
        "'groups' on oidc).",
    )
    extra_scopes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")]] = Field(
        default_factory=list,
        description="Scopes to request on top of the provider's (e.g. 'groups' for an oidc issuer that sends the "
        "groups claim only then).",
    )
    role_mapping: dict[PrintableStr, list[FabRole]] = Field(
        default_factory=dict,
        description="Group -> FAB roles (Admin, Op, User, Viewer, Public), synced at every login.",
    )
    default_role: FabRole = Field(
        "Public",
        description="The role every user who may log in gets, besides the mapped ones. 'Public' has no "
        "permissions: a user outside roleMapping sees nothing until mapped (make it 'Viewer' to let everyone "
        "allowed read DAGs, runs and logs).",
    )
    keep_local_admin: bool = Field(
        True,
        description="Keep creating the generated admin (adminUser/adminPassword): no UI login with SSO on, but "
        "a break-glass API token at /auth/token. False: no admin Job or outputs (an admin made earlier stays "
        "in the DB until `airflow users delete`).",
    )
    session_lifetime_minutes: int = Field(
        720,
        ge=5,
        le=43200,
        description="How long a UI session (and the token it gets) lasts before a new login ([fab] "
        "session_lifetime_minutes; Airflow's default is 30 days).",
    )

    @field_validator("role_mapping")
    @classmethod
    def _roles(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for group, roles in v.items():
            if not roles:
                raise ValueError(f"group {group!r} maps to no role: give one of {', '.join(FAB_ROLES)}")
        return v

    @model_validator(mode="after")
    def _provider_needs(self) -> Sso:
        p = self.provider
        needs = {"azure": "tenant_id", "okta": "domain"}
        for provider, key in needs.items():
            camel = "tenantId" if key == "tenant_id" else key
            if p == provider and not getattr(self, key):
                raise bad(camel, f"provider '{p}' needs {camel}")
            if p != provider and getattr(self, key):
                raise bad(camel, f"only applies to provider '{provider}' (provider is '{p}')")
        if p == "oidc" and not (self.issuer or self.metadata_url):
            raise bad("issuer", "provider 'oidc' needs issuer (or metadataUrl)")
        if p != "oidc" and (self.issuer or self.metadata_url):
            raise bad(
                "issuer" if self.issuer else "metadataUrl", f"only applies to provider 'oidc' (provider is '{p}')"
            )
        if self.groups_claim and p not in ("azure", "oidc"):
            raise bad("groupsClaim", f"only applies to providers 'azure' and 'oidc' (provider '{p}' has its own)")
        if p == "google" and (self.allowed_groups or self.role_mapping):
            raise bad(
                "allowedGroups" if self.allowed_groups else "roleMapping",
                "Google sends no groups; use allowedDomains and defaultRole, or Google as an 'oidc' issuer "
                "behind a provider that sends groups",
            )
        if p in ("google", "github") and not (self.allowed_domains or self.allowed_groups):
            raise bad(
                "allowedDomains",
                f"anyone with a {p} account could log in: restrict it with allowedDomains"
                + (" or allowedGroups ('<org>/<team-slug>')" if p == "github" else ""),
            )
        return self

    @property
    def groups_key(self) -> str:
        return self.groups_claim or ("roles" if self.provider == "azure" else "groups")


# OAuth 2 endpoints (API base, token, authorize) of the providers without discovery in FAB's code.
_ENDPOINTS = {
    "azure": ("https://login.microsoftonline.com/{tenant}/", "oauth2/v2.0/token", "oauth2/v2.0/authorize"),
    "google": ("https://www.googleapis.com/oauth2/v2/", "https://oauth2.googleapis.com/token",
               "https://accounts.google.com/o/oauth2/v2/auth"),
    "github": ("https://api.github.com/", "https://github.com/login/oauth/access_token",
               "https://github.com/login/oauth/authorize"),
}  # fmt: skip
_SCOPES = {
    "azure": ["openid", "email", "profile"],
    "google": ["openid", "email", "profile"],
    "github": ["read:user", "user:email", "read:org"],
    "okta": ["openid", "email", "profile", "groups"],
    "oidc": ["openid", "email", "profile"],
}


def _remote_app(sso: Sso) -> dict[str, object]:
    """authlib's registration for the provider (FAB passes `remote_app` to `OAuth.register`)."""
    scope = " ".join(dict.fromkeys([*_SCOPES[sso.provider], *sso.extra_scopes]))
    app: dict[str, object] = {"client_id": sso.client_id, "client_kwargs": {"scope": scope}}
    if sso.provider in _ENDPOINTS:
        base, token, authorize = (u.format(tenant=sso.tenant_id) for u in _ENDPOINTS[sso.provider])
        # Azure's token and authorize URLs are under the tenant's base (FAB derives the tenant from them).
        app.update(
            api_base_url=base,
            access_token_url=urljoin(base, token),
            authorize_url=urljoin(base, authorize),
            request_token_url=None,
        )
    if sso.provider == "azure":
        app["client_kwargs"] = {"scope": scope, "tenant_id": sso.tenant_id}
    elif sso.provider == "google" and len(sso.allowed_domains) == 1:
        # A hint for Google's account chooser; the check itself is the manager's.
        app["authorize_params"] = {"hd": sso.allowed_domains[0]}
    elif sso.provider == "okta":
        app.update(
            api_base_url=f"https://{sso.domain}/oauth2/v1/",
            server_metadata_url=f"https://{sso.domain}/.well-known/openid-configuration",
        )
    elif sso.provider == "oidc":
        app["server_metadata_url"] = (
            sso.metadata_url or f"{(sso.issuer or '').rstrip('/')}/.well-known/openid-configuration"
        )
    return app


_ICONS = {"azure": "fa-windows", "google": "fa-google", "github": "fa-github", "okta": "fa-circle-o", "oidc": "fa-key"}

# The security manager the file installs. Module-level constants above it (repr() of typed values)
# are its only inputs besides the secret's env variable.
_MANAGER = '''
class SsoSecurityManager(FabAirflowSecurityManagerOverride):
    """Normalizes what each provider says about a user, then admits only the allowed ones."""

    def get_oauth_user_info(self, provider, resp):
        if provider == "github":
            remote = self.oauth_remotes[provider]
            login = remote.get("user").json().get("login", "")
            emails = remote.get("user/emails").json()
            primary = [e["email"] for e in emails if e.get("primary") and e.get("verified")]
            teams = remote.get("user/teams").json()
            return {
                "username": "github_" + login,
                "email": primary[0] if primary else "",
                "email_verified": bool(primary),
                "role_keys": [t["organization"]["login"] + "/" + t["slug"] for t in teams],
            }
        if provider == "oidc":
            data = self.oauth_remotes[provider].userinfo()
            groups = data.get(_GROUPS_CLAIM) or []
            return {
                "username": "oidc_" + str(data["sub"]),
                "first_name": data.get("given_name", ""),
                "last_name": data.get("family_name", ""),
                "email": data.get("email", ""),
                "email_verified": data.get("email_verified", True),
                "role_keys": [groups] if isinstance(groups, str) else list(groups),
            }
        info = super().get_oauth_user_info(provider, resp)
        if provider == "google":
            data = self.oauth_remotes[provider].get("userinfo").json()
            info["email_verified"] = bool(data.get("verified_email"))
        return info

    def sso_admits(self, userinfo):
        email = (userinfo.get("email") or "").lower()
        if _ALLOWED_DOMAINS:
            if userinfo.get("email_verified", True) is not True:
                return False
            if email.rpartition("@")[2] not in _ALLOWED_DOMAINS:
                return False
        if _ALLOWED_GROUPS and not set(userinfo.get("role_keys") or ()) & set(_ALLOWED_GROUPS):
            return False
        return True

    def auth_user_oauth(self, userinfo, rotate_session_id=True):
        if not userinfo or not self.sso_admits(userinfo):
            name = (userinfo or {}).get("username")
            log.warning("SSO login refused for %r: not in the allowed domains or groups", name)
            return None
        return super().auth_user_oauth(userinfo, rotate_session_id=rotate_session_id)


SECURITY_MANAGER_CLASS = SsoSecurityManager
'''


def webserver_config(sso: Sso) -> str:
    """The `webserver_config.py` FabAuthManager loads: every configured value enters it through
    repr() of a str, list or dict, so no value can end a literal and become code."""
    provider = {
        "name": sso.provider,
        "icon": _ICONS[sso.provider],
        "token_key": "access_token",
        "remote_app": _remote_app(sso),
    }
    lines = [
        "# Rendered by airflow-k8s from airflow.auth.sso (components/airflow/sso.py): a new render replaces it.",
        "import logging",
        "import os",
        "",
        "from flask_appbuilder.security.manager import AUTH_OAUTH",
        "",
        "from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride",
        "",
        "log = logging.getLogger(__name__)",
        "",
        f"_ALLOWED_DOMAINS = frozenset({sorted(sso.allowed_domains)!r})",
        f"_ALLOWED_GROUPS = frozenset({sorted(sso.allowed_groups)!r})",
        f"_GROUPS_CLAIM = {sso.groups_key!r}",
        "",
        "AUTH_TYPE = AUTH_OAUTH",
        "AUTH_USER_REGISTRATION = True",
        f"AUTH_USER_REGISTRATION_ROLE = {sso.default_role!r}",
        f"AUTH_ROLES_MAPPING = {dict(sorted((k, list(v)) for k, v in sso.role_mapping.items()))!r}",
        # Group changes at the provider (a removal too) apply at the next login.
        "AUTH_ROLES_SYNC_AT_LOGIN = True",
        f"AUTH_OAUTH_ROLE_KEYS = {{'azure': {sso.groups_key!r}}}",
        f"OAUTH_PROVIDERS = [{provider!r}]",
        f"OAUTH_PROVIDERS[0]['remote_app']['client_secret'] = os.environ[{CLIENT_SECRET_VARIABLE!r}]",
        _MANAGER,
    ]
    return "\n".join(lines)
