"""The metadata DB over TLS that authenticates, against a real TLS-only PostgreSQL (`ssl=on`, only
`hostssl` lines in pg_hba.conf) whose certificate a throwaway CA signed.

The stack renders `database.external` with `sslmode: verify-full` and that CA as `ca.pem`: the
rendered Jobs, api-server, scheduler, dag-processor, triggerer and worker run against it, a DAG runs
to success, and the core API route that reads through Airflow's async engine (asyncpg) answers.
The same render refuses a server signed by another CA, and a host name the certificate does not
carry. Last, the regression: the api-server of a `sslmode: require` render without the explicit
async URL (what the stack rendered before) fails on that route, because Airflow's derived asyncpg
URL keeps `sslmode`.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from components.airflow.component import API_PORT
from stacks.tooling.render import run_stack
from tests.e2e.harness import (
    AIRFLOW_VENV,
    Api,
    Cluster,
    Postgres,
    Process,
    airflow_containers,
    free_port,
    make_ca_and_server_cert,
)
from tests.e2e.test_airflow_e2e import DAG_ID, DB_PASSWORD, EXPECTED, Deployment, booted

ASYNC_VAR = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"

# Opens a session on Airflow's sync engine (psycopg2) and one on its async engine (asyncpg), in the
# environment of a rendered container; prints each outcome's first line (no URL, no password).
PROBE = """
import asyncio, json
from sqlalchemy import text
from airflow import settings
from airflow.utils.session import create_session, create_session_async

async def async_select():
    async with create_session_async() as session:
        return (await session.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).scalar()

out = {}
try:
    with create_session() as session:
        out["sync"] = session.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar()
