"""Print the e2e suite's measured figures at the end of every run (the README quotes them)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator

import pytest

from tests.e2e import test_airflow_e2e as e2e


@pytest.fixture(scope="session", autouse=True)
def _one_e2e_run_per_machine() -> Iterator[None]:
    """The rendered ports are fixed (the api-server's 8080, the log servers' 8793 and 8794), so two
    e2e runs on one machine would answer each other's requests: they take turns."""
    # A run in a network namespace of its own (`unshare -n`) has the ports to itself: it may name
    # another lock file.
    with open(os.environ.get("AIRFLOW_K8S_E2E_LOCK", "/tmp/airflow-k8s-e2e.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = {k: v for k, v in e2e.TIMINGS.items() if k not in ("start", "end")}
    if "start" in e2e.TIMINGS:
        # From the first server start to the last e2e teardown; later (non-e2e) tests are not counted.
        end = e2e.TIMINGS.get("end", time.time())
        figures["e2e_suite_total"] = end - e2e.TIMINGS["start"] + e2e.TIMINGS.get("servers", 0.0)
        terminalreporter.write_line("e2e timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))
        terminalreporter.write_line(f"e2e components restarted as the kubelet would: {e2e.RESTARTED or 'none'}")
        if e2e.MEMORY:
            terminalreporter.write_line(
                "e2e worker memory at full concurrency (MiB, PSS): "
                + ", ".join(f"{k}={v:.0f}" for k, v in e2e.MEMORY.items())
            )
