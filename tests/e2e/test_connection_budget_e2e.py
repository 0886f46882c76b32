"""The connection budget against a measured peak (issue 15, item 1).

Every long-running component of the local stack's render runs (api-server, scheduler, DAG processor,
triggerer, a Celery worker, Flower) against real PostgreSQL and Redis; a fan-out DAG fills every
worker slot, and while its tasks hold their slots the migration and admin-user Jobs run again, as
they do during a rollout beside the old pods. `pg_stat_activity` is sampled every 0.2 s from before
the first component starts to the end: the peak count of the `airflow` user's backends must not
exceed the budget components/airflow/budget.py computes for the same settings (no surge pods run
here), and the budget must not be more than 3x the peak either, so the figure stays meaningful.

Each process gets `PGAPPNAME=<component>` (libpq reads it; psycopg2 and so Airflow's sync engine
and Celery's result backend report it as application_name), so the peak is also broken down per
component. asyncpg does not read PGAPPNAME, so the api-server's async connections would show as
"(unnamed)", as do the first migration and admin-user Jobs (boot_only starts them without it); the printed backends
of each name at its peak (pid, start, state, last query) say which process holds what.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from components.airflow.budget import connection_budget
from stacks.config import parse
from stacks.tooling.render import load_stack_config
from tests.e2e.api_only import Front
from tests.e2e.harness import Process, wait_port
from tests.e2e.test_airflow_e2e import TIMINGS

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "flower")
# A small but full configuration: one pod of each, the local stack's worker concurrency (8, the
# fan-out DAG's width), and smaller pools set the way a user sets them (`airflow.config`), so the
# budget reads them from the settings.
POOL = {"database.sql_alchemy_pool_size": "3", "database.sql_alchemy_max_overflow": "2"}
OVERRIDES = (
    "airflow.flower.enabled=true",
    "airflow.config=" + json.dumps(POOL),
    "database.external.maxConnections=100",  # the loopback server's default
)
SAMPLE_SECONDS = 0.2
# The measured figures (printed by the test, quoted in the README).
FIGURES: dict[str, object] = {}


class Sampler(threading.Thread):
    """Counts the airflow user's backends in pg_stat_activity, by application_name, every 0.2 s."""

    def __init__(self, d: Front) -> None:
        super().__init__(daemon=True)
        self.d = d
        self.stop_event = threading.Event()
        self.peak_total = 0
        self.peak_sample: Counter[str] = Counter()
        self.peak_by_name: Counter[str] = Counter()
        self.samples = 0
        self.errors = 0
        # Per application_name, its backends when it held the most (pid, start, state, last query).
        self.peak_backends: dict[str, list[str]] = {}

    def sample(self) -> tuple[Counter[str], list[str]]:
        """Backends per application_name, and one line per backend (name, pid, start, last query)."""
        out = self.d.pg.query(
            "SELECT coalesce(nullif(application_name, ''), '(unnamed)') || '|' || pid || '|' || "
            "to_char(backend_start, 'HH24:MI:SS.MS') || '|' || coalesce(state, '') || '|' || "
            # One line per backend: a multi-line query would be read as more backends.
            "left(regexp_replace(query, '[[:space:]|]+', ' ', 'g'), 60) "
            "FROM pg_stat_activity WHERE datname = 'airflow' AND usename = 'airflow'"
        )
        counts: Counter[str] = Counter()
        lines = [line for line in out.splitlines() if line]
        for line in lines:
            counts[line.split("|", 1)[0]] += 1
        return counts, lines

    def run(self) -> None:
        # A failed query is logged and retried, never the end of the sampling: the first version
        # stopped on its first error, silently, and took 0 samples. The test asserts the count.
        while not self.stop_event.is_set():
            try:
                counts, lines = self.sample()
            except Exception as e:  # noqa: BLE001 - any failure is logged, counted and retried
                self.errors += 1
                if self.errors <= 5 or self.errors % 50 == 0:
                    print(f"pg_stat_activity sampler: query failed ({self.errors}): {e}", flush=True)
                self.stop_event.wait(SAMPLE_SECONDS)
                continue
            self.samples += 1
            total = sum(counts.values())
            if total > self.peak_total:
                self.peak_total, self.peak_sample = total, counts
            for name, n in counts.items():
                if n > self.peak_by_name[name]:
                    self.peak_by_name[name] = n
                    self.peak_backends[name] = [line for line in lines if line.split("|", 1)[0] == name]
            self.stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Front, Sampler]]:
    d = Front(tmp_path_factory.mktemp("e2e-budget"), OVERRIDES, redis=True)
    t0 = time.time()
    try:
        d.start_servers()
        sampler = Sampler(d)
        sampler.start()  # before the Jobs and the components start
        d.boot_only(COMPONENTS, {c: {"PGAPPNAME": c} for c in COMPONENTS})
        spec = d.containers["flower"].spec
        wait_port(next(p["containerPort"] for p in spec["ports"] if p["name"] == "flower"), timeout=90)
        yield d, sampler
        sampler.stop()
    finally:
        d.stop()
        TIMINGS["connection_budget"] = time.time() - t0
        TIMINGS["end"] = time.time()


