"""What the official image's entrypoint does before Airflow runs, for every rendered Airflow container.

`scripts/docker/entrypoint_prod.sh` runs `airflow db check` (CONNECTION_CHECK_MAX_COUNT tries, 20 by
default, CONNECTION_CHECK_SLEEP_TIME apart) before any command, `bash` and `python` included, and
exits 1 when it keeps failing. A container without the metadata DB's URL (Celery workers, Flower,
KubernetesExecutor task pods: they reach the DB through the execution API or not at all) then checks
Airflow's default `sqlite:///$AIRFLOW_HOME/airflow.db`; AIRFLOW_HOME is the image's /opt/airflow on a
read-only root filesystem, so sqlite cannot create the file and the pod never starts its process
(tests/e2e/test_image_entrypoint_e2e.py runs that). Where the URL is there, the check duplicates the
`wait-for-migrations` init container, and for the migration Job it is a useful wait for the
database to accept connections, so those keep it."""

from __future__ import annotations

import pytest

from tests.render import airflow_pods, containers, env_of, is_airflow, render

VARIANTS = [
    ("local",),
    ("local", "airflow.executor=CeleryExecutor,KubernetesExecutor", "airflow.flower.enabled=true"),
    ("aws-dev",),
    ("azure-dev", "airflow.executor=KubernetesExecutor"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: " ".join(v))
def test_containers_without_the_db_url_skip_the_entrypoints_db_check(variant: tuple[str, ...]) -> None:
    skipped: set[str] = set()
    for comp, spec in airflow_pods(render(*variant)):
        for c in containers(spec):
            if not is_airflow(c) or "command" in c:  # a `command` bypasses the image's entrypoint
                continue
            env = env_of(c)
            if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
                assert "CONNECTION_CHECK_MAX_COUNT" not in env, (comp, c["name"])
            else:
                assert env.get("CONNECTION_CHECK_MAX_COUNT") == "0", (comp, c["name"])
                skipped.add(comp)
    # Each variant has at least one DB-less component: a worker or task pods.
    assert skipped & {"worker", "task"}, skipped
