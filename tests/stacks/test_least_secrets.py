"""Issue 10.3: every Airflow container gets the secrets and settings its process uses, and no more.

The expectations are written out here from Airflow 3.3.2's code, independently of the components
table (components/airflow/roster.py), so a grant added to the table by mistake fails here.
"""

from __future__ import annotations

import pytest

from tests.render import airflow_pods, containers, env_of, is_airflow, named, render, table_row, workloads
from tests.stacks.test_local_render import VARIANTS

# Secret key -> the components whose Airflow containers may receive it (init containers included).
MAY_HOLD = {
    # Signs execution-API tokens (the scheduler's executors) and checks them (the api-server). Task
    # code in a worker holding it could mint a token for any task instance.
    "jwt-secret": {"api-server", "scheduler"},
    # Decrypts connections and variables kept in the DB, signs bundle URLs; the migration may
    # re-encrypt. Workers and task pods get connections decrypted from the execution API.
    "fernet-key": {"api-server", "scheduler", "dag-processor", "triggerer", "migrate"},
    # The metadata DB: Airflow 3 task code has no DB access; only the core components do.
    # The pools Job (issue 15.6) writes `slot_pool` through Airflow's Pool model: the DB URL alone.
    # Issue 15.5: `airflow db clean` deletes through the DB and decrypts nothing (utils/db_cleanup.py),
    # so db-clean holds the URL and no fernet key; tests/e2e/test_housekeeping_e2e.py runs it so.
    "sql-alchemy-conn": {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "migrate",
        "create-user",
        "pools",
        "db-clean",
    },
    # The asyncpg form of the same URL: in 3.3.2 only the api-server's routes open the async engine
    # (api_fastapi/common/db/common.py; the execution API's only other use needs `core.multi_team`).
    "sql-alchemy-conn-async": {"api-server"},
    # Issue 15.2: with PgBouncer, the server itself, for the Jobs only (migrations take session-level
    # advisory locks, airflow/utils/db.py, which transaction pooling cannot keep).
    "sql-alchemy-conn-direct": {"migrate", "create-user"},
    # Celery: the scheduler sends and polls, the worker consumes, Flower watches.
    "broker-url": {"scheduler", "worker", "flower"},
    "result-backend": {"scheduler", "worker", "flower"},
    # Signs and checks log-server requests (api-server -> worker/triggerer log servers).
    "api-secret-key": {"api-server", "worker", "triggerer"},
    "admin-password": {"create-user"},
    "simple-auth-passwords.json": {"api-server"},
    # Issue 14: the SSO client secret is used by the login (the api-server's FAB views) only; Flower's
    # basic-auth credentials by Flower only.
    "sso-client-secret": {"api-server"},
    "flower-basic-auth": {"flower"},
}
# User connections (AIRFLOW_CONN_*) and secret variables (AIRFLOW_VAR_*) resolve where task code,
# triggers or parse-time code run, and in the execution API that serves them.
CONNECTION_HOLDERS = {"api-server", "dag-processor", "triggerer", "worker", "task"}

EVERYTHING = (
    "airflow.executor=CeleryExecutor,KubernetesExecutor",
    "airflow.flower.enabled=true",
    "airflow.connections={my_db: {secure: 'postgresql://u:secret-pw@h/db'}}",
    "airflow.secretVariables={api_token: {secure: t}}",
    "airflow.pools={etl: {slots: 2}}",
    "airflow.auth.sso={provider: oidc, clientId: c, clientSecret: {secure: s}, issuer: 'https://id.example.com'}",
)


def _secret_refs(c: dict) -> set[str]:
    """Keys of the stack's generated Secrets a container reads (a user's own, from extraEnv, aside)."""
    return {
        v[2]
        for v in env_of(c).values()
        if isinstance(v, tuple) and v[0] == "secret" and v[1] in ("airflow-secrets", "airflow-broker")
    }


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), "everything"])
def test_each_airflow_container_holds_only_the_secrets_its_process_uses(variant: str) -> None:
    run = render("local", *(EVERYTHING if variant == "everything" else VARIANTS[variant]))
    seen: dict[str, set[str]] = {}
    for label, spec in airflow_pods(run):
        comp = table_row(label)
        for c in containers(spec):
            if not is_airflow(c):
                continue
            for key in _secret_refs(c):
                seen.setdefault(key, set()).add(comp)
                if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
                    assert comp in CONNECTION_HOLDERS, (comp, c["name"], key)
                else:
                    assert comp in MAY_HOLD[key], (comp, c["name"], key)
    if variant == "everything":  # the grants are not simply gone: each holder still gets its key
        assert seen["jwt-secret"] == {"api-server", "scheduler"}
        assert seen["AIRFLOW_CONN_MY_DB"] == seen["AIRFLOW_VAR_API_TOKEN"] == CONNECTION_HOLDERS
        assert "pools" in seen["sql-alchemy-conn"]
        assert seen["broker-url"] == {"scheduler", "worker", "flower"}
        assert seen["sso-client-secret"] == {"api-server"} and seen["flower-basic-auth"] == {"flower"}


def test_tuning_workers_changes_only_the_worker() -> None:
    """Worker concurrency is the worker's setting: changing it must not touch the Jobs (a changed Job
    spec replaces the Job) nor roll any other component."""

    def by_name(run):  # noqa: ANN001, ANN202
        return {(o["kind"], o["metadata"]["name"]): o for o in workloads(run)}

    base = by_name(render("local"))
    tuned = by_name(render("local", "airflow.workers.concurrency=4"))
    changed = sorted(k for k in base if base[k] != tuned.get(k))
    assert changed == [("StatefulSet", "airflow-worker")]


def test_jobs_get_no_runtime_settings() -> None:
    run = render("local", *EVERYTHING)
    for job in ("airflow-migrate", "airflow-create-user", "airflow-pools"):
        env = env_of(named(run, "Job", job)["spec"]["template"]["spec"]["containers"][0])
        for name in env:
            assert not name.startswith(("AIRFLOW__CELERY__", "AIRFLOW__KUBERNETES_EXECUTOR__", "AIRFLOW_VAR_")), name
        assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" not in env


def test_with_pgbouncer_the_jobs_hold_the_direct_url_and_nothing_else_does() -> None:
    """Issue 15.2: the grants move, they are not lost: the Jobs reach the server, every other DB
    user reaches PgBouncer."""
    run = render("local", *VARIANTS["pgbouncer"])
    seen: dict[str, set[str]] = {}
    for comp, spec in airflow_pods(run):
        for c in containers(spec):
            if is_airflow(c):
                for key in _secret_refs(c):
                    seen.setdefault(key, set()).add(comp)
    assert seen["sql-alchemy-conn-direct"] == {"migrate", "create-user"}
    assert seen["sql-alchemy-conn"] == {"api-server", "scheduler", "dag-processor", "triggerer"}