def test_the_budget_holds_the_measured_peak_at_full_worker_concurrency(measured: tuple[Front, Sampler]) -> None:
    d, sampler = measured
    d.api.login("admin", d.admin_password)
    d.wait_for_dag("e2e_fanout")
    run_id = d.trigger("e2e_fanout")
    # Wait until every slot is taken, then run the Jobs beside the working components (a rollout).
    deadline = time.time() + 180
    while time.time() < deadline:
        _, tis = d.task_states(run_id, "e2e_fanout")
        if sum(1 for t in tis if t["state"] == "running") == 8:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the fan-out never filled the worker's 8 slots:\n{d.logs()}")
    jobs = []
    for job in ("migrate", "create-user"):
        p = Process(d.cluster, d.containers[job], name=f"{job}-again")
        p.env["PGAPPNAME"] = job
        jobs.append(p.start())
    for p in jobs:
        assert p.wait(300) == 0, p.tail()
    assert d.wait_run(run_id, "e2e_fanout") == "success"
    time.sleep(2)
    sampler.stop()

    config, keys = load_stack_config("local", list(d.overrides()))
    raw = {}
    for k, v in config.items():
        if k.startswith("airflow-k8s:"):
            try:
                raw[k.split(":", 1)[1]] = json.loads(v)
            except (json.JSONDecodeError, TypeError):
                raw[k.split(":", 1)[1]] = v
    cfg = parse(raw, [k.split(":", 1)[1] for k in keys])
    budget = connection_budget(cfg.airflow, surge=False)
    computed = budget.by_component()
    FIGURES.update(
        measured_peak=sampler.peak_total,
        peak_sample=dict(sampler.peak_sample),
        peak_by_component=dict(sampler.peak_by_name),
        budget=budget.total,
        budget_by_component=computed,
        samples=sampler.samples,
        sampler_errors=sampler.errors,
    )
    print(f"\nconnection budget e2e: {json.dumps(FIGURES, sort_keys=True)}")
    for name, backends in sorted(sampler.peak_backends.items()):
        print(f"  {name} at its peak:", *backends, sep="\n    ")
    # Sampled the whole time (about 5 a second over a run of a minute or more), with no query failing
    # for long: a sampler that stops, or fails, cannot show a peak.
    assert sampler.samples > 100, FIGURES
    assert sampler.errors <= sampler.samples // 20, FIGURES
    assert budget.total is not None
    assert sampler.peak_total <= budget.total, FIGURES
    assert budget.total <= 3 * sampler.peak_total, FIGURES
    # Per component, where the backend names it (the api-server's asyncpg ones are unnamed).
    for name, n in sampler.peak_by_name.items():
        if name in computed:
            assert n <= (computed[name] or 0), (name, FIGURES)
    # The workers' slots were all held at once, each by a result-backend connection.
    assert sampler.peak_by_name["worker"] >= 8, FIGURES
