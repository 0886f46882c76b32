"""InClusterPostgres: render it under mocks with an explicit provider, then query and assert."""

from __future__ import annotations

import functools
import json
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.postgres import PASSWORD_SPECIALS, PGDATA, InClusterDatabase, InClusterPostgres
from stacks.tooling import engine
from stacks.tooling.clouds.facts import mock_secret
from tests.render import K8S_VERSIONS, dumps, env_of

COMPONENT = "airflow-k8s:incluster:Postgres"
STS = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
ACCOUNT = "kubernetes:core/v1:ServiceAccount"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PASSWORD = "random:index/randomPassword:RandomPassword"


@functools.lru_cache(maxsize=8)
def render(instance: str = "airflow", storage_class: str | None = None, network_policy: bool = True) -> engine.Run:
    """The component alone, its provider passed the way the stacks pass it; the endpoint exported."""

    def program() -> None:
        provider = k8s.Provider("k8s", context="test")
        settings = InClusterDatabase.model_validate({"storageClass": storage_class} if storage_class else {})
        pg = InClusterPostgres(
            "postgres",
            namespace="airflow",
            instance=instance,
            settings=settings,
            network_policy=network_policy,
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        ep = pg.endpoint
        pulumi.export("host", ep.host)
        pulumi.export("port", ep.port)
        pulumi.export("name", ep.name)
        pulumi.export("user", ep.user)
        pulumi.export("password", ep.password)
        pulumi.export("sslmode", ep.sslmode)
        pulumi.export("dependsOn", [r.urn for r in ep.depends_on])

    run = engine.run(program)
    assert run.error is None, run.error
    return run


def one(run: engine.Run, type_: str) -> engine.Resource:
    hits = run.by_type(type_)
    assert len(hits) == 1, f"{type_}: {len(hits)} found"
    return hits[0]


def pod(run: engine.Run) -> dict[str, Any]:
    return one(run, STS).inputs["spec"]["template"]["spec"]


def container(run: engine.Run) -> dict[str, Any]:
    (c,) = pod(run)["containers"]
    return c


def password(run: engine.Run) -> str:
    return run.revealed_outputs["password"]


# ----- graph: names, parents, provider ----------------------------------------------------------


def test_every_kubernetes_child_uses_the_explicit_provider_and_is_parented_to_the_component() -> None:
    run = render()
    provider = one(run, "pulumi:providers:kubernetes").urn
    component = one(run, COMPONENT).urn
    kube = run.kubernetes()
    assert {r.type for r in kube} == {STS, SECRET, SERVICE, ACCOUNT, NETPOL}
    assert all(r.provider == provider for r in kube)
    assert all(r.parent == component for r in kube + run.by_type(PASSWORD))


def test_children_are_named_after_the_component_and_objects_after_the_instance() -> None:
    run = render(instance="prod")
    children = [r for r in run.resources if r.parent == one(run, COMPONENT).urn]
    assert all(r.name.startswith("postgres-") for r in children)
    assert {r.inputs["metadata"]["name"] for r in run.kubernetes()} == {"prod-postgresql"}
    assert all(r.inputs["metadata"]["namespace"] == "airflow" for r in run.kubernetes())


def test_the_statefulset_waits_for_its_secret_service_and_account() -> None:
    run = render()
    deps = set(one(run, STS).dependencies)
    assert {one(run, t).urn for t in (SECRET, SERVICE, ACCOUNT)} <= deps


# ----- the password -------------------------------------------------------------------------------


def test_the_password_is_generated_with_characters_that_need_url_encoding() -> None:
    pw = one(render(), PASSWORD).inputs
    assert pw["length"] == 32 and pw["special"] is True and pw["overrideSpecial"] == PASSWORD_SPECIALS
    assert set("@/:$%#?") <= set(PASSWORD_SPECIALS)


def test_the_password_never_appears_in_plain_text() -> None:
    run = render()
    pw = password(run)
    assert pw and all(pw not in json.dumps(r.inputs) for r in run.resources)
    assert pw not in dumps(run)


def test_the_secret_holds_the_password_and_the_server_reads_it_by_reference() -> None:
    run = render()
    secret = one(run, SECRET)
    assert secret.revealed["stringData"] == {"password": password(run)}
    assert env_of(container(run))["POSTGRES_PASSWORD"] == ("secret", "airflow-postgresql", "password")


def test_the_endpoint_password_is_a_secret_output() -> None:
    run = render()
    assert run.outputs["password"] == engine.SECRET
    # The mocks' stand-in for the generated password: the endpoint hands on exactly that value.
    assert password(run) == mock_secret("postgres-password", 32)


# ----- the endpoint -------------------------------------------------------------------------------


def test_the_endpoint_names_the_service_and_is_usable_after_the_statefulset() -> None:
    run = render()
    out = run.outputs
    assert out["host"] == "airflow-postgresql.airflow.svc.cluster.local"
    assert (out["port"], out["name"], out["user"], out["sslmode"]) == (5432, "airflow", "airflow", "disable")
    assert out["dependsOn"] == [one(run, STS).urn]
    assert env_of(container(run))["POSTGRES_USER"] == "airflow"
    assert env_of(container(run))["POSTGRES_DB"] == "airflow"


def test_the_service_selects_the_pods_on_5432() -> None:
    run = render()
    spec = one(run, SERVICE).inputs["spec"]
    pod_labels = one(run, STS).inputs["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [(5432, "postgresql")]
    assert [p["name"] for p in container(run)["ports"]] == ["postgresql"]


# ----- the pod ------------------------------------------------------------------------------------


def test_the_pod_runs_as_postgres_non_root_with_seccomp() -> None:
    ctx = pod(render())["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"]) == (999, 999, 999)
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_container_is_locked_down() -> None:
    ctx = container(render())["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_no_kubernetes_api_access() -> None:
    run = render()
    assert pod(run)["automountServiceAccountToken"] is False
    assert pod(run)["serviceAccountName"] == "airflow-postgresql"
    assert one(run, ACCOUNT).inputs["automountServiceAccountToken"] is False


def test_resources_come_from_settings() -> None:
    res = container(render())["resources"]
    assert res == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}


def test_only_mounted_paths_are_writable_and_every_mount_has_a_volume() -> None:
    spec = one(render(), STS).inputs["spec"]
    mounts = {m["mountPath"]: m["name"] for m in container(render())["volumeMounts"]}
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]} | {
        t["metadata"]["name"] for t in spec["volumeClaimTemplates"]
    }
    assert {"/var/run/postgresql", "/tmp"} <= mounts.keys()
    assert set(mounts.values()) == volumes
    assert all("emptyDir" in v for v in spec["template"]["spec"]["volumes"])


