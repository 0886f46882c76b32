"""The metadata-DB connection budget (issue 15, item 1): computed from the settings, checked at
preview against the stack's database, refused when over with the key, the figures and the knobs."""

from __future__ import annotations

import pytest

from components.airflow.budget import ConnectionBudget, Term, check, connection_budget, through_pooler
from components.aws.database import AwsDatabase
from components.azure.database import AzureDatabase
from components.endpoints import DatabaseLimit
from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.cli import main as render_main
from stacks.tooling.render import load_stack_config
from tests.render import named, render

STACKS = ["local", "aws-dev", "aws-prod", "azure-dev", "azure-prod"]


def config_of(stack: str, *overrides: str):  # noqa: ANN201 - StackConfig
    from stacks.config import parse

    config, keys = load_stack_config(stack, list(overrides))
    import json

    raw = {}
    for k, v in config.items():
        name = k.split(":", 1)[1]
        try:
            raw[name] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            raw[name] = v
    return parse(raw, [k.split(":", 1)[1] for k in keys])


def refused(stack: str, *overrides: str) -> str:
    config, keys = load_stack_config(stack, list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack=stack)
    assert run.error is not None, f"{overrides} was accepted"
    assert run.resources == []
    return str(run.error)


# ---- the breakdown of the shipped stacks -----------------------------------------------------------

# Per component at peak (pods x connections each), rollout included: by hand from the stack files and
# the rules in components/airflow/budget.py (api-server: (5+10) sync + (5+10) async per uvicorn worker;
# scheduler 3; DAG processor and triggerer 2; a connection per worker slot; Jobs 2 each; one surge
# pod per Deployment).
SHIPPED = {
    "local": {
        "api-server": 30, "scheduler": 3, "dag-processor": 2, "triggerer": 2, "worker": 8, "migrate": 4,
        "create-user": 2, "api-server (surge)": 30, "scheduler (surge)": 3, "dag-processor (surge)": 2,
    },
    "aws-dev": {
        "api-server": 30, "scheduler": 3, "dag-processor": 2, "triggerer": 2, "worker": 16, "migrate": 4,
        "create-user": 2, "api-server (surge)": 30, "scheduler (surge)": 3, "dag-processor (surge)": 2,
    },
    "aws-prod": {
        "api-server": 60, "scheduler": 6, "dag-processor": 2, "triggerer": 4, "worker": 32, "migrate": 4,
        "create-user": 2, "api-server (surge)": 30, "scheduler (surge)": 3, "dag-processor (surge)": 2,
    },
}  # fmt: skip
SHIPPED["azure-dev"] = SHIPPED["aws-dev"]
SHIPPED["azure-prod"] = SHIPPED["aws-prod"]
# What each shipped stack's database allows Airflow.
USABLE = {"local": 97, "aws-dev": 181, "aws-prod": 823, "azure-dev": 844, "azure-prod": 844}


@pytest.mark.parametrize("stack", STACKS)
def test_the_breakdown_of_each_shipped_stack(stack: str) -> None:
    budget = connection_budget(config_of(stack).airflow)
    assert budget.by_component() == SHIPPED[stack]
    assert budget.total == sum(SHIPPED[stack].values())


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_are_within_their_databases_budget(stack: str) -> None:
    cfg = config_of(stack)
    limit = cfg.database_limit()
    assert limit is not None and limit.usable == USABLE[stack]
    total = connection_budget(cfg.airflow).total
    assert total is not None and total <= limit.usable, (stack, total, limit)


# ---- over budget: refused at preview, per cloud -----------------------------------------------------

OVER = [
    # A small RDS class with many workers: 10 x 16 worker slots alone need 160 of db.t4g.micro's 74.
    (
        "aws-dev",
        ("aws.database.instanceClass=db.t4g.micro", "airflow.workers.replicas=10"),
        "airflow-k8s:airflow.workers.replicas",
        "needs 238 metadata-DB connections at peak, the database allows 74 (164 over)",
    ),
    # Azure's smallest Burstable SKU: 50 connections, 15 of them Azure's.
    (
        "azure-dev",
        ("azure.database.skuName=Standard_B1ms",),
        "airflow-k8s:airflow.apiServer.replicas",
        "needs 94 metadata-DB connections at peak, the database allows 35 (59 over)",
    ),
    # In-cluster with max_connections set to PostgreSQL's default 100 (97 usable): 4 workers of 16.
    (
        "local",
        ("airflow.workers={replicas: 4, concurrency: 16}", "database.inCluster.maxConnections=100"),
        "airflow-k8s:airflow.workers.replicas",
        "needs 142 metadata-DB connections at peak, the database allows 97 (45 over)",
    ),
    # An external server that says what it allows.
    (
        "local",
        ("database={mode: external, external: {host: db, password: p, maxConnections: 50}}",),
        "airflow-k8s:airflow.apiServer.replicas",
        "needs 86 metadata-DB connections at peak, the database allows 47 (39 over)",
    ),
    # The pool switched off: nothing caps the api-server's connections.
    (
        "local",
        ("airflow.config={database.sql_alchemy_pool_enabled: 'False'}",),
        "airflow-k8s:airflow.apiServer.replicas",
        "needs an unbounded number of metadata-DB connections",
    ),
]


