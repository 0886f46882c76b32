"""The image's entrypoint in front of each DB-less Airflow container: does its process ever start?

The official image runs `dumb-init -- /entrypoint <args>`, and the entrypoint runs `airflow db check`
before any command (scripts/docker/entrypoint_prod.sh; emulated, with the same defaults, by
image-entrypoint.sh). Celery workers, Flower and KubernetesExecutor task pods get no metadata-DB URL,
so that check opens Airflow's default sqlite file in AIRFLOW_HOME, which in the pod is the image's
/opt/airflow on a read-only root filesystem. Here the process's AIRFLOW_HOME is made immutable
(`chattr +i`, which binds root too) for the same effect, and each container runs its rendered env
through the entrypoint with `airflow version` as its command: with the render's env it starts at
once; without CONNECTION_CHECK_MAX_COUNT (the control) the entrypoint gives up and exits 1."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.harness import IMAGE_HOME, Cluster, Process, airflow_containers
from tests.e2e.test_airflow_e2e import _render_objects

OVERRIDES = ("airflow.executor=CeleryExecutor,KubernetesExecutor", "airflow.flower.enabled=true")


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _run(p: Process, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = p.argv[: p.argv.index("--") + 2] + ["version"]  # dumb-init -- entrypoint version
    with _read_only(p.mounts[IMAGE_HOME]):
        return subprocess.run(argv, env=env, cwd=p.dir, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("component", ["worker", "flower"])
def test_a_db_less_container_starts_its_process_through_the_image_entrypoint(tmp_path: Path, component: str) -> None:
    objects = _render_objects(OVERRIDES)
    containers = airflow_containers(objects)
    cluster = Cluster(objects, tmp_path / "dags", tmp_path)
    p = Process(cluster, containers[component], image_entrypoint=True)
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in p.env
    assert p.env["AIRFLOW_HOME"] == str(p.mounts[IMAGE_HOME])

    ok = _run(p, p.env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().startswith("3."), ok.stdout  # `airflow version` ran

    control = {k: v for k, v in p.env.items() if k != "CONNECTION_CHECK_MAX_COUNT"}
    control |= {"CONNECTION_CHECK_MAX_COUNT": "2", "CONNECTION_CHECK_SLEEP_TIME": "0"}  # the image's 20 x 3 s
    failed = _run(p, control)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Maximum number of retries" in failed.stderr, failed.stderr
