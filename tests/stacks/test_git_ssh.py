"""DAGs from an ssh repository (issue 14.5): the deploy key and host keys reach exactly the
containers that fetch the repository, in the layout git-sync and GitHook read, with host keys
always checked; a plain-text key is refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from components.airflow import git_ssh
from stacks.tooling import render as render_tool
from stacks.tooling.cli import main as render_main
from stacks.tooling.render import RenderError
from tests.render import airflow_pods, containers, dumps, env_of, named, objects, pod_spec, render, workloads

BOTH = "airflow.executor=CeleryExecutor,KubernetesExecutor"
SSH_REPO = "git@github.com:example/dags.git"


@pytest.fixture(scope="module")
def deploy_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway ed25519 key pair: (private key, a known_hosts line with the public half)."""
    d = tmp_path_factory.mktemp("key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(d / "k")], check=True)
    pub = (d / "k.pub").read_text().split()
    return (d / "k").read_text(), f"github.com {pub[0]} {pub[1]}"


def with_key(key: tuple[str, str], *overrides: str, repo: str = SSH_REPO):
    private, known = key
    return render(
        "local",
        *overrides,
        f"airflow.dags.git.repo={repo}",
        f"airflow.dags.git.ssh.knownHosts={json.dumps(known)}",
        secrets=(f"airflow.dags.git.ssh.privateKey={private}",),
    )


def ssh_volumes(spec: dict) -> list[dict]:
    return [v for v in spec.get("volumes", []) if v["name"] == git_ssh.VOLUME]


def ssh_mounted(container: dict) -> bool:
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] == git_ssh.VOLUME]
    assert all(m == {"name": "git-ssh", "mountPath": "/etc/git-secret", "readOnly": True} for m in mounts)
    return bool(mounts)


def pods(run) -> list[tuple[str, dict]]:
    """(component, pod spec) of every pod, the task pods' template included."""
    return [
        (str(o["metadata"]["labels"]["app.kubernetes.io/component"]), pod_spec(o)) for o in workloads(run, True)
    ] + [(c, s) for c, s in airflow_pods(run) if c == "task"]


# ---- the key itself ----------------------------------------------------------------------------


def test_the_key_becomes_a_secret_and_stays_one(deploy_key: tuple[str, str]) -> None:
    run = with_key(deploy_key, "airflow.dags.source=gitSync")
    secret = named(run, "Secret", "airflow-git-ssh", reveal=True)
    assert secret["stringData"]["ssh"] == deploy_key[0]
    assert secret["stringData"]["known_hosts"] == deploy_key[1] + "\n"
    assert named(run, "Secret", "airflow-git-ssh")["stringData"]["ssh"] == "[secret]"
    body = deploy_key[0].split("\n")[1]
    assert body not in dumps(run)  # nowhere in the masked render, the outputs included


def test_a_plain_text_key_is_refused_naming_the_key(deploy_key: tuple[str, str]) -> None:
    private, known = deploy_key
    with pytest.raises(RenderError) as e:
        render(
            "local",
            f"airflow.dags.git.repo={SSH_REPO}",
            f"airflow.dags.git.ssh.knownHosts={known}",
            f"airflow.dags.git.ssh.privateKey={json.dumps(private)}",
        )
    assert "airflow-k8s:airflow.dags.git.ssh.privateKey: must be a Pulumi secret, not plain text" in str(e.value)
    assert private.split("\n")[1] not in str(e.value)


def test_the_cli_takes_a_secret_like_pulumi_config_set_secret(deploy_key: tuple[str, str], tmp_path: Path) -> None:
    private, known = deploy_key
    args = ["local", "--out", str(tmp_path), "--set", f"airflow.dags.git.repo={SSH_REPO}"]
    args += ["--set", f"airflow.dags.git.ssh.knownHosts={known}"]
    assert render_main([*args, "--set-secret", f"airflow.dags.git.ssh.privateKey={private}"]) == 0
    assert private.split("\n")[1] not in "".join(p.read_text() for p in tmp_path.rglob("*.*"))
    assert render_main([*args, "--set", f"airflow.dags.git.ssh.privateKey={json.dumps(private)}"]) == 2