@pytest.mark.parametrize("stack,overrides,key,fragment", OVER)
def test_over_budget_is_refused_naming_the_key_the_figures_and_the_knobs(
    stack: str, overrides: tuple[str, ...], key: str, fragment: str
) -> None:
    message = refused(stack, *overrides, "pgbouncer.enabled=false")
    assert f"{key}: " in message and fragment in message, message
    for knob in ("fewer replicas or a lower worker concurrency", "sql_alchemy_pool_size", "PgBouncer"):
        assert knob in message, message
    assert "Traceback" not in message


def test_over_budget_exits_2_from_the_render(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    args = ["local", "--out", str(tmp_path), "--set", "airflow.workers={replicas: 4, concurrency: 16}"]
    args += ["--set", "database.inCluster.maxConnections=100", "--set", "pgbouncer.enabled=false"]
    assert render_main(args) == 2
    err = capsys.readouterr().err
    assert "airflow-k8s:airflow.workers.replicas: Airflow needs 142 metadata-DB connections" in err
    assert not (tmp_path / "resources.json").exists()


def test_the_error_names_the_larger_database_of_each_cloud() -> None:
    off = "pgbouncer.enabled=false"
    assert "a larger aws.database.instanceClass" in refused("aws-dev", "airflow.workers.replicas=20", off)
    assert "a larger azure.database.skuName" in refused("azure-dev", "azure.database.skuName=Standard_B1ms", off)
    assert "database.inCluster.maxConnections" in refused(
        "local", "airflow.workers.replicas=12", "database.inCluster.maxConnections=100", off
    )


# Azure's B1ms allows 35: even PgBouncer's default pools (2 pods + 1 surging, 12 each) do not fit it,
# which the next test but one shows is refused.
@pytest.mark.parametrize(
    "stack,overrides,key,fragment", [c for c in OVER if "unbounded" not in c[3] and c[0] != "azure-dev"]
)
def test_pgbouncer_left_unset_turns_on_exactly_where_the_budget_needs_it(
    stack: str, overrides: tuple[str, ...], key: str, fragment: str
) -> None:
    cfg = config_of(stack, *overrides)
    assert cfg.pgbouncer.enabled is None and cfg.pgbouncer_enabled
    # What the database then sees: PgBouncer's pods (one surging) and the Jobs that go direct.
    by = cfg.db_budget().by_component()
    assert by["pgbouncer"] == (cfg.pgbouncer.replicas + 1) * (cfg.pgbouncer.default_pool_size + 2)
    assert set(by) <= {"pgbouncer", "migrate", "create-user", "pools", "keda"}
    rendered = render(stack, *overrides)
    assert named(rendered, "Deployment", "airflow-pgbouncer")


@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_that_fits_keeps_connecting_directly(stack: str) -> None:
    cfg = config_of(stack)
    assert cfg.pgbouncer.enabled is None and not cfg.pgbouncer_enabled


def test_through_pgbouncer_its_own_pools_are_checked_against_the_database() -> None:
    auto = refused("azure-dev", "azure.database.skuName=Standard_B1ms")
    assert "airflow-k8s:pgbouncer.defaultPoolSize: Airflow through PgBouncer needs 42" in auto, auto
    message = refused(
        "azure-dev",
        "azure.database.skuName=Standard_B1ms",
        "pgbouncer={enabled: true, replicas: 3, defaultPoolSize: 20}",
    )
    # (3 + 1 surge) x (20 + 2 reserve) = 88 on the server, plus the Jobs' direct connections.
    assert "airflow-k8s:pgbouncer.defaultPoolSize: Airflow through PgBouncer needs" in message, message
    assert "pgbouncer 4 x 22 = 88" in message and "fewer PgBouncer replicas" in message


def test_an_unbounded_airflow_behind_pgbouncer_is_bounded_by_it() -> None:
    budget = connection_budget(
        config_of("local", "airflow.config={database.sql_alchemy_pool_enabled: 'False'}").airflow
    )
    assert budget.total is None
    pooled = through_pooler(budget, 2, 12)
    assert pooled.total is not None and pooled.by_component()["pgbouncer"] == 36


# ---- the inputs: pool settings, executors, components --------------------------------------------


def test_pool_settings_come_from_airflow_config() -> None:
    small = config_of(
        "local", "airflow.config={database.sql_alchemy_pool_size: '2', database.sql_alchemy_max_overflow: '1'}"
    )
    by = connection_budget(small.airflow).by_component()
    assert by["api-server"] == 6  # (2+1) sync + (2+1) async
    assert by["scheduler"] == 3 and by["worker"] == 8  # a single-threaded loop needs one; Celery's own engine
    workers = config_of("local", "airflow.config={api.workers: '3'}", "database.inCluster.maxConnections=400")
    assert connection_budget(workers.airflow).by_component()["api-server"] == 90


def test_a_bad_value_in_extra_env_is_refused_naming_its_key() -> None:
    message = refused(
        "local", "airflow.scheduler.extraEnv=[{name: AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED, value: maybe}]"
    )
    assert "airflow-k8s:airflow.scheduler.extraEnv.0.value: 'maybe' is not a boolean" in message


def test_a_components_extra_env_overrides_airflow_config_for_its_own_pods() -> None:
    cfg = config_of(
        "local",
        "airflow.config={database.sql_alchemy_max_overflow: '0'}",
        "airflow.apiServer.extraEnv=[{name: AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE, value: '1'}]",
    )
    by = connection_budget(cfg.airflow).by_component()
    assert by["api-server"] == 2 and by["scheduler"] == 3


def test_a_pool_value_airflow_cannot_read_is_refused_naming_the_key() -> None:
    message = refused("local", "airflow.config={database.sql_alchemy_pool_size: five}")
    assert "airflow-k8s:airflow.config.database.sql_alchemy_pool_size: 'five' is not an integer" in message


def test_unlimited_pools_are_unbounded() -> None:
    unchecked = "database={mode: external, external: {host: db, password: p}}"
    for config in ("{database.sql_alchemy_pool_size: '0'}", "{database.sql_alchemy_max_overflow: '-1'}"):
        assert connection_budget(config_of("local", unchecked, f"airflow.config={config}").airflow).total is None


def test_the_kubernetes_executor_adds_no_task_pod_connections() -> None:
    by = connection_budget(config_of("local", "airflow.executor=KubernetesExecutor").airflow).by_component()
    assert "worker" not in by and "task" not in by
    assert by["scheduler"] == 3  # the adoption check's independent session instead of Celery's fetch


def test_flower_and_no_admin_user() -> None:
    by = connection_budget(config_of("local", "airflow.flower.enabled=true").airflow).by_component()
    assert by["flower"] == 1 and by["flower (surge)"] == 1
    simple = connection_budget(config_of("local", "airflow.auth.manager=simple").airflow).by_component()
    assert "create-user" not in simple


def test_every_worker_group_counts_at_its_most_replicas_and_keda_holds_its_pools() -> None:
    cfg = config_of(
        "local",
        "airflow.workers.autoscaling={enabled: true, minReplicas: 1, maxReplicas: 5}",
        "airflow.workerSets=[{name: gpu, queues: [gpu], concurrency: 4, replicas: 3}, "
        "{name: io, queues: [io], concurrency: 8, autoscaling: {enabled: true, minReplicas: 0, maxReplicas: 7}}]",
    )
    budget = connection_budget(cfg.airflow)
    by = budget.by_component()
    w = cfg.airflow.workers.concurrency
    assert (by["worker"], by["worker-gpu"], by["worker-io"]) == (5 * w, 3 * 4, 7 * 8)
    # Two autoscaled groups: two ScaledObjects, each with KEDA's pool for its query.
    assert by["keda"] == 2 * 2
    keys = {t.component: t.key for t in budget.terms}
    assert keys["worker"] == "airflow.workers.autoscaling.maxReplicas"
    assert keys["worker-gpu"] == "airflow.workerSets.0.replicas"
    assert keys["worker-io"] == "airflow.workerSets.1.autoscaling.maxReplicas"
    plain = connection_budget(config_of("local").airflow).by_component()
    assert "keda" not in plain and "worker-gpu" not in plain and "pools" not in plain
    assert connection_budget(config_of("local", "airflow.pools={etl: {slots: 2}}").airflow).by_component()["pools"] == 1


def test_a_worker_set_over_budget_is_named_in_the_error() -> None:
    message = refused(
        "local",
        "database.inCluster.maxConnections=100",
        "airflow.workerSets=[{name: big, queues: [big], concurrency: 64, replicas: 4}]",
        "pgbouncer.enabled=false",
    )
    assert "airflow-k8s:airflow.workerSets.0.replicas" in message


def test_an_unbounded_term_makes_the_total_unbounded() -> None:
    budget = ConnectionBudget((Term("a", 1, None, "", "k"), Term("b", 2, 3, "", "k2")))
    assert budget.total is None and budget.largest().component == "a"
    assert "an unbounded number" in (check(budget, DatabaseLimit(100, 3, "s", "l")) or "")


# ---- what each database allows ------------------------------------------------------------------

# `SHOW max_connections` on default parameter groups, as reported: the estimate must never be above.
# Reported for db.t2.micro, db.t2.small, db.t2.medium and db.m4.large, here as the current classes of
# the same memory (1, 2, 4 and 8 GiB).
RDS_OBSERVED = {"db.t3.micro": 81, "db.t3.small": 198, "db.t3.medium": 413, "db.m5.large": 856}


@pytest.mark.parametrize("instance_class,observed", RDS_OBSERVED.items())
def test_the_rds_estimate_is_never_above_what_rds_reports(instance_class: str, observed: int) -> None:
    limit = AwsDatabase.model_validate({"instanceClass": instance_class}).connection_limit()
    assert observed * 0.9 <= limit.max_connections <= observed
    assert limit.reserved == 5


def test_rds_caps_at_5000() -> None:
    assert AwsDatabase.model_validate({"instanceClass": "db.r6g.16xlarge"}).connection_limit().max_connections == 5000


# Microsoft's limits table (maximum connections; 15 reserved).
AZURE = {"Standard_B1ms": 50, "Standard_B2s": 429, "Standard_B2ms": 859, "Standard_D2ds_v5": 859,
         "Standard_D4ds_v5": 1718, "Standard_E4ds_v5": 3437, "Standard_D16ds_v5": 5000}  # fmt: skip


@pytest.mark.parametrize("sku,maximum", AZURE.items())
def test_flexible_server_limits_follow_microsofts_table(sku: str, maximum: int) -> None:
    tier = {"B": "Burstable", "D": "GeneralPurpose", "E": "MemoryOptimized"}[sku.split("_")[1][0]]
    limit = AzureDatabase.model_validate({"tier": tier, "skuName": sku, "highAvailability": False}).connection_limit()
    assert (limit.max_connections, limit.usable) == (maximum, maximum - 15)


def test_an_unknown_flexible_sku_is_refused() -> None:
    message = refused("azure-dev", "azure.database.skuName=Standard_B3ms")
    assert "airflow-k8s:azure.database.skuName: Standard_B3ms is not a Flexible Server SKU" in message


def _pg_args(run) -> list[str] | None:  # noqa: ANN001
    assert run.error is None, run.error
    return named(run, "StatefulSet", "airflow-postgresql")["spec"]["template"]["spec"]["containers"][0].get("args")


def test_the_in_cluster_server_keeps_postgresqls_default_while_the_peak_fits_it() -> None:
    assert _pg_args(render("local")) is None  # 86 at peak: the StatefulSet is what it was before the budget


def test_the_in_cluster_server_is_raised_to_the_peak_when_that_is_more() -> None:
    # 12 workers of 8: 174 at peak, so 177 with the 3 reserved; the defaults' 145 gives 148.
    assert _pg_args(render("local", "airflow.workers.replicas=12")) == ["-c", "max_connections=177"]
    assert config_of("local", "airflow.triggerer.replicas=2").in_cluster_max_connections is None  # 88
    from stacks.config import parse

    assert parse({"kubernetes": {"context": "x"}}).in_cluster_max_connections == 148


def test_the_in_cluster_setting_wins() -> None:
    assert _pg_args(render("local", "database.inCluster.maxConnections=300")) == ["-c", "max_connections=300"]


def test_an_external_database_without_max_connections_is_a_warning_not_a_check() -> None:
    overrides = ["database={mode: external, external: {host: db, password: p}}", "airflow.workers.replicas=12"]
    config, keys = load_stack_config("local", overrides)
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None, run.error
    assert any(
        "airflow-k8s:database.external.maxConnections: unset, so the peak of 174 metadata-DB connections" in w
        for w in run.warnings
    ), run.warnings
