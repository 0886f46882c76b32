"""Airflow 3 itself: config, migration, the long-running components and their network rules.

Cloud-agnostic: it takes a DatabaseEndpoint, an optional BrokerEndpoint, a DAG source, remote-log
settings and per-component service accounts, and never imports a cloud SDK.

Rules it keeps (DESIGN.md):
- the metadata DB is migrated by a Job every workload depends on; the Job's name carries a hash of
  the image, so a new image or Airflow version gives a new Job and migrates before workloads roll;
- the DAG volume is mounted read-only in every Airflow pod; only the git-sync writer mounts it
  read-write;
- every pod runs non-root with no privilege escalation, no capabilities and seccomp RuntimeDefault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.airflow import secrets as sec
from components.airflow.secrets import AirflowSecrets
from components.airflow.settings import AirflowSettings
from components.endpoints import BrokerEndpoint, DatabaseEndpoint, RemoteLogs
from components.k8s import container_security, labels, pod_security, resources, selector, spread

# The official image runs as airflow (50000) with group root (0); files it writes must stay
# group-readable for the next process, so the pod's fsGroup is 0 as in the image.
AIRFLOW_UID = 50000
AIRFLOW_GID = 0
HOME = "/opt/airflow"
LOGS = f"{HOME}/logs"
CONFIG_DIR = f"{HOME}/config"
POD_TEMPLATE_DIR = f"{HOME}/pod_templates"
POD_TEMPLATE_FILE = f"{POD_TEMPLATE_DIR}/pod_template_file.yaml"
SIMPLE_AUTH_DIR = f"{HOME}/simple_auth"
API_PORT = 8080
WORKER_LOG_PORT = 8793
TRIGGERER_LOG_PORT = 8794
FLOWER_PORT = 5555
STATSD_PORT = 9125
STATSD_METRICS_PORT = 9102
GIT_ROOT_LINK = "repo"
GIT_SYNC_HTTP_PORT = 8081  # git-sync's symlink (relative) to the current checkout

AUTH_MANAGERS = {
    "fab": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
    "simple": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
}
GIT_BUNDLE_CLASS = "airflow.providers.git.bundles.git.GitDagBundle"


@dataclass
class DagSource:
    """How DAGs reach the pods, resolved by the stack from `airflow.dags`."""

    kind: str  # volume | gitSync | image | bundle
    claim_name: Optional[pulumi.Input[str]] = None  # volume: an existing ReadWriteMany claim
    git_writer: bool = False  # volume: one git-sync Deployment fills the claim


@dataclass
class AirflowArgs:
    namespace: pulumi.Input[str]
    instance: str
    settings: AirflowSettings
    database: DatabaseEndpoint
    broker: Optional[BrokerEndpoint]
    dags: DagSource
    service_accounts: Mapping[str, pulumi.Input[str]]
    remote_logs: Optional[RemoteLogs] = None
    pod_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    task_namespace: Optional[pulumi.Input[str]] = None
    network_policies: bool = True


def image_hash(image: str) -> str:
    """Short, stable hash naming per-image Jobs (a new image means a new Job, so a new migration)."""
    return hashlib.sha256(image.encode()).hexdigest()[:8]


class Airflow(pulumi.ComponentResource):
    """Every Airflow workload in one namespace."""

    def __init__(self, name: str, args: AirflowArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("airflow-k8s:kubernetes:Airflow", name, None, opts)
        self._name = name
        self._a = args
        s = args.settings
        self._s = s
        self._inst = args.instance
        self._image = f"{s.image.repository}:{s.image.tag}"
        self._celery = "CeleryExecutor" in s.executors
        self._kube = "KubernetesExecutor" in s.executors
        if self._celery and args.broker is None:
            raise ValueError("the CeleryExecutor needs a broker endpoint")
        self._child = pulumi.ResourceOptions(parent=self)

        self.secrets = AirflowSecrets(
            f"{name}-secrets",
            namespace=args.namespace,
            instance=self._inst,
            database=args.database,
            broker=args.broker if self._celery else None,
            admin_user=s.auth.admin_user,
            connections={k: pulumi.Output.secret(v.get_secret_value()) for k, v in s.connections.items()},
            opts=self._child,
        )
        self.api_service_name = f"{self._inst}-api-server"
        self.api_url = pulumi.Output.concat(
            "http://", self.api_service_name, ".", args.namespace, ".svc.cluster.local:", str(API_PORT)
        )

        self.pod_template: Optional[k8s.core.v1.ConfigMap] = None
        if self._kube:
            self.pod_template = self._pod_template_configmap()

        self.migration = self._migration_job()
        after_migration = [self.migration]
        self.create_user: Optional[k8s.batch.v1.Job] = None
        if s.auth.manager == "fab":
            self.create_user = self._create_user_job()

        if args.dags.kind == "volume" and args.dags.git_writer:
            self._git_writer()

        self.workloads: dict[str, pulumi.CustomResource] = {}
        self._api_server(after_migration)
        self._deployment(
            "scheduler", s.scheduler.replicas, s.scheduler.resources, ["scheduler"], after_migration,
            probe=self._jobs_check("SchedulerJob"), template=self._kube,
        )
        self._deployment(
            "dag-processor", s.dag_processor.replicas, s.dag_processor.resources, ["dag-processor"],
            after_migration, probe=self._jobs_check("DagProcessorJob"),
        )
        self._stateful_with_logs(
            "triggerer", s.triggerer.replicas, s.triggerer.resources, ["triggerer"], TRIGGERER_LOG_PORT,
            "triggerer-logs", after_migration, probe=self._jobs_check("TriggererJob"),
        )
        if self._celery and s.workers.replicas > 0:
            self._stateful_with_logs(
                "worker", s.workers.replicas, s.workers.resources, ["celery", "worker"], WORKER_LOG_PORT,
                "worker-logs", after_migration,
                probe={
                    "exec": {
                        "command": [
                            "sh", "-c",
                            "exec celery --app airflow.providers.celery.executors.celery_executor.app "
                            'inspect ping -d "celery@$(hostname)" --timeout 20',
                        ]
                    },
                    "initialDelaySeconds": 60, "periodSeconds": 60, "timeoutSeconds": 45, "failureThreshold": 5,
                },
                storage=s.workers.storage_size,
            )
        if self._celery and s.flower.enabled:
            self._deployment(
                "flower", 1, s.flower.resources, ["celery", "flower"], after_migration,
                ports=[("flower", FLOWER_PORT)],
                probe={"tcpSocket": {"port": FLOWER_PORT}, "periodSeconds": 30, "timeoutSeconds": 5},
            )
            self._service("flower", FLOWER_PORT, "flower")
        if s.statsd.enabled:
            self._statsd()
        if args.network_policies:
            self._network_policies()

        self.register_outputs({"api_url": self.api_url, "migration_job": self.migration.metadata["name"]})

    # ----- shared pieces -------------------------------------------------------------------

    def _sa(self, component: str) -> pulumi.Input[str]:
        try:
            return self._a.service_accounts[component]
        except KeyError:
            raise ValueError(f"no service account for component {component!r}") from None

    def _dags_folder(self) -> str:
        s = self._s
        if s.dags.source == "volume" and self._a.dags.git_writer or s.dags.source == "gitSync":
            sub = s.dags.git.sub_path.strip("/") if s.dags.git else ""
            return "/".join(p for p in (s.dags.folder, GIT_ROOT_LINK, sub) if p)
        return s.dags.folder

    def _secret_env(self, name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": self.secrets.secret_name, "key": key}}}

    def env(self) -> list[dict[str, Any]]:
        """The settings every Airflow container needs; task pods get the same through the template."""
        s, a = self._s, self._a
        plain: dict[str, pulumi.Input[str]] = {
            "AIRFLOW_HOME": HOME,
            "AIRFLOW_CONFIG": f"{CONFIG_DIR}/airflow.cfg",
            "AIRFLOW__CORE__EXECUTOR": s.executor,
            # Tasks talk to the api-server's execution API; the default (localhost) fails in a pod.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": pulumi.Output.concat(self.api_url, "/execution/"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": self._dags_folder(),
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGERS[s.auth.manager],
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": LOGS,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(WORKER_LOG_PORT),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(TRIGGERER_LOG_PORT),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__FAB__CONFIG_FILE": f"{CONFIG_DIR}/webserver_config.py",
        }
        if self._celery:
            plain["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(s.workers.concurrency)
        if self._kube:
            plain["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] = a.namespace
            plain["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] = POD_TEMPLATE_FILE
            plain["AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS"] = "True"
        if s.auth.manager == "simple":
            plain["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{s.auth.admin_user}:admin"
            plain["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = (
                f"{SIMPLE_AUTH_DIR}/{sec.SIMPLE_AUTH_PASSWORDS}"
            )
        if s.dags.source == "bundle" and s.dags.git:
            g = s.dags.git
            plain["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
                [
                    {
                        "name": "dags",
                        "classpath": GIT_BUNDLE_CLASS,
                        "kwargs": {
                            "repo_url": g.repo,
                            "tracking_ref": g.ref,
                            "subdir": g.sub_path or None,
                            "refresh_interval": g.period_seconds,
                        },
                    }
                ]
            )
            plain["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] = "/tmp/airflow/dag_bundles"
        if a.remote_logs is not None:
            plain["AIRFLOW__LOGGING__REMOTE_LOGGING"] = "True"
            plain["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] = a.remote_logs.base_folder
            plain["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] = a.remote_logs.conn_id
            plain[f"AIRFLOW_CONN_{a.remote_logs.conn_id.upper()}"] = a.remote_logs.connection
            plain.update(a.remote_logs.extra_env)
        if s.statsd.enabled:
            plain["AIRFLOW__METRICS__STATSD_ON"] = "True"
            plain["AIRFLOW__METRICS__STATSD_HOST"] = f"{self._inst}-statsd"
            plain["AIRFLOW__METRICS__STATSD_PORT"] = str(STATSD_PORT)
            plain["AIRFLOW__METRICS__STATSD_PREFIX"] = "airflow"
        for name, value in sorted(s.variables.items()):
            plain[f"AIRFLOW_VAR_{name.upper()}"] = value
        for key, value in sorted(s.config.items()):
            section, option = key.split(".", 1)
            plain[f"AIRFLOW__{section.upper()}__{option.upper()}"] = value

        env = [{"name": k, "value": v} for k, v in plain.items()]
        env += [
            self._secret_env("AIRFLOW__CORE__FERNET_KEY", sec.FERNET_KEY),
            self._secret_env("AIRFLOW__API_AUTH__JWT_SECRET", sec.JWT_SECRET),
            self._secret_env("AIRFLOW__API__SECRET_KEY", sec.API_SECRET_KEY),
            self._secret_env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", sec.SQL_ALCHEMY_CONN),
        ]
        if self._celery:
            env += [
                self._secret_env("AIRFLOW__CELERY__BROKER_URL", sec.BROKER_URL),
                self._secret_env("AIRFLOW__CELERY__RESULT_BACKEND", sec.RESULT_BACKEND),
            ]
        env += [self._secret_env(k, k) for k in self.secrets.connection_keys]
        return env

    def _volumes(self, component: str, logs: bool = True) -> tuple[list[dict], list[dict]]:
        """Volumes and mounts of an Airflow container: writable scratch, logs, and DAGs read-only."""
        vols: list[dict[str, Any]] = [
            {"name": "tmp", "emptyDir": {}},
            {"name": "config", "emptyDir": {}},
        ]
        mounts: list[dict[str, Any]] = [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "config", "mountPath": CONFIG_DIR},
        ]
        if logs:
            vols.append({"name": "logs", "emptyDir": {}})
            mounts.append({"name": "logs", "mountPath": LOGS})
        kind = self._a.dags.kind
        if kind == "volume":
            vols.append({"name": "dags", "persistentVolumeClaim": {"claimName": self._a.dags.claim_name, "readOnly": True}})
            mounts.append({"name": "dags", "mountPath": self._s.dags.folder, "readOnly": True})
        elif kind == "gitSync":
            vols.append({"name": "dags", "emptyDir": {}})
            mounts.append({"name": "dags", "mountPath": self._s.dags.folder, "readOnly": True})
        return vols, mounts

    def _git_sync_container(self, name: str, one_time: bool, mount_path: str) -> dict[str, Any]:
        g = self._s.dags.git
        assert g is not None
        env: list[dict[str, Any]] = [
            {"name": "GITSYNC_REPO", "value": g.repo},
            {"name": "GITSYNC_REF", "value": g.ref},
            {"name": "GITSYNC_ROOT", "value": mount_path},
            {"name": "GITSYNC_LINK", "value": GIT_ROOT_LINK},
            {"name": "GITSYNC_DEPTH", "value": "1"},
            {"name": "GITSYNC_PERIOD", "value": f"{g.period_seconds}s"},
            {"name": "GITSYNC_ONE_TIME", "value": "true" if one_time else "false"},
            {"name": "HOME", "value": "/tmp"},
        ]
        if g.credentials_secret:
            for var in ("GITSYNC_USERNAME", "GITSYNC_PASSWORD"):
                env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": g.credentials_secret, "key": var}}})
        return {
            "name": name,
            "image": g.image,
            "imagePullPolicy": "IfNotPresent",
            "env": env,
            "securityContext": container_security(),
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "dags", "mountPath": mount_path}, {"name": "tmp", "mountPath": "/tmp"}],
        }

    def _container(
        self,
        name: str,
        args: list[str],
        res: Any,
        mounts: list[dict[str, Any]],
        probe: Optional[dict[str, Any]] = None,
        ports: Optional[list[tuple[str, int]]] = None,
        startup: Optional[dict[str, Any]] = None,
    ) -> dict[str, Any]:
        c: dict[str, Any] = {
            "name": name,
            "image": self._image,
            "imagePullPolicy": self._s.image.pull_policy,
            "env": self.env(),
            "securityContext": container_security(),
            "resources": resources(res),
            "volumeMounts": mounts,
        }
        if args:  # task pods get their args from the executor
            c["args"] = args
        if ports:
            c["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]
        if probe:
            c["livenessProbe"] = probe
            c["readinessProbe"] = {**probe, "initialDelaySeconds": 10}
        if startup:
            c["startupProbe"] = startup
        return c

    def _wait_for_migrations(self, mounts: list[dict[str, Any]]) -> dict[str, Any]:
        """An init container that blocks until the DB schema matches this image (belt and braces
        with the Pulumi dependency on the Job: a pod restarted mid-upgrade waits too)."""
        return {
            "name": "wait-for-migrations",
            "image": self._image,
            "imagePullPolicy": self._s.image.pull_policy,
            "args": ["db", "check-migrations", "--migration-wait-timeout=600"],
            "env": self.env(),
            "securityContext": container_security(),
            "resources": resources(self._s.scheduler.resources),
            "volumeMounts": [m for m in mounts if m["name"] in ("tmp", "config")],
        }

    def _pod_spec(
        self,
        component: str,
        containers: list[dict[str, Any]],
        vols: list[dict[str, Any]],
        mounts: list[dict[str, Any]],
        wait: bool = True,
        restart: Optional[str] = None,
    ) -> dict[str, Any]:
        init: list[dict[str, Any]] = [self._wait_for_migrations(mounts)] if wait else []
        if self._a.dags.kind == "gitSync" and component in ("scheduler", "dag-processor", "triggerer", "worker"):
            init.append(self._git_sync_container("git-sync-init", True, self._s.dags.folder))
            containers = containers + [self._git_sync_container("git-sync", False, self._s.dags.folder)]
        spec: dict[str, Any] = {
            "serviceAccountName": self._sa(component),
            "automountServiceAccountToken": self._needs_token(component),
            "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
            "containers": containers,
            "volumes": vols,
            "terminationGracePeriodSeconds": 60,
        }
        if init:
            spec["initContainers"] = init
        if restart:
            spec["restartPolicy"] = restart
        return spec

    def _needs_token(self, component: str) -> bool:
        """Only pods that call the Kubernetes API get a token (launchers and log readers)."""
        s = self._s
        if component == "scheduler":
            return self._kube
        if component == "api-server":
            return self._kube
        if component in ("worker", "triggerer", "task"):
            return s.pod_operator.enabled
        return False

    def _pod_meta(self, component: str, extra: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
        lab = {**labels(self._inst, component), **dict(self._a.pod_labels.get(component, {}))}
        if extra:
            lab.update(extra)
        return {"labels": lab}

    def _jobs_check(self, job_type: str) -> dict[str, Any]:
        # `airflow jobs check` starts a Python interpreter: generous timeouts, slow period.
        return {
            "exec": {"command": ["airflow", "jobs", "check", "--job-type", job_type, "--local"]},
            "initialDelaySeconds": 30,
            "periodSeconds": 60,
            "timeoutSeconds": 45,
            "failureThreshold": 5,
        }

    def _pdb(self, component: str, replicas: int) -> None:
        if replicas < 2:
            return
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-{component}-pdb",
            metadata={"name": f"{self._inst}-{component}", "namespace": self._a.namespace,
                      "labels": labels(self._inst, component)},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector(self._inst, component)}},
            opts=self._child,
        )

    def _service(self, component: str, port: int, port_name: str, headless: bool = False,
                 service_type: str = "ClusterIP") -> k8s.core.v1.Service:
        spec: dict[str, Any] = {
            "selector": selector(self._inst, component),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        }
        if headless:
            spec["clusterIP"] = "None"
            spec["publishNotReadyAddresses"] = True
        else:
            spec["type"] = service_type
        return k8s.core.v1.Service(
            f"{self._name}-{component}-svc",
            metadata={"name": f"{self._inst}-{component}", "namespace": self._a.namespace,
                      "labels": labels(self._inst, component)},
            spec=spec,
            opts=self._child,
        )

    # ----- jobs -----------------------------------------------------------------------------

    def _job(self, component: str, suffix: str, args: list[str], depends: list[pulumi.Resource],
             timeout_min: int, extra_env: Optional[list[dict[str, Any]]] = None) -> k8s.batch.v1.Job:
        vols, mounts = self._volumes(component, logs=False)
        vols = [v for v in vols if v["name"] != "dags"]
        mounts = [m for m in mounts if m["name"] != "dags"]
        container = self._container(component, args, self._s.scheduler.resources, mounts)
        if extra_env:
            container["env"] = container["env"] + extra_env
        spec = self._pod_spec(component, [container], vols, mounts, wait=False, restart="Never")
        deps = list(depends) + list(self._a.database.depends_on)
        return k8s.batch.v1.Job(
            f"{self._name}-{suffix}",
            # A new image gives a new name: a Job's pod template is immutable, and a new Job is what
            # makes an upgrade migrate again.
            metadata={"name": f"{self._inst}-{suffix}-{image_hash(self._image)}", "namespace": self._a.namespace,
                      "labels": labels(self._inst, component)},
            spec={
                "backoffLimit": 4,
                "activeDeadlineSeconds": timeout_min * 60,
                "template": {"metadata": self._pod_meta(component), "spec": spec},
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=deps,
                custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout_min}m", update=f"{timeout_min}m"),
                # Replace rather than patch: the pod template of a Job cannot change in place.
                delete_before_replace=False,
            ),
        )

    def _migration_job(self) -> k8s.batch.v1.Job:
        deps: list[pulumi.Resource] = [self.secrets]
        return self._job("migrate", "migrate", ["db", "migrate"], deps, self._s.migration_timeout_minutes)

    def _create_user_job(self) -> k8s.batch.v1.Job:
        a = self._s.auth
        script = (
            'airflow users create --role Admin --username "$ADMIN_USER" --email "$ADMIN_EMAIL" '
            '--firstname Admin --lastname User --password "$ADMIN_PASSWORD" '
            '|| airflow users reset-password --username "$ADMIN_USER" --password "$ADMIN_PASSWORD"'
        )
        # The image's entrypoint runs `bash -c ...` as given; an existing admin gets the password reset
        # to the generated one, so the stack output is always the password that works.
        job = self._job(
            "create-user", "create-user", ["bash", "-c", script], [self.migration], 10,
            extra_env=[
                {"name": "ADMIN_USER", "value": a.admin_user},
                {"name": "ADMIN_EMAIL", "value": a.admin_email},
                self._secret_env("ADMIN_PASSWORD", sec.ADMIN_PASSWORD),
            ],
        )
        return job

    # ----- long-running components ------------------------------------------------------

    def _deployment(
        self,
        component: str,
        replicas: int,
        res: Any,
        args: list[str],
        depends: list[pulumi.Resource],
        probe: Optional[dict[str, Any]] = None,
        ports: Optional[list[tuple[str, int]]] = None,
        template: bool = False,
        extra_vols: Optional[list[dict[str, Any]]] = None,
        extra_mounts: Optional[list[dict[str, Any]]] = None,
        startup: Optional[dict[str, Any]] = None,
    ) -> k8s.apps.v1.Deployment:
        vols, mounts = self._volumes(component)
        if template and self.pod_template is not None:
            vols.append({"name": "pod-template", "configMap": {"name": self.pod_template.metadata["name"]}})
            mounts.append({"name": "pod-template", "mountPath": POD_TEMPLATE_DIR, "readOnly": True})
        vols += extra_vols or []
        mounts += extra_mounts or []
        container = self._container(component, args, res, mounts, probe=probe, ports=ports, startup=startup)
        dep = k8s.apps.v1.Deployment(
            f"{self._name}-{component}",
            metadata={"name": f"{self._inst}-{component}", "namespace": self._a.namespace,
                      "labels": labels(self._inst, component)},
            spec={
                "replicas": replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector(self._inst, component)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": self._pod_meta(component),
                    "spec": {
                        **self._pod_spec(component, [container], vols, mounts),
                        "topologySpreadConstraints": spread(self._inst, component),
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        self.workloads[component] = dep
        self._pdb(component, replicas)
        return dep

    def _api_server(self, depends: list[pulumi.Resource]) -> None:
        s = self._s
        http = {"httpGet": {"path": "/api/v2/monitor/health", "port": "api"}, "periodSeconds": 15,
                "timeoutSeconds": 10, "failureThreshold": 6}
        extra_vols, extra_mounts = [], []
        if s.auth.manager == "simple":
            extra_vols.append({"name": "simple-auth", "secret": {
                "secretName": self.secrets.secret_name,
                "items": [{"key": sec.SIMPLE_AUTH_PASSWORDS, "path": sec.SIMPLE_AUTH_PASSWORDS}]}})
            extra_mounts.append({"name": "simple-auth", "mountPath": SIMPLE_AUTH_DIR, "readOnly": True})
        self._deployment(
            "api-server", s.api_server.replicas, s.api_server.resources,
            ["api-server", "--port", str(API_PORT)], depends + ([self.create_user] if self.create_user else []),
            probe=http, ports=[("api", API_PORT)], extra_vols=extra_vols, extra_mounts=extra_mounts,
            startup={**http, "periodSeconds": 10, "failureThreshold": 30},
        )
        self.api_service = self._service("api-server", API_PORT, "api", service_type=s.api_server.service_type)

    def _stateful_with_logs(
        self,
        component: str,
        replicas: int,
        res: Any,
        args: list[str],
        log_port: int,
        port_name: str,
        depends: list[pulumi.Resource],
        probe: Optional[dict[str, Any]] = None,
        storage: Optional[str] = None,
    ) -> None:
        """A StatefulSet with a headless Service: each pod's FQDN resolves, so the api-server can
        fetch live task logs from it on the log-server port."""
        svc = self._service(component, log_port, port_name, headless=True)
        vols, mounts = self._volumes(component, logs=storage is None)
        claim_templates = []
        if storage:
            mounts.append({"name": "logs", "mountPath": LOGS})
            claim_templates.append({
                "metadata": {"name": "logs"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
            })
        container = self._container(component, args, res, mounts, probe=probe, ports=[(port_name, log_port)])
        spec: dict[str, Any] = {
            "serviceName": svc.metadata["name"],
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(self._inst, component)},
            "template": {
                "metadata": self._pod_meta(component),
                "spec": {
                    **self._pod_spec(component, [container], vols, mounts),
                    # Celery warm shutdown: let running tasks finish before the pod goes.
                    "terminationGracePeriodSeconds": 600 if component == "worker" else 60,
                    "topologySpreadConstraints": spread(self._inst, component),
                },
            },
        }
        if claim_templates:
            spec["volumeClaimTemplates"] = claim_templates
            # `pulumi destroy` must leave no volume behind.
            spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Delete"}
        sts = k8s.apps.v1.StatefulSet(
            f"{self._name}-{component}",
            metadata={"name": f"{self._inst}-{component}", "namespace": self._a.namespace,
                      "labels": labels(self._inst, component)},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        self.workloads[component] = sts
        self._pdb(component, replicas)

    def _git_writer(self) -> None:
        """The single writer of the DAG volume: one git-sync replica, Recreate so two never overlap."""
        comp = "git-sync"
        container = self._git_sync_container("git-sync", False, self._s.dags.folder)
        # git-sync's HTTP endpoint answers 5xx until the first sync, 200 after: one probe for all three.
        container["env"] += [{"name": "GITSYNC_HTTP_BIND", "value": f":{GIT_SYNC_HTTP_PORT}"},
                             {"name": "GITSYNC_HTTP_PROBE", "value": "true"}]
        container["ports"] = [{"name": "http", "containerPort": GIT_SYNC_HTTP_PORT, "protocol": "TCP"}]
        probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 30, "timeoutSeconds": 5}
        container["startupProbe"] = {**probe, "periodSeconds": 10, "failureThreshold": 60}  # a first clone can be slow
        container["livenessProbe"] = {**probe, "failureThreshold": 10}
        container["readinessProbe"] = probe
        k8s.apps.v1.Deployment(
            f"{self._name}-git-sync",
            metadata={"name": f"{self._inst}-git-sync", "namespace": self._a.namespace,
                      "labels": labels(self._inst, comp)},
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector(self._inst, comp)},
                "template": {
                    "metadata": self._pod_meta(comp),
                    "spec": {
                        "serviceAccountName": self._sa(comp),
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
                        "containers": [container],
                        "volumes": [
                            {"name": "dags", "persistentVolumeClaim": {"claimName": self._a.dags.claim_name}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
            opts=self._child,
        )

    def _statsd(self) -> None:
        comp = "statsd"
        s = self._s.statsd
        k8s.apps.v1.Deployment(
            f"{self._name}-statsd",
            metadata={"name": f"{self._inst}-statsd", "namespace": self._a.namespace,
                      "labels": labels(self._inst, comp)},
            spec={
                "replicas": 1,
                "selector": {"matchLabels": selector(self._inst, comp)},
                "template": {
                    "metadata": self._pod_meta(comp),
                    "spec": {
                        "serviceAccountName": self._sa(comp),
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(65534, 65534),
                        "containers": [{
                            "name": "statsd-exporter",
                            "image": s.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": [f"--statsd.listen-udp=:{STATSD_PORT}", f"--web.listen-address=:{STATSD_METRICS_PORT}"],
                            "ports": [
                                {"name": "statsd", "containerPort": STATSD_PORT, "protocol": "UDP"},
                                {"name": "metrics", "containerPort": STATSD_METRICS_PORT, "protocol": "TCP"},
                            ],
                            "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 30},
                            "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10},
                            "securityContext": container_security(),
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                        }],
                    },
                },
            },
            opts=self._child,
        )
        k8s.core.v1.Service(
            f"{self._name}-statsd-svc",
            metadata={"name": f"{self._inst}-statsd", "namespace": self._a.namespace,
                      "labels": labels(self._inst, comp)},
            spec={
                "selector": selector(self._inst, comp),
                "ports": [
                    {"name": "statsd", "port": STATSD_PORT, "targetPort": "statsd", "protocol": "UDP"},
                    {"name": "metrics", "port": STATSD_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
                ],
            },
            opts=self._child,
        )

    # ----- KubernetesExecutor -----------------------------------------------------------

    def pod_template_object(self) -> dict[str, Any]:
        """The pod template task pods are made from: they carry no Airflow settings of their own,
        so everything (execution API URL, secrets by reference, DAGs) must be in here."""
        vols, mounts = self._volumes("task")
        init: list[dict[str, Any]] = []
        if self._a.dags.kind == "gitSync":
            init.append(self._git_sync_container("git-sync-init", True, self._s.dags.folder))
        spec: dict[str, Any] = {
            "serviceAccountName": self._sa("task"),
            "automountServiceAccountToken": self._s.pod_operator.enabled,
            "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
            "restartPolicy": "Never",
            # The KubernetesExecutor looks for the container named "base".
            "containers": [self._container("base", [], self._s.workers.resources, mounts)],
            "volumes": vols,
        }
        if init:
            spec["initContainers"] = init
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "placeholder", **self._pod_meta("task")},
                "spec": spec}

    def _pod_template_configmap(self) -> k8s.core.v1.ConfigMap:
        body = pulumi.Output.from_input(self.pod_template_object()).apply(
            lambda obj: yaml.safe_dump(obj, sort_keys=False)
        )
        return k8s.core.v1.ConfigMap(
            f"{self._name}-pod-template",
            metadata={"name": f"{self._inst}-pod-template", "namespace": self._a.namespace,
                      "labels": labels(self._inst, "pod-template")},
            data={"pod_template_file.yaml": body},
            opts=self._child,
        )

    # ----- network ----------------------------------------------------------------------

    def _network_policies(self) -> None:
        ns = self._a.namespace
        inst = self._inst

        def policy(suffix: str, spec: dict[str, Any]) -> None:
            k8s.networking.v1.NetworkPolicy(
                f"{self._name}-netpol-{suffix}",
                metadata={"name": f"{inst}-{suffix}", "namespace": ns, "labels": labels(inst, "network")},
                spec=spec,
                opts=self._child,
            )

        def from_components(*components: str) -> list[dict[str, Any]]:
            return [{"podSelector": {"matchLabels": selector(inst, c)}} for c in components]

        # Default: nothing reaches any pod of this namespace unless a policy below allows it.
        policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
        # The UI/API and the execution API: users, and every task (workers, task pods, triggerer).
        policy("api-server", {
            "podSelector": {"matchLabels": selector(inst, "api-server")},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": API_PORT, "protocol": "TCP"}]}],
        })
        # Live task logs are fetched by the api-server only.
        policy("worker-logs", {
            "podSelector": {"matchLabels": selector(inst, "worker")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from_components("api-server"), "ports": [{"port": WORKER_LOG_PORT, "protocol": "TCP"}]}],
        })
        policy("triggerer-logs", {
            "podSelector": {"matchLabels": selector(inst, "triggerer")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from_components("api-server"), "ports": [{"port": TRIGGERER_LOG_PORT, "protocol": "TCP"}]}],
        })
        if self._s.statsd.enabled:
            policy("statsd", {
                "podSelector": {"matchLabels": selector(inst, "statsd")},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": inst}}}],
                     "ports": [{"port": STATSD_PORT, "protocol": "UDP"}]},
                    {"ports": [{"port": STATSD_METRICS_PORT, "protocol": "TCP"}]},
                ],
            })
        if self._celery and self._s.flower.enabled:
            policy("flower", {
                "podSelector": {"matchLabels": selector(inst, "flower")},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": FLOWER_PORT, "protocol": "TCP"}]}],
            })
