"""The typed config model: defaults, secrets, the generated README reference, Pulumi.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from stacks.config import AIRFLOW_VERSION, PROJECT, ConfigError, StackConfig, from_pulumi_config, parse
from stacks.tooling import configdoc, engine

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_reference_is_current() -> None:
    section = configdoc.current_readme_section((ROOT / "README.md").read_text())
    assert section == configdoc.reference(), "stale: run `python -m stacks.render --write-readme`"


def test_every_key_has_a_description() -> None:
    missing = [key for key, _, _, desc in configdoc.rows(StackConfig, "") if not desc]
    assert not missing


def test_production_defaults() -> None:
    c = parse({"kubernetes": {"context": "prod"}})
    assert c.airflow.image.tag == AIRFLOW_VERSION
    assert c.airflow.auth.manager == "fab"
    assert c.airflow.scheduler.replicas >= 2 and c.airflow.api_server.replicas >= 2
    assert c.kubernetes.network_policies is True
    assert c.database.external is None and c.database.mode == "inCluster"


def test_pulumi_yaml_declares_only_model_keys_and_puts_stacks_in_stacks_dir() -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert doc["name"] == PROJECT and doc["stackConfigDir"] == "stacks"
    aliases = {f.alias for f in StackConfig.model_fields.values()}
    assert set(doc["config"]) <= aliases


def test_secret_fields_are_secretstr_and_never_printed() -> None:
    c = parse(
        {
            "kubernetes": {"context": "x"},
            "database": {"mode": "external", "external": {"host": "h", "password": "hunter2hunter2"}},
        }
    )
    assert c.database.external is not None and isinstance(c.database.external.password, SecretStr)
    assert "hunter2" not in repr(c) and "hunter2" not in str(c.model_dump())


def test_errors_are_collected_and_name_every_key() -> None:
    with pytest.raises(ConfigError) as e:
        parse({"kubernetes": {"context": "x", "namespace": "A"}, "airflow": {"workers": {"replicas": -1}}})
    msg = str(e.value)
    assert "airflow-k8s:kubernetes.namespace:" in msg and "airflow-k8s:airflow.workers.replicas:" in msg


def test_reads_pulumi_config_including_secret_keys() -> None:
    seen: dict[str, object] = {}

    def prog() -> None:
        seen["cfg"] = from_pulumi_config()

    run = engine.run(
        prog,
        config={
            f"{PROJECT}:kubernetes": '{"context": "kind-x"}',
            f"{PROJECT}:database": '{"mode": "external", "external": {"host": "h", "password": "pw-from-secret"}}',
            "observability:endpoint": "x",  # other namespaces unrelated to this project are not ours
        },
        secret_keys=[f"{PROJECT}:database"],
    )
    assert run.error is None
    cfg = seen["cfg"]
    assert isinstance(cfg, StackConfig)
    assert cfg.database.external is not None
    assert cfg.database.external.password.get_secret_value() == "pw-from-secret"


def test_dotted_top_level_key_is_rejected() -> None:
    def prog() -> None:
        from_pulumi_config()

    run = engine.run(
        prog, config={f"{PROJECT}:airflow.executor": "CeleryExecutor", f"{PROJECT}:kubernetes": '{"context": "x"}'}
    )
    assert isinstance(run.error, ConfigError) and "airflow-k8s:airflow.executor: is not a known key" in str(run.error)
