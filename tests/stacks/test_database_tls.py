"""What each stack renders for the metadata DB's TLS: the three URLs, the CA bundle and its mounts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from components.endpoints import SYSTEM_CA_BUNDLE, ca_certificates, common_name
from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.e2e.harness import make_ca_and_server_cert
from tests.render import containers, env_of, is_airflow, named, objects, pod_spec, render, workloads

CA_FILE = "/opt/airflow/db-ca/ca.crt"
ASYNC_VAR = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"
URL_KEYS = ("sql-alchemy-conn", "result-backend", "sql-alchemy-conn-async")
KE_BOTH = "airflow.executor=CeleryExecutor,KubernetesExecutor"


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    ca, _, _ = make_ca_and_server_cert(tmp_path_factory.mktemp("db-ca"))
    return ca.read_text()


def external(tls: str) -> tuple[str, ...]:
    return ("database.mode=external", f"database.external={{host: db.example.com, password: 'p@ss$1', {tls}}}")


def tls_of(run: engine.Run) -> dict[str, dict[str, list[str]]]:
    """Secret key -> the query of that URL (the asyncpg URL's `dsn` unpacked into `dsn.*`)."""
    data = named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]
    out = {}
    for key in URL_KEYS:
        query = parse_qs(urlsplit(data[key]).query, strict_parsing=True)
        for inner, value in parse_qs(urlsplit(query.pop("dsn", [""])[0]).query).items():
            query[f"dsn.{inner}"] = value
        out[key] = query
    return out


def expected_tls(mode: str, ca_file: str | None) -> dict[str, dict[str, list[str]]]:
    libpq = {"sslmode": [mode]} | ({"sslrootcert": [ca_file]} if ca_file else {})
    asyncpg = {"ssl": [mode]} | ({"dsn.sslrootcert": [ca_file]} if ca_file else {})
    return {"sql-alchemy-conn": libpq, "result-backend": libpq, "sql-alchemy-conn-async": asyncpg}


