"""Metrics (issue 15, item 7): the statsd exporter's mappings against Airflow 3.3.2's metric names,
its Deployment, the opt-in ServiceMonitor (validated strictly against the vendored Prometheus
Operator CRD) and who may scrape it."""

from __future__ import annotations

import copy
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pytest
import yaml

from components.airflow.metrics import (
    DROP_RULE,
    MAPPINGS_FILE,
    Scrapers,
    ScrapeTarget,
    ServiceMonitorSettings,
    mapping_config,
    scrape_peer,
    service_monitor,
)
from components.airflow.roster import BY_NAME, RUNTIME
from components.airflow.settings import AIRFLOW_VERSION
from stacks.tooling import engine
from tests.pod_security import violations
from tests.render import (
    K8S_VERSIONS,
    airflow_pods,
    env_of,
    is_airflow,
    named,
    objects,
    pod_spec,
    render,
    table_row,
    workloads,
)
from tests.statsd_mapping import PROMETHEUS_NAME, Event, Mapping

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_E2E_VENV", ROOT / ".ci" / ".airflow-venv"))
CRDS = ROOT / "tests" / "schemas" / "prometheus-operator"
ON = ("airflow.statsd.enabled=true",)
MONITOR = (*ON, "airflow.statsd.serviceMonitor={enabled: true, labels: {release: kube-prometheus}, interval: 15s}")
SCRAPERS = (
    *ON,
    "airflow.statsd.scrapers={namespaceLabels: {kubernetes.io/metadata.name: monitoring}, "
    "podLabels: {app.kubernetes.io/name: prometheus}}",
)
# Values standing in for the variable parts of Airflow's names: none may survive into a metric name.
SAMPLES = {
    "job_name": "schedulerjobrunner",
    "dag_file": "team_a.etl_dag.py",
    "dag_id": "etl_daily",
    "task_id": "load_rows",
}


# ---- the mapping file, read as the exporter reads it ------------------------------------------


@cache
def mapping(unmapped: str = "drop") -> Mapping:
    return Mapping(mapping_config(unmapped))


def registry() -> list[dict[str, Any]]:
    """Airflow's own list of its metrics (airflow/_shared/observability/metrics/metrics_template.yaml),
    from the real Airflow the e2e suite runs."""
    found = sorted(
        AIRFLOW_VENV.glob("lib/python3*/site-packages/airflow/_shared/observability/metrics/metrics_template.yaml")
    )
    assert found, f"no Airflow at {AIRFLOW_VENV}: `bash .ci/run` installs it (or set AIRFLOW_E2E_VENV)"
    meta = next(AIRFLOW_VENV.glob("lib/python3*/site-packages/apache_airflow-*.dist-info"))
    assert meta.name == f"apache_airflow-{AIRFLOW_VERSION}.dist-info", meta.name  # the version the mappings cover
    return yaml.safe_load(found[0].read_text())["metrics"]


def test_the_mapping_file_is_valid_for_the_exporter() -> None:
    m = mapping()
    assert m.problems == []
    assert m.defaults["observer_type"] == "histogram"
    buckets = m.defaults["histogram_options"]["buckets"]
    assert buckets == sorted(buckets) and buckets[-1] >= 3600  # task runs take hours, not the client default 10 s


def test_every_rule_names_one_type_and_a_name_keeps_its_type() -> None:
    """A counter and a gauge of one Prometheus name would conflict in the exporter; the suffixes say
    the type."""
    types: dict[str, str] = {}
    for r in mapping("keep").rules:
        assert r.get("match_metric_type") in ("counter", "gauge", "observer"), r
        name = r["name"]
        assert types.setdefault(name, r["match_metric_type"]) == r["match_metric_type"], name
        suffix = {"counter": "_total", "observer": "_seconds"}.get(r["match_metric_type"])
        assert name.endswith(suffix) if suffix else not name.endswith(("_total", "_seconds")), name


def test_each_glob_rule_is_reachable() -> None:
    """The first matching glob rule wins: a later duplicate would be dead text."""
    seen = set()
    for r in mapping("keep").rules:
        key = (r["match"], r["match_metric_type"])
        assert key not in seen, key
        seen.add(key)


