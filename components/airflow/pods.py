"""Pod specs for Airflow's components: containers, volumes, init containers, probes, security.

Every pod that runs the Airflow image (long-running, Job, or the KubernetesExecutor template's
`base` container) is made from here, and so are the git-sync containers, so the rules hold in one
place: non-root with no privilege escalation, no capabilities and seccomp RuntimeDefault; the DAG
volume read-only (only the git-sync writer mounts it read-write); a token only for the components
the table says call the Kubernetes API; the env the table grants each component.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pulumi

from components.airflow import git_ssh, roster
from components.airflow.env import CONFIG_DIR, DB_CA_DIR, GIT_ROOT_LINK, LOGS, AirflowEnv
from components.airflow.kpo import LOCAL_SETTINGS_FILE, LOCAL_SETTINGS_VOLUME
from components.airflow.roster import Roster
from components.airflow.secrets import DB_CA_VOLUME, DatabaseCa
from components.airflow.settings import (
    WORKER,
    AirflowSettings,
    GitSource,
    GitSsh,
    Placement,
    PodOptions,
    Resources,
    WorkerSet,
)
from components.k8s import Manifest, container_security, labels, pod_security, resources, selector
from components.kube_types import Container, dump

# What an extra container gets when it says nothing about resources (as small as git-sync's).
EXTRA_CONTAINER_RESOURCES: Manifest = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

# The official image runs as airflow (50000) with group root (0); files it writes must stay
# group-readable for the next process, so the pod's fsGroup is 0 as in the image.
AIRFLOW_UID = 50000
# The pod-template annotation that rolls a workload when a secret it reads changes.
SECRET_CHECKSUM = "airflow-k8s.io/secret-checksum"
AIRFLOW_GID = 0
# Secret keys that are metadata-DB URLs: a container given one gets the DB's CA bundle too.
DATABASE_URL_KEYS = frozenset({roster.SQL_ALCHEMY_CONN, roster.SQL_ALCHEMY_CONN_ASYNC, roster.RESULT_BACKEND})


class PodFactory:
    """Builds containers and pod specs for one Airflow instance."""

    def __init__(
        self,
        *,
        settings: AirflowSettings,
        roster: Roster,
        env: AirflowEnv,
        instance: str,
        dag_source: str,
        claim_name: pulumi.Input[str] | None,
        service_accounts: Mapping[str, pulumi.Input[str]],
        pod_labels: Mapping[str, Mapping[str, str]],
        log_claim: pulumi.Input[str] | None = None,
        database_ca: DatabaseCa | None = None,
        local_settings: pulumi.Input[str] | None = None,
    ) -> None:
        self.settings = settings
        self.roster = roster
        self.env = env
        self._instance = instance
        self.dag_source = dag_source
        self._claim_name = claim_name
        self._log_claim = log_claim
        self._service_accounts = service_accounts
        self._pod_labels = pod_labels
        self._database_ca = database_ca
        self._local_settings = local_settings
        self.image = f"{settings.image.repository}:{settings.image.tag}"
        # A worker set's factory (for_worker_set): its pods are the `worker` row of the table with
        # this component label, and `airflow.workers` reads as the set's settings.
        self.group: str | None = None

    def for_worker_set(self, ws: WorkerSet) -> PodFactory:
        """The factory of one worker set's pods: the table's `worker` row (account, secrets, ports,
        grace), the set's own pod options and placement, and the label `worker-<name>`."""
        clone = copy.copy(self)
        clone.settings = self.settings.model_copy(update={"workers": ws})
        clone.group = f"{WORKER}-{ws.name}"
        return clone

    def row(self, component: str) -> str:
        """The components-table row of `component` (a worker set's label is the `worker` row)."""
        return WORKER if component == self.group else component

    def label(self, component: str) -> str:
        """The component label of `component`'s pods (a worker set's, for the `worker` row)."""
        return self.group if component == WORKER and self.group else component

    def service_account(self, component: str) -> pulumi.Input[str]:
        try:
            return self._service_accounts[component]
        except KeyError:
            raise ValueError(f"no service account for component {component!r}") from None

    def volumes(self, component: str, logs: bool = True) -> tuple[list[Manifest], list[Manifest]]:
        """Volumes and mounts of an Airflow container: writable scratch, logs (`logs=False`: none, the
        caller mounts its own), DAGs read-only, and the metadata DB's CA bundle read-only where the
        stack ships one and the container has a DB URL."""
        vols: list[Manifest] = [{"name": "tmp", "emptyDir": {}}, {"name": "config", "emptyDir": {}}]
        mounts: list[Manifest] = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "config", "mountPath": CONFIG_DIR}]
        ca = self._database_ca
        # Behind PgBouncer only the Jobs' direct URL names the CA file (PgBouncer checks the server).
        ca_keys = {roster.SQL_ALCHEMY_CONN_DIRECT} if self.roster.conditions.pgbouncer else DATABASE_URL_KEYS
        if ca is not None and ca.volume is not None and self.roster.secret_keys(component) & ca_keys:
            vols.append(ca.volume)
            mounts.append({"name": DB_CA_VOLUME, "mountPath": DB_CA_DIR, "readOnly": True})
        if logs:
            # Task logs on the shared claim (when the stack has one) for every component that
            # writes or serves them; otherwise scratch that goes with the pod.
            if self._log_claim is not None and component in self.roster.task_log_users:
                vols.append({"name": "logs", "persistentVolumeClaim": {"claimName": self._log_claim}})
            else:
                vols.append({"name": "logs", "emptyDir": {}})
            mounts.append({"name": "logs", "mountPath": LOGS})
        if self._local_settings is not None and component in self.roster.task_pod_launchers:
            # Where KubernetesPodOperator runs: its placement defaults (kpo.py), on Airflow's path.
            vols.append({"name": LOCAL_SETTINGS_VOLUME, "configMap": {"name": self._local_settings}})
            mounts.append({
                "name": LOCAL_SETTINGS_VOLUME, "mountPath": f"{CONFIG_DIR}/{LOCAL_SETTINGS_FILE}",
                "subPath": LOCAL_SETTINGS_FILE, "readOnly": True,
            })  # fmt: skip
        if self.roster.dags(component) in ("runs", "mounted"):
            folder = self.settings.dags.folder
            if self.dag_source == "volume":
                vols.append(
                    {"name": "dags", "persistentVolumeClaim": {"claimName": self._claim_name, "readOnly": True}}
                )
                mounts.append({"name": "dags", "mountPath": folder, "readOnly": True})
            elif self.dag_source == "gitSync":
                vols.append({"name": "dags", "emptyDir": {}})
                mounts.append({"name": "dags", "mountPath": folder, "readOnly": True})
        ssh = self.git_ssh
        if ssh is not None and self.dag_source == "gitSync" and self.roster.dags(component) == "runs":
            vols.append(git_ssh.volume(self._instance, ssh))  # for its git-sync containers only
        if ssh is not None and self.dag_source == "bundle" and self.roster.runs_dag_bundles(component):
            vols.append(git_ssh.volume(self._instance, ssh))
            mounts.append(git_ssh.MOUNT)
        return vols, mounts

    @property
    def git_ssh(self) -> GitSsh | None:
        """The deploy key settings, when DAGs come from an ssh repository."""
        g = self.settings.dags.git
        return g.ssh if g is not None and self.dag_source != "image" else None

    def container_ports(self, component: str) -> list[Manifest]:
        """The ports the components table gives `component`, as a container lists them."""
        return [
            {"name": p.name, "containerPort": p.number, "protocol": p.protocol} for p in self.roster.ports(component)
        ]

    def git_sync_container(self, name: str, one_time: bool) -> Manifest:
        """git-sync into the DAG folder: an init container (one sync) or a sidecar (keeps pulling)."""
        g: GitSource | None = self.settings.dags.git
        assert g is not None  # the settings model requires `git` for every source that syncs
        mount_path = self.settings.dags.folder
        env: list[Manifest] = [
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
        security = container_security()
        mounts: list[Manifest] = [{"name": "dags", "mountPath": mount_path}, {"name": "tmp", "mountPath": "/tmp"}]
        if g.ssh is not None:
            env += git_ssh.GIT_SYNC_ENV
            mounts.append(git_ssh.MOUNT)
            # ssh needs a passwd entry for its uid: the image has one for git-sync's own (git_ssh.py).
            security["runAsUser"] = git_ssh.GIT_SYNC_UID
        return {
            "name": name,
            "image": g.image,
            "imagePullPolicy": "IfNotPresent",
            "env": env,
            "securityContext": security,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": mounts,
        }

    def _git_sync_sidecar(self) -> Manifest:
        """The sidecar that keeps pulling, restarted by the kubelet if it hangs: git-sync's HTTP
        endpoint answers 5xx until a sync succeeds and then 200 (its --http-probe); the init
        container has synced once already, so the sidecar's own first sync is a fetch."""
        port = roster.component("git-sync").port("http").number
        c = self.git_sync_container("git-sync", False)
        c["env"] += [{"name": "GITSYNC_HTTP_BIND", "value": f":{port}"},
                     {"name": "GITSYNC_HTTP_PROBE", "value": "true"}]  # fmt: skip
        probe = {"httpGet": {"path": "/", "port": port}, "timeoutSeconds": 5}
        c["startupProbe"] = {**probe, "periodSeconds": 10, "failureThreshold": 60}
        c["livenessProbe"] = {**probe, "periodSeconds": 30, "failureThreshold": 10}
        return c

    def container(
        self,
        component: str,
        args: list[str],
        res: Resources,
        mounts: list[Manifest],
        *,
        name: str | None = None,
        probes: Manifest | None = None,
    ) -> Manifest:
        """An Airflow container of `component`, with the env and ports the table gives it, and its
        probes (from `probes()`)."""
        c: Manifest = {
            "name": name or component,
            "image": self.image,
            "imagePullPolicy": self.settings.image.pull_policy,
            "env": self.env.for_component(component),
            "securityContext": container_security(),
            "resources": resources(res),
            "volumeMounts": mounts,
        }
        if args:  # task pods get their args from the executor
            c["args"] = args
        ports = self.container_ports(component)
        if ports:
            c["ports"] = ports
        c.update(probes or {})
        drain = self.roster.drain_seconds(component)
        if drain and name is None:  # the component's main container, not its helpers
            c["lifecycle"] = {"preStop": {"sleep": {"seconds": drain}}}
        return c

    def _wait_for_migrations(self, component: str, mounts: list[Manifest]) -> Manifest:
        """An init container that blocks until the DB schema matches this image (belt and braces
        with the Pulumi dependency on the Job: a pod restarted mid-upgrade waits too)."""
        return {
            "name": "wait-for-migrations",
            "image": self.image,
            "imagePullPolicy": self.settings.image.pull_policy,
            "args": ["db", "check-migrations", "--migration-wait-timeout=600"],
            "env": self.env.for_component(component),
            "securityContext": container_security(),
            "resources": resources(self.settings.scheduler.resources),
            "volumeMounts": [m for m in mounts if m["name"] in ("tmp", "config", DB_CA_VOLUME)],
        }

    def pod_spec(
        self,
        component: str,
        containers: list[Manifest],
        vols: list[Manifest],
        mounts: list[Manifest],
        *,
        wait: bool = True,
        restart: str | None = None,
    ) -> Manifest:
        """The pod spec of an Airflow workload or Job: migrations awaited where the component uses the
        metadata DB (a worker reaches it only through the execution API), git-sync where DAGs run."""
        uses_db = roster.SQL_ALCHEMY_CONN in self.roster.secret_keys(component)
        init: list[Manifest] = [self._wait_for_migrations(component, mounts)] if wait and uses_db else []
        if self.dag_source == "gitSync" and self.roster.dags(component) == "runs":
            init.append(self.git_sync_container("git-sync-init", True))
            containers = containers + [self._git_sync_sidecar()]
        spec: Manifest = {
            "serviceAccountName": self.service_account(component),
            "automountServiceAccountToken": self.roster.calls_kubernetes_api(component),
            "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
            "containers": containers,
            "volumes": vols,
            "terminationGracePeriodSeconds": self.roster.grace_seconds(component),
        }
        if init:
            spec["initContainers"] = init
        if restart:
            spec["restartPolicy"] = restart
        return self.finish(component, spec)

    # ----- placement and escape hatches -------------------------------------------------------

    def options(self, component: str) -> PodOptions | None:
        """The component's own pod options, where the components table gives it a block."""
        key = self.roster.options(component)
        return getattr(self.settings, key) if key else None

    def placement(self, component: str) -> Placement | None:
        """The component's placement over the stack-wide default, field by field."""
        opts = self.options(component)
        own = opts.placement if opts is not None else None
        return own.over(self.settings.placement) if own is not None else self.settings.placement

    def extra_container(self, c: Container) -> Manifest:
        """An extra container with the program's restricted securityContext under what it sets."""
        out = c.dump()
        out["securityContext"] = {**container_security(), **out.get("securityContext", {})}
        out.setdefault("imagePullPolicy", "IfNotPresent")
        out.setdefault("resources", EXTRA_CONTAINER_RESOURCES)
        return out

    def finish(self, component: str, spec: Manifest) -> Manifest:
        """`spec` with the stack's pull secrets, the component's placement and its escape hatches
        (the Airflow container is the first one). Every Airflow pod goes through here."""
        if self.settings.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": n} for n in self.settings.image_pull_secrets]
        place = self.placement(component)
        if place is not None:
            if place.node_selector is not None:
                spec["nodeSelector"] = dict(place.node_selector)
            if place.tolerations is not None:
                spec["tolerations"] = dump(place.tolerations)
            if place.affinity is not None:
                spec["affinity"] = place.affinity.dump()
            if place.topology_spread_constraints is not None:
                own = {"matchLabels": selector(self._instance, self.label(component))}
                spec["topologySpreadConstraints"] = [
                    {**t.dump(), "labelSelector": t.label_selector.dump() if t.label_selector else own}
                    for t in place.topology_spread_constraints
                ]
            if place.priority_class_name is not None:
                spec["priorityClassName"] = place.priority_class_name
        opts = self.options(component)
        if opts is None:
            return spec
        main = spec["containers"][0]
        if opts.extra_env:
            generated = {e["name"] for e in main.get("env", [])}
            clash = sorted(opts.env_names() & generated)
            if clash:  # settings.py refuses every name it can know of; this is what the stack added
                raise ValueError(f"extraEnv of {component!r} would override generated env: {', '.join(clash)}")
            main["env"] = [*main.get("env", []), *dump(opts.extra_env)]
        if opts.extra_env_from:
            # An explicit `env` entry wins over `envFrom` (Kubernetes' rule), so the program's stays.
            main["envFrom"] = dump(opts.extra_env_from)
        if opts.extra_volume_mounts:
            main["volumeMounts"] = [*main.get("volumeMounts", []), *dump(opts.extra_volume_mounts)]
        if opts.extra_volumes:
            spec["volumes"] = [*spec.get("volumes", []), *dump(opts.extra_volumes)]
        if opts.extra_init_containers:
            # First: a native sidecar (a DB proxy) must be up before the program's wait for migrations.
            extra = [self.extra_container(c) for c in opts.extra_init_containers]
            spec["initContainers"] = [*extra, *spec.get("initContainers", [])]
        if opts.extra_containers:
            spec["containers"] = [*spec["containers"], *(self.extra_container(c) for c in opts.extra_containers)]
        return spec

    def meta(self, component: str, checksum: bool = True) -> Manifest:
        """Pod metadata: the component's labels plus any the stack adds (e.g. workload identity), and
        the checksum of the secrets it reads (not in the KubernetesExecutor's template: each task pod
        reads the Secret when it starts)."""
        row = self.row(component)
        meta: Manifest = {"labels": {**labels(self._instance, component), **dict(self._pod_labels.get(row, {}))}}
        digest = self.env.checksum(row) if checksum else None
        if digest is not None:
            meta["annotations"] = {SECRET_CHECKSUM: digest}
        return meta


# How long a component may take to start (first image pull, a slow first DAG parse, a busy DB).
START_BUDGET_SECONDS = 600


def probes(handler: Manifest, *, cheap: bool, serves: bool, timeout: int) -> Manifest:
    """Startup, liveness and (for pods behind a Service) readiness probes around one check.

    The startup probe gates the other two and polls often, so a pod counts as started within one
    period of its process being healthy. A pod with no readiness probe is Ready once started, so
    only a component that serves a Service gets one, and it is an HTTP or TCP check: a check that
    starts a Python interpreter (`cheap=False`) runs only as liveness, once a minute.
    """
    start_period = 5 if cheap else 10
    out: Manifest = {
        "startupProbe": {
            **handler,
            "periodSeconds": start_period,
            "timeoutSeconds": timeout,
            "failureThreshold": START_BUDGET_SECONDS // start_period,
        },
        "livenessProbe": {
            **handler,
            "periodSeconds": 30 if cheap else 60,
            "timeoutSeconds": timeout,
            "failureThreshold": 4 if cheap else 3,
        },
    }
    if serves:
        if not cheap:
            raise ValueError("a readiness probe must not start an interpreter every period")
        out["readinessProbe"] = {**handler, "periodSeconds": 10, "timeoutSeconds": timeout, "failureThreshold": 3}
    return out


def jobs_check(job_type: str) -> Manifest:
    """`airflow jobs check` for this host's job: it starts a Python interpreter (seconds of CPU), so
    it is only a startup and a once-a-minute liveness check."""
    return probes(
        {"exec": {"command": ["airflow", "jobs", "check", "--job-type", job_type, "--local"]}},
        cheap=False,
        serves=False,
        timeout=45,
    )