except Exception as e:
    out["sync"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
try:
    out["async"] = asyncio.run(async_select())
except Exception as e:
    out["async"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
print("PROBE " + json.dumps(out))
"""


class TlsDatabase(Deployment):
    """The e2e Deployment with a TLS-only PostgreSQL and the stack's `database.external` TLS settings."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.pg.remove()  # the plain server the base class prepared (nothing started yet)
        self.pg = Postgres(base / "postgres", DB_PASSWORD, tls=True)

    def database(self, tls: str, host: str = "127.0.0.1") -> str:
        return (
            f"database.external={{host: {host}, port: {self.pg.port}, name: airflow, user: airflow, "
            f"password: '{DB_PASSWORD}', {tls}}}"
        )

    def verify_full(self, ca: Path) -> str:
        return f"sslmode: verify-full, ca: {{pem: {json.dumps(ca.read_text())}}}"

    def overrides(self) -> tuple[str, ...]:
        assert self.pg.ca is not None  # the server has started
        return self.with_database(self.database(self.verify_full(self.pg.ca)))

    def with_database(self, database: str) -> tuple[str, ...]:
        return tuple(database if o.startswith("database.external=") else o for o in super().overrides())

    def render(self, database: str, name: str) -> tuple[Cluster, dict[str, Any]]:
        objects = [r.manifest(reveal=True) for r in run_stack("local", self.with_database(database)).kubernetes()]
        return Cluster(objects, self.cluster.dags_dir, self.base / name), airflow_containers(objects)

    def probe(self, database: str, name: str) -> dict[str, Any]:
        """PROBE in the rendered api-server's environment (its env, secrets and CA mount)."""
        cluster, containers = self.render(database, name)
        p = Process(cluster, containers["api-server"], name="probe")
        p.argv = [str(AIRFLOW_VENV / "bin" / "python"), "-c", PROBE]
        assert p.start().wait(120) == 0, p.tail()
        line = next(x for x in p.log.read_text().splitlines() if x.startswith("PROBE "))
        return json.loads(line[len("PROBE ") :])


def wait_route(api: Api, run_id: str) -> tuple[int, str]:
    """GET the run's `/wait` route: the core API route that reads through the async session
    (DagRunWaiter). It streams NDJSON after the headers, so a failure shows as a cut body."""
    req = urllib.request.Request(f"{api.base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/wait?interval=1")
    req.add_header("Authorization", f"Bearer {api.token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError) as e:
        return -1, f"{type(e).__name__}: {e}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDatabase]:
    with booted(TlsDatabase(tmp_path_factory.mktemp("e2e-tls-db")), "tls_database_module") as d:
        yield d


def test_verify_full_runs_a_dag_and_serves_the_async_route(stack: TlsDatabase) -> None:
    """(a) The Jobs ran and every component is up (the fixture); a DAG runs; the async route answers."""
    secret = stack.cluster.secrets["airflow-secrets"]
    assert "sslmode=verify-full&sslrootcert=/opt/airflow/db-ca/ca.crt" in secret["sql-alchemy-conn"]
    assert "ssl=verify-full&dsn=" in secret["sql-alchemy-conn-async"]
    assert {e["name"] for e in stack.containers["api-server"].spec["env"]} >= {ASYNC_VAR}
    stack.ready_for_pipeline()
    run_id = stack.trigger()
    assert stack.wait_run(run_id) == "success", stack.logs()
    assert stack.task_states(run_id)[0] == EXPECTED
    status, body = wait_route(stack.api, run_id)
    assert status == 200 and json.loads(body.splitlines()[0])["state"] == "success", (status, body)


def test_the_server_is_tls_only(stack: TlsDatabase) -> None:
    """What the tests above stand on: a plain connection is turned away, a TLS one admitted."""

    def psql(sslmode: str) -> subprocess.CompletedProcess[str]:
        dsn = f"host=127.0.0.1 port={stack.pg.port} dbname=airflow user=airflow sslmode={sslmode}"
        env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": DB_PASSWORD}
        return subprocess.run(["psql", dsn, "-tAc", "SELECT 1"], capture_output=True, text=True, env=env)

    plain = psql("disable")
    assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr
    assert psql("require").stdout.strip() == "1"


def test_a_server_signed_by_another_ca_is_refused(stack: TlsDatabase) -> None:
    """(b) The same render, trusting another throwaway CA: both engines refuse the server's
    certificate, and so does the migration Job, the first thing a deploy runs."""
    other_ca, _, _ = make_ca_and_server_cert(stack.base / "other-ca")
    database = stack.database(stack.verify_full(other_ca))
    refused = stack.probe(database, "other-ca")
    assert "certificate verify failed" in refused["sync"], refused
    assert "CERTIFICATE_VERIFY_FAILED" in refused["async"], refused
    cluster, containers = stack.render(database, "other-ca-migrate")
    migrate = Process(cluster, containers["migrate"]).start()
    assert migrate.wait(180) != 0
    assert "certificate verify failed" in migrate.log.read_text(), migrate.tail()


def test_verify_full_checks_the_host_name(stack: TlsDatabase) -> None:
    """(b) The right CA but a name the certificate does not carry (127.0.0.2 reaches the same
    server): verify-full refuses it, verify-ca, which checks only the chain, accepts it."""
    assert stack.pg.ca is not None
    full = stack.verify_full(stack.pg.ca)
    refused = stack.probe(stack.database(full, host="127.0.0.2"), "wrong-host-full")
    assert "does not match host name" in refused["sync"], refused
    assert "mismatch" in refused["async"] and "CERTIFICATE_VERIFY_FAILED" in refused["async"], refused
    chain_only = stack.database(full.replace("verify-full", "verify-ca"), host="127.0.0.2")
    assert stack.probe(chain_only, "wrong-host-ca") == {"sync": True, "async": True}


def test_require_needs_the_explicit_async_url(stack: TlsDatabase) -> None:
    """(c) `sslmode: require` works on both engines with the rendered async URL; the api-server of
    the same render without it (the stack's render before: Airflow derives the asyncpg URL from
    the sync one, `sslmode` and all) fails on the async route."""
    database = stack.database("sslmode: require")
    assert stack.probe(database, "require") == {"sync": True, "async": True}
    cluster, containers = stack.render(database, "require-before")
    api = containers["api-server"]
    port = free_port()
    env = [e for e in api.spec["env"] if e["name"] != ASYNC_VAR]
    assert len(env) == len(api.spec["env"]) - 1
    args = [str(port) if a == str(API_PORT) else a for a in api.spec["args"]]
    before = Process(cluster, replace(api, spec={**api.spec, "env": env, "args": args}), name="api-server-before")
    before.start()
    try:
        client = Api(f"http://127.0.0.1:{port}")
        client.wait_healthy(api.spec["readinessProbe"]["httpGet"]["path"], timeout=180)
        client.login("admin", stack.admin_password)
        status, body = client.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=1&order_by=-run_after")
        assert status == 200 and body["dag_runs"], body
        status, body = wait_route(client, body["dag_runs"][0]["dag_run_id"])
    finally:
        before.stop()
    assert '"state"' not in body, (status, body)
    assert "connect() got an unexpected keyword argument 'sslmode'" in before.log.read_text(), before.tail()


# asyncpg's own parsing of what SQLAlchemy hands `asyncpg.connect()` for a URL: the keywords must
# bind to its signature (a `sslmode=` keyword is the TypeError above) and resolve to the mode asked.
ASYNCPG_READS = """
import inspect, json, ssl, sys
import asyncpg
from asyncpg import connect_utils
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url

out = {}
for mode, url in json.loads(sys.argv[1]).items():
    _, kwargs = PGDialect_asyncpg().create_connect_args(make_url(url))
    kwargs.pop("prepared_statement_cache_size", None)  # SQLAlchemy's own, not asyncpg's
    bound = inspect.signature(asyncpg.connect).bind(**kwargs)
    bound.apply_defaults()
    a = bound.arguments
    names = inspect.signature(connect_utils._parse_connect_dsn_and_args).parameters
    _, params = connect_utils._parse_connect_dsn_and_args(**{n: a[n] for n in names})
    context = params.ssl or None
    out[mode] = {
        "sslmode": params.sslmode.name.replace("_", "-"),
        "verify": context.verify_mode == ssl.CERT_REQUIRED if context else False,
        "check_hostname": context.check_hostname if context else False,
        "cas": len(context.get_ca_certs()) if context else 0,
    }
print(json.dumps(out))
"""


def test_asyncpg_reads_the_async_url_of_every_sslmode(tmp_path: Path) -> None:
    from components.airflow.secrets import async_database_url

    ca, _, _ = make_ca_and_server_cert(tmp_path)
    urls = {
        mode: async_database_url(
            "airflow", DB_PASSWORD, "db.example.com", 5432, "airflow", mode, str(ca) if "verify" in mode else None
        )
        for mode in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
    }
    done = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", ASYNCPG_READS, json.dumps(urls)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # no ~/.postgresql/root.crt to fall back on
    )
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    assert {mode: r["sslmode"] for mode, r in read.items()} == {mode: mode for mode in urls}
    for mode in ("verify-ca", "verify-full"):
        assert read[mode]["verify"] and read[mode]["cas"] == 1, read[mode]
    assert read["verify-full"]["check_hostname"] and not read["verify-ca"]["check_hostname"]
    assert not any(read[mode]["verify"] for mode in ("disable", "allow", "prefer", "require"))
