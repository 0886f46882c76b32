"""Issue 14, item 2: single sign-on through FAB's OAuth support, from typed config.

The rendered webserver_config.py reaches the api-server alone, from a ConfigMap named after its
content; the client secret reaches it alone too, from the Secret, and is nowhere in plain text.
tests/e2e/test_sso_e2e.py logs users in through a real OpenID Connect provider.
"""

from __future__ import annotations

import ast
import json

import pytest

from components.airflow.env import CONFIG_DIR
from components.airflow.sso import CLIENT_SECRET_VARIABLE, Sso, webserver_config
from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.render import component, containers, dumps, env_of, is_airflow, named, objects, render, workloads

SECRET = "Cl1ent'Secr3t\"value"
OIDC = (
    "airflow.auth.sso={provider: oidc, clientId: airflow-ui, clientSecret: {secure: v1-opaque}, "
    "issuer: 'https://id.example.com/realms/data', allowedDomains: [example.com], "
    "roleMapping: {airflow-admins: [Admin], airflow-ops: [Op, Viewer]}}"
)

PROVIDERS = {
    "azure": "{provider: azure, clientId: c, clientSecret: {secure: s}, tenantId: 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d, "
    "roleMapping: {Airflow.Admin: [Admin]}}",
    "google": "{provider: google, clientId: c, clientSecret: {secure: s}, allowedDomains: [example.com]}",
    "github": "{provider: github, clientId: c, clientSecret: {secure: s}, allowedGroups: [example/data-eng], "
    "roleMapping: {example/data-eng: [User]}}",
    "okta": "{provider: okta, clientId: c, clientSecret: {secure: s}, domain: example.okta.com, "
    "roleMapping: {airflow-admins: [Admin]}}",
    "oidc": "{provider: oidc, clientId: c, clientSecret: {secure: s}, issuer: 'https://id.example.com'}",
}


def _run(*overrides: str) -> engine.Run:
    config, keys = load_stack_config("local", list(overrides))
    return engine.run(program, config=config, secret_keys=keys, stack="local")


def _config_file(run: engine.Run) -> tuple[str, str]:
    [cm] = [o for o in objects(run, "ConfigMap") if o["metadata"]["name"].startswith("airflow-webserver-config-")]
    return cm["metadata"]["name"], cm["data"]["webserver_config.py"]


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_each_provider_renders_a_config_file_python_can_read(provider: str) -> None:
    run = render("local", f"airflow.auth.sso={PROVIDERS[provider]}")
    _, text = _config_file(run)
    tree = ast.parse(text)
    assigned = {
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }
    assert {"AUTH_TYPE", "OAUTH_PROVIDERS", "AUTH_USER_REGISTRATION", "AUTH_ROLES_MAPPING", "AUTH_ROLES_SYNC_AT_LOGIN",
            "AUTH_USER_REGISTRATION_ROLE", "SECURITY_MANAGER_CLASS"} <= assigned  # fmt: skip
    assert f"'name': '{provider}'" in text
    # The secret is read from the env, never written into the file.
    assert f"os.environ[{CLIENT_SECRET_VARIABLE!r}]" in text and "client_secret': '" not in text


def test_the_file_and_the_secret_reach_the_api_server_only() -> None:
    run = render("local", OIDC)
    name, _ = _config_file(run)
    for w in workloads(run):
        spec = w["spec"]["template"]["spec"]
        vols = [v for v in spec.get("volumes", []) if v.get("configMap", {}).get("name") == name]
        env = {k for c in containers(spec) for k in env_of(c)}
        if component(w) == "api-server":
            assert vols == [{"name": "webserver-config", "configMap": {"name": name}}]
            [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "webserver-config"]
            assert mount == {"name": "webserver-config", "mountPath": f"{CONFIG_DIR}/webserver_config.py",
                             "subPath": "webserver_config.py", "readOnly": True}  # fmt: skip
            api = env_of(spec["containers"][0])
            assert api[CLIENT_SECRET_VARIABLE] == ("secret", "airflow-secrets", "sso-client-secret")
            assert api["AIRFLOW__FAB__CONFIG_FILE"] == f"{CONFIG_DIR}/webserver_config.py"
            assert api["AIRFLOW__FAB__SESSION_LIFETIME_MINUTES"] == "720"
        else:
            assert vols == [] and CLIENT_SECRET_VARIABLE not in env, component(w)


