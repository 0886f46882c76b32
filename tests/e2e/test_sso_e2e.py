"""Single sign-on end to end (issue 14, item 2): the real api-server with FabAuthManager and the
rendered webserver_config.py, against a real OpenID Connect provider on loopback
(oidc-provider-mock, over TLS with a throwaway CA that stands for the image's trust store).

The client is registered at the provider with the one redirect URI https://<ui.host>/auth/
oauth-authorized/oidc, so the login works only if the api-server builds its callback URL from the
Ingress's forwarded headers, and only with the client secret the render delivered. Requests to the
UI go through the emulated Ingress (api_only.Ingress); requests to the provider go to it directly,
as a browser's would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.e2e.api_only import Front, Ingress, front
from tests.e2e.harness import AIRFLOW_VENV, Api, free_port, make_ca_and_server_cert, wait_port

HOST = "airflow.example.com"
UI = ("ui.host=" + HOST, "ui.ingressClassName=nginx", "ui.tls.clusterIssuer=letsencrypt-prod")
CALLBACK = f"https://{HOST}/auth/oauth-authorized/oidc"
USERS = {
    # Mapped to Admin. Its preferred_username is the local admin's name: it must not become that user.
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "groups": ["airflow-admins"],
        "preferred_username": "admin",
    },  # fmt: skip
    # In the allowed domain, in no mapped group: the default role only.
    "bob": {"email": "bob@example.com", "email_verified": True, "groups": ["data-readers"]},
    # In the mapped group, outside the allowed domains: refused.
    "eve": {"email": "eve@example.org", "email_verified": True, "groups": ["airflow-admins"]},
    # In the allowed domain, but the provider has not verified the address: refused.
    "mallory": {"email": "mallory@example.com", "email_verified": False, "groups": ["airflow-admins"]},
}
PROVIDER = """
import sys
from datetime import timedelta

