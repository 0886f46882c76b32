"""Security gate: checkov over the rendered manifests of every stack file, against a committed,
reasoned skip list (tests/checkov-skips.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from stacks.tooling.render import stack_names, write
from tests.render import render
from tests.stacks.test_local_render import VARIANTS
from tests.stacks.test_worker_sets import GPU as GPU_SETS

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = Path(os.environ.get("CHECKOV_BIN", ROOT / ".ci" / ".checkov-venv" / "bin" / "checkov"))
SKIPS: dict[str, str] = yaml.safe_load((ROOT / "tests" / "checkov-skips.yaml").read_text())
SEEN: set[str] = set()


def checkov_failures(manifests: Path) -> list[tuple[str, str]]:
    assert CHECKOV.exists(), f"no checkov at {CHECKOV}: `bash .ci/run` installs it in its own venv"
    done = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(manifests),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    report = report if isinstance(report, dict) else report[0]
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert report["summary"]["passed"] > 100  # it really checked something
    return [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]]


def test_every_skip_has_a_reason() -> None:
    assert all(isinstance(reason, str) and len(reason) > 40 for reason in SKIPS.values())


# Every stack file, plus the objects only a non-default executor makes (the KubernetesExecutor's pod
# template, the local task-log claim and its groomer CronJob, task-pod RBAC) or an option adds (the
# UI's Ingress).
CASES = [(stack, ()) for stack in stack_names()] + [
    # Issue 14, items 3 and 4: placement and every escape hatch, sidecars and extra objects included.
    ("local", VARIANTS["placement+extras"]),
    # Issue 15.6: the pools Job.
    ("local", VARIANTS["pools+secret-variables"]),
    # Issue 15.2: PgBouncer and its exporter; on aws with the RDS CA bundle it verifies against.
    ("local", VARIANTS["pgbouncer"]),
    ("aws-dev", ("pgbouncer.enabled=true",)),
    # Issue 15.5: the housekeeping CronJobs, their accounts and the pod-cleaner Roles.
    ("local", VARIANTS["housekeeping"]),
    # Issue 15, item 7: the statsd exporter with its mapping ConfigMap, a ServiceMonitor and a scrape policy.
    (
        "local",
        (
            "airflow.statsd.enabled=true",
            "airflow.statsd.serviceMonitor.enabled=true",
            "airflow.statsd.scrapers={namespaceLabels: {kubernetes.io/metadata.name: monitoring}}",
        ),
    ),
    (
        "local",
        (
            "airflow.executor=CeleryExecutor,KubernetesExecutor",
            "ui.host=airflow.example.com",
            "ui.ingressClassName=nginx",
            "ui.tls.clusterIssuer=letsencrypt",
        ),
    ),
    # The UI's Ingress for the AWS Load Balancer Controller (the controller's own objects are
    # rendered by Helm in the cluster: a Release has no manifest here).
    (
        "aws-dev",
        (
            "ui.host=airflow.example.com",
            "aws.ui.certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        ),
    ),
    # DAGs over ssh (issue 14.5): git-sync sidecars and the task pods' init container as uid 65533
    # with the key's Secret volume, and GitDagBundle's fetchers with the same volume.
    (
        "local",
        (
            "airflow.executor=CeleryExecutor,KubernetesExecutor",
            "airflow.dags.source=gitSync",
            "airflow.dags.git={repo: 'git@github.com:example/dags.git', ssh: {secret: git-creds}}",
        ),
    ),
    (
        "local",
        (
            "airflow.executor=CeleryExecutor,KubernetesExecutor",
            "airflow.dags.source=bundle",
            "airflow.dags.git={repo: 'ssh://git@github.com/example/dags.git', ssh: {secret: git-creds}}",
        ),
    ),
    # The UI's Gateway, route and certificate service account on Azure (the Gateway API kinds are
    # custom resources: checkov checks the service account; tests/stacks/test_azure_ui.py the rest).
    (
        "azure-dev",
        (
            "ui.host=airflow.example.com",
            "azure.ui.certificateUri=https://team-kv.vault.azure.net/certificates/airflow-ui",
            "azure.ui.keyVaultId=/subscriptions/1b2c3d4e-0000-4000-8000-00000000abcd/resourceGroups/team-sec"
            "/providers/Microsoft.KeyVault/vaults/team-kv",
        ),
    ),
    # Issue 15, items 3 and 4: worker sets (StatefulSets, Services, PDBs, NetworkPolicies) and
    # KEDA's objects (its Namespace, the DB connection Secret, the ScaledObjects).
    ("local", (GPU_SETS, "airflow.workers.autoscaling={enabled: true}")),
    # Issue 14: single sign-on (the webserver_config.py ConfigMap and its mount, the client secret)
    # behind the UI's Ingress, and Flower behind basic auth (its Secret reference, its HTTP probes).
    (
        "local",
        (
            "ui.host=airflow.example.com",
            "ui.ingressClassName=nginx",
            "ui.tls.clusterIssuer=letsencrypt",
            "airflow.flower.enabled=true",
            "airflow.auth.sso={provider: oidc, clientId: airflow, clientSecret: {secure: s}, "
            "issuer: 'https://id.example.com', allowedDomains: [example.com], roleMapping: {admins: [Admin]}}",
        ),
    ),
    (
        "azure-dev",
        (
            "airflow.flower.enabled=true",
            "airflow.auth.sso={provider: azure, clientId: airflow, clientSecret: {secure: s}, "
            "tenantId: 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d, roleMapping: {Airflow.Admin: [Admin]}}",
        ),
    ),
]


@pytest.mark.parametrize("stack,overrides", CASES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_checkov_passes_except_reasoned_skips(stack: str, overrides: tuple[str, ...], tmp_path: Path) -> None:
    write(render(stack, *overrides), tmp_path)
    failures = checkov_failures(tmp_path / "manifests")
    SEEN.update(check for check, _ in failures)
    unexpected = sorted({f"{check} on {resource}" for check, resource in failures if check not in SKIPS})
    assert not unexpected, "checkov failures not in tests/checkov-skips.yaml:\n" + "\n".join(unexpected)


def test_no_stale_skips() -> None:
    """Runs after the per-stack tests (file order): a skip nothing needs any more must go."""
    assert SEEN, "the per-stack checkov tests did not run first"
    assert set(SKIPS) <= SEEN, f"skips no stack needs: {sorted(set(SKIPS) - SEEN)}"
