"""InClusterRedis: render it under mocks with an explicit provider, then query and assert."""

from __future__ import annotations

import functools
import json
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.redis import PASSWORD_SPECIALS, InClusterBroker, InClusterRedis, redis_conf
from stacks.tooling import engine
from stacks.tooling.clouds.facts import mock_secret
from tests.render import K8S_VERSIONS, dumps, env_of

COMPONENT = "airflow-k8s:incluster:Redis"
STS = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
ACCOUNT = "kubernetes:core/v1:ServiceAccount"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PASSWORD = "random:index/randomPassword:RandomPassword"


@functools.lru_cache(maxsize=8)
def render(instance: str = "airflow", network_policy: bool = True) -> engine.Run:
    """The component alone, its provider passed the way the stacks pass it; the endpoint exported."""

    def program() -> None:
        provider = k8s.Provider("k8s", context="test")
        redis = InClusterRedis(
            "redis",
            namespace="airflow",
            instance=instance,
            settings=InClusterBroker.model_validate({}),
            network_policy=network_policy,
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        ep = redis.endpoint
        pulumi.export("host", ep.host)
        pulumi.export("port", ep.port)
        pulumi.export("password", ep.password)
        pulumi.export("tls", ep.tls)
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


def conf(run: engine.Run) -> dict[str, str]:
    """The revealed redis.conf as directive -> argument (each line must parse as exactly two words)."""
    lines = one(run, SECRET).revealed["stringData"]["redis.conf"].splitlines()
    pairs = [line.split() for line in lines if line]
    assert all(len(p) == 2 for p in pairs), pairs
    return dict(pairs)


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
    assert all(r.name.startswith("redis-") for r in children)
    assert {r.inputs["metadata"]["name"] for r in run.kubernetes()} == {"prod-redis"}
    assert all(r.inputs["metadata"]["namespace"] == "airflow" for r in run.kubernetes())


def test_the_statefulset_waits_for_its_secret_service_and_account() -> None:
    run = render()
    deps = set(one(run, STS).dependencies)
    assert {one(run, t).urn for t in (SECRET, SERVICE, ACCOUNT)} <= deps


# ----- the password -------------------------------------------------------------------------------


def test_the_password_needs_url_encoding_but_keeps_redis_conf_parseable() -> None:
    pw = one(render(), PASSWORD).inputs
    assert pw["length"] == 32 and pw["special"] is True and pw["overrideSpecial"] == PASSWORD_SPECIALS
    assert set("@/:$%?") <= set(PASSWORD_SPECIALS)
    assert not set("\"' \\#\t") & set(PASSWORD_SPECIALS)


def test_the_password_never_appears_in_plain_text() -> None:
    run = render()
    pw = password(run)
    assert pw and all(pw not in json.dumps(r.inputs) for r in run.resources)
    assert pw not in dumps(run)


def test_the_password_is_never_a_process_argument() -> None:
    run = render()
    c = container(run)
    assert password(run) not in json.dumps(one(run, STS).revealed)
    assert not any(a in ("-a", "--pass", "--requirepass") for a in c.get("args", []) + c.get("command", []))


def test_the_endpoint_password_is_a_secret_output() -> None:
    run = render()
    assert run.outputs["password"] == engine.SECRET
    # The mocks' stand-in for the generated password: the endpoint hands on exactly that value.
    assert password(run) == mock_secret("redis-password", 32)


def test_redis_conf_requires_the_password_and_persists_to_the_volume() -> None:
    run = render()
    c = conf(run)
    assert c["requirepass"] == password(run)
    assert (c["port"], c["appendonly"], c["dir"], c["protected-mode"]) == ("6379", "yes", "/data", "yes")
    assert one(run, SECRET).revealed["stringData"]["password"] == password(run)


def test_redis_conf_renders_any_allowed_password_as_one_word() -> None:
    pw = "aA1" + PASSWORD_SPECIALS
    assert f"requirepass {pw}" in redis_conf(pw).splitlines()


# ----- the endpoint -------------------------------------------------------------------------------


def test_the_endpoint_names_the_service_and_is_usable_after_the_statefulset() -> None:
    run = render()
    out = run.outputs
    assert out["host"] == "airflow-redis.airflow.svc.cluster.local"
    assert (out["port"], out["tls"]) == (6379, False)
    assert out["dependsOn"] == [one(run, STS).urn]


def test_the_service_selects_the_pods_on_6379() -> None:
    run = render()
    spec = one(run, SERVICE).inputs["spec"]
    pod_labels = one(run, STS).inputs["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [(6379, "redis")]
    assert [p["name"] for p in container(run)["ports"]] == ["redis"]


# ----- the pod ------------------------------------------------------------------------------------


def test_the_server_reads_its_config_from_the_read_only_secret_mount() -> None:
    run = render()
    c = container(run)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in pod(run)["volumes"] if v["name"] == "config")
    assert mount["readOnly"] is True
    assert c["args"] == ["redis-server", f"{mount['mountPath']}/redis.conf"]
    assert volume["secret"]["secretName"] == "airflow-redis"
    assert volume["secret"]["items"] == [{"key": "redis.conf", "path": "redis.conf"}]
    assert volume["secret"]["defaultMode"] == 0o440


def test_probes_ping_with_the_password_from_the_secret() -> None:
    c = container(render())
    assert env_of(c)["REDISCLI_AUTH"] == ("secret", "airflow-redis", "password")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "redis-cli" in c[probe]["exec"]["command"][-1] and "ping" in c[probe]["exec"]["command"][-1], probe


def test_the_pod_runs_as_redis_non_root_with_seccomp() -> None:
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
    assert pod(run)["serviceAccountName"] == "airflow-redis"
    assert one(run, ACCOUNT).inputs["automountServiceAccountToken"] is False


def test_resources_come_from_settings() -> None:
    res = container(render())["resources"]
    assert res == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}


# ----- the volume ---------------------------------------------------------------------------------


def test_a_small_data_volume_goes_with_the_statefulset_on_destroy() -> None:
    spec = one(render(), STS).inputs["spec"]
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    data = next(m for m in container(render())["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert data["mountPath"] == "/data"


def test_a_claim_template_change_never_replaces_the_statefulset() -> None:
    assert one(render(), STS).options["ignoreChanges"] == ["spec.volumeClaimTemplates"]


# ----- the network policy -------------------------------------------------------------------------


def test_only_the_instance_pods_may_connect_on_6379() -> None:
    run = render(instance="prod")
    spec = one(run, NETPOL).inputs["spec"]
    pod_labels = one(run, STS).inputs["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "prod"}}}],
            "ports": [{"port": 6379, "protocol": "TCP"}],
        }
    ]


def test_the_network_policy_can_be_left_out() -> None:
    assert render(network_policy=False).by_type(NETPOL) == []


# ----- every object is a valid manifest -----------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(version: str) -> None:
    for r in render().kubernetes():
        kubernetes_validate.validate(r.revealed, version, strict=True)
