"""The Airflow component on its own: what each setting makes, rendered and queried."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote, urlsplit

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.airflow import Airflow, AirflowArgs, DagSource
from components.airflow.roster import TABLE
from components.airflow.secrets import broker_url, database_url, fernet_from_base64
from components.airflow.settings import AirflowSettings
from components.endpoints import BrokerEndpoint, DatabaseEndpoint, RemoteLogs
from stacks.tooling import engine
from tests.render import K8S_VERSIONS, containers, env_of

COMPONENTS = [c.name for c in TABLE]
GIT = {"repo": "https://example.com/dags.git", "ref": "main", "subPath": "dags"}


def build(
    airflow: dict[str, Any] | None = None,
    dags: DagSource | None = None,
    broker: bool = True,
    remote_logs: RemoteLogs | None = None,
) -> engine.Run:
    settings = AirflowSettings.model_validate(airflow or {})

    def prog() -> None:
        p = k8s.Provider("k8s", context="kind-test")
        db_dep = k8s.core.v1.ConfigMap(
            "db-ready", metadata={"name": "db-ready"}, data={"a": "b"}, opts=pulumi.ResourceOptions(provider=p)
        )
        Airflow(
            "airflow",
            AirflowArgs(
                namespace="airflow",
                instance="airflow",
                settings=settings,
                database=DatabaseEndpoint(
                    "db", 5432, "airflow", "airflow", pulumi.Output.secret("d$b"), depends_on=[db_dep]
                ),
                broker=BrokerEndpoint("redis", 6379, pulumi.Output.secret("r@s")) if broker else None,
                dags=dags or DagSource("volume", claim_name="dags"),
                service_accounts={c: f"airflow-{c}" for c in COMPONENTS},
                remote_logs=remote_logs,
            ),
            opts=pulumi.ResourceOptions(providers=[p]),
        )

    run = engine.run(prog)
    if run.error:
        raise run.error
    return run


def objs(run: engine.Run, kind: str) -> dict[str, dict[str, Any]]:
    return {r.revealed["metadata"]["name"]: r.revealed for r in run.kubernetes() if r.revealed["kind"] == kind}


def main_env(obj: dict[str, Any]) -> dict[str, Any]:
    return env_of(obj["spec"]["template"]["spec"]["containers"][0])


def test_celery_executor_makes_workers_and_no_pod_template() -> None:
    run = build()
    assert "airflow-worker" in objs(run, "StatefulSet")
    assert not [n for n in objs(run, "ConfigMap") if n.startswith("airflow-pod-template")]
    assert main_env(objs(run, "Deployment")["airflow-scheduler"])["AIRFLOW__CELERY__BROKER_URL"][0] == "secret"


def test_kubernetes_executor_makes_a_pod_template_and_no_workers() -> None:
    run = build({"executor": "KubernetesExecutor"}, broker=False)
    assert "airflow-worker" not in objs(run, "StatefulSet")
    sched = objs(run, "Deployment")["airflow-scheduler"]
    env = main_env(sched)
    assert "AIRFLOW__CELERY__BROKER_URL" not in env
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] == "/opt/airflow/pod_templates/pod_template_file.yaml"
    vols = {v["name"]: v for v in sched["spec"]["template"]["spec"]["volumes"]}
    assert vols["pod-template"]["configMap"]["name"] in objs(run, "ConfigMap")
    assert vols["pod-template"]["configMap"]["name"].startswith("airflow-pod-template-")
    assert sched["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_celery_without_a_broker_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a broker"):
        build(broker=False)


def test_git_writer_fills_the_volume_and_dags_folder_follows_its_link() -> None:
    run = build({"dags": {"source": "volume", "git": GIT}}, DagSource("volume", claim_name="dags", git_writer=True))
    writer = objs(run, "Deployment")["airflow-git-sync"]
    mount = writer["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {"name": "dags", "mountPath": "/opt/airflow/dags"}  # the only read-write mount
    assert (
        main_env(objs(run, "Deployment")["airflow-scheduler"])["AIRFLOW__CORE__DAGS_FOLDER"]
        == "/opt/airflow/dags/repo/dags"
    )


def test_git_sync_sidecars_feed_each_dag_reader() -> None:
    run = build({"dags": {"source": "gitSync", "git": GIT}}, DagSource("gitSync"))
    for name, obj in {**objs(run, "Deployment"), **objs(run, "StatefulSet")}.items():
        spec = obj["spec"]["template"]["spec"]
        names = [c["name"] for c in containers(spec)]
        if name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
            assert "git-sync-init" in names and "git-sync" in names, name
            assert {"name": "dags", "emptyDir": {}} in spec["volumes"]
            # A hung sidecar is restarted: git-sync's HTTP probe answers 200 only after a good sync.
            sidecar = next(c for c in spec["containers"] if c["name"] == "git-sync")
            assert {"name": "GITSYNC_HTTP_PROBE", "value": "true"} in sidecar["env"]
            assert {"name": "GITSYNC_HTTP_BIND", "value": ":8081"} in sidecar["env"]
            assert sidecar["livenessProbe"]["httpGet"] == {"path": "/", "port": 8081}
            assert "livenessProbe" not in next(c for c in spec["initContainers"] if c["name"] == "git-sync-init")
        else:
            assert "git-sync" not in names, name


def test_image_source_mounts_no_dag_volume() -> None:
    run = build({"dags": {"source": "image"}}, DagSource("image"))
    for obj in objs(run, "Deployment").values():
        assert all(v["name"] != "dags" for v in obj["spec"]["template"]["spec"]["volumes"])


def test_bundle_source_configures_a_git_dag_bundle() -> None:
    run = build({"dags": {"source": "bundle", "git": GIT}}, DagSource("bundle"))
    bundles = json.loads(
        main_env(objs(run, "Deployment")["airflow-dag-processor"])["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]
    )
    assert bundles[0]["classpath"] == "airflow.providers.git.bundles.git.GitDagBundle"
    assert bundles[0]["kwargs"]["repo_url"] == GIT["repo"] and bundles[0]["kwargs"]["subdir"] == "dags"


def test_simple_auth_mounts_the_generated_password_only_in_the_api_server() -> None:
    run = build({"auth": {"manager": "simple"}})
    deps = objs(run, "Deployment")
    api_vols = {v["name"] for v in deps["airflow-api-server"]["spec"]["template"]["spec"]["volumes"]}
    assert "simple-auth" in api_vols
    assert all(
        "simple-auth" not in {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]}
        for n, d in deps.items()
        if n != "airflow-api-server"
    )
    assert not any(n.startswith("airflow-create-user") for n in objs(run, "Job"))
    secret = objs(run, "Secret")["airflow-secrets"]["stringData"]
    assert json.loads(secret["simple-auth-passwords.json"]) == {"admin": secret["admin-password"]}


def test_variables_config_and_connections_reach_every_container() -> None:
    run = build(
        {
            "variables": {"team": "data"},
            "config": {"core.parallelism": "64"},
            "connections": {"warehouse": "postgresql://u:p@h/db"},
            "secretVariables": {"api_token": "tok-9f8e7d"},
        }
    )
    env = main_env(objs(run, "StatefulSet")["airflow-worker"])
    assert env["AIRFLOW_VAR_TEAM"] == "data" and env["AIRFLOW__CORE__PARALLELISM"] == "64"
    assert env["AIRFLOW_CONN_WAREHOUSE"] == ("secret", "airflow-secrets", "AIRFLOW_CONN_WAREHOUSE")
    assert env["AIRFLOW_VAR_API_TOKEN"] == ("secret", "airflow-secrets", "AIRFLOW_VAR_API_TOKEN")
    assert "postgresql://u:p@h/db" not in json.dumps([r.inputs for r in run.resources])
    assert "tok-9f8e7d" not in json.dumps([r.inputs for r in run.resources])


def test_remote_logs_settings() -> None:
    run = build(remote_logs=RemoteLogs("s3://logs/airflow", "remote_logs", "aws://"))
    env = main_env(objs(run, "Deployment")["airflow-scheduler"])
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True"
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == "s3://logs/airflow"
    assert env["AIRFLOW_CONN_REMOTE_LOGS"] == "aws://"


def test_optional_flower_and_statsd() -> None:
    run = build({"flower": {"enabled": True}, "statsd": {"enabled": True}})
    assert {"airflow-flower", "airflow-statsd"} <= set(objs(run, "Deployment"))
    assert (
        main_env(objs(run, "Deployment")["airflow-scheduler"])["AIRFLOW__METRICS__STATSD_HOST"]
        == "airflow-statsd.airflow.svc.cluster.local"
    )
    assert {"airflow-flower", "airflow-statsd"} <= set(objs(run, "Service"))


def test_worker_log_volume_is_deleted_with_the_statefulset() -> None:
    [sts] = [o for n, o in objs(build({"workers": {"storageSize": "5Gi"}}), "StatefulSet").items() if "worker" in n]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


def test_migration_job_name_follows_the_image_and_waits_for_the_database() -> None:
    a, b = build(), build({"image": {"tag": "3.3.3"}})
    job_a = a.get("kubernetes:batch/v1:Job", "airflow-migrate")
    job_b = b.get("kubernetes:batch/v1:Job", "airflow-migrate")  # same Pulumi name: replaced, not orphaned
    assert job_a.inputs["metadata"]["name"] != job_b.inputs["metadata"]["name"]
    assert a.get("kubernetes:core/v1:ConfigMap", "db-ready").urn in job_a.dependencies


def test_pdbs_only_for_multi_replica_components() -> None:
    pdbs = set(objs(build({"scheduler": {"replicas": 3}, "triggerer": {"replicas": 1}}), "PodDisruptionBudget"))
    assert "airflow-scheduler" in pdbs and "airflow-triggerer" not in pdbs


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_all_objects_strictly_valid_with_everything_on(version: str) -> None:
    run = build(
        {
            "executor": "CeleryExecutor,KubernetesExecutor",
            "flower": {"enabled": True},
            "statsd": {"enabled": True},
            "workers": {"storageSize": "1Gi"},
            "dags": {"source": "gitSync", "git": GIT},
        },
        DagSource("gitSync"),
    )
    for r in run.kubernetes():
        kubernetes_validate.validate(r.revealed, version, strict=True)


# ---- the pure URL/key helpers ---------------------------------------------------------------


@pytest.mark.parametrize("password", ["p$ss", "a@b:c/d", "100%+#?&=", "plain"])
def test_database_url_round_trips_any_password(password: str) -> None:
    url = database_url("postgresql+psycopg2", "us@r", password, "db.local", 5432, "airflow", "require")
    parts = urlsplit(url)
    assert parts.password is not None and parts.username is not None
    assert unquote(parts.password) == password and unquote(parts.username) == "us@r"
    assert "$" not in url and parts.hostname == "db.local" and parts.query == "sslmode=require"


def test_broker_url_forms() -> None:
    assert broker_url(None, "r", 6379, 0, False, "required") == "redis://r:6379/0"
    assert broker_url("p@w$", "r", 6379, 1, False, "required") == "redis://:p%40w%24@r:6379/1"
    assert broker_url("pw", "r", 6380, 0, True, "required") == "rediss://:pw@r:6380/0?ssl_cert_reqs=required"


def test_fernet_from_standard_base64() -> None:
    raw = bytes([0xFB, 0xFF]) + bytes(30)
    key = fernet_from_base64(base64.b64encode(raw).decode())
    assert "+" not in key and "/" not in key and base64.urlsafe_b64decode(key) == raw


def test_the_worker_memory_limit_follows_concurrency_unless_set() -> None:
    from components.airflow.settings import WORKER_BASE_MIB, WORKER_TASK_MIB, worker_memory_floor

    def limit(workers: dict) -> str:  # noqa: ANN001
        [sts] = [o for n, o in objs(build({"workers": workers}), "StatefulSet").items() if "worker" in n]
        return sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]

    assert limit({"concurrency": 4}) != limit({"concurrency": 32})
    assert worker_memory_floor(32) >= (WORKER_BASE_MIB + 32 * WORKER_TASK_MIB) * 2**20
    assert limit({"concurrency": 32}) == f"{worker_memory_floor(32) // 2**20}Mi"
    assert limit({"concurrency": 4, "resources": {"memoryLimit": "6Gi"}}) == "6Gi"  # a user's own wins


def test_an_ipv6_host_is_bracketed_in_every_url() -> None:
    """The config accepts an IPv6 address as an external host (issue 13); in a URL it must be in
    brackets (RFC 3986), or its colons read as a port."""
    from components.airflow.secrets import async_database_url

    assert "@[::1]:5432/airflow?" in database_url("postgresql", "u", "p", "::1", 5432, "airflow", "require")
    assert "@[fd00::5]:5432/airflow?" in async_database_url("u", "p", "fd00::5", 5432, "airflow", "require")
    assert broker_url("p", "::1", 6379, 0, False, "required") == "redis://:p@[::1]:6379/0"
    assert "@db.internal:5432/" in database_url("postgresql", "u", "p", "db.internal", 5432, "airflow", "require")