def test_a_stack_file_with_a_secure_key_renders(
    deploy_key: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `pulumi config set --secret --path airflow.dags.git.ssh.privateKey` writes: the render
    cannot decrypt it, and its stand-in must pass the key's shape check."""
    text = (render_tool.STACKS_DIR / "Pulumi.local.yaml").read_text()
    text = text.replace(
        "        repo: https://github.com/apache/airflow.git\n",
        f"        repo: {SSH_REPO}\n        ssh:\n          privateKey:\n            secure: v1:AAAABBBB\n"
        f"          knownHosts: {deploy_key[1]}\n",
    )
    (tmp_path / "Pulumi.mine.yaml").write_text(text)
    monkeypatch.setattr(render_tool, "STACKS_DIR", tmp_path)
    config, secret_keys = render_tool.load_stack_config("mine")
    assert secret_keys == ["airflow-k8s:airflow"]
    run = render_tool.run_stack("mine")
    assert named(run, "Secret", "airflow-git-ssh")["stringData"]["ssh"] == "[secret]"


@pytest.mark.parametrize(
    "known_hosts,fragment",
    [
        ("", "is empty"),
        ("# only a comment", "is empty"),
        ("SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", "line 1 ('SHA256:nThbg6kXUpJWGl7E1IGOCspRom"),
        ("github.com ssh-ed25519", "is not a known_hosts entry"),
        ("github.com ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "ssh-foo"),
    ],
)
def test_known_hosts_must_look_like_known_hosts(deploy_key: tuple[str, str], known_hosts: str, fragment: str) -> None:
    with pytest.raises(RenderError) as e:
        with_key((deploy_key[0], known_hosts))
    assert "airflow-k8s:airflow.dags.git.ssh.knownHosts: " in str(e.value) and fragment in str(e.value)


def test_known_hosts_may_hold_several_hosts_hashed_names_and_markers(deploy_key: tuple[str, str]) -> None:
    key = deploy_key[1].split(" ", 1)[1]
    lines = [
        f"github.com,140.82.121.4 {key}",
        f"|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= {key} comment",
        f"@cert-authority *.example.com {key}",
        f"[git.example.com]:2222 {key}",
    ]
    assert with_key((deploy_key[0], "\n".join(lines))).error is None


@pytest.mark.parametrize(
    "private_key,fragment",
    [
        ("PUBLIC", "is a public key"),
        ("hello", "is not a private key"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "passphrase"),
    ],
)
def test_the_private_key_is_checked_without_echoing_it(
    deploy_key: tuple[str, str], private_key: str, fragment: str
) -> None:
    value = deploy_key[1].split(" ", 1)[1] if private_key == "PUBLIC" else private_key
    with pytest.raises(RenderError) as e:
        with_key((value, deploy_key[1]))
    assert "airflow-k8s:airflow.dags.git.ssh.privateKey: " in str(e.value) and fragment in str(e.value)
    assert value not in str(e.value)


def test_a_passphrase_protected_openssh_key_is_refused(tmp_path: Path, deploy_key: tuple[str, str]) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(tmp_path / "k")], check=True)
    with pytest.raises(RenderError, match="passphrase"):
        with_key(((tmp_path / "k").read_text(), deploy_key[1]))


# ---- git-sync ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["gitSync", "volume"])
def test_git_sync_containers_get_the_key_as_git_sync_reads_it(deploy_key: tuple[str, str], source: str) -> None:
    run = with_key(deploy_key, BOTH, f"airflow.dags.source={source}")
    fetchers = 0
    for comp, spec in pods(run):
        syncs = [c for c in containers(spec) if c["name"].startswith("git-sync")]
        if not syncs:
            assert not ssh_volumes(spec), comp
            continue
        (vol,) = ssh_volumes(spec)
        assert vol["secret"] == {
            "secretName": "airflow-git-ssh",
            "defaultMode": 0o400,
            "items": [{"key": "ssh", "path": "ssh"}, {"key": "known_hosts", "path": "known_hosts"}],
        }
        # The kubelet gives a Secret volume's files the pod's fsGroup: group 0, which the git-sync
        # user (65533) has as its group, reads the 0440 files; the files belong to root.
        assert spec["securityContext"]["fsGroup"] == 0 and spec["securityContext"]["runAsGroup"] == 0
        for c in containers(spec):
            if c in syncs:
                fetchers += 1
                assert ssh_mounted(c)
                assert c["securityContext"]["runAsUser"] == 65533 and c["securityContext"]["readOnlyRootFilesystem"]
                env = env_of(c)
                assert env["GITSYNC_REPO"] == SSH_REPO
                assert env["GITSYNC_SSH_KEY_FILE"] == "/etc/git-secret/ssh"
                assert env["GITSYNC_SSH_KNOWN_HOSTS"] == "true"
                assert env["GITSYNC_SSH_KNOWN_HOSTS_FILE"] == "/etc/git-secret/known_hosts"
                assert "GITSYNC_ADD_USER" not in env
            else:
                assert not ssh_mounted(c), f"{comp}: {c['name']} is not git-sync"
    # gitSync: an init container and a sidecar in scheduler, dag-processor, triggerer, worker and
    # the task pods' init container; volume: the one writer.
    assert fetchers == (9 if source == "gitSync" else 1)