import werkzeug.serving
from oidc_provider_mock import app

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = werkzeug.serving.make_server(
    "localhost", port, app(require_client_registration=True, access_token_max_age=timedelta(minutes=5)),
    threaded=True, ssl_context=(cert, key),
)
server.serve_forever()
"""


class Provider:
    """oidc-provider-mock over TLS on loopback, in the Airflow venv (where the lock pins it)."""

    def __init__(self, base: Path) -> None:
        self.ca, cert, key = make_ca_and_server_cert(base)
        self.port = free_port()
        self.issuer = f"https://localhost:{self.port}"
        self.proc = subprocess.Popen(
            [str(AIRFLOW_VENV / "bin" / "python"), "-c", PROVIDER, str(self.port), str(cert), str(key)],
            stdout=open(base / "provider.log", "ab"),
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        wait_port(self.port)

    def call(self, method: str, path: str, **kw: object) -> requests.Response:
        return requests.request(method, self.issuer + path, verify=str(self.ca), timeout=30, **kw)  # type: ignore[arg-type]

    def register(self) -> tuple[str, str]:
        resp = self.call("POST", "/oauth2/clients", json={"redirect_uris": [CALLBACK]})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return body["client_id"], body["client_secret"]

    def stop(self) -> None:
        os.killpg(self.proc.pid, 15)
        self.proc.wait(10)


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Front, Provider]]:
    base = tmp_path_factory.mktemp("e2e-sso")
    provider = Provider(base / "provider")
    try:
        client_id, client_secret = provider.register()
        for sub, claims in USERS.items():
            assert provider.call("PUT", f"/users/{sub}", json=claims).status_code == 204
        setting = (
            f"airflow.auth.sso={{provider: oidc, clientId: '{client_id}', clientSecret: {{secure: placeholder}}, "
            f"issuer: '{provider.issuer}', allowedDomains: [example.com], roleMapping: {{airflow-admins: [Admin]}}, "
            "defaultRole: Public}"
        )
        # The image trusts the provider's CA (here: the test CA, through requests' bundle variable).
        env = {"api-server": {"REQUESTS_CA_BUNDLE": str(provider.ca)}}
        with front(base, (*UI, setting), env=env, module="sso", secrets={"auth.sso.clientSecret": client_secret}) as d:
            yield d, provider
    finally:
        provider.stop()


def login(d: Front, provider: Provider, sub: str) -> tuple[Ingress, requests.Response]:
    """A browser logging in as `sub`: the UI's login sends it to the provider, the provider back to
    the callback; returns the browser and the api-server's answer to the callback."""
    ing = Ingress(HOST, d.port)
    start = ing.get(f"https://{HOST}/auth/login/oidc?next=https://{HOST}/dags")
    assert start.status_code == 302, (start.status_code, start.text[:300])
    authorize = start.headers["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(provider.issuer + "/oauth2/authorize?")
    assert query["redirect_uri"] == [CALLBACK], query
    # The user picks `sub` on the provider's page; it redirects back to the callback.
    consent = requests.post(authorize, data={"sub": sub}, verify=str(provider.ca), allow_redirects=False, timeout=30)
    assert consent.status_code == 302, consent.text[:300]
    back = consent.headers["Location"]
    assert back.startswith(CALLBACK + "?"), back
    return ing, ing.get(back)


def finish(ing: Ingress, resp: requests.Response) -> str:
    """Follow the api-server's redirects through the Ingress until it leaves the /auth/ pages; the
    UI's token is then in the `_token` cookie."""
    for _ in range(5):
        location = resp.headers.get("Location", "")
        if resp.status_code not in (301, 302, 303, 307, 308) or not location:
            break
        url = location if location.startswith("https://") else f"https://{HOST}{location}"
        if not urlsplit(url).path.startswith("/auth/"):
            return url
        resp = ing.get(url)
    return ""


def roles(d: Front, username: str) -> list[str]:
    api = Api(f"http://127.0.0.1:{d.port}")
    api.login("admin", d.admin_password)  # the kept local admin: a break-glass API token
    status, body = api.call("GET", f"/auth/fab/v1/users/{username}")
    assert status == 200, (status, body)
    return sorted(r["name"] for r in body["roles"])


def test_a_mapped_user_logs_in_with_the_mapped_role(sso: tuple[Front, Provider]) -> None:
    d, provider = sso
    t0 = time.time()
    ing, resp = login(d, provider, "alice")
    landed = finish(ing, resp)
    elapsed = time.time() - t0
    assert landed == f"https://{HOST}/dags", (resp.status_code, resp.headers, d.procs["api-server"].tail())
    token = ing.cookies["_token"]
    ui = Api(f"http://127.0.0.1:{d.port}")
    ui.token = token
    status, _ = ui.call("GET", "/auth/fab/v1/roles")  # Admin only
    assert status == 200, status
    # A user of its own, named after the provider's subject: not the local admin.
    assert roles(d, "oidc_alice") == ["Admin", "Public"]
    print(f"sso login (provider round trip, callback, token) took {elapsed:.2f}s", file=sys.stderr)


def test_an_unmapped_user_gets_the_default_role_and_no_admin(sso: tuple[Front, Provider]) -> None:
    d, provider = sso
    ing, resp = login(d, provider, "bob")
    assert finish(ing, resp) == f"https://{HOST}/dags"
    assert roles(d, "oidc_bob") == ["Public"]
    ui = Api(f"http://127.0.0.1:{d.port}")
    ui.token = ing.cookies["_token"]
    assert ui.call("GET", "/auth/fab/v1/roles")[0] == 403
    assert ui.call("GET", "/api/v2/dags")[0] == 403


@pytest.mark.parametrize("sub", ["eve", "mallory"])
def test_users_outside_the_allowed_domains_are_refused(sso: tuple[Front, Provider], sub: str) -> None:
    d, provider = sso
    ing, resp = login(d, provider, sub)
    # Back to the login page, with no session token, and no user made.
    assert resp.status_code == 302 and urlsplit(resp.headers["Location"]).path == "/auth/login/", resp.headers
    assert "_token" not in ing.cookies
    api = Api(f"http://127.0.0.1:{d.port}")
    api.login("admin", d.admin_password)
    assert api.call("GET", f"/auth/fab/v1/users/oidc_{sub}")[0] == 404


def test_the_local_admin_has_no_ui_login_but_keeps_its_api_token(sso: tuple[Front, Provider]) -> None:
    d, _ = sso
    ing = Ingress(HOST, d.port)
    page = ing.get(f"https://{HOST}/auth/login/")
    assert page.status_code == 200 and 'name="password"' not in page.text and "oidc" in page.text
    assert json.dumps(roles(d, "admin")) == '["Admin"]'
