"""The `local` stack: Airflow on any existing cluster named by a kubeconfig context.

In-cluster PostgreSQL and Redis by default (or an external database and broker), a DAG volume the
cluster's default StorageClass provides, and an explicit Kubernetes provider for that context.
"""

from __future__ import annotations

import shlex
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.airflow import DagSource
from components.endpoints import VERIFYING_SSLMODES, BrokerEndpoint, CaBundle, DatabaseEndpoint
from components.k8s import CLAIM_SIZE, Manifest, labels
from components.namespace import AirflowNamespace
from components.postgres import InClusterPostgres
from components.redis import InClusterRedis
from stacks.common import INSTANCE, compose, db_clients, expose_ui, make_namespace, outputs, roster
from stacks.config import StackConfig


def build(cfg: StackConfig) -> dict[str, Any]:
    k = cfg.kubernetes
    # Never the ambient context: the stack names the one it deploys into.
    provider = k8s.Provider("kubernetes", context=k.context, kubeconfig=k.kubeconfig)
    d = cfg.airflow.dags
    git_writer = d.git_writer
    ns = make_namespace(cfg, provider, git_writer)
    child_opts = pulumi.ResourceOptions(providers=[provider], depends_on=[ns])

    if cfg.database.mode == "inCluster":
        pg = InClusterPostgres(
            "postgres",
            namespace=ns.namespace,
            instance=INSTANCE,
            settings=cfg.database.in_cluster,
            network_policy=k.network_policies,
            max_connections=cfg.in_cluster_max_connections,
            # Behind PgBouncer, only it and the Jobs that bypass it reach the server.
            clients=db_clients(cfg, git_writer),
            opts=child_opts,
        )
        database = pg.endpoint
    else:
        x = cfg.database.external
        assert x is not None
        ca: CaBundle | None = None
        if x.ca is not None:
            ca = CaBundle(pem=x.ca.pem, config_map=x.ca.config_map, secret=x.ca.secret, key=x.ca.key)
        elif x.sslmode in VERIFYING_SSLMODES:
            # No CA given: the server's certificate must chain to a public root in the image.
            ca = CaBundle.system()
        database = DatabaseEndpoint(
            host=x.host,
            port=x.port,
            name=x.name,
            user=x.user,
            password=pulumi.Output.secret(x.password.get_secret_value()),
            sslmode=x.sslmode,
            ca=ca,
        )

    broker: BrokerEndpoint | None = None
    if roster(cfg, git_writer).conditions.celery:
        if cfg.broker.mode == "inCluster":
            redis = InClusterRedis(
                "redis",
                namespace=ns.namespace,
                instance=INSTANCE,
                settings=cfg.broker.in_cluster,
                network_policy=k.network_policies,
                opts=child_opts,
            )
            broker = redis.endpoint
        else:
            b = cfg.broker.external
            assert b is not None
            broker = BrokerEndpoint(
                host=b.host,
                port=b.port,
                tls=b.tls,
                db=b.db,
                password=pulumi.Output.secret(b.password.get_secret_value()) if b.password else None,
            )

    claim: pulumi.Input[str] | None = d.claim_name
    if d.source == "volume" and claim is None:
        claim = _claim(
            "dags", k.dag_volume_size, k.dag_volume_storage_class, k.dag_volume_access_mode, ns, child_opts
        ).metadata["name"]
    log_claim: pulumi.Input[str] | None = None
    if cfg.log_volume:
        log_claim = _claim(
            "logs", k.log_volume_size, k.log_volume_storage_class, k.log_volume_access_mode, ns, child_opts
        ).metadata["name"]

    airflow = compose(
        cfg,
        provider=provider,
        database=database,
        broker=broker,
        dags=DagSource(kind=d.source, claim_name=claim, git_writer=git_writer),
        namespace=ns,
        log_claim=log_claim,
    )
    tls = cfg.ui.tls
    ui = expose_ui(
        cfg,
        airflow,
        provider=provider,
        class_name=cfg.ui.ingress_class_name or "",
        # cert-manager's ingress-shim issues the certificate into the Secret the Ingress names
        # (https://cert-manager.io/docs/usage/ingress/); otherwise the Secret exists already.
        annotations={"cert-manager.io/cluster-issuer": tls.cluster_issuer} if tls.cluster_issuer else None,
        tls_secret=tls.secret_name or f"{INSTANCE}-ui-tls",
    )
    return outputs(
        cfg,
        namespace=ns,
        airflow=airflow,
        database=database,
        broker=broker,
        # Values from config are quoted: the output is a command people paste into a shell.
        ui_access=shlex.join(
            [
                "kubectl",
                *(["--kubeconfig", k.kubeconfig] if k.kubeconfig else []),
                "--context",
                k.context or "",
                "-n",
                k.namespace,
                "port-forward",
                f"svc/{airflow.api_service_name}",
                "8080:8080",
            ]
        ),
        dag_volume=claim,
        log_location=(
            pulumi.Output.concat("persistentvolumeclaim/", log_claim)
            if log_claim is not None
            else "worker log servers (no remote logging on the local stack)"
        ),
        ui=ui,
    )


def _claim(
    name: str,
    size: str,
    storage_class: str | None,
    access_mode: str,
    ns: AirflowNamespace,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.PersistentVolumeClaim:
    """A claim the stack makes and every pod of the instance may share (DAGs, task logs)."""
    spec: Manifest = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": size}},
        **({"storageClassName": storage_class} if storage_class else {}),
    }
    return k8s.core.v1.PersistentVolumeClaim(
        name,
        metadata={
            "name": f"{INSTANCE}-{name}",
            "namespace": ns.namespace,
            "labels": labels(INSTANCE, name),
            # With WaitForFirstConsumer (kind, k3d, minikube) a claim binds only when a pod uses
            # it; without this Pulumi would wait on it forever.
            "annotations": {"pulumi.com/skipAwait": "true"},
        },
        spec=spec,
        # A claim keeps the size it was made with: requests can only grow, and only where the
        # StorageClass allows it, so a changed size is applied with kubectl, not by Pulumi.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=CLAIM_SIZE)),
    )