@pytest.mark.parametrize("unmapped", ["drop", "keep"])
def test_unknown_names_are_dropped_unless_kept(unmapped: str) -> None:
    event = Event("airflow.my_team.rows_loaded.etl_daily", "counter")
    hit = mapping(unmapped).match(event)
    assert (hit is not None and hit.action == "drop") if unmapped == "drop" else hit is None
    assert mapping_config("drop") == MAPPINGS_FILE.read_text() + DROP_RULE


def _registry_events() -> list[tuple[dict[str, Any], Event]]:
    out = []
    kinds = {"counter": "counter", "gauge": "gauge", "timer": "observer"}
    for metric in registry():
        variables = metric.get("name_variables") or []
        name = metric["name"].format(**{v: SAMPLES.get(v, f"sample_{v}") for v in variables})
        # With legacy names off, the ids travel as tags (InfluxDB style), which become labels.
        tags = {v: SAMPLES.get(v, f"sample_{v}") for v in variables if "{" + v + "}" not in metric["name"]}
        out.append((metric, Event(f"airflow.{name}", kinds[metric["type"]], tags)))
    return out


def test_every_metric_of_airflows_registry_maps_to_a_bounded_labelled_name() -> None:
    events = _registry_events()
    assert len(events) >= 120  # Airflow 3.3.2 lists 128
    failures = []
    for metric, event in events:
        hit = mapping().match(event)
        if hit is None or hit.action != "map":
            failures.append(f"{event.name} ({event.type}): {'dropped' if hit else 'unmatched'}")
            continue
        if not PROMETHEUS_NAME.match(hit.name) or any(v in hit.name for v in SAMPLES.values()):
            failures.append(f"{event.name}: Prometheus name {hit.name!r} keeps a variable part")
        for v in metric.get("name_variables") or []:
            if hit.labels.get(v, hit.labels.get("job_name")) is None:
                failures.append(f"{event.name}: {v} is neither in the name nor a label")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("name", "kind", "expected_name", "labels"),
    [
        ("airflow.job_start", "counter", "airflow_job_start_total", {"job_name": "job"}),
        ("airflow.schedulerjobrunner_end", "counter", "airflow_job_end_total", {"job_name": "schedulerjobrunner"}),
        ("airflow.job_heartbeat_failure", "counter", "airflow_job_heartbeat_failure_total", {"job_name": "job"}),
        # Emitted under this name by models/dagrun.py even with legacy names off.
        (
            "airflow.dagrun.etl_daily.first_task_scheduling_delay",
            "observer",
            "airflow_dagrun_first_task_scheduling_delay_seconds",
            {"dag_id": "etl_daily"},
        ),
        (
            "airflow.dag_processing.last_num_of_db_queries.team_a.etl.py",
            "gauge",
            "airflow_dag_processing_last_num_of_db_queries",
            {"dag_file": "team_a.etl.py"},
        ),
        ("airflow.ti.awaiting_input", "gauge", "airflow_ti_awaiting_input", {}),
        ("airflow.dagrun.dependency-check", "observer", "airflow_dagrun_dependency_check_seconds", {}),
    ],
)
def test_names_with_a_variable_part_become_labels(
    name: str, kind: str, expected_name: str, labels: dict[str, str]
) -> None:
    hit = mapping().match(Event(name, kind))
    assert hit is not None and hit.action == "map" and (hit.name, hit.labels) == (expected_name, labels)


def test_a_type_the_rule_does_not_name_is_not_mapped_by_it() -> None:
    hit = mapping().match(Event("airflow.ti.finish", "gauge"))
    assert hit is not None and hit.action == "drop"
    hit = mapping().match(Event("airflow.ti.finish", "counter", {"dag_id": "d", "task_id": "t", "state": "success"}))
    assert hit is not None and hit.name == "airflow_ti_finish_total"
    assert hit.labels == {"dag_id": "d", "task_id": "t", "state": "success"}


# ---- the rendered objects -----------------------------------------------------------------------


def exporter(run: Any) -> dict[str, Any]:
    return pod_spec(named(run, "Deployment", "airflow-statsd", reveal=True))["containers"][0]


