"""The one table of Airflow's components: what each is, when it exists, and what it may do.

Every question of the kind "which components launch pods / write task logs / need DAGs / get which
secrets / listen on which port" is answered here and nowhere else: the namespace's service accounts
and RBAC, the token mounts, the workloads' container ports, Services and grace periods, the ports the
NetworkPolicies open, the per-pod env and a cloud's log-writer identities all read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from components.airflow.settings import AirflowSettings
from components.settings import bad

# Keys of the generated Airflow Secret (components/airflow/secrets.py); here so the table can say
# which component gets which.
FERNET_KEY = "fernet-key"
JWT_SECRET = "jwt-secret"
API_SECRET_KEY = "api-secret-key"
SQL_ALCHEMY_CONN = "sql-alchemy-conn"
# The asyncpg URL of the same database (Airflow's derived one keeps libpq's `sslmode`, which asyncpg
# rejects). Only the api-server opens the async engine (its core and execution API routes), and only
# it gets this key: Airflow's task supervisor blanks the sync URL in a task's environment but not
# this one (airflow/sdk/execution_time/supervisor.py), so in a pod that runs DAG code it would hand
# the DB password to that code.
SQL_ALCHEMY_CONN_ASYNC = "sql-alchemy-conn-async"
# With PgBouncer in front of the database (components/pgbouncer.py) the URLs above go through it,
# and this one goes straight to the server: migrations take session-level advisory locks
# (airflow/utils/db.py, `pg_advisory_lock`), which transaction pooling cannot keep. Only the Jobs get it.
SQL_ALCHEMY_CONN_DIRECT = "sql-alchemy-conn-direct"
RESULT_BACKEND = "result-backend"
BROKER_URL = "broker-url"
ADMIN_PASSWORD = "admin-password"
SIMPLE_AUTH_PASSWORDS = "simple-auth-passwords.json"
# The SSO provider's client secret (airflow.auth.sso.clientSecret): only the api-server logs users in.
SSO_CLIENT_SECRET = "sso-client-secret"
# Flower's basic-auth credentials (`user:password`, generated): Flower alone checks them.
FLOWER_BASIC_AUTH = "flower-basic-auth"
# Not one key: every `airflow.connections` entry, as AIRFLOW_CONN_<ID>, and every
# `airflow.secretVariables` entry, as AIRFLOW_VAR_<NAME>: the user's secrets for task and DAG code.
CONNECTIONS = "connections"


# Groups of plain (non-secret) settings a component's Airflow containers receive (env.py renders
# each group). A group only reaches the components whose row names it, so tuning one component's
# setting (worker concurrency) rolls only that component and never replaces a Job.
BASE = "base"  # home, config path, executor, auth manager: what every Airflow CLI needs to start
RUNTIME = "runtime"  # DAG folder, execution API, log folders and ports, metrics, `airflow.config`
TASK_CONTEXT = "task-context"  # Airflow Variables from the stack config (where task or DAG code runs)
CELERY_WORKER = "celery-worker"  # worker concurrency
KUBERNETES_EXECUTOR = "kubernetes-executor"  # task namespace, pod template, pod deletion
SCHEDULER = "scheduler"  # its health endpoint
SIMPLE_AUTH = "simple-auth"  # SimpleAuthManager's users and passwords file
# Behind the UI's Ingress (`ui.host`): which peers' X-Forwarded-* headers the api-server trusts.
PROXY = "proxy"
SSO = "sso"  # SSO's session lifetime (the login itself is configured by webserver_config.py)
# A Job gets `airflow.config` only from these sections (engine and auth settings can matter to a
# migration; nothing else may replace the Job).
JOB_CONFIG_SECTIONS = frozenset({"database", "fab"})

# The long-running Airflow processes' plain settings.
_LONG_RUNNING = frozenset({BASE, RUNTIME})

DagUse = Literal["runs", "mounted", "writes", "none"]
# How a component's pod holds metadata-DB connections (components/airflow/budget.py counts each).
DbUse = Literal[
    "api-pools",  # sync + async pools per uvicorn worker
    "loop-and-session",  # the scheduler: its loop, an independent session, the health-check process
    "loop-and-api",  # a loop and the in-process execution API (DAG processor, triggerer)
    "result-backend",  # a Celery worker: a result-backend connection per pool process
    "result-reads",  # Flower: result-backend reads, one at a time
    "migration",  # the session, the migration lock's connection, the session's next one, Alembic's
    "fab-user",  # FAB's session beside Airflow's
    "session",  # one session (the pools Job, db clean)
    "none",
]


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    protocol: Literal["TCP", "UDP"] = "TCP"


@dataclass(frozen=True)
class Conditions:
    """The facts about a stack that decide which components exist and what they may do."""

    celery: bool
    kubernetes_executor: bool
    pod_operator: bool
    fab: bool
    simple_auth: bool
    sso: bool
    local_admin: bool
    git_writer: bool
    flower: bool
    statsd: bool
    pools: bool = False
    # PgBouncer pools the long-running components' DB connections; the Jobs go direct.
    pgbouncer: bool = False
    db_clean: bool = False
    pod_cleanup: bool = False
    # Task logs on a claim the stack made (the local stack's `kubernetes.logVolume`).
    log_claim: bool = False

    @classmethod
    def of(
        cls, settings: AirflowSettings, git_writer: bool, pgbouncer: bool = False, log_claim: bool = False
    ) -> Conditions:
        celery = "CeleryExecutor" in settings.executors
        return cls(
            celery=celery,
            kubernetes_executor="KubernetesExecutor" in settings.executors,
            pod_operator=settings.pod_operator.enabled,
            fab=settings.auth.manager == "fab",
            simple_auth=settings.auth.manager == "simple",
            sso=settings.auth.sso is not None,
            local_admin=settings.auth.local_admin,
            git_writer=git_writer,
            flower=celery and settings.flower.enabled,
            statsd=settings.statsd.enabled,
            pools=settings.pools is not None,
            pgbouncer=pgbouncer,
            db_clean=settings.housekeeping.db_clean.enabled,
            pod_cleanup=settings.housekeeping.pod_cleanup.enabled,
            log_claim=log_claim,
        )


def _always(_: Conditions) -> bool:
    return True


def _never(_: Conditions) -> bool:
    return False


@dataclass(frozen=True)
class AirflowComponent:
    """One row of the table.

    Attributes:
        name: the component label, the ServiceAccount suffix and the workload name suffix.
        exists: whether the stack has this component (a ServiceAccount, and a workload if it runs).
        launches_pods: creates pods in the Airflow namespace (the scheduler under KubernetesExecutor).
        launches_task_pods: runs task code that may create KubernetesPodOperator pods (in the task
            namespace when there is one); the triggerer watches deferred ones.
        reads_pod_logs: reads running task pods' logs from the Kubernetes API (the api-server).
        cleans_pods: lists and deletes finished KubernetesExecutor task pods in the Airflow namespace.
        cleans_task_pods: lists and deletes finished KubernetesPodOperator pods (in the task
            namespace when there is one). Neither creates pods.
        task_logs: reads or writes remote task logs, so it needs the cloud's log identity.
        ports: what it listens on; its Service and NetworkPolicy expose these.
        dags: 'runs' parses or runs DAG code (git-sync sidecars under the gitSync source); 'mounted'
            gets the DAG volume read-only without running DAGs; 'writes' is the single writer; 'none'.
        runs_dag_bundles: fetches DAG bundles itself (source `bundle`): the DAG processor parses
            them, a worker or task pod checks out the version its task runs. Under an ssh repository
            exactly these get the deploy key (git_ssh.py); everyone else reads serialized DAGs.
        secrets: keys of the generated Secret its containers receive, by reference only (checked
            against Airflow 3.3.2's code in tests/stacks/test_least_secrets.py).
        extra_secrets: keys it receives on top, and when.
        settings: the groups of plain settings its Airflow containers receive (see BASE above);
            empty for components that run no Airflow process (the log groomer runs find and rm in
            the Airflow image).
        grace_seconds: how long a stopping pod may take (a Celery worker finishes its running tasks).
        drain_seconds: how long a stopping pod behind a Service keeps serving before it is told to
            stop (a preStop sleep): endpoint removal reaches kube-proxy, ingress controllers and an
            ALB's target group seconds after the pod starts terminating, and until then they still
            send it requests. 0: none.
        process_env: plain env of its Airflow containers that is about the process, not Airflow's
            config (e.g. how the image's dumb-init passes signals on).
        db: how each of its pods holds metadata-DB connections, for the connection budget
            (components/airflow/budget.py turns each kind into a count, citing Airflow's code).
        surges: a Deployment under the program's rolling update (maxSurge 1): during a rollout one
            new pod runs beside all the old ones (StatefulSets and Jobs never overlap their pods).
        options: the block of `airflow` settings (an attribute of AirflowSettings) that holds its
            pods' own placement and escape hatches (extra env, volumes, containers); None: it takes
            only the stack-wide `airflow.placement` and `airflow.imagePullSecrets`.
    """

    name: str
    exists: Callable[[Conditions], bool]
    launches_pods: Callable[[Conditions], bool] = _never
    launches_task_pods: Callable[[Conditions], bool] = _never
    reads_pod_logs: Callable[[Conditions], bool] = _never
    cleans_pods: Callable[[Conditions], bool] = _never
    cleans_task_pods: Callable[[Conditions], bool] = _never
    task_logs: bool = False
    ports: tuple[Port, ...] = ()
    dags: DagUse = "none"
    runs_dag_bundles: bool = False
    secrets: frozenset[str] = frozenset()
    extra_secrets: tuple[tuple[str, Callable[[Conditions], bool]], ...] = field(default=())
    settings: frozenset[str] = _LONG_RUNNING
    grace_seconds: int = 60
    drain_seconds: int = 0
    process_env: tuple[tuple[str, str], ...] = ()
    options: str | None = None
    db: DbUse = "none"
    surges: bool = False

    def calls_kubernetes_api(self, c: Conditions) -> bool:
        """Only these get a service-account token mounted."""
        return (
            self.launches_pods(c)
            or self.launches_task_pods(c)
            or self.reads_pod_logs(c)
            or self.cleans_pods(c)
            or self.cleans_task_pods(c)
        )

    def port(self, name: str) -> Port:
        return next(p for p in self.ports if p.name == name)

    def secret_keys(self, c: Conditions) -> frozenset[str]:
        return self.secrets | {key for key, when in self.extra_secrets if when(c)}

    @property
    def is_job(self) -> bool:
        """A one-shot Job: its pod template is immutable, so it gets only what it runs with."""
        return RUNTIME not in self.settings and BASE in self.settings


def _kpo(c: Conditions) -> bool:
    return c.pod_operator


def _kube(c: Conditions) -> bool:
    return c.kubernetes_executor


# A Job's database URL: the server's own when PgBouncer pools the others (SQL_ALCHEMY_CONN_DIRECT).
_DATABASE_URL_OF_A_JOB: tuple[tuple[str, Callable[[Conditions], bool]], ...] = (
    (SQL_ALCHEMY_CONN, lambda c: not c.pgbouncer),
    (SQL_ALCHEMY_CONN_DIRECT, lambda c: c.pgbouncer),
)


# The order is the order ServiceAccounts are declared in (part of nothing but readability).
TABLE: tuple[AirflowComponent, ...] = (
    AirflowComponent(
        "api-server",
        _always,
        reads_pod_logs=_kube,
        task_logs=True,
        ports=(Port("api", 8080),),
        dags="mounted",
        # Checks execution-API tokens (JWT), serves connections and variables to tasks (fernet, the
        # DB, the stack's connections), signs log-server requests (API secret key).
        # Its core and execution API routes also open the async engine (the asyncpg URL).
        secrets=frozenset(
            {JWT_SECRET, FERNET_KEY, SQL_ALCHEMY_CONN, SQL_ALCHEMY_CONN_ASYNC, API_SECRET_KEY, CONNECTIONS}
        ),
        extra_secrets=((SIMPLE_AUTH_PASSWORDS, lambda c: c.simple_auth), (SSO_CLIENT_SECRET, lambda c: c.sso)),
        settings=_LONG_RUNNING | {TASK_CONTEXT, KUBERNETES_EXECUTOR, SIMPLE_AUTH, PROXY, SSO},
        # Behind its Service and any load balancer: serves while they take it out (an ALB's
        # deregistration, ingress-nginx's endpoint sync), then uvicorn finishes what is in flight.
        drain_seconds=15,
        options="api_server",
        db="api-pools",
        surges=True,
    ),
    AirflowComponent(
        "scheduler",
        _always,
        launches_pods=_kube,
        task_logs=True,
        # Its health server, for the kubelet's probes only (node traffic passes NetworkPolicies).
        ports=(Port("health", 8974),),
        dags="runs",
        # Signs each workload's execution-API token (JWT); sends Celery tasks and polls their state.
        secrets=frozenset({JWT_SECRET, FERNET_KEY, SQL_ALCHEMY_CONN, BROKER_URL, RESULT_BACKEND}),
        settings=_LONG_RUNNING | {KUBERNETES_EXECUTOR, SCHEDULER},
        options="scheduler",
        db="loop-and-session",
        surges=True,
    ),
    AirflowComponent(
        "dag-processor",
        _always,
        task_logs=True,
        dags="runs",
        runs_dag_bundles=True,
        # Runs parse-time code and callbacks against an in-process execution API (no JWT).
        secrets=frozenset({FERNET_KEY, SQL_ALCHEMY_CONN, CONNECTIONS}),
        settings=_LONG_RUNNING | {TASK_CONTEXT},
        options="dag_processor",
        db="loop-and-api",
        surges=True,
    ),
    AirflowComponent(
        "triggerer",
        _always,
        launches_task_pods=_kpo,
        task_logs=True,
        ports=(Port("triggerer-logs", 8794),),
        dags="runs",
        # Triggers run against an in-process execution API (no JWT); its log server checks requests.
        secrets=frozenset({FERNET_KEY, SQL_ALCHEMY_CONN, API_SECRET_KEY, CONNECTIONS}),
        settings=_LONG_RUNNING | {TASK_CONTEXT},
        options="triggerer",
        db="loop-and-api",
    ),
    AirflowComponent(
        "migrate",
        _always,
        # Migrations may re-encrypt stored values (fernet).
        secrets=frozenset({FERNET_KEY}),
        extra_secrets=_DATABASE_URL_OF_A_JOB,
        settings=frozenset({BASE}),
        options="jobs",
        db="migration",
    ),
    AirflowComponent(
        "create-user",
        lambda c: c.local_admin,
        secrets=frozenset({ADMIN_PASSWORD}),
        extra_secrets=_DATABASE_URL_OF_A_JOB,
        settings=frozenset({BASE}),
        options="jobs",
        db="fab-user",
    ),
    # Applies `airflow.pools` (components/airflow/pools.py) with Airflow's Pool model: the DB only.
    AirflowComponent(
        "pools",
        lambda c: c.pools,
        # The server's own URL behind PgBouncer, like the other Jobs (the budget counts it direct).
        extra_secrets=_DATABASE_URL_OF_A_JOB,
        settings=frozenset({BASE}),
        options="jobs",
        db="session",
    ),
    AirflowComponent(
        "worker",
        lambda c: c.celery,
        launches_task_pods=_kpo,
        task_logs=True,
        ports=(Port("worker-logs", 8793),),
        dags="runs",
        runs_dag_bundles=True,
        # No DB and no token key: tasks reach both through the execution API with the token the
        # scheduler signed. (Celery's result backend is the DB, so the worker holds a DB login there.)
        secrets=frozenset({BROKER_URL, RESULT_BACKEND, API_SECRET_KEY, CONNECTIONS}),
        settings=_LONG_RUNNING | {TASK_CONTEXT, CELERY_WORKER},
        # Celery's warm shutdown lets running tasks finish before the pod goes.
        grace_seconds=600,
        # ...if SIGTERM reaches Celery's main process only. The image's ENTRYPOINT is dumb-init with
        # DUMB_INIT_SETSID=1, which signals the whole process group: the pool processes' task
        # supervisors pass it on to their tasks, and an operator with an on_kill (Bash, pods) stops.
        # The official chart sets 0 on workers too; tests/e2e/test_warm_shutdown_e2e.py shows both.
        process_env=(("DUMB_INIT_SETSID", "0"),),
        options="workers",
        db="result-backend",
    ),
    # Scheduled `airflow db clean` (housekeeping.py): it deletes rows through the metadata DB and
    # decrypts nothing (airflow/utils/db_cleanup.py in 3.3.2 reads no encrypted column), so the DB URL
    # is all it gets; tests/e2e/test_housekeeping_e2e.py runs it with exactly that.
    AirflowComponent(
        "db-clean",
        lambda c: c.db_clean,
        # Direct to the server behind PgBouncer: its long deletes are not Airflow's short transactions.
        extra_secrets=_DATABASE_URL_OF_A_JOB,
        settings=frozenset({BASE}),
        options="jobs",
        db="session",
    ),
    # Scheduled `airflow kubernetes cleanup-pods` (housekeeping.py): Kubernetes API calls only (list
    # and delete pods), no DB and no secret.
    AirflowComponent(
        "pod-cleanup",
        lambda c: c.pod_cleanup and (c.kubernetes_executor or c.pod_operator),
        cleans_pods=lambda c: c.pod_cleanup and c.kubernetes_executor,
        cleans_task_pods=lambda c: c.pod_cleanup and c.pod_operator,
        settings=frozenset({BASE}),
        options="jobs",
    ),
    # Deletes old task logs on the stack's log claim (housekeeping.py): find and rm in the Airflow
    # image, no Airflow settings, no secret, no API call.
    # Not an Airflow process: it takes the stack-wide placement and pull secrets, not airflow.jobs
    # (whose escape hatches are for Airflow's Jobs: a DB proxy, Airflow env).
    AirflowComponent(
        "log-groomer",
        lambda c: c.log_claim,
        settings=frozenset(),
    ),
    # KubernetesExecutor task pods, made from the pod template.
    AirflowComponent(
        "task",
        _kube,
        launches_task_pods=_kpo,
        task_logs=True,
        dags="runs",
        runs_dag_bundles=True,
        secrets=frozenset({CONNECTIONS}),
        settings=_LONG_RUNNING | {TASK_CONTEXT},
        options="task_pods",
    ),
    # The single writer of the DAG volume (source `volume` with `git`).
    AirflowComponent(
        "git-sync",
        lambda c: c.git_writer,
        ports=(Port("http", 8081),),
        dags="writes",
        settings=frozenset(),
    ),
    AirflowComponent(
        "flower",
        lambda c: c.flower,
        ports=(Port("flower", 5555),),
        secrets=frozenset({BROKER_URL, RESULT_BACKEND, FLOWER_BASIC_AUTH}),
        options="flower",
        db="result-reads",
        surges=True,
    ),
    AirflowComponent(
        "statsd",
        lambda c: c.statsd,
        ports=(Port("statsd", 9125, "UDP"), Port("metrics", 9102)),
        settings=frozenset(),
    ),
)

BY_NAME = {c.name: c for c in TABLE}


def component(name: str) -> AirflowComponent:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"{name!r} is not an Airflow component ({', '.join(BY_NAME)})") from None


@dataclass(frozen=True)
class Roster:
    """The table applied to one stack's settings: the questions callers ask, answered."""

    conditions: Conditions

    @classmethod
    def of(
        cls, settings: AirflowSettings, git_writer: bool, pgbouncer: bool = False, log_claim: bool = False
    ) -> Roster:
        return cls(Conditions.of(settings, git_writer, pgbouncer=pgbouncer, log_claim=log_claim))

    @property
    def components(self) -> list[str]:
        return [c.name for c in TABLE if c.exists(self.conditions)]

    def _where(self, question: Callable[[AirflowComponent], bool]) -> list[str]:
        return [c.name for c in TABLE if c.exists(self.conditions) and question(c)]

    @property
    def pod_launchers(self) -> list[str]:
        """Create pods in the Airflow namespace."""
        return self._where(lambda c: c.launches_pods(self.conditions))

    @property
    def task_pod_launchers(self) -> list[str]:
        """Create KubernetesPodOperator pods (in the task namespace, if there is one)."""
        return self._where(lambda c: c.launches_task_pods(self.conditions))

    @property
    def pod_log_readers(self) -> list[str]:
        return self._where(lambda c: c.reads_pod_logs(self.conditions))

    @property
    def pod_cleaners(self) -> list[str]:
        """Delete finished KubernetesExecutor task pods in the Airflow namespace."""
        return self._where(lambda c: c.cleans_pods(self.conditions))

    @property
    def task_pod_cleaners(self) -> list[str]:
        """Delete finished KubernetesPodOperator pods (in the task namespace, if there is one)."""
        return self._where(lambda c: c.cleans_task_pods(self.conditions))

    @property
    def task_log_users(self) -> list[str]:
        """Read or write task logs: a cloud gives exactly these its log identity; without remote logs,
        exactly these share the stack's log claim."""
        return self._where(lambda c: c.task_logs)

    def calls_kubernetes_api(self, name: str) -> bool:
        return component(name).calls_kubernetes_api(self.conditions)

    def secret_keys(self, name: str) -> frozenset[str]:
        return component(name).secret_keys(self.conditions)

    def dags(self, name: str) -> DagUse:
        return component(name).dags

    def runs_dag_bundles(self, name: str) -> bool:
        return component(name).runs_dag_bundles

    def port(self, name: str, port: str) -> Port:
        return component(name).port(port)

    def ports(self, name: str) -> tuple[Port, ...]:
        return component(name).ports

    def settings(self, name: str) -> frozenset[str]:
        return component(name).settings

    def is_job(self, name: str) -> bool:
        return component(name).is_job

    def grace_seconds(self, name: str) -> int:
        return component(name).grace_seconds

    def drain_seconds(self, name: str) -> int:
        return component(name).drain_seconds

    def options(self, name: str) -> str | None:
        return component(name).options

    def db(self, name: str) -> DbUse:
        return component(name).db

    def surges(self, name: str) -> bool:
        return component(name).surges


def check_container_names(settings: AirflowSettings) -> None:
    """An extra container may not take the name of its pod's Airflow container (the row's name);
    raises the error about `airflow.<block>.extra...Containers.<i>.name`."""
    for row in TABLE:
        if row.options is None:
            continue
        options = getattr(settings, row.options)
        block = AirflowSettings.model_fields[row.options].alias
        for key, extra in (
            ("extraInitContainers", options.extra_init_containers),
            ("extraContainers", options.extra_containers),
        ):
            for i, c in enumerate(extra):
                if c.name == row.name:
                    raise bad(
                        f"airflow.{block}.{key}.{i}.name",
                        f"container {c.name!r} is already in the pod (the {row.name} container); choose another name",
                    )
