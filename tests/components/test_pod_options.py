"""Issue 14, items 3 and 4: placement (airflow.placement and per component) and the escape hatches
(extra env, volumes, containers, imagePullSecrets, extraObjects), rendered into every pod that
should get them and into no other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.roster import TABLE
from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.pod_security import violations
from tests.render import (
    airflow_pods,
    component,
    containers,
    dumps,
    env_of,
    named,
    objects,
    pod_spec,
    pod_template,
    render,
    workloads,
)

KUBE = "airflow.executor=CeleryExecutor,KubernetesExecutor"
EVERY = (
    KUBE,
    "airflow.flower.enabled=true",
    "airflow.statsd.enabled=true",
    "airflow.pools={etl: {slots: 2}}",
    "airflow.housekeeping.dbClean.enabled=true",
    "airflow.housekeeping.podCleanup.enabled=true",
)
# The settings block of each component whose pods have one, and a pod of it in the render.
BLOCKS = {
    "api-server": "apiServer",
    "scheduler": "scheduler",
    "dag-processor": "dagProcessor",
    "triggerer": "triggerer",
    "worker": "workers",
    "flower": "flower",
    "migrate": "jobs",
    "create-user": "jobs",
    "pools": "jobs",
    "db-clean": "jobs",
    "pod-cleanup": "jobs",
    "task": "taskPods",
}
GPU = "{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}"


def pods(*overrides: str) -> dict[str, dict[str, Any]]:
    """component -> pod spec, every Airflow pod (workloads, Jobs, the task pod template) plus
    git-sync and statsd."""
    run = render("local", *EVERY, *overrides)
    out = {comp: spec for comp, spec in airflow_pods(run)}
    assert set(BLOCKS) | {"git-sync", "statsd"} <= set(out), sorted(out)
    return {k: v for k, v in out.items() if k not in ("postgresql", "redis")}


def test_the_table_names_a_settings_block_for_exactly_the_components_with_own_pods() -> None:
    from components.airflow.settings import AirflowSettings

    options = AirflowSettings.model_validate({}).pod_options()
    by_attr = {f.alias: name for name, f in AirflowSettings.model_fields.items()}
    assert {c.name: c.options for c in TABLE if c.options} == {k: by_attr[v] for k, v in BLOCKS.items()}
    assert {by_attr[k] for k in options} == {c.options for c in TABLE if c.options}


# ---- placement -------------------------------------------------------------------------------


def test_nothing_is_placed_by_default_and_the_programs_spread_stays() -> None:
    for comp, spec in pods().items():
        for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
            if (comp, key) == ("log-groomer", "affinity"):  # the stack file's claim is ReadWriteOnce
                assert list(spec[key]) == ["podAffinity"]
                continue
            assert key not in spec, (comp, key)
    run = render("local", *EVERY)
    spread = pod_spec(named(run, "Deployment", "airflow-scheduler"))["topologySpreadConstraints"]
    assert [t["topologyKey"] for t in spread] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]


def test_the_stack_default_reaches_every_airflow_pod() -> None:
    got = pods(f"airflow.placement={{nodeSelector: {{pool: airflow}}, tolerations: [{GPU}], priorityClassName: p}}")
    for comp, spec in got.items():
        assert spec["nodeSelector"] == {"pool": "airflow"}, comp
        assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], comp
        assert spec["priorityClassName"] == "p", comp


@pytest.mark.parametrize("comp", sorted(BLOCKS))
def test_a_components_placement_reaches_only_its_pods_and_replaces_per_field(comp: str) -> None:
    got = pods(
        "airflow.placement={nodeSelector: {pool: airflow}, priorityClassName: low}",
        f"airflow.{BLOCKS[comp]}.placement={{nodeSelector: {{pool: gpu}}, tolerations: [{GPU}]}}",
    )
    same_block = {c for c, b in BLOCKS.items() if b == BLOCKS[comp]}
    for other, spec in got.items():
        mine = other in same_block
        # Replaced whole, not merged: `pool: airflow` is gone from this component's selector.
        assert spec["nodeSelector"] == ({"pool": "gpu"} if mine else {"pool": "airflow"}), other
        assert ("tolerations" in spec) == mine, other
        assert spec["priorityClassName"] == "low", other  # unset here: inherited


def test_an_empty_list_clears_the_inherited_field() -> None:
    got = pods(f"airflow.placement={{tolerations: [{GPU}]}}", "airflow.scheduler.placement={tolerations: []}")
    assert got["scheduler"]["tolerations"] == [] and got["triggerer"]["tolerations"]


def test_affinity_and_spread_render_as_the_kubernetes_api_spells_them() -> None:
    got = pods(
        "airflow.scheduler.placement={affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
        "{nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]}]}}}, "
        "topologySpreadConstraints: [{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: "
        "DoNotSchedule}, {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, "
        "labelSelector: {matchLabels: {team: data}}}]}"
    )
    s = got["scheduler"]
    assert s["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}
                ]
            }
        }
    }
    # A constraint without labelSelector counts the component's own pods; the program's spread is replaced.
    own = {"matchLabels": {"app.kubernetes.io/instance": "airflow", "app.kubernetes.io/component": "scheduler"}}
    assert s["topologySpreadConstraints"] == [
        {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": own},
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"team": "data"}}},
    ]  # fmt: skip
    assert len(got["triggerer"]["topologySpreadConstraints"]) == 2  # the program's default, untouched


def test_task_pods_carry_the_gpu_pool_in_the_pod_template_file() -> None:
    run = render(
        "local", KUBE, f"airflow.taskPods.placement={{nodeSelector: {{accelerator: nvidia}}, tolerations: [{GPU}]}}"
    )
    cm = named(run, "ConfigMap", "airflow-pod-template", reveal=True)
    pod = yaml.safe_load(cm["data"]["pod_template_file.yaml"])
    assert pod["spec"]["nodeSelector"] == {"accelerator": "nvidia"}
    assert pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nodeSelector" not in pod_spec(named(run, "Deployment", "airflow-scheduler"))


# ---- escape hatches --------------------------------------------------------------------------


def _extras(block: str) -> tuple[str, ...]:
    return (
        f"airflow.{block}.extraEnv=[{{name: TEAM, value: data}}, {{name: API_TOKEN, valueFrom: {{secretKeyRef: "
        "{name: team, key: token}}}]",
        f"airflow.{block}.extraEnvFrom=[{{configMapRef: {{name: team-config}}}}]",
        f"airflow.{block}.extraVolumes=[{{name: certs, secret: {{secretName: team-certs}}}}]",
        f"airflow.{block}.extraVolumeMounts=[{{name: certs, mountPath: /etc/team-certs, readOnly: true}}]",
        f"airflow.{block}.extraInitContainers=[{{name: prepare, image: busybox:1.36, args: ['true']}}]",
        f"airflow.{block}.extraContainers=[{{name: sidecar, image: busybox:1.36, args: [sleep, inf], volumeMounts: "
        "[{name: certs, mountPath: /certs}]}]",
    )


@pytest.mark.parametrize("comp", sorted(BLOCKS))
def test_each_escape_hatch_reaches_only_the_components_own_pods(comp: str) -> None:
    got = pods(*_extras(BLOCKS[comp]))
    same_block = {c for c, b in BLOCKS.items() if b == BLOCKS[comp]}
    for other, spec in got.items():
        main = spec["containers"][0]
        names = [c["name"] for c in containers(spec)]
        if other not in same_block:
            assert "TEAM" not in env_of(main) and "sidecar" not in names and "prepare" not in names, other
            assert "certs" not in {v["name"] for v in spec.get("volumes", [])}, other
            continue
        env = env_of(main)
        assert env["TEAM"] == "data" and env["API_TOKEN"] == ("secret", "team", "token")
        assert main["envFrom"] == [{"configMapRef": {"name": "team-config"}}]
        assert {"name": "certs", "secret": {"secretName": "team-certs"}} in spec["volumes"]
        assert {"name": "certs", "mountPath": "/etc/team-certs", "readOnly": True} in main["volumeMounts"]
        assert spec["initContainers"][0]["name"] == "prepare"  # before the program's own
        assert spec["containers"][-1]["name"] == "sidecar"
        # The program's env comes first and is never shadowed.
        assert list(env)[:1] != ["TEAM"] and len(env) == len({e["name"] for e in main["env"]})


def test_extra_containers_get_the_restricted_defaults_and_keep_the_pod_restricted() -> None:
    run = render(
        "local",
        *EVERY,
        "airflow.workers.extraContainers=[{name: shipper, image: fluent/fluent-bit:3.2.2, securityContext: "
        "{runAsUser: 10001, readOnlyRootFilesystem: false}}]",
        "airflow.apiServer.extraInitContainers=[{name: proxy, image: proxy:1, restartPolicy: Always}]",
    )
    worker = pod_spec(named(run, "StatefulSet", "airflow-worker"))
    shipper = worker["containers"][-1]
    assert shipper["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert shipper["resources"]["limits"]["memory"] and shipper["imagePullPolicy"] == "IfNotPresent"
    api = pod_spec(named(run, "Deployment", "airflow-api-server"))
    assert api["initContainers"][0]["restartPolicy"] == "Always"
    for obj in workloads(run):
        if obj["metadata"]["namespace"] == "airflow":
            pod = {"metadata": pod_template(obj).get("metadata", {}), "spec": pod_spec(obj)}
            assert violations(pod, "restricted") == [], obj["metadata"]["name"]


def test_the_placement_and_extras_variant_keeps_every_airflow_pod_restricted() -> None:
    from tests.stacks.test_local_render import VARIANTS

    run = render("local", *VARIANTS["placement+extras"])
    checked = 0
    for comp, spec in airflow_pods(run):
        assert violations({"metadata": {}, "spec": spec}, "restricted") == [], comp
        checked += 1
    assert checked >= 9


def test_image_pull_secrets_reach_every_airflow_pod_jobs_and_task_pods_included() -> None:
    for comp, spec in pods("airflow.imagePullSecrets=[regcred, mirror]").items():
        assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}], comp


# ---- rollouts --------------------------------------------------------------------------------


def _templates(*overrides: str) -> dict[str, str]:
    run = render("local", *EVERY, *overrides)
    out = {}
    for obj in workloads(run, reveal=True):
        out[component(obj)] = json.dumps(pod_template(obj), sort_keys=True)
    for cm in objects(run, "ConfigMap", reveal=True):
        if "pod_template_file.yaml" in (cm.get("data") or {}):
            out["task"] = cm["data"]["pod_template_file.yaml"]
    return out


@pytest.mark.parametrize(
    "block,rolled",
    [
        ("scheduler", {"scheduler"}),
        ("workers", {"worker"}),
        ("apiServer", {"api-server"}),
        ("jobs", {"migrate", "create-user", "pools", "db-clean", "pod-cleanup"}),
        # A new pod template is a new ConfigMap the scheduler mounts: it rolls onto it in place.
        ("taskPods", {"task", "scheduler"}),
    ],
)
def test_a_changed_extra_rolls_only_its_component(block: str, rolled: set[str]) -> None:
    a = _templates(f"airflow.{block}.extraEnv=[{{name: TEAM, value: a}}]")
    b = _templates(f"airflow.{block}.extraEnv=[{{name: TEAM, value: b}}]")
    assert {k for k in a if a[k] != b[k]} == rolled


def test_a_changed_placement_rolls_only_its_component() -> None:
    a = _templates("airflow.triggerer.placement={nodeSelector: {pool: a}}")
    b = _templates("airflow.triggerer.placement={nodeSelector: {pool: b}}")
    assert {k for k in a if a[k] != b[k]} == {"triggerer"}


# ---- extraObjects ----------------------------------------------------------------------------

OBJECTS = (
    "airflow.extraObjects=[{apiVersion: v1, kind: ConfigMap, metadata: {name: team-config, labels: {team: data}}, "
    "data: {mode: fast}}, {apiVersion: monitoring.coreos.com/v1, kind: PodMonitor, metadata: {name: airflow}, "
    "spec: {selector: {matchLabels: {app.kubernetes.io/name: airflow}}, podMetricsEndpoints: [{port: metrics}]}}]"
)


def test_extra_objects_are_named_by_identity_in_the_namespace_and_after_it() -> None:
    run = render("local", OBJECTS)
    cm = run.get("kubernetes:core/v1:ConfigMap", "airflow-extra-core-configmap-team-config")
    assert cm.inputs["metadata"] == {"name": "team-config", "namespace": "airflow", "labels": {"team": "data"}}
    assert cm.inputs["data"] == {"mode": "fast"}
    ns = run.get("kubernetes:core/v1:Namespace", "namespace-namespace")
    # On the Namespace's output: created after it, deleted before it.
    assert ns.urn in cm.dependencies
    monitor = run.get(
        "kubernetes:monitoring.coreos.com/v1:PodMonitor", "airflow-extra-monitoring.coreos.com-podmonitor-airflow"
    )
    assert monitor.inputs["spec"]["podMetricsEndpoints"] == [{"port": "metrics"}]
    # Dropping the first object does not rename the second.
    alone = render(
        "local",
        "airflow.extraObjects=[{apiVersion: monitoring.coreos.com/v1, kind: PodMonitor, metadata: {name: airflow}, "
        "spec: {selector: {matchLabels: {app.kubernetes.io/name: airflow}}}}]",
    )
    assert alone.get(
        "kubernetes:monitoring.coreos.com/v1:PodMonitor", "airflow-extra-monitoring.coreos.com-podmonitor-airflow"
    )


def _secret_run(secret: bool) -> engine.Run:
    config, _ = load_stack_config(
        "local",
        [
            "airflow.extraObjects=[{apiVersion: v1, kind: Secret, metadata: {name: team}, stringData: {token: s3cr3t-value-xyz}}]"
        ],
    )
    return engine.run(program, config=config, secret_keys=["airflow-k8s:airflow"] if secret else [], stack="local")


def test_a_secret_object_from_secret_config_is_a_pulumi_secret() -> None:
    run = _secret_run(secret=True)
    assert run.error is None, run.error
    secret = run.get("kubernetes:core/v1:Secret", "airflow-extra-core-secret-team")
    assert secret.inputs["stringData"] == {"token": engine.SECRET}
    assert "s3cr3t-value-xyz" not in dumps(run)


def test_a_secret_object_in_plain_text_is_refused_before_any_resource() -> None:
    run = _secret_run(secret=False)
    assert run.error is not None and not run.resources
    assert "airflow-k8s:airflow.extraObjects.0.stringData" in str(run.error)
    assert "s3cr3t-value-xyz" not in str(run.error)


# ---- KubernetesPodOperator defaults ------------------------------------------------------------


def test_kpo_placement_is_mounted_where_kpo_runs_and_nowhere_else() -> None:
    assert not [o for o in objects(render("local", *EVERY), "ConfigMap") if "local-settings" in o["metadata"]["name"]]
    run = render("local", *EVERY, "airflow.podOperator.placement={nodeSelector: {pool: batch}}")
    cm = named(run, "ConfigMap", "airflow-local-settings", reveal=True)
    assert '"nodeSelector": {"pool": "batch"}' in cm["data"]["airflow_local_settings.py"]
    holders = {
        comp for comp, spec in airflow_pods(run) if "local-settings" in {v["name"] for v in spec.get("volumes", [])}
    }
    assert holders == {"worker", "triggerer", "task"}  # the table's KubernetesPodOperator launchers
    # Not airflow.placement: the Airflow pods themselves are not moved by it.
    assert "nodeSelector" not in pod_spec(named(run, "StatefulSet", "airflow-worker"))


def test_kpo_placement_without_kpo_makes_nothing() -> None:
    run = render("local", "airflow.podOperator={enabled: false, placement: {nodeSelector: {pool: batch}}}")
    assert not [o for o in objects(run, "ConfigMap") if "local-settings" in o["metadata"]["name"]]


def test_the_readme_example_renders() -> None:
    """The copy-paste example of the README's "Placement and escape hatches" section."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- placement-example -->\n```yaml\n", 1)[1].split("```", 1)[0]
    airflow = yaml.safe_load(block)["config"]["airflow-k8s:airflow"]
    run = render("local", f"airflow={json.dumps(airflow)}")
    got = dict(airflow_pods(run))
    assert got["task"]["nodeSelector"] == {"accelerator": "nvidia"}
    assert got["worker"]["nodeSelector"] == {} and got["worker"]["containers"][-1]["name"] == "log-shipper"
    assert got["scheduler"]["nodeSelector"] == {"pool": "system"}
    assert all(spec["imagePullSecrets"] == [{"name": "regcred"}] for c, spec in got.items() if c in BLOCKS)
    assert (
        "dedicated"
        in named(run, "ConfigMap", "airflow-local-settings", reveal=True)["data"]["airflow_local_settings.py"]
    )