def test_the_mapping_configmap_is_named_after_its_content_and_mounted() -> None:
    run = render("local", *ON)
    cm = named(run, "ConfigMap", "airflow-statsd-mappings", reveal=True)
    assert cm["data"]["mappings.yaml"] == mapping_config("drop")
    assert re.fullmatch(r"airflow-statsd-mappings-[0-9a-f]{10}", cm["metadata"]["name"])
    spec = pod_spec(named(run, "Deployment", "airflow-statsd", reveal=True))
    assert {"name": "mappings", "configMap": {"name": cm["metadata"]["name"]}} in spec["volumes"]
    c = exporter(run)
    assert "--statsd.mapping-config=/etc/statsd-exporter/mappings.yaml" in c["args"]
    assert {"name": "mappings", "mountPath": "/etc/statsd-exporter", "readOnly": True} in c["volumeMounts"]


def test_a_mapping_change_rolls_the_exporter_only() -> None:
    before, after = render("local", *ON), render("local", *ON, "airflow.statsd.unmapped=keep")
    a = named(before, "ConfigMap", "airflow-statsd-mappings")["metadata"]["name"]
    b = named(after, "ConfigMap", "airflow-statsd-mappings")["metadata"]["name"]
    assert (
        a != b
        and "action: drop"
        not in named(after, "ConfigMap", "airflow-statsd-mappings", reveal=True)["data"]["mappings.yaml"]
    )
    old = {w["metadata"]["name"]: w for w in workloads(before)}
    new = {w["metadata"]["name"]: w for w in workloads(after)}
    assert old.keys() == new.keys()
    assert {n for n in old if old[n] != new[n]} == {"airflow-statsd"}


def test_airflow_sends_tagged_names_without_legacy_copies() -> None:
    run = render("local", *ON, "airflow.executor=CeleryExecutor,KubernetesExecutor")
    senders = {}
    for comp, spec in airflow_pods(run):
        container = spec["containers"][0]
        # Only the long-running Airflow processes (and task pods) get the metrics settings: the
        # Jobs, CronJobs and the log groomer emit nothing worth scraping, and stay unchanged.
        row = BY_NAME.get(table_row(comp))
        if not is_airflow(container) or row is None or RUNTIME not in row.settings:
            continue
        env = env_of(container)
        senders[comp] = env
        assert env["AIRFLOW__METRICS__STATSD_ON"] == "True", comp
        assert env["AIRFLOW__METRICS__STATSD_HOST"] == "airflow-statsd.airflow.svc.cluster.local"
        assert env["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "True"
        assert env["AIRFLOW__METRICS__LEGACY_NAMES_ON"] == "False"
        assert "AIRFLOW__METRICS__STATSD_DISABLED_TAGS" not in env  # Airflow's default: job_id,run_id
    assert {"scheduler", "dag-processor", "triggerer", "api-server", "worker", "task"} <= set(senders)


def test_statsd_off_changes_nothing_in_airflows_env() -> None:
    for _, spec in airflow_pods(render("local")):
        assert not any(k.startswith("AIRFLOW__METRICS__") for k in env_of(spec["containers"][0]))


def test_the_exporter_deployment_meets_the_bar() -> None:
    run = render("local", *ON, "airflow.placement={nodeSelector: {pool: system}}",
                 "airflow.statsd.resources={cpuRequest: 100m, memoryRequest: 128Mi, memoryLimit: 512Mi}")  # fmt: skip
    d = named(run, "Deployment", "airflow-statsd", reveal=True)
    # One replica: UDP through the Service would split every counter between two pods.
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    spec = pod_spec(d)
    assert spec["nodeSelector"] == {"pool": "system"}
    c = exporter(run)
    assert c["image"] == "quay.io/prometheus/statsd-exporter:v0.30.0"
    assert "--statsd.listen-tcp=" in c["args"] and "--statsd.listen-udp=:9125" in c["args"]
    assert (
        c["startupProbe"]["httpGet"]["path"] == "/-/healthy" and c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    )
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}
    assert violations(pod, "restricted") == []
    svc = named(run, "Service", "airflow-statsd", reveal=True)
    assert {"name": "statsd", "port": 9125, "targetPort": "statsd", "protocol": "UDP"} in svc["spec"]["ports"]


# ---- ServiceMonitor ---------------------------------------------------------------------------


