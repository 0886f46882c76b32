"""Run what the program renders as real processes: PostgreSQL, Redis and each Airflow container.

Each Airflow container of the rendered manifests becomes a process with its own empty home: its
args go through the image's entrypoint rule (`bash`/`python` run as given, anything else is an
`airflow` subcommand), its env is the rendered env with `secretKeyRef`/`configMapKeyRef` resolved
from the rendered Secrets and ConfigMaps. Two things are emulated, as a kubelet would do them:
volume mounts (a mount path becomes a directory of this process, or with `subPath` that entry of it; a claim is one directory shared by
every pod that mounts it, the DAG claim's being the DAG folder; the env's references to it, whole
values or a path in a URL's query, follow), and cluster DNS (`<service>.<namespace>.svc.cluster.local`
becomes 127.0.0.1); an absolute path among a `bash`/`python` container's args follows its mount too.
Nothing else is rewritten; a setting the processes need must come from the render.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_E2E_VENV", ROOT / ".ci" / ".airflow-venv"))
IMAGE_HOME = "/opt/airflow"  # the image's AIRFLOW_HOME, a plain directory of the image
CLUSTER_DNS = re.compile(r"\b([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local\b")
# The image's ENTRYPOINT is `/usr/bin/dumb-init -- /entrypoint`; Debian's dumb-init is the same 1.2.5.
DUMB_INIT = Path("/usr/bin/dumb-init")
IMAGE_ENTRYPOINT = E2E / "image-entrypoint.sh"
# The image's own ENV that decides how a signal reaches Airflow: dumb-init signals the whole process
# group it starts. A container's env overrides it.
IMAGE_ENV = {"DUMB_INIT_SETSID": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# ---- servers ---------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"{name}: install Debian's postgresql (.ci/run does)")
    return found[-1]


class Postgres:
    """A throwaway PostgreSQL on loopback with an `airflow` role and database; with `tls`, TLS-only
    (`ssl=on` and only `hostssl` lines in pg_hba.conf, like RDS with `rds.force_ssl`), its server
    certificate for 127.0.0.1/localhost signed by a throwaway CA (`self.ca`). It also listens on
    127.0.0.2, a name its certificate does not carry (for host-name checks)."""

    def __init__(self, base: Path, password: str, tls: bool = False) -> None:
        # Its own directory under /tmp: pytest's tmp dirs are private to root, and the server runs
        # as the postgres user when the tests run as root.
        self.base = Path(tempfile.mkdtemp(prefix="airflow-k8s-e2e-pg-"))
        self.base.chmod(0o755)
        self.data = self.base / "pgdata"
        self.sock = self.base / "pgsock"
        self.port = free_port()
        self.password = password
        self._as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        self.tls = tls
        self.ca: Path | None = None

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self._as_postgres else list(cmd)
        done = subprocess.run(full, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done

    def start(self) -> None:
        if not self.data.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            self.sock.mkdir(exist_ok=True)
            if self._as_postgres:
                shutil.chown(self.base, "postgres")
                shutil.chown(self.sock, "postgres")
            self._run(
                _pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            )
            if self.tls:
                self._tls_only()
        listen = "127.0.0.1,127.0.0.2" if self.tls else "127.0.0.1"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.base / "pg.log"),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -k {self.sock} -c listen_addresses={listen}",
        )
        wait_port(self.port)

    def _tls_only(self) -> None:
        """Certificates in the data directory, `ssl=on`, and no plain `host` line left in pg_hba.conf."""
        self.ca, cert, key = make_ca_and_server_cert(self.base / "tls")
        for src, name in ((cert, "server.crt"), (key, "server.key")):
            dst = self.data / name
            shutil.copyfile(src, dst)
            dst.chmod(0o600)  # PostgreSQL refuses a key others can read
            if self._as_postgres:
                shutil.chown(dst, "postgres")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        # Local socket for the test's own psql; TCP only over TLS.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"
        )

    def create_airflow_db(self) -> None:
        pw = self.password.replace("'", "''")
        for sql in (f"CREATE ROLE airflow LOGIN PASSWORD '{pw}'", "CREATE DATABASE airflow OWNER airflow"):
            self._run(
                _pg_bin("psql"),
                "-h",
                str(self.sock),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            )

    def query(self, sql: str) -> str:
        return self._run(
            _pg_bin("psql"), "-h", str(self.sock), "-p", str(self.port), "-U", "postgres", "-d", "airflow", "-tAc", sql
        ).stdout.strip()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()


def make_ca_and_server_cert(base: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (what ElastiCache's Amazon CA is in AWS)."""
    base.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=base, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=airflow-k8s e2e CA",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (base / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    return base / "ca.crt", base / "server.crt", base / "server.key"