def test_the_client_secret_is_in_the_secret_and_nowhere_in_plain_text() -> None:
    config, keys = load_stack_config("local", [OIDC])
    raw = json.loads(config["airflow-k8s:airflow"])
    raw["auth"]["sso"]["clientSecret"] = SECRET
    config["airflow-k8s:airflow"] = json.dumps(raw)
    # As the Pulumi CLI passes a `--secret --path` value: decrypted, with its top-level key secret.
    run = engine.run(program, config=config, secret_keys=[*keys, "airflow-k8s:airflow"], stack="local")
    assert run.error is None, run.error
    secret = named(run, "Secret", "airflow-secrets", reveal=True)
    assert secret["stringData"]["sso-client-secret"] == SECRET
    assert SECRET not in dumps(run) and "Cl1ent" not in dumps(run)


def test_the_config_map_is_named_after_its_content() -> None:
    a, _ = _config_file(render("local", OIDC))
    b, _ = _config_file(render("local", OIDC.replace("[Admin]", "[Admin, Op]")))
    assert a != b and a == _config_file(render("local", OIDC))[0]


def test_mapping_default_role_and_allow_lists_are_rendered() -> None:
    _, text = _config_file(render("local", OIDC))
    assert "AUTH_ROLES_MAPPING = {'airflow-admins': ['Admin'], 'airflow-ops': ['Op', 'Viewer']}" in text
    assert "AUTH_USER_REGISTRATION_ROLE = 'Public'" in text
    assert "_ALLOWED_DOMAINS = frozenset(['example.com'])" in text
    assert "'server_metadata_url': 'https://id.example.com/realms/data/.well-known/openid-configuration'" in text


@pytest.mark.parametrize("evil", ["x']}; import os; os.system('id') #\\", "x'''\n\"\"\"]}\nimport os\n"])
def test_values_cannot_escape_their_literals(evil: str) -> None:
    """A group name with quotes, backslashes (and, past validation, a newline) stays one string."""
    fields = {"provider": "oidc", "client_id": "c", "issuer": "https://id.example.com", "role_mapping": {evil: ["Admin"]},
              "allowed_groups": [evil], "allowed_domains": [], "default_role": "Public", "groups_claim": None,
              "extra_scopes": [], "metadata_url": None}  # fmt: skip
    text = webserver_config(Sso.model_construct(**fields))  # type: ignore[arg-type]
    tree = ast.parse(text)
    literals: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") in
                ("AUTH_ROLES_MAPPING", "_ALLOWED_GROUPS")]  # fmt: skip
    namespace: dict[str, object] = {}
    exec(compile(ast.Module(literals, []), "<test>", "exec"), namespace)  # the literals alone, nothing imported
    assert namespace["AUTH_ROLES_MAPPING"] == {evil: ["Admin"]} and namespace["_ALLOWED_GROUPS"] == frozenset([evil])
    # The same statements as for a harmless name: nothing was added.
    harmless = {**fields, "role_mapping": {"g": ["Admin"]}, "allowed_groups": ["g"]}
    assert [type(n) for n in tree.body] == [
        type(n) for n in ast.parse(webserver_config(Sso.model_construct(**harmless))).body
    ]  # type: ignore[arg-type]


def test_keep_local_admin_false_drops_the_admin_job_and_outputs() -> None:
    run = render("local", OIDC.replace("roleMapping", "keepLocalAdmin: false, roleMapping"))
    assert not [w for w in workloads(run) if component(w) == "create-user"]
    assert "adminPassword" not in run.outputs and "adminUser" not in run.outputs
    kept = render("local", OIDC)
    assert [w for w in workloads(kept) if component(w) == "create-user"] and "adminPassword" in kept.outputs


def test_without_sso_nothing_is_rendered() -> None:
    run = render("local")
    assert not [o for o in objects(run, "ConfigMap") if "webserver-config" in o["metadata"]["name"]]
    for w in workloads(run):
        for c in containers(w["spec"]["template"]["spec"]):
            if is_airflow(c):
                assert CLIENT_SECRET_VARIABLE not in env_of(c)