def crd_schema(plural: str) -> dict[str, Any]:
    """The CRD's served v1 schema, with unknown fields refused wherever the schema lists properties
    (the API server would prune them without a word)."""
    crd = yaml.safe_load((CRDS / f"monitoring.coreos.com_{plural}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v["served"]]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                if not node.get("x-kubernetes-preserve-unknown-fields"):
                    node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


def validate_monitor(obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, crd_schema("servicemonitors"), cls=jsonschema.Draft7Validator)
    meta = obj["metadata"]
    assert set(meta) <= {"name", "namespace", "labels", "annotations"}, meta
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63


def test_no_service_monitor_unless_asked() -> None:
    assert objects(render("local", *ON), "ServiceMonitor") == []


@pytest.mark.parametrize("stack", ["local", "aws-prod", "azure-prod"])
def test_the_service_monitor_is_strictly_valid_and_selects_the_metrics_port(stack: str) -> None:
    run = render(stack, *MONITOR)
    (monitor,) = objects(run, "ServiceMonitor", reveal=True)
    validate_monitor(monitor)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    svc = named(run, "Service", "airflow-statsd", reveal=True)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"] if p["protocol"] == "TCP"}
    assert endpoint["interval"] == "15s" and endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}


@pytest.mark.parametrize(
    "bad",
    [
        {"spec": {"endpoints": [{"port": "metrics", "intervall": "30s"}], "selector": {}}},  # unknown field
        {"spec": {"endpoints": [{"port": "metrics", "interval": "30 seconds"}], "selector": {}}},  # pattern
        {"spec": {"endpoints": [{"port": "metrics", "scheme": "udp"}], "selector": {}}},  # enum
    ],
)
def test_the_crd_validation_refuses_what_the_api_would_not_keep(bad: dict[str, Any]) -> None:
    """The check itself can fail: each of these breaks one rule of the vendored schema."""
    obj = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}, **bad}
    with pytest.raises(jsonschema.ValidationError):
        validate_monitor(obj)


def test_other_objects_stay_valid_with_metrics_on() -> None:
    """kubernetes-validate knows no CRDs: everything else is still checked the usual way."""
    import kubernetes_validate

    run = render("local", *MONITOR, *SCRAPERS[1:])
    for obj in objects(run, reveal=True):
        if obj["kind"] == "ServiceMonitor":
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


# ---- who may reach the exporter -----------------------------------------------------------------


def statsd_policy(*overrides: str) -> dict[str, Any]:
    return named(render("local", *overrides), "NetworkPolicy", "airflow-statsd", reveal=True)


def test_scrapers_alone_reach_the_metrics_port_and_nothing_else_opens() -> None:
    open_, closed = statsd_policy(*ON), statsd_policy(*SCRAPERS)
    ingest_open, metrics_open = open_["spec"]["ingress"]
    ingest, metrics = closed["spec"]["ingress"]
    assert ingest == ingest_open  # Airflow's pods still send UDP
    assert metrics_open == {"ports": [{"port": 9102, "protocol": "TCP"}]}  # unset: any source
    assert metrics == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
        "ports": [{"port": 9102, "protocol": "TCP"}],
    }
    policies = {p["metadata"]["name"]: p for p in objects(render("local", *ON), "NetworkPolicy")}
    for p in objects(render("local", *SCRAPERS), "NetworkPolicy"):
        assert p["metadata"]["name"] == "airflow-statsd" or p == policies[p["metadata"]["name"]]


def test_another_exporter_gets_its_monitor_and_policy_peer_through_the_hook() -> None:
    """What the PgBouncer component (or the integrator) calls for its own exporter's Service."""
    settings = ServiceMonitorSettings.model_validate({"enabled": True, "labels": {"release": "prom"}})
    target = ScrapeTarget("pgbouncer", {"app.kubernetes.io/component": "pgbouncer"}, "metrics", "/metrics")

    def prog() -> None:
        parent = pulumi.ComponentResource("test:Parent", "parent")
        service_monitor(parent, "db", "airflow", "airflow", target, settings)

    run = engine.run(prog)
    assert run.error is None, run.error
    (monitor,) = objects(run, "ServiceMonitor", reveal=True)
    validate_monitor(monitor)
    assert monitor["metadata"]["name"] == "airflow-pgbouncer"
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/component": "pgbouncer"}}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    scrapers = Scrapers.model_validate({"namespaceLabels": {"team": "obs"}})
    assert scrape_peer(scrapers) == {
        "namespaceSelector": {"matchLabels": {"team": "obs"}},
        "podSelector": {"matchLabels": {}},
    }
    assert scrape_peer(None) is None
