"""Issue 15.6: pools, connections and variables from the stack config.

Pools: a Job applies `airflow.pools` after the migration, named by what it applies (so it runs again
exactly when the pools, the script or the image change), with only the DB URL, and nothing waits for
it. Connections and secret variables: Pulumi secrets only, delivered by `secretKeyRef` to the
components that run task or DAG code. The Job's script itself runs against real Airflow in
tests/e2e/test_pools_e2e.py.
"""

from __future__ import annotations

import json

import pytest

from components.airflow.pools import MARKER
from stacks import config as stack_config
from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.render import airflow_pods, containers, env_of, named, objects, pod_spec, render, workloads

POOLS = "airflow.pools={etl: {slots: 4, description: ETL jobs}, reports: {slots: -1, includeDeferred: true}}"
JOB = "kubernetes:batch/v1:Job"


def job_names(run: engine.Run) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects(run, "Job"))


def test_pools_are_off_by_default_and_nothing_is_made_for_them() -> None:
    run = render("local")
    assert not [o for o in objects(run) if o["metadata"]["name"].startswith("airflow-pools")]


def test_the_job_applies_the_declared_pools_from_its_configmap() -> None:
    run = render("local", POOLS)
    cm = named(run, "ConfigMap", "airflow-pools", reveal=True)
    doc = json.loads(cm["data"]["pools.json"])
    assert doc["pools"] == {
        "etl": {"slots": 4, "description": f"ETL jobs {MARKER}", "include_deferred": False},
        "reports": {"slots": -1, "description": MARKER, "include_deferred": True},
    }
    assert "Pool.create_or_update_pool" in cm["data"]["apply_pools.py"]
    spec = pod_spec(named(run, "Job", "airflow-pools"))
    [c] = spec["containers"]
    assert c["args"] == ["python", "/opt/airflow/pools/apply_pools.py", "/opt/airflow/pools/pools.json"]
    assert {"name": "pools", "configMap": {"name": "airflow-pools"}} in spec["volumes"]
    assert {"name": "pools", "mountPath": "/opt/airflow/pools", "readOnly": True} in c["volumeMounts"]
    assert spec["restartPolicy"] == "Never" and spec["serviceAccountName"] == "airflow-pools"
    assert spec["automountServiceAccountToken"] is False


def test_the_job_reads_only_the_database_url() -> None:
    run = render("local", POOLS, secrets=("airflow.connections.dw=postgresql://u:pw@h/d",))
    env = env_of(pod_spec(named(run, "Job", "airflow-pools"))["containers"][0])
    refs = sorted(v[2] for v in env.values() if isinstance(v, tuple))
    assert refs == ["sql-alchemy-conn"]
    assert not [k for k in env if k.startswith(("AIRFLOW_VAR_", "AIRFLOW_CONN_", "AIRFLOW__CELERY__"))]


def test_the_job_runs_after_the_migration_and_no_workload_waits_for_it() -> None:
    run = render("local", POOLS)
    pools = next(r for r in run.by_type(JOB) if r.name == "airflow-pools")
    migrate = run.get(JOB, "airflow-migrate")
    configmap = run.get("kubernetes:core/v1:ConfigMap", "airflow-pools")
    assert migrate.urn in pools.dependencies and configmap.urn in pools.dependencies
    # A task whose pool is missing waits (the scheduler skips it), so nothing else needs the Job.
    assert not [r.name for r in run.resources if pools.urn in r.dependencies]
    assert pools.inputs["metadata"]["annotations"] == {"pulumi.com/replaceUnready": "true"}


def test_the_job_runs_again_when_and_only_when_what_it_applies_changes() -> None:
    base = named(render("local", POOLS), "Job", "airflow-pools")["metadata"]["name"]
    same = named(render("local", POOLS), "Job", "airflow-pools")["metadata"]["name"]
    other_setting = named(render("local", POOLS, "airflow.workers.concurrency=4"), "Job", "airflow-pools")
    slots = named(render("local", POOLS.replace("slots: 4", "slots: 5")), "Job", "airflow-pools")
    image = named(render("local", POOLS, "airflow.image.tag=3.3.3"), "Job", "airflow-pools")
    assert base == same == other_setting["metadata"]["name"]
    assert len({base, slots["metadata"]["name"], image["metadata"]["name"]}) == 3


def test_declaring_pools_changes_no_other_workload() -> None:
    def by_name(run: engine.Run) -> dict[str, dict]:
        return {o["metadata"]["name"]: o for o in workloads(run)}

    before, after = by_name(render("local")), by_name(render("local", POOLS))
    assert sorted(set(after) - set(before)) == [
        named(render("local", POOLS), "Job", "airflow-pools")["metadata"]["name"]
    ]
    assert all(after[n] == before[n] for n in before)


def test_an_empty_map_still_runs_the_job_so_removed_pools_are_deleted() -> None:
    run = render("local", "airflow.pools={}")
    assert json.loads(named(run, "ConfigMap", "airflow-pools", reveal=True)["data"]["pools.json"])["pools"] == {}
    assert [n for n in job_names(run) if n.startswith("airflow-pools-")]