class Redis:
    """A throwaway password-protected Redis on loopback, optionally TLS-only (like ElastiCache)."""

    def __init__(self, base: Path, password: str, tls: bool = False) -> None:
        self.base = base
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.ca: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "redis.conf"
        listen = f"port {self.port}\n"
        if self.tls:
            self.ca, cert, key = make_ca_and_server_cert(self.base / "tls")
            # TLS only: the plain port is off, as with ElastiCache's transit encryption "required".
            listen = (
                f"port 0\ntls-port {self.port}\ntls-cert-file {cert}\ntls-key-file {key}\n"
                f"tls-ca-cert-file {self.ca}\ntls-auth-clients no\n"
            )
        conf.write_text(
            f'{listen}bind 127.0.0.1\nrequirepass {self.password}\nsave ""\nappendonly no\ndir {self.base}\n'
        )
        conf.chmod(0o600)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, str(conf)], stdout=open(self.base / "redis.log", "ab"), stderr=subprocess.STDOUT
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# ---- the rendered containers as processes ----------------------------------------------------


@dataclass
class Container:
    """One Airflow container of the render: the workload it belongs to and its spec."""

    workload: str  # e.g. airflow-scheduler
    kind: str  # Job | Deployment | StatefulSet | CronJob
    component: str
    spec: dict[str, Any]
    pod_volumes: dict[str, dict[str, Any]]


