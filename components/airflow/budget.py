"""The metadata DB's connection budget: how many connections Airflow can hold at its peak.

`connection_budget(settings)` adds up, per component, the pods that can run at once times the
connections each pod can hold; the stack config compares the total with what its database allows
(stacks/config.py). Every figure below is derived from Airflow 3.3.2's code (and the Celery provider
and Celery it pins), cited where it is used, and checked against a measured peak in
tests/e2e/test_connection_budget_e2e.py.

How a process holds connections. Airflow opens one SQLAlchemy engine per process for the sync URL
(airflow/settings.py `configure_orm` -> `prepare_engine_args`) and, where the async URL is set, one
more (`_configure_async_session`); both take `[database] sql_alchemy_pool_size` (5) and
`sql_alchemy_max_overflow` (10), so a pool holds at most their sum, and `sql_alchemy_pool_enabled`
false makes both a NullPool (one connection per session, no cap). A forked child disposes the
parent's pools (`configure_orm`'s `clean_in_fork`) and opens its own. A thread's sessions share one
scoped session (`settings.Session` is a `scoped_session`), so a single-threaded loop holds one
connection however its calls nest; what raises a process's count is another thread or another
engine. So each process is bounded by min(its concurrent DB users, the pool's cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic.alias_generators import to_camel

from components.airflow.roster import BY_NAME, Roster, component
from components.airflow.settings import AirflowSettings, PodOptions
from components.endpoints import DatabaseLimit
from components.settings import bad

# Airflow 3.3.2's defaults (airflow/config_templates/config.yml), read where the stack leaves them unset.
POOL_SIZE = 5
MAX_OVERFLOW = 10
API_WORKERS = 1
# FastAPI runs a sync (`def`) route or dependency on a worker thread through Starlette's
# run_in_threadpool, i.e. anyio's default thread limiter of 40 tokens: with the pool off, at most
# that many sync sessions of one api-server process are open at once.
ANYIO_THREADS = 40
# Kubernetes' rolling update of a Deployment: the program sets maxSurge 1, maxUnavailable 0
# (components/airflow/workloads.py ROLLING_UPDATE), so one new pod runs beside all the old ones.
# StatefulSets (the workers and the triggerer) replace a pod only after the old one is gone: no surge
# (roster.py's `surges`).
DEPLOYMENT_SURGE = 1


@dataclass(frozen=True)
class Pool:
    """One process's engine settings: `[database]` pool options and `[api] workers`."""

    size: int = POOL_SIZE
    max_overflow: int = MAX_OVERFLOW
    enabled: bool = True
    api_workers: int = API_WORKERS

    @property
    def cap(self) -> int | None:
        """Connections one engine may hold; None: no cap (SQLAlchemy's QueuePool reads pool_size 0
        and max_overflow -1 as unlimited; a NullPool never limits)."""
        if not self.enabled or self.size <= 0 or self.max_overflow < 0:
            return None
        return self.size + self.max_overflow

    def bounded(self, users: int) -> int:
        """Connections a process with `users` concurrent DB users (threads) holds at most."""
        return users if self.cap is None else min(users, self.cap)


@dataclass(frozen=True)
class Term:
    """One component's share of the peak: `pods` pods at once, each holding up to `each`
    connections (None: nothing bounds them)."""

    component: str
    pods: int
    each: int | None
    why: str
    # The config key that scales this term, for the error message.
    key: str

    @property
    def total(self) -> int | None:
        if self.pods == 0:
            return 0
        return None if self.each is None else self.pods * self.each