def test_default_pool_slots_can_be_set() -> None:
    run = render("local", "airflow.pools={default_pool: {slots: 256}}")
    doc = json.loads(named(run, "ConfigMap", "airflow-pools", reveal=True)["data"]["pools.json"])
    assert doc["pools"]["default_pool"]["slots"] == 256 and doc["default_pool"] == "default_pool"


# ---- secret variables ------------------------------------------------------------------------

SECRET_VALUE = "sv-4b1e9d0c-secret"


def test_a_secret_variable_reaches_task_code_by_reference_only() -> None:
    run = render("local", "airflow.executor=CeleryExecutor,KubernetesExecutor", secrets=(
        f"airflow.secretVariables.api_token={SECRET_VALUE}",))  # fmt: skip
    holders = set()
    for comp, spec in airflow_pods(run):
        for c in containers(spec):
            ref = env_of(c).get("AIRFLOW_VAR_API_TOKEN")
            if ref is not None:
                assert ref == ("secret", "airflow-secrets", "AIRFLOW_VAR_API_TOKEN"), (comp, ref)
                holders.add(comp)
    assert holders == {"api-server", "dag-processor", "triggerer", "worker", "task"}
    secret = named(run, "Secret", "airflow-secrets", reveal=True)
    assert secret["stringData"]["AIRFLOW_VAR_API_TOKEN"] == SECRET_VALUE
    # Nowhere else, and masked in what a render writes.
    leaks = [
        o["metadata"]["name"]
        for o in objects(run, reveal=True)
        if o["kind"] != "Secret" and SECRET_VALUE in json.dumps(o)
    ]
    assert leaks == []
    assert SECRET_VALUE not in json.dumps([r.to_json() for r in run.resources])


def test_a_changed_secret_variable_rolls_only_its_holders() -> None:
    def checksums(run: engine.Run) -> dict[str, object]:
        return {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"]
            .get("annotations", {})
            .get("airflow-k8s.io/secret-checksum")
            for o in workloads(run, reveal=True)
        }

    a = checksums(render("local", secrets=("airflow.secretVariables.api_token=a",)))
    b = checksums(render("local", secrets=("airflow.secretVariables.api_token=b",)))
    assert sorted(k for k in a if a[k] != b[k]) == [
        "airflow-api-server", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
    ]  # fmt: skip


# ---- plain text where a Pulumi secret is required --------------------------------------------


@pytest.mark.parametrize(
    "override,key",
    [
        ("airflow.connections={dw: 'postgresql://u:pw@h/d'}", "airflow.connections.dw"),
        ("airflow.secretVariables={api_token: t0ken}", "airflow.secretVariables.api_token"),
    ],
)
def test_a_plain_text_connection_or_secret_variable_is_an_error_naming_the_fix(override: str, key: str) -> None:
    config, keys = load_stack_config("local", [override])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    message = str(run.error)
    assert f"airflow-k8s:{key}: must be a Pulumi secret, not plain text" in message, message
    assert f"pulumi config set --secret --path '{key}'" in message
    assert "pw@h" not in message and "t0ken" not in message
    assert run.resources == []


def test_a_plain_value_beside_a_secret_one_is_caught_from_the_stack_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulumi marks `airflow-k8s:airflow` secret as a whole once any value in it is: the stack file
    is what tells a plain-text connection beside a secure one."""
    file = {
        "config": {
            "airflow-k8s:airflow": {
                "connections": {"safe": {"secure": "v1:AAAA"}, "leaked": "postgresql://u:pw@h/d"},
                "secretVariables": {"tok": {"secure": "v1:BBBB"}},
            }
        }
    }
    monkeypatch.setattr(stack_config, "_stack_file", lambda stack: file)
    given = {"airflow": {"connections": {"safe": "decrypted", "leaked": "postgresql://u:pw@h/d"},
                         "secretVariables": {"tok": "decrypted"}}}  # fmt: skip
    config, keys = load_stack_config("local")
    config["airflow-k8s:airflow"] = json.dumps({**json.loads(config["airflow-k8s:airflow"]), **given["airflow"]})
    keys = [*keys, "airflow-k8s:airflow"]
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    message = str(run.error)
    assert "airflow-k8s:airflow.connections.leaked: must be a Pulumi secret" in message, message
    assert "connections.safe" not in message and "secretVariables" not in message
    assert run.resources == []
    # All secure: accepted.
    file["config"]["airflow-k8s:airflow"]["connections"]["leaked"] = {"secure": "v1:CCCC"}
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None, run.error


def test_a_value_not_from_the_stack_file_is_left_to_the_top_level_rule() -> None:
    file = {"config": {"airflow-k8s:airflow": {"connections": {"dw": "plain-in-file"}}}}
    assert stack_config.plain_in_stack_file(file, {"airflow": {"connections": {"dw": "from-esc"}}}) == []
    assert stack_config.plain_in_stack_file(file, {"airflow": {"connections": {"dw": "plain-in-file"}}}) == [
        stack_config._fix("airflow.connections.dw")
    ]
    assert stack_config.plain_in_stack_file(None, {"airflow": {"connections": {"dw": "x"}}}) == []