def test_pgdata_is_a_subdirectory_of_the_data_volume() -> None:
    c = container(render())
    data_mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
    assert env_of(c)["PGDATA"] == PGDATA
    assert PGDATA.startswith(data_mount + "/")


def test_probes_ask_postgres_itself() -> None:
    c = container(render())
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][0] == "pg_isready", probe
    assert c["lifecycle"]["preStop"]["exec"]["command"][:2] == ["pg_ctl", "stop"]


# ----- the volume ---------------------------------------------------------------------------------


def test_the_volume_goes_with_the_statefulset_on_destroy() -> None:
    spec = one(render(), STS).inputs["spec"]
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert "storageClassName" not in claim["spec"]


def test_a_storage_class_is_passed_to_the_claim() -> None:
    (claim,) = one(render(storage_class="fast"), STS).inputs["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast"


def test_a_claim_template_change_never_replaces_the_statefulset() -> None:
    # A replacement would delete the volume through the Delete retention policy.
    assert one(render(), STS).options["ignoreChanges"] == ["spec.volumeClaimTemplates"]


# ----- the network policy -------------------------------------------------------------------------


def test_only_the_instance_pods_may_connect_on_5432() -> None:
    run = render(instance="prod")
    spec = one(run, NETPOL).inputs["spec"]
    pod_labels = one(run, STS).inputs["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "prod"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        }
    ]


def test_the_network_policy_can_be_left_out() -> None:
    assert render(network_policy=False).by_type(NETPOL) == []


# ----- every object is a valid manifest -----------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(version: str) -> None:
    for run in (render(), render(storage_class="fast")):
        for r in run.kubernetes():
            kubernetes_validate.validate(r.revealed, version, strict=True)
