"""KEDA, installed by the stack for autoscaled Celery workers: its own namespace under Pod Security
`restricted`, the kedacore `keda` Helm chart at the pinned version as one helm.v3.Release, and, for
a verified metadata DB whose CA the stack ships, that CA mounted into KEDA's operator (the process
that runs the postgresql scaler's queries).

Sources (github.com/kedacore/charts, keda/ at chart 2.20.2 = KEDA v2.20.2): values.yaml
(`crds.install`, `volumes.keda.extraVolumes/extraVolumeMounts`, the secure-by-default pod and
container security contexts: non-root, no privilege escalation, all capabilities dropped, seccomp
RuntimeDefault, read-only root), templates/manager/deployment.yaml (the operator's pod labels);
the CRDs are chart templates (templates/crds/), so a chart upgrade upgrades them too.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.autoscaling import KEDA_CHART_REPO, KEDA_VERSION
from components.endpoints import CaBundle
from components.k8s import Manifest, labels, selector

CHART = "keda"
# Where the shipped DB CA appears inside the operator (the TriggerAuthentication's sslrootcert).
CA_DIR = "/etc/airflow-k8s/db-ca"
CA_KEY = "ca.crt"
CA_FILE = f"{CA_DIR}/{CA_KEY}"
# The operator's pod label (templates/manager/deployment.yaml: app.kubernetes.io/name: {{ operator.name }}).
OPERATOR_LABELS = {"app.kubernetes.io/name": "keda-operator"}


def ca_file(ca: CaBundle | None) -> str | None:
    """The `sslrootcert` KEDA's operator uses: the mounted CA when the stack ships its PEM; none
    for the image trust store (KEDA's image is distroless with Debian's CA bundle, which Go reads)."""
    return CA_FILE if ca is not None and ca.pem else None


class KedaInstall(pulumi.ComponentResource):
    """KEDA's namespace, the DB CA for its operator, and the chart."""

    def __init__(
        self,
        name: str,
        *,
        namespace: str,
        instance: str,
        database_ca: CaBundle | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("airflow-k8s:kubernetes:Keda", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": namespace,
                "labels": {
                    **labels(instance, "keda"),
                    # The chart's pods meet `restricted` (values.yaml: secure by default).
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
            opts=child,
        )
        values: dict[str, object] = {"crds": {"install": True}}
        depends: list[pulumi.Resource] = [ns]
        if database_ca is not None and database_ca.pem:
            cm = k8s.core.v1.ConfigMap(
                f"{name}-db-ca",
                metadata={"name": f"{instance}-db-ca", "namespace": ns.metadata["name"],
                          "labels": labels(instance, "db-ca")},
                data={CA_KEY: database_ca.pem},
                opts=child,
            )  # fmt: skip
            depends.append(cm)
            values["volumes"] = {
                "keda": {
                    "extraVolumes": [{"name": "airflow-db-ca", "configMap": {"name": cm.metadata["name"]}}],
                    "extraVolumeMounts": [{"name": "airflow-db-ca", "mountPath": CA_DIR, "readOnly": True}],
                }
            }
        # helm.v3.Release (as the AWS Load Balancer Controller's): one resource whose delete
        # (`helm uninstall`) comes after the ScaledObjects that depend on it, so the operator is still
        # there to clear their finalizers; waits for the pods, rolls back a failed install.
        self.release = k8s.helm.v3.Release(
            name,
            name=CHART,
            chart=CHART,
            version=KEDA_VERSION,
            repository_opts={"repo": KEDA_CHART_REPO},
            namespace=ns.metadata["name"],
            values=values,
            atomic=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        self.ready: list[pulumi.Resource] = [self.release]
        self.register_outputs({})


def admit_operator_to_database(
    name: str,
    *,
    namespace: pulumi.Input[str],
    instance: str,
    database_component: str,
    port: int,
    keda_namespace: str,
    operator_labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """The in-cluster DB admits only this instance's pods (components/single_server.py); KEDA's
    operator, in its own namespace, runs the scalers' queries and is admitted here, on the DB's port
    only. (NetworkPolicies add up: this one widens nothing else.)"""
    spec: Manifest = {
        "podSelector": {"matchLabels": selector(instance, database_component)},
        "policyTypes": ["Ingress"],
        "ingress": [{
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": keda_namespace}},
                "podSelector": {"matchLabels": dict(operator_labels)},
            }],
            "ports": [{"port": port, "protocol": "TCP"}],
        }],
    }  # fmt: skip
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-keda-to-db",
        metadata={"name": f"{instance}-keda-to-db", "namespace": namespace, "labels": labels(instance, "network")},
        spec=spec,
        opts=opts,
    )  # fmt: skip
