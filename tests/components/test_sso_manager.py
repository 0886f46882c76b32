"""The security manager the rendered webserver_config.py installs, run in the Airflow venv against
FAB's real base class (providers-fab 3.10.2), with each provider's HTTP answers stubbed at the
remote (authlib's client) boundary: what each provider says becomes one user record, and the allow
lists admit exactly the users they name. (tests/e2e/test_sso_e2e.py logs in through a real OIDC
provider; GitHub and Google cannot be reached from here.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping

import pytest

from components.airflow.sso import Sso, webserver_config
from tests.e2e.harness import AIRFLOW_VENV

PROBE = r"""
import json, os, sys
os.environ["AIRFLOW_K8S_SSO_CLIENT_SECRET"] = "s"
ns = {}
exec(compile(open(sys.argv[1]).read(), "webserver_config.py", "exec"), ns)
Manager = ns["SECURITY_MANAGER_CLASS"]
from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride
assert issubclass(Manager, FabAirflowSecurityManagerOverride)

class Answer:
    def __init__(self, body): self.body = body
    def json(self): return self.body

class Remote:
    def __init__(self, answers): self.answers = answers
    def get(self, path): return Answer(self.answers[path])
    def userinfo(self): return self.answers["userinfo"]

provider, answers, infos = json.loads(sys.argv[2])
sm = object.__new__(Manager)
sm.oauth_remotes = {provider: Remote(answers)}
info = sm.get_oauth_user_info(provider, {})
print(json.dumps({"info": info, "admits": [sm.sso_admits(i) for i in infos]}))
"""


def _probe(sso: Mapping[str, object], provider: str, answers: Mapping[str, object], others: list[dict[str, object]],
           tmp_path) -> dict[str, object]:  # fmt: skip  # noqa: ANN001
    path = tmp_path / "webserver_config.py"
    path.write_text(webserver_config(Sso.model_validate({"clientId": "c", "clientSecret": "s", **dict(sso)})))
    python = AIRFLOW_VENV / "bin" / "python"
    assert python.exists(), f"no Airflow venv at {AIRFLOW_VENV}: `bash .ci/run` installs it"
    done = subprocess.run(
        [str(python), "-c", PROBE, str(path), json.dumps([provider, answers, others])],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_github_user_gets_verified_email_and_teams(tmp_path) -> None:  # noqa: ANN001
    answers = {
        "user": {"login": "octocat"},
        "user/emails": [{"email": "cat@gmail.com", "primary": False, "verified": True},
                        {"email": "octo@example.com", "primary": True, "verified": True}],
        "user/teams": [{"slug": "data-eng", "organization": {"login": "example"}}],
    }  # fmt: skip
    sso = {"provider": "github", "allowedGroups": ["example/data-eng"]}
    out = _probe(
        sso, "github", answers, [{"role_keys": ["example/data-eng"]}, {"role_keys": ["example/web"]}], tmp_path
    )
    assert out["info"] == {"username": "github_octocat", "email": "octo@example.com", "email_verified": True,
                           "role_keys": ["example/data-eng"]}  # fmt: skip
    assert out["admits"] == [True, False]


def test_github_unverified_primary_email_is_not_taken(tmp_path) -> None:  # noqa: ANN001
    answers = {
        "user": {"login": "octocat"},
        "user/emails": [{"email": "octo@example.com", "primary": True, "verified": False}],
        "user/teams": [],
    }
    out = _probe({"provider": "github", "allowedDomains": ["example.com"]}, "github", answers, [], tmp_path)
    assert out["info"]["email"] == "" and out["info"]["email_verified"] is False  # type: ignore[index]


def test_google_domain_needs_a_verified_address(tmp_path) -> None:  # noqa: ANN001
    answers = {"userinfo": {"id": "42", "email": "ann@example.com", "verified_email": True, "given_name": "Ann"}}
    infos = [
        {"email": "ann@example.com", "email_verified": True},
        {"email": "ann@example.com", "email_verified": False},
        {"email": "ann@example.com.evil.org", "email_verified": True},
        {"email": "ann@sub.example.com", "email_verified": True},
    ]
    out = _probe({"provider": "google", "allowedDomains": ["example.com"]}, "google", answers, infos, tmp_path)
    assert out["info"]["username"] == "google_42" and out["info"]["email_verified"] is True  # type: ignore[index]
    assert out["admits"] == [True, False, False, False]


@pytest.mark.parametrize(
    "claims,expected",
    [
        ({"sub": "u1", "preferred_username": "admin", "groups": ["a", "b"]}, ["a", "b"]),
        ({"sub": "u1", "groups": "a"}, ["a"]),
        ({"sub": "u1"}, []),
    ],
)
def test_oidc_user_is_named_by_subject(claims: dict[str, object], expected: list[str], tmp_path) -> None:  # noqa: ANN001
    sso = {
        "provider": "oidc",
        "issuer": "https://id.example.com",
        "allowedGroups": ["a"],
        "allowedDomains": ["example.com"],
    }
    infos = [{"email": "x@example.com", "role_keys": ["a"]}, {"email": "x@example.com", "role_keys": ["b"]},
             {"email": "x@other.com", "role_keys": ["a"]}]  # fmt: skip
    out = _probe(sso, "oidc", {"userinfo": claims}, infos, tmp_path)
    assert out["info"]["username"] == "oidc_u1" and out["info"]["role_keys"] == expected  # type: ignore[index]
    # Both lists must hold.
    assert out["admits"] == [True, False, False]
