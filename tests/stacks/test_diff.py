"""`render --diff-against`: created / deleted / changed / renamed, and destructive changes flagged."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

from stacks.tooling.diff import compare
from tests.render import render

ROOT = Path(__file__).resolve().parents[2]


def resources(stack: str, *overrides: str) -> list[dict]:
    return [r.to_json() for r in render(stack, *overrides).resources]


def kinds(changes) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in changes:
        out.setdefault(c.kind, set()).add(c.urn.rsplit("::", 1)[-1])
    return out


def test_identical_renders_have_no_changes() -> None:
    assert compare(resources("aws-dev"), resources("aws-dev")) == []


def test_created_and_deleted() -> None:
    base, more = resources("local"), resources("local", "airflow.statsd.enabled=true")
    assert kinds(compare(base, more))["created"] == {
        "airflow-statsd",
        "airflow-statsd-svc",
        "airflow-statsd-mappings",
        "airflow-netpol-statsd",
        "namespace-sa-statsd",
    }
    assert kinds(compare(more, base))["deleted"] == {
        "airflow-statsd",
        "airflow-statsd-svc",
        "airflow-statsd-mappings",
        "airflow-netpol-statsd",
        "namespace-sa-statsd",
    }
    assert not [c for c in compare(more, base) if c.destructive]  # nothing stateful went


def test_changed_fields_are_precise_and_secrets_stay_masked() -> None:
    changes = compare(resources("local"), resources("local", "airflow.image.tag=3.3.3"))
    sched = next(c for c in changes if c.urn.endswith("::airflow-scheduler"))
    assert "spec.template.spec.containers[scheduler].image" in sched.fields
    assert not any(c.destructive for c in changes)


def test_replacing_a_stateful_resource_is_destructive() -> None:
    changes = compare(resources("aws-dev"), resources("aws-dev", "kubernetes.namespace=airflow2"))
    destructive = {c.urn.rsplit("::", 1)[-1] for c in changes if c.destructive}
    assert {"namespace-namespace", "dags-pvc"} <= destructive


def test_deleting_a_stateful_resource_is_destructive() -> None:
    changes = compare(resources("aws-dev"), resources("aws-dev", "airflow.dags={source: image}"))
    deleted = {c.urn.rsplit("::", 1)[-1]: c for c in changes if c.kind == "deleted"}
    assert deleted["dags-fs"].destructive == "deleted" and deleted["dags-pv"].destructive == "deleted"


def test_ignored_changes_are_not_destructive() -> None:
    """The in-cluster StatefulSets ignore volumeClaimTemplates, so a size change replaces nothing."""
    changes = compare(resources("local"), resources("local", "database.inCluster.storageSize=20Gi"))
    pg = next(c for c in changes if c.urn.endswith("::postgres-statefulset"))
    assert any(f.startswith("spec.volumeClaimTemplates") for f in pg.fields) and pg.destructive is None


def test_renamed_resource_and_alias() -> None:
    old = resources("aws-dev")
    new = copy.deepcopy(old)
    db = next(r for r in new if r["name"] == "database-instance")
    old_urn = db["urn"]
    db["urn"] = old_urn.replace("::database-instance", "::metadata-db")
    db["name"] = "metadata-db"
    [renamed] = [c for c in compare(old, new) if c.kind == "renamed"]
    assert renamed.old_urn == old_urn and renamed.destructive
    db["options"]["aliases"] = [{"urn": old_urn}]
    assert compare(old, new) == []  # an alias names the old URN: Pulumi moves it, nothing to report


def test_cli_against_a_git_ref(tmp_path: Path) -> None:
    """A real branch: clone, change a stack file, commit, diff against the parent commit."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    stack_file = clone / "stacks" / "Pulumi.aws-dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace("      replicas: 0  # single node", "      replicas: 1  # single node")
    )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "commit", "-qam", "two cache nodes"], cwd=clone, check=True, env=env)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stacks.render", "aws-dev", *args], cwd=clone, capture_output=True, text=True
        )

    out = run("--diff-against", "HEAD~1")
    assert out.returncode == 0, out.stderr
    assert (
        "broker-group" in out.stdout and "numCacheClusters" in out.stdout and "automaticFailoverEnabled" in out.stdout
    )
    assert "DESTRUCTIVE" not in out.stdout
    bad = run("--diff-against", "no-such-ref")
    assert bad.returncode == 2 and "cannot check out 'no-such-ref'" in bad.stderr


def test_renumbering_the_network_is_destructive() -> None:
    changes = compare(resources("aws-dev"), resources("aws-dev", "aws.network.cidr=10.44.0.0/16"))
    flagged = {c.urn.rsplit("::", 1)[-1] for c in changes if c.destructive}
    assert "network-vpc" in flagged and "network-private-eu-west-1a" in flagged


