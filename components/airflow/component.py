"""Airflow 3 itself: the orchestrating component that puts the package's concerns together.

Cloud-agnostic: it takes a DatabaseEndpoint, an optional BrokerEndpoint, a DAG source, remote-log
settings and per-component service accounts, and never imports a cloud SDK.

Rules it keeps (DESIGN.md):
- the metadata DB is migrated by a Job every workload depends on; the Job's name carries a hash of
  the image, so a new image or Airflow version gives a new Job and migrates before workloads roll;
- the DAG volume is mounted read-only in every Airflow pod; only the git-sync writer mounts it
  read-write;
- every pod runs non-root with no privilege escalation, no capabilities and seccomp RuntimeDefault.

Where each concern lives: settings.py (the typed settings), roster.py (the components table),
env.py (per-component environment), pods.py (containers and pod specs), workloads.py (the one
workload builder), jobs.py (migration and admin user), network.py (NetworkPolicies), secrets.py
(generated secrets), pod_template.py (KubernetesExecutor's task pods).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.airflow import git_ssh, keda, kpo, metrics, roster
from components.airflow.env import CONFIG_DIR, LOGS, POD_TEMPLATE_DIR, SIMPLE_AUTH_DIR, AirflowEnv, dags_folder
from components.airflow.extra_objects import extra_objects
from components.airflow.housekeeping import HousekeepingJobs
from components.airflow.jobs import Jobs
from components.airflow.network import network_policies
from components.airflow.pod_template import pod_template_configmap
from components.airflow.pods import AIRFLOW_GID, AIRFLOW_UID, PodFactory, jobs_check, probes
from components.airflow.roster import Roster
from components.airflow.secrets import AirflowSecrets
from components.airflow.settings import WORKER, AirflowSettings, Workers
from components.airflow.sso import webserver_config
from components.airflow.workloads import Workload, WorkloadBuilder
from components.endpoints import BrokerEndpoint, DatabaseEndpoint, RemoteLogs
from components.k8s import Manifest, container_security, labels, pod_security, resources, selector

__all__ = ["Airflow", "AirflowArgs", "DagSource"]


@dataclass
class DagSource:
    """How DAGs reach the pods, resolved by the stack from `airflow.dags`."""

    kind: str  # volume | gitSync | image | bundle
    claim_name: pulumi.Input[str] | None = None  # volume: an existing ReadWriteMany claim
    git_writer: bool = False  # volume: one git-sync Deployment fills the claim


@dataclass
class AirflowArgs:
    """Everything the Airflow component needs from its stack.

    Attributes:
        namespace: the namespace every object goes in (from AirflowNamespace).
        instance: the instance name; objects are `<instance>-<component>`.
        settings: the typed `airflow` settings.
        database: the metadata DB; its `depends_on` gate the migration Job.
        broker: the Celery broker (required with the CeleryExecutor).
        dags: how DAGs reach the pods.
        service_accounts: component -> ServiceAccount name (from AirflowNamespace).
        remote_logs: remote task-log storage, if the cloud has one.
        log_claim: without remote logs, a claim the task-log writers and the api-server share, so
            a finished task's log outlives the pod that wrote it.
        pod_labels: extra pod labels per component (e.g. Azure workload identity's).
        task_namespace: where KubernetesPodOperator pods go, if not the Airflow namespace.
        network_policies: create the NetworkPolicies.
        worker_storage_class: the StorageClass of worker log claims when `workers.storageClass` is
            unset (the aws stack's gp3 class), and `worker_storage_ready` what it needs first.
        ui_url: the HTTPS URL an Ingress serves the UI at (`ui.host`), if any: the api-server then
            trusts the proxy's forwarded headers and every link points there.
        keda: the KEDA that scales autoscaled worker groups (its CRDs' readiness, the DB CA file
            inside its operator); required when a group has autoscaling on.
        direct_database: when `database` is PgBouncer (components/pgbouncer.py), the server behind
            it: the migration and user Jobs connect to it directly, and wait for its `depends_on`;
            the long-running components use `database` and wait for PgBouncer as well.
        log_retention_days: with `log_claim`, how long task logs stay on it (the log groomer).
        log_claim_access_mode: the claim's access mode; ReadWriteOnce keeps the groomer on the node
            where the claim is attached.
    """

    namespace: pulumi.Input[str]
    instance: str
    settings: AirflowSettings
    database: DatabaseEndpoint
    broker: BrokerEndpoint | None
    dags: DagSource
    service_accounts: Mapping[str, pulumi.Input[str]]
    remote_logs: RemoteLogs | None = None
    log_claim: pulumi.Input[str] | None = None
    pod_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    task_namespace: pulumi.Input[str] | None = None
    network_policies: bool = True
    worker_storage_class: str | None = None
    worker_storage_ready: Sequence[pulumi.Resource] = ()
    ui_url: str | None = None
    keda: keda.KedaTarget | None = None
    direct_database: DatabaseEndpoint | None = None
    log_retention_days: int = 15
    log_claim_access_mode: str = "ReadWriteMany"


WEBSERVER_CONFIG = "webserver_config.py"
API_PORT = roster.component("api-server").port("api").number
GIT_SYNC_HTTP_PORT = roster.component("git-sync").port("http").number
STATSD_PORT = roster.component("statsd").port("statsd").number
STATSD_METRICS_PORT = roster.component("statsd").port("metrics").number


class Airflow(pulumi.ComponentResource):
    """Every Airflow workload in one namespace."""

    def __init__(self, name: str, args: AirflowArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("airflow-k8s:kubernetes:Airflow", name, None, opts)
        settings = args.settings
        self._args = args
        self._settings = settings
        self._roster = Roster.of(
            settings,
            args.dags.git_writer,
            pgbouncer=args.direct_database is not None,
            log_claim=args.log_claim is not None,
        )
        conditions = self._roster.conditions
        if conditions.celery and args.broker is None:
            raise ValueError("the CeleryExecutor needs a broker endpoint")
        if args.remote_logs is not None and args.log_claim is not None:
            raise ValueError("task logs go either to remote storage or to a shared claim, not both")
        child = pulumi.ResourceOptions(parent=self)

        self.secrets = AirflowSecrets(
            f"{name}-secrets",
            namespace=args.namespace,
            instance=args.instance,
            database=args.database,
            broker=args.broker if conditions.celery else None,
            admin_user=settings.auth.admin_user,
            connections={k: pulumi.Output.secret(v.get_secret_value()) for k, v in settings.connections.items()},
            secret_variables={
                k: pulumi.Output.secret(v.get_secret_value()) for k, v in settings.secret_variables.items()
            },
            sso_client_secret=pulumi.Output.secret(settings.auth.sso.client_secret.get_secret_value())
            if settings.auth.sso
            else None,
            flower_user=settings.flower.user if conditions.flower else None,
            direct_database=args.direct_database,
            opts=child,
        )
        git = settings.dags.git
        if git is not None and git.ssh is not None:
            git_ssh.git_ssh_secret(self, name, args.instance, args.namespace, git.ssh)
        self.namespace = args.namespace
        self.api_service_name = f"{args.instance}-api-server"
        self.api_port = API_PORT
        self.api_url = pulumi.Output.concat(
            "http://", self.api_service_name, ".", args.namespace, ".svc.cluster.local:", str(API_PORT)
        )
        env = AirflowEnv(
            settings=settings,
            roster=self._roster,
            namespace=args.namespace,
            api_url=self.api_url,
            dags_folder=dags_folder(settings, args.dags.git_writer),
            secret_name=self.secrets.secret_name,
            secret_names=self.secrets.secret_names,
            connection_keys=self.secrets.connection_keys,
            remote_logs=args.remote_logs,
            instance=args.instance,
            secret_values=self.secrets.values,
            task_namespace=args.task_namespace,
            ui_url=args.ui_url,
        )
        # KubernetesPodOperator's placement defaults, as Airflow's pod_mutation_hook (kpo.py).
        self.local_settings: k8s.core.v1.ConfigMap | None = None
        if conditions.pod_operator and settings.pod_operator.placement is not None:
            self.local_settings = kpo.local_settings_configmap(
                self, name, args.instance, args.namespace, settings.pod_operator.placement
            )
        self._pods = PodFactory(
            settings=settings,
            roster=self._roster,
            env=env,
            instance=args.instance,
            dag_source=args.dags.kind,
            claim_name=args.dags.claim_name,
            log_claim=args.log_claim,
            service_accounts=args.service_accounts,
            pod_labels=args.pod_labels,
            database_ca=self.secrets.database_ca,
            local_settings=self.local_settings.metadata["name"] if self.local_settings is not None else None,
        )
        self._build = WorkloadBuilder(self, name, args.instance, args.namespace, self._roster)

        self.pod_template: k8s.core.v1.ConfigMap | None = None
        if conditions.kubernetes_executor:
            self.pod_template = pod_template_configmap(self, name, args.instance, args.namespace, self._pods)

        server = args.direct_database or args.database
        jobs = Jobs(self, name, args.instance, args.namespace, settings, self._pods, list(server.depends_on))
        self.migration = jobs.migration(self.secrets.database_resources)
        # Log writers also wait for their cloud identity's bindings (made when the pod is admitted).
        identity = list(args.remote_logs.ready) if args.remote_logs is not None else []
        after_migration: list[pulumi.Resource] = [self.migration, *identity]
        if args.direct_database is not None:
            # PgBouncer's pods, ready: the components' first connections go through them.
            after_migration += list(args.database.depends_on)
        self.create_user: k8s.batch.v1.Job | None = jobs.create_user(self.migration) if conditions.local_admin else None
        self.pools: k8s.batch.v1.Job | None = jobs.pools(self.migration) if conditions.pools else None
        self._housekeeping(name)
        self.webserver_config: k8s.core.v1.ConfigMap | None = None
        if settings.auth.sso is not None:
            self.webserver_config = self._webserver_config(name)

        if conditions.git_writer:
            self._git_writer()

        self.workloads: dict[str, pulumi.CustomResource] = {}
        self.scaled_objects: list[pulumi.CustomResource] = []
        # Prometheus Operator ServiceMonitors (metrics.py); other exporters add theirs with service_monitor().
        self.service_monitors: list[pulumi.CustomResource] = []
        self._api_server(after_migration)
        self._standard(
            "scheduler", settings.scheduler.replicas, settings.scheduler.resources, ["scheduler"], after_migration,
            # The scheduler's own health server (`[scheduler] enable_health_check`): an HTTP check.
            probe=probes({"httpGet": {"path": "/health", "port": "health"}}, cheap=True, serves=False, timeout=10),
            template=conditions.kubernetes_executor,
        )  # fmt: skip
        self._standard(
            "dag-processor", settings.dag_processor.replicas, settings.dag_processor.resources, ["dag-processor"],
            after_migration, probe=jobs_check("DagProcessorJob"),
        )  # fmt: skip
        self._with_log_server(
            "triggerer", settings.triggerer.replicas, settings.triggerer.resources, ["triggerer"], after_migration,
            probe=jobs_check("TriggererJob"),
        )  # fmt: skip
        if conditions.celery:
            # The default group (`airflow.workers`, Airflow's default queue unless it names others),
            # then each worker set: the same table row, its own label, StatefulSet and Service.
            if settings.workers.replicas > 0 or settings.workers.autoscaling.enabled:
                self._worker(self._pods, settings.workers, after_migration)
            for ws in settings.worker_sets:
                self._worker(self._pods.for_worker_set(ws), ws, after_migration)
            self.scaled_objects = keda.scaled_objects(
                self,
                name,
                args.instance,
                args.namespace,
                settings,
                # KEDA's scaler connects to the server itself, as the Jobs do: its queries are
                # not Airflow's, its pool is counted in the budget's direct clients, and only
                # Airflow's namespace reaches PgBouncer.
                args.direct_database or args.database,
                args.keda,
                self.workloads,
            )
        if conditions.flower:
            self._standard(
                "flower", 1, settings.flower.resources, ["celery", "flower"], after_migration,
                # Flower's /healthcheck answers without credentials (flower/views/monitor.py).
                probe=probes({"httpGet": {"path": "/healthcheck", "port": "flower"}}, cheap=True, serves=True,
                             timeout=5),
            )  # fmt: skip
            self._build.service("flower")
        if conditions.statsd:
            self._statsd(name)
        if args.network_policies:
            network_policies(
                self, name, args.instance, args.namespace, self._roster,
                [g.component for g in settings.worker_groups()[1:]], settings.statsd.scrapers,
            )  # fmt: skip
        self.extra_objects = extra_objects(self, name, args.namespace, settings.extra_objects)

        self.register_outputs({"api_url": self.api_url, "migration_job": self.migration.metadata["name"]})

    def _housekeeping(self, name: str) -> None:
        """The scheduled cleanups the settings switch on (housekeeping.py)."""
        house = self._settings.housekeeping
        jobs = HousekeepingJobs(self, name, self._args.instance, self._args.namespace, self._pods)
        self.db_clean: k8s.batch.v1.CronJob | None = None
        self.pod_cleanup: k8s.batch.v1.CronJob | None = None
        if self._roster.conditions.db_clean:
            self.db_clean = jobs.db_clean(house.db_clean, self.migration)
        if self._roster.pod_cleaners or self._roster.task_pod_cleaners:
            # KubernetesExecutor pods are in the Airflow namespace; KubernetesPodOperator pods in the
            # task namespace when there is one (the same namespaces the RBAC in namespace.py covers).
            namespaces: list[pulumi.Input[str]] = []
            if self._roster.pod_cleaners or self._args.task_namespace is None:
                namespaces.append(self._args.namespace)
            if self._roster.task_pod_cleaners and self._args.task_namespace is not None:
                namespaces.append(self._args.task_namespace)
            self.pod_cleanup = jobs.pod_cleanup(house.pod_cleanup, namespaces)
        if self._args.log_claim is not None:
            jobs.log_groomer(self._args.log_claim, self._args.log_retention_days, self._args.log_claim_access_mode)

    # ----- the long-running components --------------------------------------------------------

    def _standard(
        self,
        component: str,
        replicas: int,
        res: Any,
        args: list[str],
        depends: list[pulumi.Resource],
        *,
        probe: Manifest | None = None,
        template: bool = False,
        extra_vols: list[Manifest] | None = None,
        extra_mounts: list[Manifest] | None = None,
    ) -> pulumi.CustomResource:
        """An Airflow Deployment: replicas behind a rolling update that never drops below the count."""
        vols, mounts = self._pods.volumes(component)
        if template and self.pod_template is not None:
            vols.append({"name": "pod-template", "configMap": {"name": self.pod_template.metadata["name"]}})
            mounts.append({"name": "pod-template", "mountPath": POD_TEMPLATE_DIR, "readOnly": True})
        vols += extra_vols or []
        mounts += extra_mounts or []
        container = self._pods.container(component, args, res, mounts, probes=probe)
        workload = self._build.workload(
            Workload(
                component, replicas, self._pods.pod_spec(component, [container], vols, mounts), depends_on=depends
            ),
            self._pods,
        )
        self.workloads[component] = workload
        return workload

    def _api_server(self, depends: list[pulumi.Resource]) -> None:
        s = self._settings
        http = probes({"httpGet": {"path": "/api/v2/monitor/health", "port": "api"}}, cheap=True, serves=True,
                      timeout=10)  # fmt: skip
        extra_vols, extra_mounts = [], []
        if self._roster.conditions.simple_auth:
            key = roster.SIMPLE_AUTH_PASSWORDS
            if key not in self._roster.secret_keys("api-server"):
                raise ValueError("the components table does not grant the api-server the simple-auth passwords")
            extra_vols.append({"name": "simple-auth", "secret": {
                "secretName": self.secrets.secret_name, "items": [{"key": key, "path": key}]}})  # fmt: skip
            extra_mounts.append({"name": "simple-auth", "mountPath": SIMPLE_AUTH_DIR, "readOnly": True})
        if self.webserver_config is not None:
            # The one file, where `[fab] config_file` points (env.py), in the api-server only.
            extra_vols.append(
                {"name": "webserver-config", "configMap": {"name": self.webserver_config.metadata["name"]}}
            )
            extra_mounts.append({"name": "webserver-config", "mountPath": f"{CONFIG_DIR}/{WEBSERVER_CONFIG}",
                                 "subPath": WEBSERVER_CONFIG, "readOnly": True})  # fmt: skip
        args = ["api-server", "--port", str(API_PORT)]
        if self._args.ui_url:
            # Believe X-Forwarded-Proto/For from the peers FORWARDED_ALLOW_IPS names (env.py).
            args.append("--proxy-headers")
        self._standard(
            "api-server", s.api_server.replicas, s.api_server.resources, args,
            depends + ([self.create_user] if self.create_user else []),
            probe=http, extra_vols=extra_vols, extra_mounts=extra_mounts,
        )  # fmt: skip
        self.api_service = self._build.service("api-server", service_type=s.api_server.service_type)

    def _webserver_config(self, name: str) -> k8s.core.v1.ConfigMap:
        """SSO's webserver_config.py, in a ConfigMap named after its content: a changed file is a new
        ConfigMap, so the api-server's pods roll (a subPath mount never sees an update in place)."""
        assert self._settings.auth.sso is not None
        text = webserver_config(self._settings.auth.sso)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        return k8s.core.v1.ConfigMap(
            f"{name}-webserver-config",
            metadata={
                "name": f"{self._args.instance}-webserver-config-{digest}",
                "namespace": self._args.namespace,
                "labels": labels(self._args.instance, "webserver-config"),
            },
            data={WEBSERVER_CONFIG: text},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _worker(self, pods: PodFactory, w: Workers, depends: list[pulumi.Resource]) -> None:
        """One Celery worker group: `pods` is the default factory or a worker set's (its label)."""
        label = pods.label(WORKER)
        args = ["celery", "worker"]
        if w.queues:
            args += ["--queues", ",".join(w.queues)]
        autoscaled = w.autoscaling.enabled
        self._with_log_server(
            WORKER, w.autoscaling.min_replicas if autoscaled else w.replicas, w.resources, args, depends,
            probe=probes(
                {"exec": {"command": [
                    "sh", "-c",
                    "exec celery --app airflow.providers.celery.executors.celery_executor.app "
                    'inspect ping -d "celery@$(hostname)" --timeout 20',
                ]}},
                cheap=False, serves=False, timeout=45,
            ),
            storage=w.storage_size, storage_class=w.storage_class, pods=pods, label=label,
            env={"AIRFLOW__CELERY__WORKER_CONCURRENCY": str(w.concurrency)},
            autoscaled=autoscaled, max_replicas=w.autoscaling.max_replicas,
            # A group that has an autoscaling block takes `spec.replicas` back from KEDA's HPA when it
            # is switched off (a new worker set always may: no stack has it yet).
            force=label != WORKER or "autoscaling" in w.model_fields_set,
        )  # fmt: skip

    def _with_log_server(
        self,
        component: str,
        replicas: int,
        res: Any,
        args: list[str],
        depends: list[pulumi.Resource],
        *,
        probe: Manifest | None = None,
        storage: str | None = None,
        storage_class: str | None = None,
        pods: PodFactory | None = None,
        label: str | None = None,
        env: Mapping[str, str] | None = None,
        autoscaled: bool = False,
        max_replicas: int | None = None,
        force: bool = False,
    ) -> None:
        """A StatefulSet with a headless Service: each pod's FQDN resolves, so the api-server can
        fetch live task logs from it on the log-server port. `label` names a worker set's objects
        and pods (the table's row stays `component`); `env` replaces generated values."""
        pods = pods or self._pods
        label = label or component
        svc = self._build.service(label, headless=True, row=component)
        vols, mounts = pods.volumes(component, logs=storage is None)
        claim_templates = []
        if storage:
            mounts.append({"name": "logs", "mountPath": LOGS})
            storage_class = storage_class or self._args.worker_storage_class
            claim_templates.append({
                "metadata": {"name": "logs"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}},
                         **({"storageClassName": storage_class} if storage_class else {})},
            })  # fmt: skip
            depends = [*depends, *self._args.worker_storage_ready]
        container = pods.container(component, args, res, mounts, probes=probe)
        for e in container["env"]:
            if e["name"] in (env or {}):
                e["value"] = env[e["name"]]  # type: ignore[index]
        pod = pods.pod_spec(component, [container], vols, mounts)
        self.workloads[label] = self._build.workload(
            Workload(
                label, replicas, pod, kind="StatefulSet", service_name=f"{self._args.instance}-{label}",
                claim_templates=claim_templates, depends_on=[*depends, svc],
                autoscaled=autoscaled, max_replicas=max_replicas, force=force,
            ),
            pods,
        )  # fmt: skip

    def _git_writer(self) -> None:
        """The single writer of the DAG volume: one git-sync replica, Recreate so two never overlap."""
        component = "git-sync"
        container = self._pods.git_sync_container("git-sync", False)
        # git-sync's HTTP endpoint answers 5xx until the first sync, 200 after: one probe for all three.
        container["env"] += [{"name": "GITSYNC_HTTP_BIND", "value": f":{GIT_SYNC_HTTP_PORT}"},
                             {"name": "GITSYNC_HTTP_PROBE", "value": "true"}]  # fmt: skip
        container["ports"] = self._pods.container_ports(component)
        probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 30, "timeoutSeconds": 5}
        container["startupProbe"] = {**probe, "periodSeconds": 10, "failureThreshold": 60}  # a first clone can be slow
        container["livenessProbe"] = {**probe, "failureThreshold": 10}
        container["readinessProbe"] = probe
        pod = {
            "serviceAccountName": self._pods.service_account(component),
            "automountServiceAccountToken": False,
            "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
            "containers": [container],
            "volumes": [
                {"name": "dags", "persistentVolumeClaim": {"claimName": self._args.dags.claim_name}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }
        if self._pods.git_ssh is not None:
            pod["volumes"].append(git_ssh.volume(self._args.instance, self._pods.git_ssh))
        pod = self._pods.finish(component, pod)
        self._build.workload(
            Workload(component, 1, pod, strategy={"type": "Recreate"}, revision_history=None, spread=False),
            self._pods,
        )

    def _statsd(self, name: str) -> None:
        """The statsd exporter: one replica, since UDP through a Service spreads packets over pods and
        two would each hold part of every counter (and the gauges' last values would flap); a rolling
        update surges one new pod before the old goes, so Airflow's packets always find a listener.
        Airflow resolves the Service name once (statsd.StatsClient at start-up), so the Service's
        stable cluster IP, not a pod's, is what it must send to."""
        component = "statsd"
        s = self._settings.statsd
        mappings = metrics.mapping_configmap(self, name, self._args.instance, self._args.namespace, s)
        probe = {"httpGet": {"path": "/-/healthy", "port": "metrics"}, "periodSeconds": 30, "timeoutSeconds": 5}
        pod = {
            "serviceAccountName": self._pods.service_account(component),
            "automountServiceAccountToken": False,
            "securityContext": pod_security(65534, 65534),
            "containers": [{
                "name": "statsd-exporter",
                "image": s.image,
                "imagePullPolicy": "IfNotPresent",
                # Flags of statsd_exporter v0.30.0 (main.go): UDP only (TCP listens on 9125 by default
                # and nothing here sends TCP) and the mapping file. The mapping cache is keyed by the
                # name without its tags (exporter.go), so the default 1000 entries hold Airflow's ~130.
                "args": [
                    f"--statsd.listen-udp=:{STATSD_PORT}",
                    "--statsd.listen-tcp=",
                    f"--web.listen-address=:{STATSD_METRICS_PORT}",
                    f"--statsd.mapping-config={metrics.MAPPING_DIR}/{metrics.MAPPING_KEY}",
                ],
                "ports": self._pods.container_ports(component),
                "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 30},
                "livenessProbe": {**probe, "failureThreshold": 3},
                "readinessProbe": {**probe, "httpGet": {"path": "/-/ready", "port": "metrics"}, "periodSeconds": 10},
                "securityContext": container_security(),
                "resources": resources(s.resources),
                "volumeMounts": [{"name": "mappings", "mountPath": metrics.MAPPING_DIR, "readOnly": True}],
            }],
            "volumes": [{"name": "mappings", "configMap": {"name": mappings.metadata["name"]}}],
        }  # fmt: skip
        pod = self._pods.finish(component, pod)
        self.workloads[component] = self._build.workload(
            Workload(component, 1, pod, revision_history=5, spread=False), self._pods
        )
        self._build.service(component, service_type=None)
        if s.service_monitor.enabled:
            self.service_monitors.append(
                metrics.service_monitor(
                    self, name, self._args.instance, self._args.namespace,
                    metrics.ScrapeTarget(component, selector(self._args.instance, component), "metrics"),
                    s.service_monitor,
                )
            )  # fmt: skip