def test_without_ssh_git_sync_runs_as_before() -> None:
    run = render("local", "airflow.dags.source=gitSync")
    for _, spec in pods(run):
        assert not ssh_volumes(spec)
        for c in containers(spec):
            assert "runAsUser" not in c["securityContext"] and not ssh_mounted(c)
            assert not [k for k in env_of(c) if k.startswith("GITSYNC_SSH")]


# ---- GitDagBundle -----------------------------------------------------------------------------


def test_only_the_bundle_fetchers_get_the_key_and_the_connection(deploy_key: tuple[str, str]) -> None:
    run = with_key(deploy_key, BOTH, "airflow.dags.source=bundle")
    fetchers = set()
    for comp, spec in pods(run):
        airflow = [c for c in spec["containers"] if c["name"] in (comp, "base")]
        if comp in ("dag-processor", "worker", "task"):
            fetchers.add(comp)
            assert len(ssh_volumes(spec)) == 1 and all(ssh_mounted(c) for c in airflow), comp
            conn = json.loads(env_of(airflow[0])[git_ssh.CONNECTION_VARIABLE])
            assert conn == {
                "conn_type": "git",
                "extra": {
                    "key_file": "/etc/git-secret/ssh",
                    "known_hosts_file": "/etc/git-secret/known_hosts",
                    "strict_host_key_checking": "yes",
                },
            }
        else:
            assert not ssh_volumes(spec), comp
            for c in containers(spec):
                assert git_ssh.CONNECTION_VARIABLE not in env_of(c) and not ssh_mounted(c), comp
        for c in containers(spec):
            if c["name"] != "wait-for-migrations":
                assert ssh_mounted(c) == (c in airflow and comp in ("dag-processor", "worker", "task")), comp
    assert fetchers == {"dag-processor", "worker", "task"}
    env = env_of(named(run, "Deployment", "airflow-dag-processor")["spec"]["template"]["spec"]["containers"][0])
    (bundle,) = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert bundle["kwargs"]["repo_url"] == SSH_REPO and bundle["kwargs"]["git_conn_id"] == "git_dags"


def test_an_https_bundle_renders_as_before() -> None:
    run = render("local", "airflow.dags.source=bundle")
    env = env_of(named(run, "Deployment", "airflow-dag-processor")["spec"]["template"]["spec"]["containers"][0])
    (bundle,) = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert "git_conn_id" not in bundle["kwargs"] and git_ssh.CONNECTION_VARIABLE not in env
    assert not objects(run, "Secret") or all(s["metadata"]["name"] != "airflow-git-ssh" for s in objects(run, "Secret"))


def test_the_connection_id_is_the_programs(deploy_key: tuple[str, str]) -> None:
    with pytest.raises(RenderError, match=r"airflow-k8s:airflow\.connections\.GIT_DAGS: is the connection"):
        with_key(deploy_key, "airflow.dags.source=bundle", "airflow.connections={GIT_DAGS: 'x://y'}")


def test_an_existing_secret_is_mounted_and_none_is_made() -> None:
    run = render(
        "local",
        "airflow.dags.source=bundle",
        "airflow.dags.git={repo: 'ssh://git@h.example/d.git', ssh: {secret: creds}}",
    )
    assert all(s["metadata"]["name"] != "airflow-git-ssh" for s in objects(run, "Secret"))
    spec = named(run, "Deployment", "airflow-dag-processor")["spec"]["template"]["spec"]
    assert ssh_volumes(spec)[0]["secret"]["secretName"] == "creds"


def test_under_pulumi_the_key_is_accepted_only_from_a_secret_config_key(
    deploy_key: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """How `pulumi up` hands config over: PULUMI_CONFIG, and the keys holding a `secure:` value in
    PULUMI_CONFIG_SECRET_KEYS (a structured key as a whole)."""
    from pulumi.runtime import config as rconfig

    from stacks.config import ConfigError, from_pulumi_config

    private, known = deploy_key
    git = {"repo": SSH_REPO, "ssh": {"privateKey": private, "knownHosts": known}}
    raw = {
        "airflow-k8s:kubernetes": json.dumps({"context": "kind"}),
        "airflow-k8s:airflow": json.dumps({"dags": {"source": "bundle", "git": git}}),
    }
    rconfig.set_all_config({}, [])
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(raw))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["airflow-k8s:airflow"]))
    ssh = from_pulumi_config().airflow.dags.git.ssh  # pyright: ignore[reportOptionalMemberAccess]
    assert ssh is not None and ssh.private_key is not None and ssh.private_key.get_secret_value() == private
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["airflow-k8s:kubernetes"]))
    with pytest.raises(ConfigError, match=r"airflow-k8s:airflow\.dags\.git\.ssh\.privateKey: must be a Pulumi secret"):
        from_pulumi_config()