def _res(urn: str, type_: str, inputs: dict, deps: dict | None = None, ignore: list | None = None) -> dict:
    return {
        "urn": urn,
        "type": type_,
        "name": urn,
        "inputs": inputs,
        "propertyDependencies": deps or {},
        "options": {"ignoreChanges": ignore} if ignore else {},
    }


def test_an_ignored_name_keeps_its_old_value_and_so_do_inputs_derived_from_it() -> None:
    """A resource group renamed for new stacks only (ignoreChanges): an existing stack keeps the old
    group, and its children's group name with it; nothing is replaced. A server merely named like the
    new group is not derived from it and keeps its own name."""
    group, server = "azure-native:resources:ResourceGroup", "azure-native:dbforpostgresql:Server"
    old = [
        _res("rg", group, {"resourceGroupName": "airflow-dev"}),
        _res(
            "srv",
            server,
            {"resourceGroupName": "airflow-dev", "serverName": "airflow-dev-abc"},
            {"resourceGroupName": ["rg"]},
        ),
        _res(
            "pv",
            "kubernetes:core/v1:PersistentVolume",
            {"spec": {"csi": {"volumeHandle": "airflow-dev#acct#dags"}}},
            {"spec": ["rg"]},
        ),
    ]
    new = [
        _res("rg", group, {"resourceGroupName": "airflow-dev-abc"}, ignore=["resourceGroupName"]),
        _res(
            "srv",
            server,
            {"resourceGroupName": "airflow-dev-abc", "serverName": "airflow-dev-abc"},
            {"resourceGroupName": ["rg"], "serverName": ["suffix"]},
        ),
        _res(
            "pv",
            "kubernetes:core/v1:PersistentVolume",
            {"spec": {"csi": {"volumeHandle": "airflow-dev-abc#acct#dags"}}},
            {"spec": ["rg"]},
        ),
    ]
    [change] = compare(old, new)  # the group alone: its name is kept from state, its option is new
    assert change.urn == "rg" and change.destructive is None
    assert change.fields == [
        "resourceGroupName (ignoreChanges: an existing stack keeps its value)",
        "options.ignoreChanges[0]",
    ]
    # Without the ignore option the same rename is a replacement of the server.
    new[0]["options"] = {}
    assert {c.urn for c in compare(old, new) if c.destructive} >= {"srv"}


def test_an_ignored_input_absent_from_the_old_render_stays_absent() -> None:
    cache = "azure-native:redisenterprise:RedisEnterprise"
    old = [_res("redis", cache, {"clusterName": "c"})]
    new = [_res("redis", cache, {"clusterName": "c", "highAvailability": "Disabled"}, ignore=["highAvailability"])]
    [change] = compare(old, new)
    assert change.fields[-1] == "options.ignoreChanges[0]" and change.destructive is None


def test_moving_an_azure_stack_to_another_region_is_destructive() -> None:
    changes = compare(resources("azure-dev"), resources("azure-dev", "azure.region=northeurope"))
    destructive = {c.urn.rsplit("::", 1)[-1] for c in changes if c.destructive}
    assert {"resource-group", "aks-cluster", "database-server"} <= destructive


def test_a_resource_moved_from_the_root_by_an_engine_urn_alias_is_an_update() -> None:
    """The log groomer moved from the stack's root into the Airflow component (issue 15.5) with an
    alias made by `pulumi.create_urn`, which names the engine's URN (no `pulumi:pulumi:Stack$` in the
    type chain, unlike the mocks' URNs): a move, reported with the inputs that changed on the way."""
    old = resources("local")
    new = copy.deepcopy(old)
    claim = next(r for r in new if r["type"] == "kubernetes:core/v1:PersistentVolumeClaim" and r["name"] == "dags")
    old_urn = claim["urn"]
    assert "::pulumi:pulumi:Stack$kubernetes:core/v1:PersistentVolumeClaim::dags" in old_urn  # at the root
    claim["urn"] = old_urn.replace("::pulumi:pulumi:Stack$", "::pulumi:pulumi:Stack$airflow-k8s:kubernetes:Airflow$")
    claim["options"]["aliases"] = [{"urn": old_urn.replace("::pulumi:pulumi:Stack$", "::", 1)}]
    assert compare(old, new) == []
    claim["inputs"]["metadata"]["labels"] = {**claim["inputs"]["metadata"]["labels"], "extra": "x"}
    [changed] = compare(old, new)
    assert changed.kind == "changed" and changed.old_urn == old_urn and changed.destructive is None
    assert changed.fields == ["metadata.labels.extra"]
    claim["options"]["aliases"] = []  # without the alias: a rename, which replaces a claim
    [renamed] = compare(old, new)
    assert renamed.kind == "renamed" and renamed.destructive
