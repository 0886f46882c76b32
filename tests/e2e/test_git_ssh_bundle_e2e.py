"""DAGs over ssh, end to end on loopback (issue 14.5): a throwaway sshd with a throwaway host key
and user serves a bare repository holding a DAG; the deploy key, host keys, connection and git-sync
env come from the render (`--set-secret` for the key, as `pulumi config set --secret` gives it).

The pods' layout is rebuilt as the kubelet makes it: the Secret volume's files at the mount path,
owned by root, group the pod's fsGroup (0), mode 0400 | 0440 (kubelet's SetVolumeOwnership adds
group read for fsGroup), and each reader runs under its image's uid with group 0: git-sync as 65533,
Airflow as 50000 (both have passwd entries in their images; here, throwaway ones).

- git-sync: its binary ships only in its container image (no Docker here, and it needs Go 1.23;
  Debian bookworm has 1.19), so the test runs the command it builds from the rendered env
  (main.go SetupGitSSH, v4.4.2: `ssh -i KEY -o StrictHostKeyChecking=yes -o UserKnownHostsFile=FILE`
  as GIT_SSH_COMMAND, then a shallow fetch) as uid 65533.
- GitDagBundle: real Airflow 3.3.2 with apache-airflow-providers-git 1.0.1 builds the bundle from
  the rendered AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST and AIRFLOW_CONN_GIT_DAGS, as uid 50000,
  and clones over ssh with strict host key checking: it gets the DAG with the right known_hosts and
  fails with another host's key (the control).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.airflow import git_ssh
from stacks.tooling.render import run_stack
from tests.e2e.harness import AIRFLOW_VENV
from tests.render import env_of, pod_spec

SSHD = Path("/usr/sbin/sshd")
GIT_SYNC_UID = 65533
AIRFLOW_UID = 50000
DAG = """from airflow.sdk import dag, task


@dag(schedule=None)
def over_ssh():
    @task
    def hello():
        return "hello"

    hello()


over_ssh()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.read_text()


@dataclass
class Server:
    base: Path
    repo: str  # ssh:// URL of the bare repository
    deploy_key: str
    known_hosts: str  # the throwaway server's host key
    wrong_known_hosts: str  # another host key for the same address: the control
    commit: str  # what `main` points at


def _add_user(name: str, uid: int | None, home: Path, shell: str, created: list[str]) -> None:
    """A throwaway passwd entry (what the images have for their uid), removed after the module."""
    # Password '*': no password works, yet the account is not locked ('!'), which sshd refuses
    # without PAM.
    cmd = ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", shell, "--gid", "0", "-p", "*"]
    if uid is not None:
        if subprocess.run(["getent", "passwd", str(uid)], capture_output=True).returncode == 0:
            return  # the machine has one already
        cmd += ["--uid", str(uid), "--no-user-group"]
    subprocess.run([*cmd, name], check=True)
    created.append(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert SSHD.exists(), "openssh-server is not installed (.ci/run installs it)"
    assert os.geteuid() == 0, "the test switches to the images' uids (setpriv), which needs root"
    base = tmp_path_factory.mktemp("git-ssh")
    _traversable(base)
    created: list[str] = []
    sshd: subprocess.Popen[bytes] | None = None
    made_run_dir = not Path("/run/sshd").exists()
    try:
        srv = base / "srv"
        srv.mkdir()
        _add_user("e2e-git-ssh", None, srv, "/bin/sh", created)
        _add_user("e2e-git-sync", GIT_SYNC_UID, base / "nohome", "/usr/sbin/nologin", created)
        _add_user("e2e-airflow", AIRFLOW_UID, base / "nohome", "/usr/sbin/nologin", created)

        # A bare repository with a DAG on `main`, owned by the login user (git refuses others' repos).
        work = base / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
        (work / "dags").mkdir()
        (work / "dags" / "over_ssh.py").write_text(DAG)
        git = ["git", "-C", str(work), "-c", "user.name=e2e", "-c", "user.email=e2e@example.com"]
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "a DAG"], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(srv / "dags.git")], check=True)
        subprocess.run(["chown", "-R", "e2e-git-ssh:0", str(srv)], check=True)

        deploy = _keygen(base / "deploy", "deploy")
        (base / "authorized_keys").write_text((base / "deploy.pub").read_text())
        _keygen(base / "host_key", "host")
        _keygen(base / "other_host_key", "other")
        port = _free_port()
        host = f"[127.0.0.1]:{port}"
        known = f"{host} {' '.join((base / 'host_key.pub').read_text().split()[:2])}"
        wrong = f"{host} {' '.join((base / 'other_host_key.pub').read_text().split()[:2])}"
        (base / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
            f"AuthorizedKeysFile {base}/authorized_keys\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
            "AllowUsers e2e-git-ssh\n"
        )
        if made_run_dir:
            Path("/run/sshd").mkdir(mode=0o755)  # sshd's privilege-separation directory
        sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(base / "sshd_config")], stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert sshd.poll() is None and time.time() < deadline, "sshd did not start"
                time.sleep(0.1)
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        yield Server(base, f"ssh://e2e-git-ssh@127.0.0.1:{port}{srv}/dags.git", deploy, known, wrong, commit)
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(10)
        for name in created:
            subprocess.run(["userdel", name], check=False)
        if made_run_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)