def airflow_pods(run: engine.Run) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload, plus the KubernetesExecutor pod template if there is one."""
    pods = [(o["metadata"]["name"], pod_spec(o)) for o in workloads(run, reveal=True)]
    templates = [
        o for o in objects(run, "ConfigMap", reveal=True) if o["metadata"]["name"].startswith("airflow-pod-template-")
    ]
    pods += [("pod-template", yaml.safe_load(t["data"]["pod_template_file.yaml"])["spec"]) for t in templates]
    return pods


def ca_mounts(run: engine.Run) -> dict[str, list[dict[str, Any]]]:
    """container -> its `db-ca` mounts, for every Airflow container (init containers too)."""
    return {
        f"{name}/{c['name']}": [m for m in c.get("volumeMounts", []) if m["name"] == "db-ca"]
        for name, spec in airflow_pods(run)
        for c in containers(spec)
        if is_airflow(c)
    }


def ca_volumes(run: engine.Run) -> list[dict[str, Any]]:
    return [v for _, spec in airflow_pods(run) for v in spec.get("volumes", []) if v["name"] == "db-ca"]


# ---- the async URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [(), (KE_BOTH, "airflow.auth.manager=simple")])
def test_only_the_api_server_gets_the_async_url(variant: tuple[str, ...]) -> None:
    run = render("local", *variant)
    seen = set()
    for name, spec in airflow_pods(run):
        for c in containers(spec):
            if is_airflow(c):
                env = env_of(c)
                if name == "airflow-api-server":
                    assert env[ASYNC_VAR] == ("secret", "airflow-secrets", "sql-alchemy-conn-async"), c["name"]
                    seen.add(c["name"])
                else:
                    # Pods that run DAG or trigger code: Airflow blanks the sync URL for task code, not this.
                    assert ASYNC_VAR not in env, (name, c["name"])
    assert seen == {"api-server", "wait-for-migrations"}


def test_in_cluster_database_is_plain_and_said_so() -> None:
    """The in-cluster PostgreSQL has no TLS: every URL says `disable`, there is nothing to mount."""
    run = render("local")
    assert tls_of(run) == expected_tls("disable", None)
    assert not ca_volumes(run) and not [
        o for o in objects(run, "ConfigMap") if o["metadata"]["name"] == "airflow-db-ca"
    ]


# ---- local stack, external database ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["disable", "prefer", "require"])
def test_external_non_verifying_modes_reach_both_drivers(mode: str) -> None:
    assert tls_of(render("local", *external(f"sslmode: {mode}"))) == expected_tls(mode, None)


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_external_ca_pem_is_shipped_and_mounted_read_only_where_a_db_url_is(mode: str, ca_pem: str) -> None:
    run = render("local", *external(f"sslmode: {mode}, ca: {{pem: {json.dumps(ca_pem)}}}"), KE_BOTH)
    assert tls_of(run) == expected_tls(mode, CA_FILE)
    assert named(run, "ConfigMap", "airflow-db-ca")["data"] == {"ca.crt": ca_pem}
    mounts = ca_mounts(run)
    assert {"airflow-api-server/wait-for-migrations", "airflow-worker/worker", "pod-template/base"} <= set(mounts)
    for name, spec in airflow_pods(run):
        for c in containers(spec):
            if not is_airflow(c):
                continue
            # Exactly the containers with a DB URL get the CA: the worker (the result backend), not
            # task pods, which hold none (issue 10.3).
            urls = {v[2] for v in env_of(c).values() if isinstance(v, tuple) and v[0] == "secret"} & set(URL_KEYS)
            want = [{"name": "db-ca", "mountPath": "/opt/airflow/db-ca", "readOnly": True}] if urls else []
            assert mounts[f"{name}/{c['name']}"] == want, (name, c["name"])
    assert mounts["airflow-worker/worker"] and not mounts["pod-template/base"]
    volumes = ca_volumes(run)
    assert volumes and all(
        v == {"name": "db-ca", "configMap": {"name": "airflow-db-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
        for v in volumes
    )
    # Containers without a DB URL get no CA (git-sync here).
    git = [c for o in workloads(run) for c in containers(pod_spec(o)) if not is_airflow(c)]
    assert git and not [m for c in git for m in c.get("volumeMounts", []) if m["name"] == "db-ca"]


@pytest.mark.parametrize("source", ["secret", "configMap"])
def test_external_ca_from_an_existing_object_is_mounted_as_it_is(source: str) -> None:
    run = render("local", *external(f"sslmode: verify-full, ca: {{{source}: corp-ca, key: root.pem}}"))
    assert tls_of(run) == expected_tls("verify-full", CA_FILE)
    items = [{"key": "root.pem", "path": "ca.crt"}]
    ref = {"secretName": "corp-ca", "items": items} if source == "secret" else {"name": "corp-ca", "items": items}
    assert ca_volumes(run) and all(v == {"name": "db-ca", source: ref} for v in ca_volumes(run))
    assert "airflow-db-ca" not in [o["metadata"]["name"] for o in objects(run, "ConfigMap")]


def test_external_verify_full_without_ca_uses_the_images_system_bundle() -> None:
    run = render("local", *external("sslmode: verify-full"))
    assert tls_of(run) == expected_tls("verify-full", SYSTEM_CA_BUNDLE)
    assert not ca_volumes(run)


BAD = [
    ("sslmode: require, ca: {secret: corp-ca}", "database.external.ca", "only applies to sslmode verify-ca or"),
    ("sslmode: verify-full, ca: {secret: corp-ca, configMap: b}", "database.external.ca", "set exactly one of pem"),
    ("sslmode: verify-full, ca: {}", "database.external.ca", "set exactly one of pem"),
    ("sslmode: verify-full, ca: {pem: 'hello'}", "database.external.ca.pem", "holds no PEM certificate"),
    ("sslmode: verify-full, ca: {secret: Corp_CA}", "database.external.ca.secret", "must match"),
    ("sslmode: verify-full, ca: {pem: x, file: y}", "database.external.ca.file", "allowed: configMap, key, pem"),
]


@pytest.mark.parametrize("tls,key,fragment", BAD)
def test_bad_ca_settings_name_the_key_and_register_nothing(tls: str, key: str, fragment: str) -> None:
    config, secret_keys = load_stack_config("local", list(external(tls)))
    run = engine.run(program, config=config, secret_keys=secret_keys, stack="local")
    message = str(run.error)
    assert f"airflow-k8s:{key}:" in message and fragment in message, message
    assert "Traceback" not in message and run.resources == []


# ---- the cloud stacks ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["aws-dev", "aws-prod"])
def test_aws_verifies_rds_against_the_regions_rds_roots(stack: str) -> None:
    run = render(stack)
    assert tls_of(run) == expected_tls("verify-full", CA_FILE)
    roots = ca_certificates(named(run, "ConfigMap", "airflow-db-ca")["data"]["ca.crt"])
    assert sorted(common_name(f) for _, f in roots) == [
        f"Amazon RDS eu-west-1 Root CA {kind} G1" for kind in ("ECC384", "RSA2048", "RSA4096")
    ]
    [instance] = run.by_type("aws:rds/instance:Instance")
    # The instance's certificate is signed by a CA whose root is in what Airflow trusts.
    assert instance.inputs["caCertIdentifier"] == "rds-ca-rsa2048-g1"
    assert "Amazon RDS eu-west-1 Root CA RSA2048 G1" in [common_name(f) for _, f in roots]
    assert all(found for found in ca_mounts(run).values())


def test_aws_require_only_encrypts_and_ships_no_ca() -> None:
    run = render("aws-dev", "aws.database.sslmode=require")
    assert tls_of(run) == expected_tls("require", None)
    assert not ca_volumes(run) and "airflow-db-ca" not in [o["metadata"]["name"] for o in objects(run, "ConfigMap")]


def test_aws_region_without_rds_roots_is_refused_before_any_resource() -> None:
    overrides = ["aws.region=us-gov-west-1", "aws.network.availabilityZones=[us-gov-west-1a, us-gov-west-1b]"]
    config, secret_keys = load_stack_config("aws-dev", overrides)
    run = engine.run(program, config=config, secret_keys=secret_keys, stack="aws-dev")
    message = str(run.error)
    assert "airflow-k8s:aws.region: the vendored RDS CA bundle has no 'Amazon RDS us-gov-west-1 Root CA" in message
    assert run.resources == []
    config, secret_keys = load_stack_config("aws-dev", [*overrides, "aws.database.sslmode=require"])
    assert engine.run(program, config=config, secret_keys=secret_keys, stack="aws-dev").error is None


@pytest.mark.parametrize("stack", ["azure-dev", "azure-prod"])
def test_azure_verifies_against_the_images_system_bundle(stack: str) -> None:
    run = render(stack)
    assert tls_of(run) == expected_tls("verify-full", SYSTEM_CA_BUNDLE)
    assert not ca_volumes(run)


def test_the_roots_azure_names_are_in_debians_bundle() -> None:
    """Microsoft's list for Flexible Server (DigiCert Global Root G2, Microsoft RSA Root CA 2017,
    DigiCert Global Root CA) against this machine's Debian 12 ca-certificates, the package the
    official image (debian:bookworm-slim) installs."""
    bundle = Path(SYSTEM_CA_BUNDLE)
    assert bundle.exists(), f"{bundle} is missing: install Debian's ca-certificates"
    names = {common_name(f) for _, f in ca_certificates(bundle.read_text())}
    assert {
        "DigiCert Global Root G2",
        "Microsoft RSA Root Certificate Authority 2017",
        "DigiCert Global Root CA",
    } <= names
