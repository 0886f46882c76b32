"""Metrics: Airflow's statsd metrics through prometheus/statsd_exporter, with mappings that turn them
into bounded, labelled Prometheus metrics, and ServiceMonitors for a Prometheus Operator.

Why statsd and not OpenTelemetry: the exporter is one small stateless pod and no collector; Airflow
3.3.2's statsd client (the `statsd` package, in the official image) can put its tags on the wire
InfluxDB style, which the exporter reads as labels, so the mapping only names and types metrics.

The ServiceMonitor is opt-in (`airflow.statsd.serviceMonitor.enabled`): pulumi-kubernetes has no way
to ask a cluster at preview whether a CRD exists that also works under the offline render and on
destroy, so the user who runs a Prometheus Operator says so. Without the CRD, `pulumi preview` fails
on the ServiceMonitor's kind before anything changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.k8s import labels
from components.kube_types import LabelValue, QualifiedName
from components.settings import Resources, SettingsModel, bad, defaults, resources_field

# Pinned: the latest release (2026-05-28); its flags and mapping format are what this module uses
# (main.go and README at the tag). The image runs as 65534 and listens on 9102 (HTTP) and 9125.
STATSD_EXPORTER_IMAGE = "quay.io/prometheus/statsd-exporter:v0.30.0"
MAPPINGS_FILE = Path(__file__).with_name("statsd-mappings.yaml")
MAPPING_KEY = "mappings.yaml"
MAPPING_DIR = "/etc/statsd-exporter"
# The last rule when `unmapped` is `drop`: regex rules run after every glob rule, in order, and `.`
# matches any name (the exporter's README, "drop action"). The exporter counts what it drops in
# statsd_exporter_events_actions_total{action="drop"}.
DROP_RULE = """\
  # Anything not named above is dropped: a metric with an id in its name would be a new Prometheus
  # metric per DAG, task or file (airflow.statsd.unmapped: keep turns this off).
  - {match: ".", match_type: regex, action: drop, name: dropped}
"""
MONITORING_API = "monitoring.coreos.com/v1"
# Prometheus' duration format, as the ServiceMonitor CRD's `interval` pattern has it.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"


class ServiceMonitorSettings(SettingsModel):
    enabled: bool = Field(
        False,
        description="Create a ServiceMonitor (monitoring.coreos.com/v1) for the exporter; needs the Prometheus "
        "Operator's CRDs in the cluster.",
    )
    labels: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict,
        description="Extra labels on the ServiceMonitor, for the Prometheus' serviceMonitorSelector (e.g. "
        "release: kube-prometheus-stack).",
    )
    interval: str = Field(
        "30s", pattern=DURATION, min_length=1, description="Scrape interval (Prometheus duration, e.g. 30s, 1m)."
    )


class Scrapers(SettingsModel):
    """Where Prometheus runs: only those pods may reach the metrics port."""

    namespace_labels: dict[QualifiedName, LabelValue] = Field(
        description="Labels of Prometheus' namespace (e.g. kubernetes.io/metadata.name: monitoring).",
        min_length=1,
    )
    pod_labels: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict,
        description="Labels of the Prometheus pods in it; empty: every pod of that namespace.",
    )


class Statsd(SettingsModel):
    enabled: bool = Field(False, description="Run a statsd exporter and send Airflow metrics to it.")
    image: str = Field(STATSD_EXPORTER_IMAGE, description="statsd-exporter image.")
    resources: Resources = resources_field("50m", "64Mi", "256Mi")
    unmapped: Literal["drop", "keep"] = Field(
        "drop",
        description="Metrics the mappings do not name (a DAG's own Stats calls): 'drop', or 'keep' them under "
        "the exporter's default translation (dots to underscores, no labels).",
    )
    service_monitor: ServiceMonitorSettings = Field(
        default_factory=defaults(ServiceMonitorSettings), description="Prometheus Operator scraping."
    )
    scrapers: Scrapers | None = Field(
        None,
        description="Who may scrape the metrics port (NetworkPolicy); unset: any pod (the port serves only metrics).",
    )

    @model_validator(mode="after")
    def _needs_exporter(self) -> Statsd:
        if not self.enabled and self.service_monitor.enabled:
            raise bad("serviceMonitor.enabled", "needs airflow.statsd.enabled: true (it scrapes the exporter)")
        return self


def scrape_peer(scrapers: Scrapers | None) -> dict[str, Any] | None:
    """The NetworkPolicy peer that may scrape a metrics port, None for any (other exporters' policies
    use it too). Both selectors in one peer: the API ANDs them, where a namespaceSelector alone would
    admit every pod of those namespaces."""
    if scrapers is None:
        return None
    return {
        "namespaceSelector": {"matchLabels": dict(scrapers.namespace_labels)},
        "podSelector": {"matchLabels": dict(scrapers.pod_labels)},
    }


def mapping_config(unmapped: str) -> str:
    """The exporter's mapping file: the vendored rules, and the drop rule unless unmapped is kept."""
    text = MAPPINGS_FILE.read_text()
    return text + DROP_RULE if unmapped == "drop" else text


def mapping_configmap(
    parent: pulumi.Resource, name: str, instance: str, namespace: pulumi.Input[str], settings: Statsd
) -> k8s.core.v1.ConfigMap:
    """The mapping file in a ConfigMap named after its content: a change is a new ConfigMap, so the
    exporter's pod rolls (and only it), and the old one goes once nothing uses it."""
    text = mapping_config(settings.unmapped)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return k8s.core.v1.ConfigMap(
        f"{name}-statsd-mappings",
        metadata={
            "name": f"{instance}-statsd-mappings-{digest}",
            "namespace": namespace,
            "labels": labels(instance, "statsd"),
        },
        data={MAPPING_KEY: text},
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class ScrapeTarget:
    """A Service whose metrics port Prometheus should scrape: the hook for other components'
    exporters (PgBouncer's), which pass theirs to `service_monitor`.

    Attributes:
        component: the suffix of the ServiceMonitor's name and its component label.
        selector: labels of the Service (not its pods) to scrape.
        port: the Service's port *name*.
        path: the HTTP path of the metrics.
    """

    component: str
    selector: Mapping[str, str]
    port: str
    path: str = "/metrics"


def service_monitor(
    parent: pulumi.Resource,
    name: str,
    instance: str,
    namespace: pulumi.Input[str],
    target: ScrapeTarget,
    settings: ServiceMonitorSettings,
) -> k8s.apiextensions.CustomResource:
    """One ServiceMonitor for one Service in the namespace (tests validate it against the vendored CRD)."""
    return k8s.apiextensions.CustomResource(
        f"{name}-{target.component}-servicemonitor",
        api_version=MONITORING_API,
        kind="ServiceMonitor",
        metadata={
            "name": f"{instance}-{target.component}",
            "namespace": namespace,
            "labels": {**labels(instance, target.component), **settings.labels},
        },
        spec={
            "selector": {"matchLabels": dict(target.selector)},
            # Its own namespace only, whatever the Prometheus' defaults.
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": target.port, "path": target.path, "scheme": "http", "interval": settings.interval}],
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )


# With statsd on, airflow.config may not set this either: Airflow checks it before statsd_on
# (airflow/observability/metrics/stats_utils.py) and would swap the client for DogStatsd.
STATSD_OWNED_OPTIONS = {"metrics.statsd_datadog_enabled": "the exporter is sent plain statsd lines"}