def _render(server: Server, source: str, known_hosts: str) -> list[dict[str, Any]]:
    run = run_stack(
        "local",
        (
            "airflow.executor=CeleryExecutor,KubernetesExecutor",
            f"airflow.dags.source={source}",
            f"airflow.dags.git.repo={server.repo}",
            "airflow.dags.git.ref=main",
            "airflow.dags.git.subPath=dags",
            f"airflow.dags.git.ssh.knownHosts={json.dumps(known_hosts)}",
        ),
        (f"airflow.dags.git.ssh.privateKey={server.deploy_key}",),
    )
    return [r.manifest(reveal=True) for r in run.kubernetes()]


def _workload(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name)


def _mount_secret_volume(objs: list[dict[str, Any]], spec: dict[str, Any], pod_dir: Path) -> Path:
    """The rendered Secret volume as the kubelet lays it out: root-owned files, group fsGroup,
    defaultMode plus group read (pkg/volume/volume_linux.go, read-only volumes: 0440)."""
    (vol,) = [v for v in spec["volumes"] if v["name"] == git_ssh.VOLUME]
    secret = next(o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == vol["secret"]["secretName"])
    fs_group = spec["securityContext"]["fsGroup"]
    target = pod_dir / git_ssh.DIR.lstrip("/")
    target.mkdir(parents=True)
    _traversable(target)
    for item in vol["secret"]["items"]:
        f = target / item["path"]
        f.write_text(secret["stringData"][item["key"]])
        os.chown(f, 0, fs_group)
        f.chmod(vol["secret"]["defaultMode"] | 0o440)
    return target


