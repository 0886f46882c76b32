"""Airflow's NetworkPolicies: nothing reaches a pod of the namespace unless a rule here admits it,
and each rule opens a port the components table declares."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.metrics import Scrapers, scrape_peer
from components.airflow.roster import Roster
from components.k8s import Manifest, labels, selector


def network_policies(
    parent: pulumi.Resource,
    name: str,
    instance: str,
    namespace: pulumi.Input[str],
    roster: Roster,
    worker_sets: Sequence[str] = (),
    scrapers: Scrapers | None = None,
) -> None:
    """`worker_sets`: the component labels of the worker sets' pods (`worker-<name>`), each opened
    like the default workers. `scrapers`: where Prometheus runs (airflow.statsd.scrapers); None
    admits any source to the exporter's metrics port."""

    def policy(suffix: str, spec: Manifest) -> None:
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol-{suffix}",
            metadata={"name": f"{instance}-{suffix}", "namespace": namespace, "labels": labels(instance, "network")},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def pods_of(component: str) -> Manifest:
        return {"matchLabels": selector(instance, component)}

    def port(component: str, port_name: str) -> Manifest:
        p = roster.port(component, port_name)
        return {"port": p.number, "protocol": p.protocol}

    from_api_server = [{"podSelector": pods_of("api-server")}]
    # Default: nothing reaches any pod of this namespace unless a policy below allows it.
    policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    # The UI/API and the execution API: users, and every task (workers, task pods, triggerer).
    policy("api-server", {
        "podSelector": pods_of("api-server"),
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [port("api-server", "api")]}],
    })  # fmt: skip
    # Live task logs are fetched by the api-server only.
    policy("worker-logs", {
        "podSelector": pods_of("worker"),
        "policyTypes": ["Ingress"],
        "ingress": [{"from": from_api_server, "ports": [port("worker", "worker-logs")]}],
    })  # fmt: skip
    for group in worker_sets:
        policy(f"{group}-logs", {
            "podSelector": pods_of(group),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from_api_server, "ports": [port("worker", "worker-logs")]}],
        })  # fmt: skip
    policy("triggerer-logs", {
        "podSelector": pods_of("triggerer"),
        "policyTypes": ["Ingress"],
        "ingress": [{"from": from_api_server, "ports": [port("triggerer", "triggerer-logs")]}],
    })  # fmt: skip
    c = roster.conditions
    prometheus = scrape_peer(scrapers)
    if c.statsd:
        policy("statsd", {
            "podSelector": pods_of("statsd"),
            "policyTypes": ["Ingress"],
            "ingress": [
                # Metrics from this instance's pods; the scrape port from Prometheus (or anywhere).
                {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance}}}],
                 "ports": [port("statsd", "statsd")]},
                {**({"from": [prometheus]} if prometheus else {}), "ports": [port("statsd", "metrics")]},
            ],
        })  # fmt: skip
    if c.flower:
        policy("flower", {
            "podSelector": pods_of("flower"),
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [port("flower", "flower")]}],
        })  # fmt: skip