def airflow_containers(manifests: list[dict[str, Any]]) -> dict[str, Container]:
    """component -> its main Airflow container, from the rendered workloads."""
    out: dict[str, Container] = {}
    for obj in manifests:
        if obj["kind"] not in ("Job", "Deployment", "StatefulSet", "CronJob"):
            continue
        pod = pod_template(obj)["spec"]
        for c in pod["containers"]:
            # The official PgBouncer images are tags of the same repository (`airflow-pgbouncer-...`).
            if "apache/airflow" in c["image"] and ":airflow-pgbouncer" not in c["image"]:
                comp = obj["metadata"]["labels"]["app.kubernetes.io/component"]
                out[comp] = Container(
                    obj["metadata"]["name"], obj["kind"], comp, c, {v["name"]: v for v in pod.get("volumes", [])}
                )
    return out


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a workload; a CronJob's is in its Job template."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def _dag_claim(manifests: list[dict[str, Any]]) -> str | None:
    """The claim mounted where the rendered Airflow containers' DAG folder is (None: no DAG claim)."""
    found: set[str] = set()
    for obj in manifests:
        if obj["kind"] not in ("Job", "Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                  if "persistentVolumeClaim" in v}  # fmt: skip
        for c in pod["containers"]:
            folder = next((e.get("value") for e in c.get("env", []) if e["name"] == "AIRFLOW__CORE__DAGS_FOLDER"), None)
            for m in c.get("volumeMounts", []):
                if folder and m["name"] in claims and (folder + "/").startswith(m["mountPath"].rstrip("/") + "/"):
                    found.add(claims[m["name"]])
    if len(found) > 1:
        raise ValueError(f"the DAG folder is on more than one claim: {sorted(found)}")
    return found.pop() if found else None


@dataclass
class Cluster:
    """What the kubelet and cluster DNS would provide: Secrets, ConfigMaps, the DAG claim."""

    manifests: list[dict[str, Any]]
    dags_dir: Path
    base: Path
    # The image's CA bundle: in AWS it holds Amazon's roots; here, the test CA that signed the broker.
    ca_bundle: Path | None = None
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    # The claim whose files are dags_dir; found in the render when not given.
    dag_claim: str | None = None

    def __post_init__(self) -> None:
        for obj in self.manifests:
            if obj["kind"] == "Secret":
                self.secrets[obj["metadata"]["name"]] = dict(obj.get("stringData") or {})
            elif obj["kind"] == "ConfigMap":
                self.configmaps[obj["metadata"]["name"]] = dict(obj.get("data") or {})
        if self.dag_claim is None:
            self.dag_claim = _dag_claim(self.manifests)

    def claim_dir(self, claim: str) -> Path:
        """Where a claim's files are: one directory per claim, shared by every pod that mounts it (a
        ReadWriteMany volume); the DAG claim's is the DAG folder the test fills."""
        if claim == self.dag_claim:
            return self.dags_dir
        host = self.base / "claims" / claim
        host.mkdir(parents=True, exist_ok=True)
        return host

    def resolve(self, env: dict[str, Any]) -> str:
        if "value" in env:
            return str(env["value"])
        ref = env["valueFrom"]
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            return self.secrets[r["name"]][r["key"]]
        r = ref["configMapKeyRef"]
        return self.configmaps[r["name"]][r["key"]]


class Process:
    """A rendered container running as a local process with its own empty home."""

    def __init__(self, cluster: Cluster, c: Container, name: str | None = None, image_entrypoint: bool = False) -> None:
        """With `image_entrypoint` it runs as the image runs it: under dumb-init and the image's
        entrypoint (see image-entrypoint.sh), with the image's ENV under the rendered env."""
        self.c = c
        self.name = name or c.component
        self.image_entrypoint = image_entrypoint
        self.dir = cluster.base / "pods" / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mounts = self._mounts(cluster)
        self.env = self._env(cluster)
        self.argv = self._argv()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "out.log"

    def _mounts(self, cluster: Cluster) -> dict[str, Path]:
        mounts: dict[str, Path] = {IMAGE_HOME: self.dir / "image-home"}
        for m in self.c.spec.get("volumeMounts", []):
            vol = self.c.pod_volumes[m["name"]]
            if "persistentVolumeClaim" in vol:
                host = cluster.claim_dir(vol["persistentVolumeClaim"]["claimName"])
            elif "configMap" in vol:
                host = self.dir / "volumes" / m["name"]
                host.mkdir(parents=True, exist_ok=True)
                data = cluster.configmaps[vol["configMap"]["name"]]
                for item in vol["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                    (host / item["path"]).write_text(data[item["key"]])
            elif "secret" in vol:
                host = self.dir / "volumes" / m["name"]
                host.mkdir(parents=True, exist_ok=True)
                data = cluster.secrets[vol["secret"]["secretName"]]
                for item in vol["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                    (host / item["path"]).write_text(data[item["key"]])
            else:  # emptyDir
                host = self.dir / "volumes" / m["name"]
                host.mkdir(parents=True, exist_ok=True)
            # A subPath mounts one entry of the volume (a file, for a ConfigMap key) at mountPath.
            mounts[m["mountPath"]] = host / m["subPath"] if m.get("subPath") else host
        mounts[IMAGE_HOME].mkdir(parents=True, exist_ok=True)
        return mounts

    def path(self, value: str) -> str:
        """A container path as this process sees it (longest mount first, like the kernel)."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount + "/"):
                return str(self.mounts[mount]) + value[len(mount) :]
        return value

    def _env(self, cluster: Cluster) -> dict[str, str]:
        env = {
            "PATH": f"{AIRFLOW_VENV / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        if cluster.ca_bundle:
            env["SSL_CERT_FILE"] = str(cluster.ca_bundle)
        if self.image_entrypoint:
            env.update(IMAGE_ENV)
        for e in self.c.spec.get("env", []):
            value = cluster.resolve(e)
            value = CLUSTER_DNS.sub("127.0.0.1", value)
            value = self.path(value) if value.startswith("/") else self._paths_in_urls(value)
            env[e["name"]] = value
        return env

    def _paths_in_urls(self, value: str) -> str:
        """Mounted paths a URL's query names (`sslrootcert=/opt/...`, also percent-encoded inside
        another parameter) as this process sees them: one pass, longest mount first."""
        by_plain = {m: str(host) for m, host in self.mounts.items()}
        by_encoded = {quote(m, safe=""): quote(host, safe="") for m, host in by_plain.items()}
        for table, before, after in ((by_plain, "=", "/|&|$"), (by_encoded, "%3D", "%2F|%26|&|$")):
            names = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
            value = re.sub(rf"(?<={before})({names})(?={after})", lambda m, t=table: t[m.group(1)], value)
        return value

    def _argv(self) -> list[str]:
        args = list(self.c.spec.get("command", [])) + list(self.c.spec.get("args", []))
        if self.image_entrypoint:
            # A container `command` replaces the image's ENTRYPOINT: there would be no dumb-init.
            assert "command" not in self.c.spec, f"{self.name} sets a command: the image's entrypoint does not run"
            return [str(DUMB_INIT), "--", str(IMAGE_ENTRYPOINT), *args]
        # The official image's entrypoint: bash/python run as given, anything else is `airflow ...`.
        if args and args[0] in ("bash", "python", "python3"):
            # A file a mounted volume puts at a path (a script from a ConfigMap) is where the mount is.
            return [args[0], *(self.path(a) if a.startswith("/") else a for a in args[1:])]
        return [str(AIRFLOW_VENV / "bin" / "airflow"), *args]

    def start(self) -> Process:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.dir,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"{self.name} did not finish in {timeout}s; log tail:\n{self.tail()}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


# ---- the REST API, as a user would call it ----------------------------------------------------


class Api:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if auth and self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            return 0, str(e)

    def login(self, user: str, password: str) -> None:
        status, body = self.call("POST", "/auth/token", {"username": user, "password": password}, auth=False)
        if status not in (200, 201):
            raise AssertionError(f"login as {user} failed: {status} {body}")
        self.token = body["access_token"]

    def wait_healthy(self, path: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        last: Any = None
        while time.time() < deadline:
            status, last = self.call("GET", path, auth=False)
            if status == 200:
                return
            time.sleep(1)
        raise TimeoutError(f"{path} not healthy after {timeout}s: {last}")


# ---- memory, as the kernel accounts it ---------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (read from /proc, as `ps --forest` would)."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_pss(pid: int) -> int:
    """Proportional set size of a process tree in bytes: shared pages (forked interpreters share
    most) counted once across the tree, which is what a container's memory limit sees closest."""
    total = 0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total