@dataclass(frozen=True)
class ConnectionBudget:
    terms: tuple[Term, ...]

    @property
    def total(self) -> int | None:
        """The peak, or None when some term has no bound."""
        totals = [t.total for t in self.terms]
        return None if any(t is None for t in totals) else sum(t for t in totals if t is not None)

    def by_component(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for t in self.terms:
            prev = out.get(t.component, 0)
            out[t.component] = None if prev is None or t.total is None else prev + t.total
        return out

    def breakdown(self) -> str:
        """One line per term, e.g. `worker 2 x 16 = 32`."""
        return "; ".join(
            f"{t.component} {t.pods} x {'unbounded' if t.each is None else t.each}"
            f" = {'unbounded' if t.total is None else t.total}"
            for t in self.terms
            if t.pods
        )

    def largest(self) -> Term:
        return max(self.terms, key=lambda t: math.inf if t.total is None else t.total)


def worker_term(
    concurrency: int, replicas: int, *, group: str = "worker", key: str = "airflow.workers.replicas"
) -> Term:
    """A Celery worker group at `replicas` pods (its maximum, when it autoscales), each running
    `concurrency` tasks.

    Each prefork pool process holds one connection of Celery's database result backend: Airflow's
    default `[celery] task_track_started` (providers/celery/executors/default_celery.py) makes the
    pool process write STARTED and then the result through `DatabaseBackend`, whose
    `SessionManager.get_engine` (celery/backends/database/session.py) gives a forked process a
    pooled engine of its own that keeps the connection; one task at a time per pool process. The
    task itself reaches the DB only through the execution API (execute_workload calls the Task
    SDK's `supervise`, and the supervisor blanks the DB URL for the task), and the Celery main
    process opens none."""
    return Term(group, replicas, concurrency, "a result-backend connection per pool process", key)


def _option(options: PodOptions, key: str, config: dict[str, str], section: str, name: str) -> tuple[str | None, str]:
    """The value Airflow reads for `[section] name` in a component's pods (whose options block is
    `key`), and the config key it came from: an AIRFLOW__ variable in the component's extraEnv wins
    over `airflow.config` (Airflow reads the environment before airflow.cfg)."""
    env = f"AIRFLOW__{section.upper()}__{name.upper()}"
    for i, e in enumerate(options.extra_env):
        if e.name == env:
            return e.value, f"{key}.extraEnv.{i}.value"
    return config.get(f"{section}.{name}"), f"airflow.config.{section}.{name}"


def pool_of(settings: AirflowSettings, options: PodOptions, key: str) -> Pool:
    """The pool settings of the pods whose options block is `options` (at config key `key`)."""
    config = settings.config

    def integer(section: str, name: str, default: int) -> int:
        value, where = _option(options, key, config, section, name)
        if value is None:
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise bad(where, f"{value!r} is not an integer (Airflow reads it with getint)") from None

    enabled_value, where = _option(options, key, config, "database", "sql_alchemy_pool_enabled")
    enabled = True
    if enabled_value is not None:
        v = enabled_value.split("#")[0].strip().lower()  # as Airflow's getboolean reads it
        if v not in ("t", "true", "1", "f", "false", "0"):
            raise bad(where, f"{enabled_value!r} is not a boolean Airflow reads (true/false, t/f, 1/0)")
        enabled = v in ("t", "true", "1")
    return Pool(
        size=integer("database", "sql_alchemy_pool_size", POOL_SIZE),
        max_overflow=integer("database", "sql_alchemy_max_overflow", MAX_OVERFLOW),
        enabled=enabled,
        api_workers=integer("api", "workers", API_WORKERS),
    )


def _api_server(pool: Pool) -> int | None:
    """Per api-server pod: `[api] workers` uvicorn processes (cli/commands/api_server_command.py;
    each imports the app and opens its own engines), each with a sync pool that FastAPI's worker
    threads fill (routes and the execution API's `SessionDep` run sync, on up to 40 threads) and an
    async pool (airflow/settings.py `_configure_async_session`; the core API's dag-run `wait`
    stream, api_fastapi/core_api/services/public/dag_run.py, opens one session per open stream,
    without limit but the pool's). Every task's heartbeat and state change arrives here, so under
    load both pools fill to their cap."""
    if pool.cap is None:
        return None  # NullPool: every concurrent request holds its own connection, async ones unbounded
    return pool.api_workers * (min(pool.cap, ANYIO_THREADS) + pool.cap)


def connection_budget(
    settings: AirflowSettings, *, git_writer: bool = False, jobs: bool = True, surge: bool = True
) -> ConnectionBudget:
    """The peak connections of the stack's Airflow, per component.

    A rollout (`pulumi up`) adds to the steady state: `jobs`, the migration and admin-user Jobs,
    which run while the old pods still work (every workload waits for the migration), and `surge`,
    one new pod per Deployment beside its old ones (Pulumi rolls them all at once). The e2e proof
    runs the Jobs beside the working components but no surge pods, so it compares with `surge=False`.
    """
    roster = Roster.of(settings, git_writer)
    terms: list[Term] = []

    def pool(name: str) -> Pool:
        options = roster.options(name)
        if options is None:
            return pool_of(settings, PodOptions.model_validate({}), "airflow")
        return pool_of(settings, getattr(settings, options), f"airflow.{to_camel(options)}")

    def pods(name: str) -> tuple[int, str]:
        """How many of its pods run at once, and the setting that says so."""
        options = roster.options(name)
        block = getattr(settings, options) if options else None
        key = f"airflow.{to_camel(options or name)}"
        if block is not None and not roster.is_job(name) and hasattr(block, "replicas"):
            return block.replicas, f"{key}.replicas"
        return 1, key

    for name in roster.components:
        use = roster.db(name)
        if use == "none" or (roster.is_job(name) and not jobs):
            continue
        p = pool(name)
        n, key = pods(name)
        if use == "api-pools":
            terms.append(Term(name, n, _api_server(p), "sync + async pool per uvicorn worker", key))
        elif use == "loop-and-session":
            # The scheduling loop (one thread: jobs/scheduler_job_runner.py); beside its session, one
            # independent connection at a time on the same thread: under Celery the executor's state
            # fetch through the result backend (providers/celery/executors/celery_executor_utils.py
            # `BulkStateFetcher._get_many_from_db_backend`, a NullPool engine outside a fork), under
            # the KubernetesExecutor its adoption check (providers/cncf/kubernetes/executors/
            # kubernetes_executor.py, `create_session(scoped=False)` inside the scheduler's
            # transaction); and the health-check server, a process of its own
            # (cli/commands/scheduler_command.py `_serve_health_check`, utils/scheduler_health.py, one
            # request at a time). The Kubernetes watcher and the Celery send processes touch no DB.
            each = p.bounded(1) + 1 + p.bounded(1)
            terms.append(Term(name, n, each, "loop + an independent session + health check", key))
        elif use == "loop-and-api":
            # The DAG processor's loop plus the in-process execution API that answers its parsing
            # processes (dag_processing/manager.py `_make_execution_api`): a2wsgi runs each request's
            # sync session on a worker thread (api_fastapi/execution_api/app.py
            # InProcessExecutionAPI), one request at a time since the loop waits for each; parsing
            # processes open none. The triggerer likewise (jobs/triggerer_job_runner.py
            # `in_process_api_server` for its trigger runner subprocess).
            terms.append(Term(name, n, p.bounded(1) + p.bounded(1), "loop + in-process execution API", key))
        elif use == "result-backend":
            # Every Celery worker group (airflow.workers and each of airflow.workerSets) at the most
            # replicas it may run: its replicas, or autoscaling.maxReplicas when KEDA scales it.
            for g in settings.worker_groups():
                gkey = f"airflow.{g.key}.autoscaling.maxReplicas" if g.autoscaled else f"airflow.{g.key}.replicas"
                terms.append(worker_term(g.concurrency, g.max_replicas, group=g.component, key=gkey))
            if settings.keda_db_connections:
                # KEDA's operator runs each ScaledObject's postgresql query through a database/sql
                # pool of its own (components/airflow/autoscaling.py KEDA_CONNECTIONS_PER_SCALED_OBJECT).
                terms.append(
                    Term(
                        "keda",
                        1,
                        settings.keda_db_connections,
                        "postgresql scaler pools",
                        "airflow.workers.autoscaling",
                    )
                )
        elif use == "result-reads":
            # `celery flower` (one process, tornado's single thread) reads task results through the
            # same result backend: a NullPool engine, one query at a time.
            terms.append(Term(name, n, 1, "result-backend reads", key))
        elif use == "migration":
            # `airflow db migrate` (utils/db.py `upgradedb` -> `_run_upgradedb`), four at once, as the
            # e2e measured (tests/e2e/test_connection_budget_e2e.py): the session's connection
            # (`_get_current_revision`); on PostgreSQL the advisory lock on a second connection of the
            # same engine (`_create_global_lock_postgresql`: `bind.connect()`, held to the end);
            # Alembic's, on the SingletonThreadPool engine `_single_connection_pool` swaps in through
            # `settings.reconfigure_orm` (migrations/env.py and the FAB provider's DB manager both
            # `settings.engine.connect()`, one per thread); and, after `work_session.rollback()`, a
            # new one for `add_default_pool_if_not_exists`: the first went back to the pool of the
            # engine `reconfigure_orm` disposed, and SQLAlchemy's `dispose` leaves checked-out
            # connections open. Three come from the configured pool, one from the singleton.
            terms.append(
                Term(name, n, p.bounded(3) + 1, "session, lock, its successor + Alembic's", "airflow.image.tag")
            )
        elif use == "fab-user":
            # FAB's `users create` opens the provider's app (its own session) beside Airflow's engine.
            terms.append(Term(name, n, 2, "FAB's session + Airflow's", key))
        elif use == "session":
            # The pools Job (components/airflow/scripts/apply_pools.py) applies every pool in one
            # session, beside the rolling workloads; `airflow db clean` deletes table by table in one.
            terms.append(Term(name, n, 1, "one session", key))
    # KubernetesExecutor task pods: none. They get no DB secret (roster.py) and reach the DB through
    # the api-server's execution API, whose pools are counted above.
    # A new pod's `wait-for-migrations` init container (`airflow db check-migrations`, one
    # connection) finishes before the pod's Airflow container starts: within the pod's figure.
    if surge:
        for t in list(terms):
            if t.component in roster.components and roster.surges(t.component) and t.pods:
                terms.append(
                    Term(f"{t.component} (surge)", DEPLOYMENT_SURGE, t.each, "a new pod beside the old ones", t.key)
                )
    return ConnectionBudget(tuple(terms))


def through_pooler(budget: ConnectionBudget, replicas: int, per_pod: int) -> ConnectionBudget:
    """What the database sees with PgBouncer in front: each PgBouncer pod's server connections
    (`max_db_connections`, components/pgbouncer.py), one more pod while it rolls (maxSurge 1), and
    the clients that bypass it: the Jobs (roster.py's Job rows connect directly) and KEDA's scaler."""
    direct = tuple(
        t for t in budget.terms if t.component == "keda" or (t.component in BY_NAME and component(t.component).is_job)
    )
    server = Term(
        "pgbouncer", replicas + DEPLOYMENT_SURGE, per_pod, "server connections per pod, one surge pod",
        "pgbouncer.defaultPoolSize",
    )  # fmt: skip
    return ConnectionBudget((server, *direct))


def check(budget: ConnectionBudget, limit: DatabaseLimit, *, pooler: bool = False) -> str | None:
    """None if the peak fits the database; else the error message (the caller names the key).
    `pooler`: `budget` is already what the database sees through PgBouncer (`through_pooler`)."""
    total = budget.total
    if total is not None and total <= limit.usable:
        return None
    need = "an unbounded number of" if total is None else str(total)
    over = "" if total is None else f" ({total - limit.usable} over)"
    who = "Airflow through PgBouncer needs" if pooler else "Airflow needs"
    helps = (
        "fewer PgBouncer replicas or a smaller pgbouncer.defaultPoolSize / reservePoolSize"
        if pooler
        else "fewer replicas or a lower worker concurrency; smaller pools (airflow.config "
        "database.sql_alchemy_pool_size / sql_alchemy_max_overflow, api.workers); or PgBouncer in front of the "
        "database (pgbouncer.enabled: unset turns it on where the budget needs it)"
    )
    return (
        f"{who} {need} metadata-DB connections at peak, the database allows {limit.usable}{over}: "
        f"{limit.source}. Peak = {budget.breakdown()}. What helps: {helps}; {limit.larger}"
    )


def over_budget_key(budget: ConnectionBudget) -> str:
    """The setting the error names: the one scaling the largest term (its replicas)."""
    return budget.largest().key
