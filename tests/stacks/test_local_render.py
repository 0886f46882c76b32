"""The whole local stack renders, and every Kubernetes object passes strict schema validation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stacks.tooling.cli import main as render_main
from stacks.tooling.render import stack_names
from tests.keda_schema import SCHEMAS as KEDA_SCHEMAS
from tests.render import K8S_VERSIONS, named, objects, pod_spec, render

VARIANTS = {
    "default": (),
    "kubernetes-executor": ("airflow.executor=KubernetesExecutor",),
    "both-executors+kpo": (
        "airflow.executor=CeleryExecutor,KubernetesExecutor",
        "airflow.podOperator.enabled=true",
        "kubernetes.taskNamespace=airflow-tasks",
        "airflow.flower.enabled=true",
        "airflow.statsd.enabled=true",
    ),
    "git-sync-sidecars": ("airflow.dags.source=gitSync",),
    "image-dags+simple-auth": ("airflow.dags.source=image", "airflow.dags.git=null", "airflow.auth.manager=simple"),
    "bundle": ("airflow.dags.source=bundle",),
    "external-db-broker": (
        "database.mode=external",
        "database.external={host: db.example.com, password: 'p@ss:w/rd$1'}",
        "broker.mode=external",
        "broker.external={host: redis.example.com, password: 'r3d!s$pw', tls: true}",
    ),
    "worker-log-pvc": ("airflow.workers.storageSize=5Gi",),
    # Issue 15.6: the pools Job and its ConfigMap; a secret variable and a connection (Pulumi secrets).
    "pools+secret-variables": (
        "airflow.pools={etl: {slots: 4, description: ETL jobs}, default_pool: {slots: 64}}",
        "airflow.secretVariables={api_token: {secure: v1}}",
        "airflow.connections={warehouse: {secure: v2}}",
    ),
    # Issue 15, items 3 and 4: worker sets, KEDA installed, ScaledObjects (checked against
    # tests/keda_schema.py, the Kubernetes schemas having no KEDA kinds).
    "worker-sets+keda": (
        "airflow.workerSets=[{name: gpu, queues: [gpu], concurrency: 4, autoscaling: {enabled: true, minReplicas: 0}}, "
        "{name: io, queues: [io], storageSize: 5Gi}]",
        "airflow.workers.autoscaling={enabled: true}",
    ),
    # Issue 15.2: PgBouncer in front of an external database it checks with verify-full and a CA
    # bundle from an existing ConfigMap, with every executor (the Jobs go direct).
    "pgbouncer": (
        "pgbouncer.enabled=true",
        "airflow.executor=CeleryExecutor,KubernetesExecutor",
        "database.mode=external",
        "database.external={host: db.example.com, password: 'p@ss:w/rd$1', sslmode: verify-full, "
        "ca: {configMap: corp-ca}}",
    ),
    # Issue 14.5, with the key in an existing Secret (a privateKey must be a Pulumi secret:
    # tests/stacks/test_git_ssh.py renders that way too).
    "git-ssh-sidecars": (
        "airflow.executor=CeleryExecutor,KubernetesExecutor",
        "airflow.dags.source=gitSync",
        "airflow.dags.git={repo: 'git@github.com:example/dags.git', ssh: {secret: git-creds}}",
    ),
    "git-ssh-writer": ("airflow.dags.git={repo: 'git@github.com:example/dags.git', ssh: {secret: git-creds}}",),
    "bundle-ssh": (
        "airflow.executor=CeleryExecutor,KubernetesExecutor",
        "airflow.dags.source=bundle",
        "airflow.dags.git={repo: 'ssh://git@github.com/example/dags.git', ssh: {secret: git-creds}}",
    ),
    # Issue 14, items 3 and 4: placement and every escape hatch, on components, Jobs and task pods.
    "placement+extras": (
        "airflow.executor=CeleryExecutor,KubernetesExecutor",
        "airflow.flower.enabled=true",
        "airflow.statsd.enabled=true",
        "airflow.imagePullSecrets=[regcred]",
        "airflow.placement={nodeSelector: {pool: airflow}, tolerations: [{key: dedicated, operator: Equal, "
        "value: airflow, effect: NoSchedule}], priorityClassName: airflow}",
        "airflow.scheduler.placement={topologySpreadConstraints: [{maxSkew: 1, topologyKey: "
        "topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, minDomains: 2}], affinity: {podAntiAffinity: "
        "{requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: "
        "{matchLabels: {app.kubernetes.io/component: scheduler}}}]}}}",
        "airflow.taskPods.placement={nodeSelector: {accelerator: nvidia}, tolerations: [{key: nvidia.com/gpu, "
        "operator: Exists, effect: NoSchedule}], affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: "
        "[{weight: 50, preference: {matchExpressions: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]}}]}}}",
        "airflow.workers.placement={tolerations: [{key: kubernetes.azure.com/scalesetpriority, operator: Equal, "
        "value: spot, effect: NoSchedule}, {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, "
        "tolerationSeconds: 60}]}",
        "airflow.scheduler.extraEnv=[{name: TEAM, value: data}, {name: API_TOKEN, valueFrom: {secretKeyRef: {name: "
        "team-secrets, key: token}}}, {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}, {name: MODE, "
        "valueFrom: {configMapKeyRef: {name: team-config, key: mode}}}]",
        "airflow.scheduler.extraEnvFrom=[{secretRef: {name: team-secrets}}, {configMapRef: {name: team-config}, prefix: TEAM_}]",
        "airflow.workers.extraVolumes=[{name: certs, secret: {secretName: team-certs, defaultMode: 0440}}, {name: "
        "cache, emptyDir: {sizeLimit: 1Gi}}, {name: token, projected: {sources: [{serviceAccountToken: {path: token, "
        "audience: vault, expirationSeconds: 3600}}, {configMap: {name: team-config}}, {secret: {name: team-certs, items: [{key: ca.crt, path: ca.crt}]}}]}}]",
        "airflow.workers.extraVolumeMounts=[{name: certs, mountPath: /etc/team-certs, readOnly: true}, {name: cache, "
        "mountPath: /opt/cache}, {name: token, mountPath: /var/run/vault, readOnly: true}]",
        "airflow.workers.extraContainers=[{name: log-shipper, image: fluent/fluent-bit:3.2.2, args: [-i, tail, -p, "
        "path=/logs/*.log, -o, stdout], volumeMounts: [{name: logs, mountPath: /logs, readOnly: true}], resources: "
        "{requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 128Mi}}, livenessProbe: {httpGet: {path: /, port: 2020}}, "
        "readinessProbe: {tcpSocket: {port: 2020}}}]",
        "airflow.apiServer.extraInitContainers=[{name: proxy, image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.2, "
        "restartPolicy: Always, securityContext: {runAsUser: 65532, capabilities: {drop: [ALL]}}, startupProbe: "
        "{tcpSocket: {port: 5432}}, livenessProbe: {tcpSocket: {port: 5432}}, readinessProbe: {tcpSocket: {port: 5432}}}]",
        "airflow.taskPods.extraEnv=[{name: CUDA_VISIBLE_DEVICES, value: all}]",
        "airflow.podOperator.placement={nodeSelector: {pool: batch}, tolerations: [{key: spot, operator: Exists}]}",
        "airflow.jobs.extraEnv=[{name: PGAPPNAME, value: airflow-migrate}]",
        "airflow.jobs.placement={nodeSelector: {pool: system}}",
        "airflow.dagProcessor.extraEnv=[{name: PYTHONWARNINGS, value: ignore}]",
        "airflow.triggerer.extraEnv=[{name: PYTHONWARNINGS, value: ignore}]",
        "airflow.flower.extraEnv=[{name: FLOWER_PURGE_OFFLINE_WORKERS, value: '60'}]",
        "airflow.extraObjects=[{apiVersion: v1, kind: ConfigMap, metadata: {name: team-config}, data: {mode: fast}}, "
        "{apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: team-pdb}, spec: {maxUnavailable: 1, "
        "selector: {matchLabels: {team: data}}}}]",
    ),
    # Issue 15.5: every housekeeping CronJob, with a task namespace, a ReadWriteOnce log claim, pull
    # secrets and Job placement.
    "housekeeping": (
        "airflow.executor=CeleryExecutor,KubernetesExecutor",
        "airflow.podOperator.enabled=true",
        "kubernetes.taskNamespace=airflow-tasks",
        "kubernetes.logVolume=true",
        "kubernetes.logVolumeAccessMode=ReadWriteOnce",
        "airflow.imagePullSecrets=[regcred]",
        "airflow.jobs.placement={nodeSelector: {pool: system}}",
        "airflow.housekeeping.dbClean={enabled: true, schedule: '@daily', timeZone: Europe/Paris, retentionDays: 30, "
        "tables: [dag_run, log, xcom], batchSize: 10000}",
        "airflow.housekeeping.podCleanup={enabled: true, minCompletedMinutes: 120}",
    ),
}


@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_file_renders(stack: str) -> None:
    run = render(stack)
    assert run.error is None
    assert len(run.kubernetes()) > 20


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_strictly_valid(variant: str, version: str) -> None:
    run = render("local", *VARIANTS[variant])
    failures = []
    for obj in objects(run, reveal=True):
        try:
            if obj["apiVersion"].startswith("keda.sh/"):
                jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])
            else:
                kubernetes_validate.validate(obj, version, strict=True)
        # kubernetes_validate's error is jsonschema's; collect all, report together.
        except jsonschema.ValidationError as e:
            failures.append(f"{obj['kind']}/{obj['metadata'].get('name')}: {e.message} at {list(e.path)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_pod_template_file_is_a_valid_pod(version: str) -> None:
    run = render("local", "airflow.executor=KubernetesExecutor")
    cm = named(run, "ConfigMap", "airflow-pod-template", reveal=True)
    pod = yaml.safe_load(cm["data"]["pod_template_file.yaml"])
    assert pod["kind"] == "Pod" and pod_spec(pod)["containers"][0]["name"] == "base"
    kubernetes_validate.validate(pod, version, strict=True)


def test_cli_writes_resources_and_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render_main(["local", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "resources.json").read_text())
    run = render("local")
    assert len(doc["resources"]) == len(run.resources)
    files = sorted((tmp_path / "manifests").glob("*.yaml"))
    assert len(files) == len(run.kubernetes())
    kinds = {yaml.safe_load(f.read_text())["kind"] for f in files}
    assert {"Namespace", "Deployment", "StatefulSet", "Job", "Secret", "NetworkPolicy", "ServiceAccount"} <= kinds
    first = doc["resources"][0]
    assert {"urn", "type", "name", "parent", "dependencies", "provider", "options", "inputs"} <= set(first)
    assert "airflow-k8s:kubernetes:Airflow  airflow" in capsys.readouterr().out


def test_written_secret_manifest_is_masked_but_shaped(tmp_path: Path) -> None:
    assert render_main(["local", "--out", str(tmp_path)]) == 0
    [path] = (tmp_path / "manifests").glob("*-secret-airflow-airflow-secrets.yaml")
    secret = yaml.safe_load(path.read_text())
    assert set(secret["stringData"].values()) == {"[secret]"}
    assert "fernet-key" in secret["stringData"]


def test_reveal_secrets_shows_mock_values(tmp_path: Path) -> None:
    assert render_main(["local", "--out", str(tmp_path), "--reveal-secrets"]) == 0
    [path] = (tmp_path / "manifests").glob("*-secret-airflow-airflow-secrets.yaml")
    secret = yaml.safe_load(path.read_text())
    assert secret["stringData"]["sql-alchemy-conn"].startswith("postgresql+psycopg2://airflow:")


def test_written_manifests_are_strictly_valid_as_written(tmp_path: Path) -> None:
    """The files a reviewer reads (secrets masked) are themselves valid manifests."""
    assert render_main(["local", "--out", str(tmp_path)]) == 0
    files = sorted((tmp_path / "manifests").glob("*.yaml"))
    for version in K8S_VERSIONS:
        for f in files:
            kubernetes_validate.validate(yaml.safe_load(f.read_text()), version, strict=True)
