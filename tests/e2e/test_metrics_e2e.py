"""Metrics (issue 15, item 7) with real Airflow 3.3.2: the stack rendered with `airflow.statsd.enabled`,
booted from the render, runs the e2e pipeline DAG (retries, deferral, mapped tasks) while a UDP
listener on the rendered statsd port stands in for the exporter and keeps every line Airflow sends.

Each captured line is then read through the rendered mapping file (tests/statsd_mapping.py: this
suite's reading of statsd_exporter v0.30.0's documented semantics, not the exporter itself, which
no package here provides): every name must be mapped, none may keep a DAG, task or run id in its
Prometheus name, and each Prometheus name must always arrive with one set of labels (the exporter
drops an event whose labels differ from the first it saw under that name).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.test_airflow_e2e import DAG_ID, EXPECTED, Deployment, booted
from tests.statsd_mapping import Event, Mapped, Mapping, parse_line

STATSD_PORT = 9125  # the roster's statsd port; the test reads the rendered env below too


class Listener:
    """What the exporter's UDP listener would receive: every datagram, split into lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.5)
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines += [line for line in data.decode().split("\n") if line]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@dataclass
class Captured:
    lines: list[str]
    mapping: Mapping
    run_id: str
    events: dict[tuple[str, str], Event] = field(default_factory=dict)
    mapped: dict[tuple[str, str], Mapped | None] = field(default_factory=dict)
    label_sets: dict[str, set[frozenset[str]]] = field(default_factory=lambda: defaultdict(set))


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    listener = Listener(STATSD_PORT)
    try:
        d = Deployment(tmp_path_factory.mktemp("e2e-metrics"), ("airflow.statsd.enabled=true",))
        with booted(d, "metrics_e2e"):
            env = {e["name"]: e.get("value") for e in d.containers["scheduler"].spec["env"]}
            assert env["AIRFLOW__METRICS__STATSD_PORT"] == str(STATSD_PORT)
            (text,) = [
                v["mappings.yaml"] for k, v in d.cluster.configmaps.items() if k.startswith("airflow-statsd-mappings-")
            ]
            d.ready_for_pipeline()
            run_id = d.trigger()
            state = d.wait_run(run_id)
            assert state == "success", d.logs()
            # Gauges the scheduler sends on its own clock (pools every 5 s, executor slots each loop).
            time.sleep(12)
    finally:
        listener.close()
    c = Captured(listener.lines, Mapping(text), run_id)
    for line in c.lines:
        event = parse_line(line)
        key = (event.name, event.type)
        c.events.setdefault(key, event)
        hit = c.mapping.match(event)
        c.mapped[key] = hit
        if hit is not None and hit.action == "map":
            c.label_sets[hit.name].add(frozenset(hit.labels))
    print(f"\nmetrics e2e: {len(c.lines)} statsd lines, {len(c.events)} distinct names, "
          f"{len(c.label_sets)} Prometheus metrics")  # fmt: skip
    yield c


def test_airflow_sent_the_metrics_of_a_run(captured: Captured) -> None:
    names = {name for name, _ in captured.events}
    for expected in ("airflow.ti.finish", "airflow.ti.start", "airflow.task.duration", "airflow.scheduler_heartbeat",
                     "airflow.dagrun.duration.success", "airflow.pool.open_slots", "airflow.executor.open_slots"):  # fmt: skip
        assert expected in names, sorted(names)
    # Tags on the wire, as the mapping expects; no legacy copy with the ids in the name.
    finish = [parse_line(line) for line in captured.lines if line.startswith("airflow.ti.finish,")]
    assert {(e.tags["dag_id"], e.tags["task_id"], e.tags["state"]) for e in finish} >= {
        (DAG_ID, task, "success") for task in EXPECTED
    }
    assert not [
        line for line in captured.lines if line.startswith((f"airflow.ti.finish.{DAG_ID}", f"airflow.dag.{DAG_ID}"))
    ]


def test_every_name_airflow_sent_is_mapped(captured: Captured) -> None:
    unmapped = sorted(f"{n} ({t})" for (n, t), hit in captured.mapped.items() if hit is None or hit.action != "map")
    assert not unmapped, unmapped


def test_no_prometheus_name_keeps_an_id(captured: Captured) -> None:
    ids = [DAG_ID, captured.run_id, *EXPECTED]
    for name in captured.label_sets:
        assert re.fullmatch(r"airflow_[a-z0-9_]+", name), name
        assert not [i for i in ids if i in name], name
    assert "airflow_ti_finish_total" in captured.label_sets and "airflow_task_duration_seconds" in captured.label_sets


def test_each_prometheus_name_has_one_label_set_and_no_unbounded_label(captured: Captured) -> None:
    conflicts = {name: sorted(map(sorted, sets)) for name, sets in captured.label_sets.items() if len(sets) > 1}
    assert not conflicts, conflicts
    labels = set().union(*(s for sets in captured.label_sets.values() for s in sets))
    assert not labels & {"run_id", "job_id", "dagrun_id", "ti_id", "try_number"}, labels
    assert {"dag_id", "task_id", "state", "pool_name"} <= labels
