"""Git over ssh: the deploy key and the server's host keys, and how each DAG source hands them on.

One layout for both readers, git-sync's documented one (docs/ssh.md, v4.4.2): a Secret with the
key as `ssh` and the host keys as `known_hosts`, mounted read-only at /etc/git-secret with mode
0400. With the pods' fsGroup the kubelet makes the files root-owned, group fsGroup, mode 0440: the
reading process is not the owner, so ssh's "unprotected private key" check (it only applies to a
key file the user owns) does not fire, and it reads the file through the group.

- git-sync (source `gitSync`, or `volume` with one writer) takes the files by GITSYNC_SSH_* and
  always turns on StrictHostKeyChecking=yes with them. ssh needs a passwd entry for the process's
  uid; the image has one for 65533 only (its Dockerfile), and `--add-user` would write /etc/passwd,
  which a read-only root filesystem forbids: the git-sync containers run as 65533 (group 0, so the
  checkout stays readable to Airflow's uid 50000 through the group).
- GitDagBundle (source `bundle`) reads them through its connection (GitHook's `key_file`,
  `known_hosts_file` and `strict_host_key_checking: yes`); the connection holds paths, not the key.

Only the containers that fetch the repository mount the Secret: the git-sync containers, or the
Airflow containers of the components that run bundles (roster.py's `runs_dag_bundles`).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.settings import GIT_CONNECTION_ID, GitSsh
from components.k8s import Manifest, labels

VOLUME = "git-ssh"
DIR = "/etc/git-secret"
KEY = "ssh"
KNOWN_HOSTS = "known_hosts"
KEY_FILE = f"{DIR}/{KEY}"
KNOWN_HOSTS_FILE = f"{DIR}/{KNOWN_HOSTS}"
# The uid git-sync's image has a passwd entry for (ssh refuses to run for a uid without one).
GIT_SYNC_UID = 65533
# The Airflow connection GitDagBundle authenticates with (the bundle's `git_conn_id`).
CONNECTION_ID = GIT_CONNECTION_ID
CONNECTION_VARIABLE = f"AIRFLOW_CONN_{CONNECTION_ID.upper()}"


def secret_name(instance: str, ssh: GitSsh) -> str:
    """The Secret the pods mount: the user's, or the one `git_ssh_secret` makes."""
    return ssh.secret or f"{instance}-git-ssh"


def git_ssh_secret(
    parent: pulumi.Resource, name: str, instance: str, namespace: pulumi.Input[str], ssh: GitSsh
) -> k8s.core.v1.Secret | None:
    """The Secret with the deploy key (a Pulumi secret end to end) and the host keys, unless the
    user named an existing one."""
    if ssh.secret or ssh.private_key is None or ssh.known_hosts is None:
        return None
    key = ssh.private_key.get_secret_value()
    return k8s.core.v1.Secret(
        f"{name}-git-ssh",
        metadata={"name": secret_name(instance, ssh), "namespace": namespace, "labels": labels(instance, "git-ssh")},
        type="Opaque",
        string_data={
            # ssh reads a key file only up to a final line break; a value pasted without one fails.
            KEY: pulumi.Output.secret(key if key.endswith("\n") else key + "\n"),
            KNOWN_HOSTS: ssh.known_hosts if ssh.known_hosts.endswith("\n") else ssh.known_hosts + "\n",
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )


def volume(instance: str, ssh: GitSsh) -> Manifest:
    """The pod volume: owner-read only (the kubelet adds group read for the pod's fsGroup)."""
    return {
        "name": VOLUME,
        "secret": {
            "secretName": secret_name(instance, ssh),
            "defaultMode": 0o400,
            "items": [{"key": KEY, "path": KEY}, {"key": KNOWN_HOSTS, "path": KNOWN_HOSTS}],
        },
    }


MOUNT: Manifest = {"name": VOLUME, "mountPath": DIR, "readOnly": True}

# git-sync's switches for the same files (main.go: --ssh-key-file, --ssh-known-hosts,
# --ssh-known-hosts-file); the known-hosts check is on by default, and set here so it stays on.
GIT_SYNC_ENV: list[Manifest] = [
    {"name": "GITSYNC_SSH_KEY_FILE", "value": KEY_FILE},
    {"name": "GITSYNC_SSH_KNOWN_HOSTS", "value": "true"},
    {"name": "GITSYNC_SSH_KNOWN_HOSTS_FILE", "value": KNOWN_HOSTS_FILE},
]


def connection() -> str:
    """GitDagBundle's connection: the key and host keys by path, host keys always checked. The
    repository URL stays in the bundle's `repo_url` (GitHook prefers it to the connection's host)."""
    extra = {"key_file": KEY_FILE, "known_hosts_file": KNOWN_HOSTS_FILE, "strict_host_key_checking": "yes"}
    return json.dumps({"conn_type": "git", "extra": extra})
