"""Bad input fails before any resource is registered, with a message naming the key and what is allowed."""

from __future__ import annotations

import pytest

from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.cli import main as render_main
from stacks.tooling.render import RenderError, load_stack_config

CASES = [
    # (override, expected key path in message, expected explanation fragment)
    ("airflow.executor=LocalExecutor", "airflow-k8s:airflow.executor", "'CeleryExecutor', 'KubernetesExecutor'"),
    ("airflow.scheduler.replicas=0", "airflow-k8s:airflow.scheduler.replicas", "greater than or equal to 1"),
    (
        "airflow.scheduler.replica=2",
        "airflow-k8s:airflow.scheduler.replica",
        "not a known key (allowed: replicas, resources)",
    ),
    (
        "nope=1",
        "airflow-k8s:nope",
        "not a known key (allowed: airflow, aws, azure, broker, cloud, database, kubernetes)",
    ),
    ("cloud=gcp", "airflow-k8s:cloud", "must be one of 'local', 'aws', 'azure'"),
    ("kubernetes.context=", "airflow-k8s:kubernetes.context", "needs a kubeconfig context name"),
    ("kubernetes.namespace=Airflow_NS", "airflow-k8s:kubernetes.namespace", "must match"),
    ("kubernetes.taskPodSecurity=privileged", "airflow-k8s:kubernetes.taskPodSecurity", "'baseline', 'restricted'"),
    # The default task namespace is `<namespace>-tasks`: it must still be a DNS label.
    (f"kubernetes.namespace={'a' * 60}", "airflow-k8s:kubernetes.taskNamespace", "longer than 63 characters"),
    ("airflow.image.tag=latest", "airflow-k8s:airflow.image.tag", "exact tag"),
    ("database.mode=external", "airflow-k8s:database.external", "mode 'external' needs 'external'"),
    ("database.mode=cloud", "airflow-k8s:database.mode", "must be one of 'inCluster', 'external'"),
    ("broker.external.port=70000", "airflow-k8s:broker.external.port", "less than or equal to 65535"),
    ("airflow.dags={source: gitSync}", "airflow-k8s:airflow.dags.git", "needs 'git'"),
    ("airflow.dags.git.repo=github.com/x/y", "airflow-k8s:airflow.dags.git.repo", "must be a git URL"),
    ("airflow.workers.resources.memoryLimit=lots", "airflow-k8s:airflow.workers.resources.memoryLimit", "must match"),
    ("airflow.auth.manager=ldap", "airflow-k8s:airflow.auth.manager", "must be one of 'fab', 'simple'"),
    ("airflow.executor=KubernetesExecutor", None, None),  # valid on its own: control for the next case
    ("airflow.variables={bad-name: x}", "airflow-k8s:airflow.variables", "letters, digits and '_'"),
    ("airflow.config={Core.Parallelism: '4'}", "airflow-k8s:airflow.config", "'section.option'"),
    # An unknown key inside an optional object still lists what is allowed there.
    (
        "database={mode: external, external: {host: h, password: p, hots: x}}",
        "airflow-k8s:database.external.hots",
        "not a known key (allowed: ca, host, name, password, port, sslmode, user)",
    ),
    # Issue 10.11: a worker limit that cannot hold its concurrency (the local stack runs 8).
    (
        "airflow.workers.resources.memoryLimit=1Gi",
        "airflow-k8s:airflow.workers.resources.memoryLimit",
        "cannot hold 8 concurrent tasks: at least",
    ),
    ("airflow.migrationTimeoutMinutes=0", "airflow-k8s:airflow.migrationTimeoutMinutes", "greater than or equal to 1"),
]


@pytest.mark.parametrize("override,key,fragment", [c for c in CASES if c[1]])
def test_bad_input_names_key_and_registers_nothing(override: str, key: str, fragment: str) -> None:
    config, secret_keys = load_stack_config("local", [override])
    run = engine.run(program, config=config, secret_keys=secret_keys, stack="local")
    assert run.error is not None, f"{override} was accepted"
    message = str(run.error)
    assert key + ":" in message, message
    assert fragment in message, message
    assert "Traceback" not in message
    assert run.resources == [], f"{override} registered {[r.name for r in run.resources]}"


def test_flower_needs_celery() -> None:
    config, keys = load_stack_config("local", ["airflow.executor=KubernetesExecutor", "airflow.flower.enabled=true"])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert "airflow-k8s:airflow.flower.enabled: needs the CeleryExecutor" in str(run.error)
    assert run.resources == []


def test_valid_control_case_renders() -> None:
    config, keys = load_stack_config("local", ["airflow.executor=KubernetesExecutor"])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None and run.resources


def test_secret_value_not_echoed_in_error() -> None:
    config, keys = load_stack_config(
        "local", ["database.mode=external", "database.external={host: h, port: 99999, password: Sup3rS3cret!}"]
    )
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert "airflow-k8s:database.external.port" in str(run.error)
    assert "Sup3rS3cret" not in str(run.error)


def test_cli_prints_error_and_exits_2(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert render_main(["local", "--out", str(tmp_path), "--set", "airflow.executor=Nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid stack config:") and "airflow-k8s:airflow.executor" in err
    assert not (tmp_path / "resources.json").exists()


def test_cli_rejects_malformed_set() -> None:
    with pytest.raises(RenderError, match="expected KEY=VALUE"):
        load_stack_config("local", ["airflow.executor"])


def test_unknown_stack_file() -> None:
    with pytest.raises(RenderError, match="no stack file Pulumi.nope.yaml"):
        load_stack_config("nope")
