"""Issue 15's performance target, measured: a fan-out DAG (1 task -> 50 parallel tasks of 2 s -> 1
task) run end to end on real Airflow, once as the local stack renders it and once under the official
Helm chart's defaults at the same worker concurrency. Prints, side by side, the wall time from
triggering a run to its success and the peak number of metadata-DB connections, each the median of
several runs. A benchmark that prints figures, not a timed test.

    python -m tests.e2e.bench_fanout [--runs 3] [--set KEY=VALUE ...] [--json OUT] [--no-lock]

Both variants are the same processes on the same machine, booted the same way as the e2e suite
(tests/e2e/harness.py): PostgreSQL and Redis on loopback, then api-server, scheduler, dag-processor,
triggerer and one Celery worker, each from the local stack's rendered container. The only thing that
differs is the Airflow configuration those processes get (`chart_env`): the render's own settings,
or the chart's `config:` values expressed as `AIRFLOW__*` variables in their place. Endpoints,
secrets and paths (`WIRING`) stay as rendered in both, since the chart's equivalents only name its
own Services. The two stacks run side by side on ports of their own (`move_ports`); each parses the
DAG and runs it once unmeasured (imports warm, first forks done), then their measured runs
alternate, one DAG run at a time. By default the e2e lock is held throughout, so e2e runs on this
machine wait and do not share its two cores with the measurement.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.harness import AIRFLOW_VENV, E2E, Api, Cluster, Postgres, Process, airflow_containers, free_port
from tests.e2e.test_airflow_e2e import DB_PASSWORD, REDIS_PASSWORD, Deployment, _render_objects

DAG_ID = "bench_fanout"
DAGS = E2E / "bench_dags"
LOCK = "/tmp/airflow-k8s-e2e.lock"  # the e2e suite's (tests/e2e/conftest.py): same fixed ports
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer", "worker")
SAMPLE_SECONDS = 0.2
POLL_SECONDS = 0.25

# The official chart's `config:` values (chart/values.yaml), which its ConfigMap
# (chart/templates/configmaps/configmap.yaml) writes into airflow.cfg for every Airflow container,
# with the templated ones resolved for the chart's defaults (release `airflow`, CeleryExecutor,
# statsd.enabled true, no Elasticsearch/OpenSearch, no ingress). Read at apache/airflow commit
# d6ba4817823e (defaultAirflowTag 3.1.3, after apache/airflow#58733 of 2025-11-26); see README
# "Benchmarks" for why that commit and not the 1.22.0 tag. Other chart defaults that matter here:
# workers.replicas 1, pgbouncer.enabled false (every process connects to PostgreSQL directly), the
# Celery result backend is the metadata database (as in the render), statsd.enabled true (a
# statsd-exporter Deployment receives the metrics), scheduler.resources {} (no CPU limit).
CHART_CONFIG: dict[str, str] = {
    "core.load_examples": "False",
    "core.executor": "CeleryExecutor",
    "core.colored_console_log": "False",
    "core.remote_logging": "False",
    "core.auth_manager": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
    "logging.remote_logging": "False",
    "logging.colored_console_log": "False",
    "metrics.statsd_on": "True",
    "metrics.statsd_port": "9125",
    "metrics.statsd_prefix": "airflow",
    "metrics.statsd_host": "airflow-statsd.airflow.svc.cluster.local",
    "fab.enable_proxy_fix": "True",
    "webserver.enable_proxy_fix": "True",
    "webserver.rbac": "True",
    "celery.flower_url_prefix": "",
    "celery.worker_concurrency": "16",
    "scheduler.standalone_dag_processor": "True",
    "scheduler.statsd_on": "True",
    "scheduler.statsd_port": "9125",
    "scheduler.statsd_prefix": "airflow",
    "scheduler.statsd_host": "airflow-statsd.airflow.svc.cluster.local",
    "scheduler.run_duration": "41460",
    "elasticsearch.json_format": "True",
    "elasticsearch.log_id_template": "{dag_id}-{task_id}-{run_id}-{map_index}-{try_number}",
    "elasticsearch_configs.max_retries": "3",
    "elasticsearch_configs.timeout": "30",
    "elasticsearch_configs.retry_timeout": "True",
    "celery_kubernetes_executor.kubernetes_queue": "kubernetes",
}
# Also in the chart's `config:` but left out: `core.dags_folder` (the DAG claim's path, kept as
# rendered), `celery.sync_parallelism` (derived from the scheduler's CPU limit only when one is set,
# apache/airflow#58733; the default has none, so Airflow's default applies), and the `kerberos`,
# `kubernetes` and `kubernetes_executor` sections (read only by a Kerberos sidecar or the
# KubernetesExecutor, neither of which runs here).

# What both variants keep as rendered: where things are and the secrets to reach them, not how
# Airflow behaves. The chart sets each of these too, to its own Services, Secrets and paths.
WIRING = frozenset(
    {
        "AIRFLOW_HOME",
        "AIRFLOW_CONFIG",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__FAB__CONFIG_FILE",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
        # The scheduler's HTTP health endpoint: what the rendered probes call (the chart's probes
        # run `airflow jobs check` instead); a server thread that idles between probes.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    }
)


def env_name(key: str) -> str:
    section, option = key.split(".", 1)
    return f"AIRFLOW__{section.upper()}__{option.upper()}"


def setting_name(variable: str) -> str:
    section, option = variable.removeprefix("AIRFLOW__").split("__", 1)
    return f"{section.lower()}.{option.lower()}"


def chart_env(rendered: Mapping[str, str]) -> dict[str, str]:
    """A rendered container's environment with the program's Airflow settings replaced by the chart's
    defaults: wiring and non-Airflow variables kept, every other `AIRFLOW__*` variable dropped, the
    chart's `config:` added, and the worker concurrency kept at the rendered value (the target
    compares at the same concurrency; the chart's own default is 16)."""
    env = {k: v for k, v in rendered.items() if not k.startswith("AIRFLOW__") or k in WIRING}
    for key, value in CHART_CONFIG.items():
        env[env_name(key)] = value.replace("airflow-statsd.airflow.svc.cluster.local", "127.0.0.1")
    concurrency = rendered.get(env_name("celery.worker_concurrency"))
    if concurrency is not None:
        env[env_name("celery.worker_concurrency")] = concurrency
    return env