BAD = [
    (
        OIDC.replace("{secure: v1-opaque}", "plain-text"),
        "airflow-k8s:airflow.auth.sso.clientSecret",
        "must be a Pulumi secret",
    ),
    ("airflow.auth.manager=simple", "airflow-k8s:airflow.auth.sso", "needs manager 'fab'"),
    (
        OIDC.replace("[Admin]", "[Superuser]"),
        "airflow-k8s:airflow.auth.sso.roleMapping.airflow-admins.0",
        "must be one of 'Admin', 'Op', 'User', 'Viewer', 'Public'",
    ),
    (
        OIDC.replace("defaultRole", "x").replace("roleMapping", "defaultRole: Root, roleMapping"),
        "airflow-k8s:airflow.auth.sso.defaultRole",
        "'Public'",
    ),
    (
        "airflow.auth.sso={provider: azure, clientId: c, clientSecret: {secure: s}}",
        "airflow-k8s:airflow.auth.sso.tenantId",
        "needs tenantId",
    ),
    (
        "airflow.auth.sso={provider: azure, clientId: c, clientSecret: {secure: s}, tenantId: contoso}",
        "airflow-k8s:airflow.auth.sso.tenantId",
        "must match",
    ),
    (
        "airflow.auth.sso={provider: okta, clientId: c, clientSecret: {secure: s}}",
        "airflow-k8s:airflow.auth.sso.domain",
        "needs domain",
    ),
    (
        "airflow.auth.sso={provider: oidc, clientId: c, clientSecret: {secure: s}}",
        "airflow-k8s:airflow.auth.sso.issuer",
        "needs issuer",
    ),
    (
        "airflow.auth.sso={provider: oidc, clientId: c, clientSecret: {secure: s}, issuer: 'http://id.example.com'}",
        "airflow-k8s:airflow.auth.sso.issuer",
        "https://",
    ),
    (
        "airflow.auth.sso={provider: google, clientId: c, clientSecret: {secure: s}}",
        "airflow-k8s:airflow.auth.sso.allowedDomains",
        "anyone with a google account",
    ),
    (
        "airflow.auth.sso={provider: github, clientId: c, clientSecret: {secure: s}}",
        "airflow-k8s:airflow.auth.sso.allowedDomains",
        "anyone with a github account",
    ),
    (
        "airflow.auth.sso={provider: google, clientId: c, clientSecret: {secure: s}, allowedDomains: [example.com], roleMapping: {g: [Admin]}}",
        "airflow-k8s:airflow.auth.sso.roleMapping",
        "Google sends no groups",
    ),
    (
        "airflow.auth.sso={provider: google, clientId: c, clientSecret: {secure: s}, allowedDomains: ['@example.com']}",
        "airflow-k8s:airflow.auth.sso.allowedDomains.0",
        "no '@'",
    ),
    (
        "airflow.auth.sso={provider: okta, clientId: c, clientSecret: {secure: s}, domain: example.okta.com, tenantId: 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d}",
        "airflow-k8s:airflow.auth.sso.tenantId",
        "only applies to provider 'azure'",
    ),
    (
        OIDC.replace("roleMapping: {", "sessionLifetimeMinutes: 1, roleMapping: {"),
        "airflow-k8s:airflow.auth.sso.sessionLifetimeMinutes",
        "greater than or equal to 5",
    ),
    (OIDC.replace("[Admin]", "[]"), "airflow-k8s:airflow.auth.sso.roleMapping", "maps to no role"),
]


@pytest.mark.parametrize("override,key,fragment", BAD, ids=[b[1].rsplit(".", 1)[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_sso_input_names_the_key(override: str, key: str, fragment: str) -> None:
    extra = [OIDC] if override == "airflow.auth.manager=simple" else []
    run = _run(*extra, override)
    assert run.error is not None, override
    message = str(run.error)
    assert key + ":" in message and fragment in message, message
    assert run.resources == []
    assert "v1-opaque" not in message and "plain-text" not in message or "must be a Pulumi secret" in message
    assert "plain-text" not in message


def test_session_lifetime_is_owned_with_sso() -> None:
    run = _run(OIDC, "airflow.config={fab.session_lifetime_minutes: '60'}")
    assert "airflow-k8s:airflow.config: 'fab.session_lifetime_minutes' is set by the program" in str(run.error)
    assert _run("airflow.config={fab.session_lifetime_minutes: '60'}").error is None
