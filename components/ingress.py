"""The Airflow UI at a real HTTPS URL: one Ingress in front of the api-server's Service.

The Ingress is the same wherever one serves the UI; what differs is the controller (an existing
IngressClass on the local stack, the AWS Load Balancer Controller's ALB on aws), which the stack
passes in as a class name, annotations and where the certificate comes from. On azure the UI is
served by a Gateway of AKS's application routing add-on instead (its NGINX Ingress support ended in
November 2026; components/azure/app_routing.py). Everything about the URL people open (`ui.host`) is
declared here once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator, model_validator

from components.k8s import Manifest, labels
from components.settings import DnsLabel, SettingsModel, bad, defaults

# A DNS-1123 subdomain with at least two labels: what an Ingress rule's `host` accepts, less the
# wildcard form (a UI has one name) and bare IPs (no certificate names an IP here).
_HOST = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"
# The grammar of an IngressClass / ClusterIssuer name (a DNS-1123 subdomain).
_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class UiTls(SettingsModel):
    secret_name: DnsLabel | None = Field(
        None, description="local: an existing kubernetes.io/tls Secret in the namespace with the UI's certificate."
    )
    cluster_issuer: str | None = Field(
        None,
        pattern=_SUBDOMAIN,
        max_length=253,
        description="local: a cert-manager ClusterIssuer that issues the UI's certificate (cert-manager must be "
        "installed).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> UiTls:
        if self.secret_name and self.cluster_issuer:
            raise bad("clusterIssuer", "give either secretName (an existing certificate) or clusterIssuer, not both")
        return self


class UiSettings(SettingsModel):
    host: str | None = Field(
        None,
        pattern=_HOST,
        max_length=253,
        description="The DNS name people open the UI at, e.g. airflow.example.com: the stack serves "
        "https://<host>/ through an Ingress. Unset: no Ingress; `uiAccess` port-forwards.",
    )
    ingress_class_name: str | None = Field(
        None,
        pattern=_SUBDOMAIN,
        max_length=253,
        description="local: the existing IngressClass that serves the UI (e.g. nginx). The cloud stacks bring "
        "their own.",
    )
    tls: UiTls = Field(default_factory=defaults(UiTls), description="Where the UI's certificate comes from (local).")

    @field_validator("host")
    @classmethod
    def _not_an_address(cls, v: str | None) -> str | None:
        try:
            ipaddress.ip_address(v or "")
        except ValueError:
            return v
        raise ValueError(f"{v!r} is an IP address: give the DNS name the UI's certificate is issued for")

    @property
    def url(self) -> str | None:
        return f"https://{self.host}/" if self.host else None


def check_local(ui: UiSettings) -> None:
    """The local stack has no controller of its own: it needs a class and a certificate source.
    (Called by the stack config: keys are named from the top, `ui.`.)"""
    if not ui.host:
        for key, value in (("ingressClassName", ui.ingress_class_name), ("tls.secretName", ui.tls.secret_name),
                           ("tls.clusterIssuer", ui.tls.cluster_issuer)):  # fmt: skip
            if value:
                raise bad(f"ui.{key}", "applies only with ui.host (the name the UI is served at)")
        return
    if not ui.ingress_class_name:
        raise bad("ui.ingressClassName", "the local stack serves ui.host through an existing IngressClass: name it")
    if not (ui.tls.secret_name or ui.tls.cluster_issuer):
        raise bad("ui.tls", "the UI is served over HTTPS only: give tls.secretName or tls.clusterIssuer")


def check_cloud(ui: UiSettings, cloud: str) -> None:
    """A cloud stack brings its controller and its certificate: the local-only keys would be ignored."""
    for key, value in (("ingressClassName", ui.ingress_class_name), ("tls.secretName", ui.tls.secret_name),
                       ("tls.clusterIssuer", ui.tls.cluster_issuer)):  # fmt: skip
        if value:
            raise bad(f"ui.{key}", f"applies to the local stack only; the {cloud} stack's controller and certificate "
                      f"are configured under {cloud}.ui")  # fmt: skip


class UiIngress(pulumi.ComponentResource):
    """An Ingress for the api-server: one host, every path, TLS only.

    Attributes:
        ingress: the Ingress (delete it while its controller still runs: the controller removes the
            load balancer it made for it, which Pulumi's state does not hold).
        url: https://<host>/
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: pulumi.Input[str],
        instance: str,
        host: str,
        service_name: str,
        service_port: int,
        class_name: pulumi.Input[str],
        annotations: Mapping[str, pulumi.Input[str]] | None = None,
        tls_secret: pulumi.Input[str] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("airflow-k8s:kubernetes:UiIngress", name, None, opts)
        if not re.fullmatch(_HOST, host):
            raise ValueError(f"{host!r} is not a DNS name an Ingress can serve")
        tls: Manifest = {"hosts": [host]}
        if tls_secret is not None:
            tls["secretName"] = tls_secret
        spec: Manifest = {
            "ingressClassName": class_name,
            "tls": [tls],
            "rules": [{
                "host": host,
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": service_name, "port": {"number": service_port}}},
                }]},
            }],
        }  # fmt: skip
        self.ingress = k8s.networking.v1.Ingress(
            name,
            metadata={
                "name": f"{instance}-ui",
                "namespace": namespace,
                "labels": labels(instance, "api-server"),
                "annotations": dict(annotations or {}),
            },
            spec=spec,
            # A cloud controller removes its finalizer only once the load balancer and its security
            # groups are gone, retrying while their network interfaces drain: at times longer than
            # the provider's default 10 minutes (a destroy that times out leaves the Ingress in state).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(depends_on), custom_timeouts=pulumi.CustomTimeouts(delete="20m")
            ),
        )
        self.url = f"https://{host}/"
        self.register_outputs({"url": self.url})
