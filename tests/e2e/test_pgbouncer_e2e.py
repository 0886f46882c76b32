"""Issue 15.2: Airflow through PgBouncer, from what `stacks.render local` renders with `pgbouncer.enabled`.

The database is a real TLS-only PostgreSQL (`database.external` with `sslmode: verify-full` and the
throwaway CA as `ca.pem`, as in test_tls_database_e2e.py). PgBouncer is 1.24.1, which .ci/run builds
from Debian trixie's source package into .ci/.pgbouncer (bookworm's package is 1.18, which lacks
`max_prepared_statements`; the image runs 1.23.1). It runs the rendered pgbouncer.ini (ConfigMap),
auth file (Secret) and CA bundle (ConfigMap) as they are, with three things adapted as a kubelet
would: mounted paths become this test's files, the Service's port is its listen port (the
render's `pgbouncer.port`), and `so_reuseport` lets a second process (the rollout's new pod) share it.

The Jobs run before PgBouncer starts (they must reach the server directly); then the long-running
components run through it, a 24-task fan-out DAG runs on Celery to success, and PgBouncer's own
SHOW POOLS and the server's pg_stat_activity, sampled throughout, show the clients outnumbering the
server connections while those never exceed the rendered pool size.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from components.pgbouncer import CLIENT_USER, scram_verifier
from tests.e2e.harness import Cluster, Process, _pg_bin, free_port, wait_port
from tests.e2e.test_airflow_e2e import DB_PASSWORD, booted
from tests.e2e.test_tls_database_e2e import TlsDatabase

DAG = "e2e_pooled_fanout"
TASKS = 24
# .ci/run builds it; 1.21+ for max_prepared_statements, which the rendered ini sets.
PGBOUNCER = Path(__file__).resolve().parents[2] / ".ci" / ".pgbouncer" / "bin"
POOL = 4  # pgbouncer.defaultPoolSize, with no reserve: the most server connections PgBouncer may open
# The figures the README quotes, printed at the end of the module.
FIGURES: dict[str, Any] = {}


class PgBouncerProcess:
    """PgBouncer (.ci/.pgbouncer), configured from the rendered ConfigMap and Secret."""

    def __init__(self, cluster: Cluster, port: int) -> None:
        deployment = next(
            o for o in cluster.manifests if o["kind"] == "Deployment" and o["metadata"]["name"] == "airflow-pgbouncer"
        )
        main = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "pgbouncer")
        self.command: list[str] = main["command"]
        self.pre_stop: str = main["lifecycle"]["preStop"]["exec"]["command"][-1]
        self.grace = int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        # Its own directory under /tmp, readable by the postgres user it runs as when the tests run
        # as root (PgBouncer refuses to run as root).
        self.dir = Path(tempfile.mkdtemp(prefix="airflow-k8s-e2e-pgbouncer-"))
        self.dir.chmod(0o755)
        self.port = port
        self.ini_text = cluster.configmaps["airflow-pgbouncer"]["pgbouncer.ini"]
        self.secret = cluster.secrets["airflow-pgbouncer"]
        files = {"/etc/pgbouncer/userlist.txt": self.dir / "userlist.txt"}
        (self.dir / "userlist.txt").write_text(self.secret["userlist.txt"])
        ca = cluster.configmaps.get("airflow-pgbouncer-db-ca")
        if ca is not None:
            files["/etc/pgbouncer/ca/ca.crt"] = self.dir / "ca.crt"
            (self.dir / "ca.crt").write_text(ca["ca.crt"])
        ini = self.ini_text
        for mounted, here in files.items():
            ini = ini.replace(mounted, str(here))
        assert re.search(r"^max_prepared_statements = [1-9]", ini, flags=re.M), "the render's setting, kept as is"
        # Two pods behind one Service: here, two processes on one port (the ini ends in [pgbouncer]).
        ini += "so_reuseport = 1\n"
        (self.dir / "pgbouncer.ini").write_text(ini)
        self.as_postgres = os.geteuid() == 0
        for f in self.dir.iterdir():
            f.chmod(0o600)
            if self.as_postgres:
                shutil.chown(f, "postgres")
        self.log = self.dir / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncerProcess:
        # The rendered container command (its ulimit, its exec), with the ini where this test put it.
        argv = [a.replace("/etc/pgbouncer/pgbouncer.ini", str(self.dir / "pgbouncer.ini")) for a in self.command]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        assert (PGBOUNCER / "pgbouncer").exists(), "run .ci/run: it builds PgBouncer into .ci/.pgbouncer"
        # A copy in this test's own folder: the postgres user may not reach the checkout (a clone in
        # a 0700 `mktemp -d` folder), and then `pgbouncer` would resolve to Debian's 1.18 or nothing.
        bin_dir = self.dir / "bin"
        bin_dir.mkdir(exist_ok=True)
        shutil.copy2(PGBOUNCER / "pgbouncer", bin_dir / "pgbouncer")
        (bin_dir / "pgbouncer").chmod(0o755)
        bin_dir.chmod(0o755)
        env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        wait_port(self.port)
        # The one .ci/run built (Debian bookworm's /usr/sbin/pgbouncer is 1.18, without max_prepared_statements).
        deadline, up = time.time() + 10, None
        while up is None and time.time() < deadline:
            up = re.search(r"process up: PgBouncer (\d+)\.(\d+)", self.log.read_text(errors="replace"))
            time.sleep(0.2)
        assert up is not None and (int(up[1]), int(up[2])) >= (1, 21), self.tail()
        return self

    def pid(self) -> int:
        """PgBouncer's own pid (runuser's child, when run as root)."""
        assert self.proc is not None
        if not self.as_postgres:
            return self.proc.pid
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else self.proc.pid

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console, as the rendered stats user (the exporter's login)."""
        done = subprocess.run(
            [_pg_bin("psql"), self.secret["stats-url"], "--csv", "-c",
             f"SHOW {what}"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return list(csv.DictReader(io.StringIO(done.stdout)))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid(), signal.SIGQUIT)  # immediate shutdown
            self.proc.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


class Pooled(TlsDatabase):
    """The TLS-database deployment with `pgbouncer.enabled`; PgBouncer starts after the Jobs."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.pgb_port = free_port()
        self.pgbouncer: PgBouncerProcess | None = None

    def overrides(self) -> tuple[str, ...]:
        return (
            *super().overrides(),
            "pgbouncer.enabled=true",
            f"pgbouncer.port={self.pgb_port}",
            f"pgbouncer.defaultPoolSize={POOL}",
            "pgbouncer.reservePoolSize=0",
        )

    def start(self, comp: str) -> Process:
        if self.pgbouncer is None:
            # The Jobs have run by now, with no PgBouncer anywhere: they went to the server itself.
            self.pgbouncer = PgBouncerProcess(self.cluster, self.pgb_port).start()
        return super().start(comp)

    def logs(self) -> str:
        return super().logs() + f"\n--- pgbouncer ---\n{self.pgbouncer.tail() if self.pgbouncer else ''}"

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.pgbouncer is not None:
                self.pgbouncer.remove()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pooled]:
    with booted(Pooled(tmp_path_factory.mktemp("e2e-pgbouncer")), "pgbouncer_module") as d:
        yield d
    if FIGURES:
        print("\ne2e PgBouncer figures: " + ", ".join(f"{k}={v}" for k, v in FIGURES.items()))


def _server_connections(stack: Pooled) -> int:
    """Backends of the `airflow` role on the server: PgBouncer's, and any direct one."""
    return int(stack.pg.query("SELECT count(*) FROM pg_stat_activity WHERE usename = 'airflow'"))


def test_components_reach_the_database_through_pgbouncer_and_the_jobs_directly(stack: Pooled) -> None:
    secret = stack.cluster.secrets["airflow-secrets"]
    pooled = f"{CLIENT_USER}:"
    # Long-running components: PgBouncer's Service, its login, no TLS settings (PgBouncer checks the server).
    for key in ("sql-alchemy-conn", "sql-alchemy-conn-async", "result-backend"):
        assert pooled in secret[key] and f":{stack.pgb_port}/airflow" in secret[key], key
        assert "verify-full" not in secret[key], key
    # The Jobs: the server, verify-full against the shipped CA.
    direct = secret["sql-alchemy-conn-direct"]
    assert "airflow:" in direct and f":{stack.pg.port}/airflow?sslmode=verify-full&sslrootcert=" in direct
    for job in ("migrate", "create-user"):
        env = {e["name"]: e for e in stack.containers[job].spec["env"]}
        assert (
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]["valueFrom"]["secretKeyRef"]["key"] == "sql-alchemy-conn-direct"
        )
    # The plain DB password is nowhere but the auth file's server line; the client's nowhere in PgBouncer's files.
    assert pgb_password(stack) not in stack.pgbouncer.ini_text + stack.pgbouncer.secret["userlist.txt"]  # type: ignore[union-attr]
    assert DB_PASSWORD not in stack.pgbouncer.ini_text  # type: ignore[union-attr]
    # PgBouncer logged in to the server over TLS: the role has backends (PgBouncer's, kept open by
    # the booted components' traffic), and every one of them is on a TLS connection.
    backends = stack.pg.query(
        "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a "
        "USING (pid) WHERE a.usename = 'airflow'"
    )
    total, tls = map(int, backends.split())
    assert 0 < total <= POOL and tls == total, f"{backends}\n{stack.pgbouncer.tail()}"  # type: ignore[union-attr]