@pytest.mark.parametrize("stack", ["local", "aws-dev", "azure-dev"])
def test_settings_refuse_every_env_name_the_program_generates(stack: str) -> None:
    """The static check in settings.py knows every variable a render gives an Airflow container, so a
    clash is a config error at parse time, never a surprise while resources are being made."""
    from components.airflow.settings import AirflowSettings
    from components.kube_types import EnvVar
    from tests.stacks.test_local_render import VARIANTS

    extras = ("airflow.variables={team: x}", "airflow.config={core.parallelism: '8'}")
    # Connections and secret variables arrive as Pulumi secrets only (the pools+secret-variables
    # variant adds `warehouse` and `api_token`).
    secrets = ("airflow.connections.dw=postgresql://u@h/d", "airflow.secretVariables.tok=t0k")
    runs = [render(stack, *extras, secrets=secrets)] + (
        [render(stack, *v, *extras, secrets=secrets) for v in VARIANTS.values()] if stack == "local" else []
    )
    for run in runs:
        names = {
            e["name"]
            for comp, spec in airflow_pods(run)
            if comp in BLOCKS  # the pods whose Airflow container takes extraEnv
            for e in spec["containers"][0].get("env", [])
        }
        for name in sorted(
            names
            - {
                "TEAM",
                "API_TOKEN",
                "NODE",
                "MODE",
                "CUDA_VISIBLE_DEVICES",
                "PGAPPNAME",
                "PYTHONWARNINGS",
                "FLOWER_PURGE_OFFLINE_WORKERS",
            }
        ):
            env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
            with pytest.raises(ValueError):
                AirflowSettings.model_validate(
                    {"variables": {"team": "x"}, "connections": {"dw": "u", "warehouse": "w"},
                     "secretVariables": {"tok": "t", "api_token": "a"},
                     "config": {"core.parallelism": "8"}, "scheduler": {"extraEnv": env}}
                )  # fmt: skip
            assert EnvVar.model_validate(env[0]).name == name