def _as(uid: int, gid: int, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run as the container's uid, group `gid` and the pod's fsGroup as supplementary group."""
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={gid}", "--"] + argv
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _traversable(path: Path) -> None:
    """Let other users pass through `path` and its parents (pytest makes its folders 0700)."""
    for d in (path, *path.parents):
        if d == Path("/"):
            break
        d.chmod(d.stat().st_mode | 0o011)


@pytest.fixture(scope="module")
def reachable_airflow() -> Iterator[None]:
    """Let uid 50000 reach the Airflow virtualenv and its base interpreter, as every uid reaches them
    in the image. A checkout can sit in a 0700 folder (`mktemp -d`, a CI workspace): then the
    interpreter starts but cannot read its site-packages. Adds search rights for group and others
    where missing (the process runs in group 0, root's, so the group bits are the ones that count
    on root's folders), then puts the modes back."""
    python = (AIRFLOW_VENV / "bin" / "python").resolve()
    changed: dict[Path, int] = {}
    for top in (AIRFLOW_VENV, python.parent):
        for d in (top, *top.parents):
            mode = d.stat().st_mode
            if d != Path("/") and d not in changed and mode & 0o011 != 0o011:
                changed[d] = mode
                d.chmod(mode | 0o011)
    yield
    for d, mode in changed.items():
        d.chmod(mode)


def _owned_dir(path: Path, uid: int) -> Path:
    path.mkdir(parents=True)
    os.chown(path, uid, 0)
    _traversable(path)
    return path


# ---- git-sync ----------------------------------------------------------------------------------


def _git_sync_fetch(
    server: Server, tmp: Path, known_hosts: str, uid: int | None = None
) -> subprocess.CompletedProcess[str]:
    objs = _render(server, "gitSync", known_hosts)
    spec = pod_spec(_workload(objs, "airflow-dag-processor"))
    (sync,) = [c for c in spec["containers"] if c["name"] == "git-sync"]
    env = env_of(sync)
    mounted = _mount_secret_volume(objs, spec, tmp / "pod")

    def path(p: str) -> str:  # the mount path, as this process sees it
        return str(mounted / Path(p).relative_to(git_ssh.DIR))

    assert env["GITSYNC_SSH_KNOWN_HOSTS"] == "true"
    # git-sync v4.4.2 main.go SetupGitSSH, from these three settings:
    ssh = f"ssh -i {path(env['GITSYNC_SSH_KEY_FILE'])} -o StrictHostKeyChecking=yes "
    ssh += f"-o UserKnownHostsFile={path(env['GITSYNC_SSH_KNOWN_HOSTS_FILE'])}"
    home = _owned_dir(tmp / "home", uid or sync["securityContext"]["runAsUser"])
    return _as(
        uid or sync["securityContext"]["runAsUser"],
        spec["securityContext"]["runAsGroup"],
        [
            "git",
            "clone",
            "--depth",
            env["GITSYNC_DEPTH"],
            "-b",
            env["GITSYNC_REF"],
            env["GITSYNC_REPO"],
            str(home / "repo"),
        ],
        {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_SSH_COMMAND": ssh},
        home,
    )


def test_git_sync_fetches_over_ssh_as_its_own_user(server: Server, tmp_path: Path) -> None:
    done = _git_sync_fetch(server, tmp_path, server.known_hosts)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "repo" / "dags" / "over_ssh.py").read_text() == DAG


def test_git_sync_refuses_a_server_whose_host_key_is_not_known(server: Server, tmp_path: Path) -> None:
    done = _git_sync_fetch(server, tmp_path, server.wrong_known_hosts)
    assert done.returncode != 0 and "Host key verification failed" in done.stderr, done.stderr


def test_ssh_needs_a_passwd_entry_for_the_uid(server: Server, tmp_path: Path) -> None:
    """Why git-sync runs as 65533: its image has a passwd entry for that uid only."""
    done = _git_sync_fetch(server, tmp_path, server.known_hosts, uid=AIRFLOW_UID + 7)
    assert done.returncode != 0 and "No user exists for uid" in done.stderr, done.stderr


def test_ssh_refuses_a_group_readable_key_its_user_owns(server: Server, tmp_path: Path) -> None:
    """Why the file mode matters: the kubelet's 0440 root-owned file is fine for another uid, but
    the same mode on a key the reader owns is refused."""
    key = tmp_path / "own-key"
    key.write_text(server.deploy_key)
    os.chown(key, GIT_SYNC_UID, 0)
    key.chmod(0o440)
    (tmp_path / "kh").write_text(server.known_hosts + "\n")
    ssh = f"ssh -i {key} -o StrictHostKeyChecking=yes -o UserKnownHostsFile={tmp_path / 'kh'}"
    home = _owned_dir(tmp_path / "home", GIT_SYNC_UID)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_SSH_COMMAND": ssh}
    done = _as(GIT_SYNC_UID, 0, ["git", "ls-remote", server.repo], env, home)
    assert done.returncode != 0 and "UNPROTECTED PRIVATE KEY FILE" in done.stderr, done.stderr


# ---- GitDagBundle ------------------------------------------------------------------------------

BUNDLE = """
import json
from airflow.dag_processing.bundles.manager import DagBundlesManager

bundle = DagBundlesManager().get_bundle("dags")
bundle.initialize()
print(json.dumps({"class": type(bundle).__name__, "version": repr(bundle.get_current_version()),
                  "files": sorted(str(p.relative_to(bundle.path)) for p in bundle.path.rglob("*.py"))}))
"""


def _bundle(server: Server, tmp: Path, known_hosts: str) -> subprocess.CompletedProcess[str]:
    """The dag-processor's container env, as uid 50000, initializing the configured bundle."""
    objs = _render(server, "bundle", known_hosts)
    spec = pod_spec(_workload(objs, "airflow-dag-processor"))
    (container,) = [c for c in spec["containers"] if c["name"] == "dag-processor"]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}  # the plain settings
    mounted = _mount_secret_volume(objs, spec, tmp / "pod")
    conn = json.loads(env[git_ssh.CONNECTION_VARIABLE])
    assert conn["extra"]["strict_host_key_checking"] == "yes"
    for k in ("key_file", "known_hosts_file"):  # the mount path, as this process sees it
        conn["extra"][k] = str(mounted / Path(conn["extra"][k]).relative_to(git_ssh.DIR))
    home = _owned_dir(tmp / "home", AIRFLOW_UID)
    scratch = _owned_dir(tmp / "pod-tmp", AIRFLOW_UID)  # the pod's /tmp emptyDir
    wanted = (
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
    )
    run_env = {k: env[k] for k in wanted}
    storage = run_env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"]
    run_env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] = str(scratch / Path(storage).relative_to("/tmp"))
    run_env |= {
        git_ssh.CONNECTION_VARIABLE: json.dumps(conn),
        "AIRFLOW_HOME": str(home),
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "PATH": f"{AIRFLOW_VENV / 'bin'}:{os.environ['PATH']}",
    }
    return _as(
        AIRFLOW_UID,
        spec["securityContext"]["runAsGroup"],
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", BUNDLE],
        run_env,
        home,
    )


@pytest.mark.usefixtures("reachable_airflow")
def test_git_dag_bundle_clones_over_ssh_with_the_rendered_connection(server: Server, tmp_path: Path) -> None:
    started = time.monotonic()
    done = _bundle(server, tmp_path, server.known_hosts)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"GitDagBundle over ssh: initialized in {time.monotonic() - started:.1f}s")
    assert result["class"] == "GitDagBundle" and result["files"] == ["over_ssh.py"]
    assert server.commit in result["version"]  # the commit the repository's main points at


@pytest.mark.usefixtures("reachable_airflow")
def test_git_dag_bundle_refuses_a_server_whose_host_key_is_not_known(server: Server, tmp_path: Path) -> None:
    done = _bundle(server, tmp_path, server.wrong_known_hosts)
    assert done.returncode != 0
    assert "Host key verification failed" in done.stdout + done.stderr, done.stdout + done.stderr