def config_differences(local: Mapping[str, str], chart: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(setting, local render's value, chart's value) for every Airflow setting that differs; a
    setting one side leaves unset shows as `(default)`, Airflow 3.3.2's own default."""
    keys = {k for k in (*local, *chart) if k.startswith("AIRFLOW__") and k not in WIRING}
    out = []
    for k in sorted(keys):
        a, b = local.get(k, "(default)"), chart.get(k, "(default)")
        if a != b:
            out.append((setting_name(k), a, b))
    return out


# ---- measuring ----------------------------------------------------------------------------------

SAMPLER = """
import sys, time, psycopg2
conn = psycopg2.connect(host=sys.argv[1], port=int(sys.argv[2]), user="postgres", dbname="postgres")
conn.autocommit = True
cur = conn.cursor()
while True:
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'airflow'")
    print(time.time(), cur.fetchone()[0], flush=True)
    time.sleep(float(sys.argv[3]))
"""


class ConnectionSampler:
    """Counts the metadata database's connections (pg_stat_activity, datname `airflow`) every
    SAMPLE_SECONDS from one connection of its own to the `postgres` database (so it never counts
    itself), in a separate process with the Airflow venv's psycopg2."""

    def __init__(self, pg: Postgres, interval: float = SAMPLE_SECONDS) -> None:
        self.samples: list[tuple[float, int]] = []
        cmd = [str(AIRFLOW_VENV / "bin" / "python"), "-c", SAMPLER, str(pg.sock), str(pg.port), str(interval)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, n = line.split()
            self.samples.append((float(t), int(n)))

    def between(self, start: float, end: float) -> list[int]:
        return [n for t, n in list(self.samples) if start <= t <= end]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class StatsdSink:
    """The chart's statsd-exporter, as far as Airflow can tell: a UDP socket on :9125 that takes the
    metrics (read and dropped, so the kernel never refuses them)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                self.sock.recv(65536)
            except OSError:
                return
            self.received += 1

    def close(self) -> None:
        self.sock.close()


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one instant (tasks running at once)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


@dataclass
class RunFigures:
    wall_s: float  # trigger (REST call) to the run observed in state success
    run_s: float  # the run's own queued_at to end_date, as Airflow recorded it
    peak_connections: int
    idle_connections: int
    max_running: int  # most task instances whose start..end overlapped
    tasks: int

    def row(self) -> dict[str, float | int]:
        return self.__dict__.copy()


@dataclass
class VariantResult:
    name: str
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # component -> env as started
    runs: list[RunFigures] = field(default_factory=list)
    statsd_packets: int = 0

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


# The ports the render fixes (api-server, worker and triggerer log servers, scheduler health check):
# each benchmark stack gets free ones instead, so the two stacks run side by side and nothing else
# listening on this machine answers in their place.
FIXED_PORTS = (8080, 8793, 8794, 8974)


def move_ports(spec: dict[str, Any], ports: Mapping[int, int]) -> dict[str, Any]:
    """A container spec with each fixed port number (in args, plain env values, probes and
    containerPorts) replaced; values from Secrets are references here and stay untouched."""
    text = json.dumps(spec)
    for old, new in ports.items():
        text = re.sub(rf"(?<![0-9A-Za-z]){old}(?![0-9A-Za-z])", str(new), text)
    return json.loads(text)


class BenchDeployment(Deployment):
    """The local stack's render, running, with the bench DAG only, on ports of its own; `variant`
    "chart" swaps each long-running container's Airflow settings for the chart's defaults
    (chart_env) and points its statsd client at a sink."""

    def __init__(self, base: Path, variant: str, overrides: tuple[str, ...] = ()) -> None:
        super().__init__(base, overrides)
        self.variant = variant
        self.ports = {p: free_port() for p in FIXED_PORTS}
        self.sink = StatsdSink() if variant == "chart" else None

    def overrides(self) -> tuple[str, ...]:
        return (
            "database.mode=external",
            f"database.external={{host: 127.0.0.1, port: {self.pg.port}, name: airflow, user: airflow, "
            f"password: '{DB_PASSWORD}', sslmode: disable}}",
            "broker.mode=external",
            f"broker.external={{host: 127.0.0.1, port: {self.redis.port}, password: '{REDIS_PASSWORD}', tls: false}}",
            "airflow.dags={source: volume, claimName: bench-dags}",
            *self.extra,
        )

    def boot(self) -> None:
        objects = _render_objects(self.overrides())
        dags = self.base / "dag-volume"
        shutil.copytree(DAGS, dags, dirs_exist_ok=True)
        self.cluster = Cluster(objects, dags, self.base)
        self.containers = airflow_containers(objects)
        for c in self.containers.values():
            c.spec = move_ports(c.spec, self.ports)
        self.admin_password = self.cluster.secrets["airflow-secrets"]["admin-password"]
        for job in ("migrate", "create-user"):
            p = Process(self.cluster, self.containers[job]).start()
            rc = p.wait(300)
            if rc != 0:
                raise RuntimeError(f"{job} Job failed ({rc}):\n{p.tail()}")
        for comp in LONG_RUNNING:
            self.start(comp)
        api = self.containers["api-server"]
        self.api = Api(f"http://127.0.0.1:{int(next(a for a in api.spec['args'] if a.isdigit()))}")
        self.api.wait_healthy(api.spec["readinessProbe"]["httpGet"]["path"], timeout=240)

    def start(self, comp: str) -> Process:
        p = Process(self.cluster, self.containers[comp])
        if self.variant == "chart":
            p.env = chart_env(p.env)
            if self.sink:
                for key in ("metrics.statsd_port", "scheduler.statsd_port"):
                    p.env[env_name(key)] = str(self.sink.port)
        self.procs[comp] = p.start()
        return p

    def stop(self) -> None:
        super().stop()
        if self.sink:
            self.sink.close()

    def run_once(self, sampler: ConnectionSampler) -> RunFigures:
        idle = sampler.samples[-1][1] if sampler.samples else 0
        t0 = time.time()
        run_id = self.trigger(DAG_ID)
        state = "queued"
        deadline = t0 + 600
        while time.time() < deadline:
            state = self.run_state(run_id, DAG_ID)
            if state in ("success", "failed"):
                break
            time.sleep(POLL_SECONDS)
        t1 = time.time()
        if state != "success":
            raise RuntimeError(f"run {run_id} ended {state}:\n{self.logs()}")
        time.sleep(2 * SAMPLE_SECONDS)  # the sample that covers the end
        _, body = self.api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        run_s = (_ts(body["end_date"]) or t1) - (_ts(body["queued_at"]) or t0)
        _, tis = self.task_states(run_id, DAG_ID)
        spans = [(_ts(t["start_date"]), _ts(t["end_date"])) for t in tis]
        seen = sampler.between(t0, t1 + SAMPLE_SECONDS)
        return RunFigures(
            wall_s=round(t1 - t0, 2),
            run_s=round(run_s, 2),
            peak_connections=max(seen) if seen else -1,
            idle_connections=idle,
            max_running=max_overlap([(s, e) for s, e in spans if s and e]),
            tasks=len(tis),
        )


@contextmanager
def e2e_lock(take: bool) -> Iterator[None]:
    if not take:
        yield
        return
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_all(runs: int, overrides: tuple[str, ...], log: Any) -> dict[str, VariantResult]:
    """Both stacks booted side by side, each warmed up with one unmeasured run, then their measured
    runs alternated (local first in odd rounds, chart first in even ones), so load from anything
    else on the machine falls on both alike. Only one stack runs a DAG at a time; the other idles."""
    stacks: dict[str, BenchDeployment] = {}
    samplers: dict[str, ConnectionSampler] = {}
    results = {v: VariantResult(v) for v in ("local", "chart")}
    try:
        for variant in results:
            d = stacks[variant] = BenchDeployment(
                Path(tempfile.mkdtemp(prefix=f"airflow-k8s-bench-{variant}-")), variant, overrides
            )
            log(f"[{variant}] booting (ports {d.ports})")
            d.start_servers()
            d.boot()
            results[variant].env = {c: dict(p.env) for c, p in d.procs.items()}
            d.api.login("admin", d.admin_password)
            d.wait_for_dag(DAG_ID, timeout=300)
            samplers[variant] = ConnectionSampler(d.pg)
        for variant, d in stacks.items():
            log(f"[{variant}] warm-up: {d.run_once(samplers[variant]).row()}")
        for i in range(runs):
            for variant in ("local", "chart") if i % 2 == 0 else ("chart", "local"):
                d = stacks[variant]
                d.api.login("admin", d.admin_password)
                time.sleep(5)  # the previous run's connections settle back to idle
                figures = d.run_once(samplers[variant])
                log(f"[{variant}] run {i + 1}/{runs}: {figures.row()}")
                results[variant].runs.append(figures)
        sink = stacks["chart"].sink
        results["chart"].statsd_packets = sink.received if sink else 0
    finally:
        for sampler in samplers.values():
            sampler.stop()
        for d in stacks.values():
            d.stop()
            shutil.rmtree(d.base, ignore_errors=True)
    return results


def report(results: Mapping[str, VariantResult], concurrency: str) -> str:
    local, chart = results["local"], results["chart"]
    lines = [
        f"fan-out DAG {DAG_ID}: start -> 50 x sleep(2) -> join; 1 Celery worker, concurrency {concurrency}; "
        f"median of {len(local.runs)} runs after 1 warm-up each",
        f"{'':34}{'local render':>24}{'chart defaults':>24}",
    ]
    for attr, label in (
        ("wall_s", "wall time, trigger to success (s)"),
        ("run_s", "run queued_at to end_date (s)"),
        ("peak_connections", "peak metadata-DB connections"),
        ("idle_connections", "idle metadata-DB connections"),
        ("max_running", "most tasks running at once"),
    ):
        lines.append(f"{label:34}{local.median(attr):>24g}{chart.median(attr):>24g}")
        lines.append(
            f"{'  each run':34}{', '.join(f'{getattr(r, attr):g}' for r in local.runs):>24}"
            f"{', '.join(f'{getattr(r, attr):g}' for r in chart.runs):>24}"
        )
    faster = local.median("wall_s") <= chart.median("wall_s")
    fewer = local.median("peak_connections") <= chart.median("peak_connections")
    lines.append(
        f"target: local at least as fast: {'yes' if faster else 'NO'}; "
        f"no more peak DB connections: {'yes' if fewer else 'NO'}"
    )
    lines.append("Airflow settings that differ (worker's environment; `(default)` = Airflow 3.3.2's default):")
    for key, a, b in config_differences(local.env.get("worker", {}), chart.env.get("worker", {})):
        lines.append(f"  {key:44} local={a!r:12} chart={b!r}")
    lines.append(f"statsd packets the chart variant sent: {chart.statsd_packets}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.bench_fanout", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="measured runs per variant (default 3)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the local stack's config")
    ap.add_argument("--json", type=Path, help="write every run's figures here")
    ap.add_argument(
        "--no-lock",
        action="store_true",
        help="do not wait for the e2e lock (the stacks use ports of their own; other load adds noise)",
    )
    args = ap.parse_args(argv)
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        raise SystemExit(f"no Airflow virtualenv at {AIRFLOW_VENV}: `bash .ci/run` builds it")

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    overrides = tuple(args.set)
    with e2e_lock(not args.no_lock):
        results = run_all(args.runs, overrides, log)
    concurrency = results["local"].env["worker"].get(env_name("celery.worker_concurrency"), "?")
    print(report(results, concurrency))
    if args.json:
        args.json.write_text(json.dumps({k: [r.row() for r in v.runs] for k, v in results.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