def pgb_password(stack: Pooled) -> str:
    """The client password PgBouncer issued (from the rendered URL), which its auth file keeps only as a verifier."""
    url = stack.cluster.secrets["airflow-secrets"]["sql-alchemy-conn"]
    return unquote(re.search(rf"{CLIENT_USER}:([^@]+)@", url).group(1))  # type: ignore[union-attr]


def test_the_auth_file_holds_a_scram_verifier_that_postgresql_accepts(stack: Pooled) -> None:
    """The verifier the program computes is the one PostgreSQL itself keeps: set on a role, it logs
    that role in with the password (SCRAM over TCP), and a wrong password does not."""
    line = next(x for x in stack.pgbouncer.secret["userlist.txt"].splitlines() if x.startswith(f'"{CLIENT_USER}"'))  # type: ignore[union-attr]
    verifier = line.split(" ", 1)[1].strip('"')
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    stack.pg.query(f"CREATE ROLE verifier_check LOGIN PASSWORD '{verifier}'")
    try:
        ok = subprocess.run(
            [_pg_bin("psql"), f"postgresql://verifier_check:{quote(pgb_password(stack), safe='')}@127.0.0.1:{stack.pg.port}/airflow"
             f"?sslmode=verify-full&sslrootcert={stack.pg.ca}", "-tAc", "SELECT current_user"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert ok.returncode == 0 and ok.stdout.strip() == "verifier_check", ok.stderr
        bad = subprocess.run(
            [_pg_bin("psql"), f"postgresql://verifier_check:wrong@127.0.0.1:{stack.pg.port}/airflow"
             f"?sslmode=verify-full&sslrootcert={stack.pg.ca}", "-tAc", "SELECT 1"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    finally:
        stack.pg.query("DROP ROLE verifier_check")
    # The same computation, independently: the salt from the verifier, the password from the URL.
    salt = __import__("base64").b64decode(verifier.split("$")[1].split(":")[1])
    assert scram_verifier(pgb_password(stack), salt) == verifier


def test_fan_out_runs_through_pgbouncer_within_its_pool(stack: Pooled) -> None:
    stack.api.login("admin", stack.admin_password)
    stack.wait_for_dag(DAG)
    pgb = stack.pgbouncer
    assert pgb is not None
    run_id = stack.trigger(DAG)
    t0 = time.time()
    peak_clients = peak_servers = peak_backends = peak_waiting = 0
    while time.time() < t0 + 300:
        pools = [p for p in pgb.show("POOLS") if p["database"] == "airflow"]
        clients = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)
        servers = sum(int(p[k]) for p in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
        peak_clients, peak_servers = max(peak_clients, clients), max(peak_servers, servers)
        peak_waiting = max(peak_waiting, sum(int(p["cl_waiting"]) for p in pools))
        peak_backends = max(peak_backends, _server_connections(stack))
        if stack.run_state(run_id, DAG) in ("success", "failed"):
            break
        time.sleep(0.5)
    state = stack.wait_run(run_id, DAG, timeout=60)
    seconds = time.time() - t0
    states, tis = stack.task_states(run_id, DAG)
    assert state == "success", f"{states}\n{stack.logs()}"
    assert len([t for t in tis if t["task_id"] == "short"]) == TASKS and states == {
        "short": "success",
        "total": "success",
    }
    assert f"e2e-pooled-total={sum(range(TASKS))}" in str(
        stack.api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/total/logs/1?full_content=true")[1]
    )
    stats = next(s for s in pgb.show("STATS") if s["database"] == "airflow")
    FIGURES.update(
        tasks=TASKS, run_seconds=round(seconds, 1), pool_size=POOL, peak_clients=peak_clients,
        peak_server_connections=peak_servers, peak_server_backends=peak_backends, peak_clients_waiting=peak_waiting,
        transactions=stats["total_xact_count"], queries=stats["total_query_count"],
    )  # fmt: skip
    # Clients outnumbered the pool, and the server never saw more connections than the pool holds.
    assert peak_clients > POOL, FIGURES
    assert peak_servers <= POOL and peak_backends <= POOL, FIGURES
    assert int(stats["total_xact_count"]) > 1000, FIGURES  # the work really went through PgBouncer


def test_a_pgbouncer_rollout_with_work_in_flight_loses_nothing(stack: Pooled) -> None:
    """A rolling update: the new pod starts beside the old one (two processes on one port stand for
    two pods behind the Service), then the old one is stopped as the kubelet stops it, by the rendered
    preStop (drain, SIGINT, wait for the exit; PID 1 is PgBouncer's pid here), while the fan-out runs.
    Nothing fails, no Airflow process exits, and the old PgBouncer exits by itself, within the grace
    period, before any SIGTERM would come."""
    old = stack.pgbouncer
    assert old is not None and old.proc is not None
    new = PgBouncerProcess(stack.cluster, stack.pgb_port).start()
    stack.pgbouncer = new
    try:
        run_id = stack.trigger(DAG)
        deadline = time.time() + 120  # until the mapped tasks run (the work in flight)
        while time.time() < deadline and not any(t["state"] == "running" for t in stack.task_states(run_id, DAG)[1]):
            time.sleep(0.5)
        pid = old.pid()
        script = old.pre_stop.replace("kill -INT 1;", f"kill -INT {pid};").replace("kill -0 1 ", f"kill -0 {pid} ")
        assert script != old.pre_stop
        t0 = time.time()
        subprocess.run(["sh", "-c", script], timeout=old.grace, check=True)
        stopped = time.time() - t0
        assert old.proc.wait(10) == 0, old.tail()
        state = stack.wait_run(run_id, DAG, timeout=300)
        states, _ = stack.task_states(run_id, DAG)
        assert state == "success", f"{states}\n{stack.logs()}"
        exited = [comp for comp, p in stack.procs.items() if not p.alive()]
        assert exited == [], f"{exited}\n{stack.logs()}"
        log = old.tail(200)
        assert "got SIGINT" in log and "got SIGTERM" not in log, log
        FIGURES.update(rollout_old_pod_stopped_seconds=round(stopped, 1), rollout_grace_seconds=old.grace)
    finally:
        old.remove()
