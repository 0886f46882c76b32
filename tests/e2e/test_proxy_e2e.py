"""The real api-server behind the UI's Ingress (issue 14, item 1): started from the render with
`ui.host`, a request that reaches it from a private peer with X-Forwarded-Proto: https gets https
redirects and a Secure token cookie; from the render without `ui.host` the same request is answered
as plain http (the forwarded headers are not believed)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.api_only import Front, Ingress, front

HOST = "airflow.example.com"
UI = ("ui.host=" + HOST, "ui.ingressClassName=nginx", "ui.tls.clusterIssuer=letsencrypt-prod")


@pytest.fixture(scope="module", params=["ui-host", "no-ui-host"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Front]]:
    overrides = UI if request.param == "ui-host" else ()
    with front(tmp_path_factory.mktemp("e2e-proxy"), overrides, module=f"proxy_{request.param}") as d:
        yield request.param, d


def _login_as_admin(ing: Ingress, d: Front) -> tuple[str, object]:
    """The FAB login form, as a browser posts it through the Ingress."""
    page = ing.get(f"https://{HOST}/auth/login/")
    assert page.status_code == 200, page.text[:500]
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    assert csrf, page.text[:2000]
    resp = ing.request(
        "POST",
        f"https://{HOST}/auth/login/",
        data={"csrf_token": csrf.group(1), "username": "admin", "password": d.admin_password},
    )
    assert resp.status_code in (302, 303), (resp.status_code, resp.text[:500])
    [token] = [c for c in resp.cookies if c.name == "_token"]
    return resp.headers["Location"], token


def test_redirects_use_the_scheme_the_ingress_forwarded(api: tuple[str, Front]) -> None:
    kind, d = api
    ing = Ingress(HOST, d.port)
    # Werkzeug's trailing-slash redirect is absolute: it is built from the request's own scheme.
    resp = ing.get(f"https://{HOST}/auth/login")
    assert resp.status_code in (301, 308), resp.status_code
    expected = "https" if kind == "ui-host" else "http"
    assert resp.headers["Location"] == f"{expected}://{HOST}/auth/login/"


def test_the_token_cookie_is_secure_only_behind_the_ingress(api: tuple[str, Front]) -> None:
    kind, d = api
    ing = Ingress(HOST, d.port)
    _, token = _login_as_admin(ing, d)
    # FAB's index sends a logged-in user on to `[api] base_url`.
    home = ing.get(f"https://{HOST}/auth/")
    assert home.status_code == 302, home.status_code
    if kind == "ui-host":
        # The cookie is marked Secure because the request counts as https (FAB's views.py).
        assert token.secure  # type: ignore[attr-defined]
        assert home.headers["Location"] == f"https://{HOST}/"
    else:
        assert not token.secure  # type: ignore[attr-defined]
        assert home.headers["Location"] == "/"
