"""Issue 15, items 3 and 4: worker sets (more Celery worker groups, each on its own queues) and their
autoscaling with KEDA, rendered from the local stack and queried."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from components.airflow.autoscaling import KEDA_VERSION
from components.airflow.roster import component as table_row
from components.airflow.settings import WORKER, AirflowSettings, worker_memory_floor
from components.k8s import selector
from stacks.config import parse
from tests.keda_schema import KEDA_SCHEMA_VERSION, SCHEMAS
from tests.pod_security import violations
from tests.render import K8S_VERSIONS, named, objects, pod_spec, render

GPU = (
    "airflow.workerSets=[{name: gpu, queues: [gpu, ml], concurrency: 4, "
    "placement: {nodeSelector: {pool: gpu}}, autoscaling: {enabled: true, minReplicas: 0, maxReplicas: 5}}, "
    "{name: io, queues: [io], replicas: 3}]"
)
SETS = (GPU, "airflow.workers.autoscaling={enabled: true, maxReplicas: 4}")


def workload_resource(run, name: str):
    [r] = [
        r
        for r in run.kubernetes()
        if r.type == "kubernetes:apps/v1:StatefulSet" and r.manifest()["metadata"]["name"] == name
    ]
    return r


def validate_keda(obj: dict) -> None:
    jsonschema.validate(obj, SCHEMAS[obj["kind"]])


def test_every_worker_group_is_the_tables_worker_row() -> None:
    row = table_row(WORKER)
    assert row.port("worker-logs").number == 8793 and row.grace_seconds == 600 and row.options == "workers"


def test_the_default_render_has_no_keda_and_the_default_worker_as_before() -> None:
    run = render("local")
    assert not [o for o in objects(run) if o["apiVersion"].startswith("keda.sh/")]
    assert not run.by_type("kubernetes:helm.sh/v3:Release")
    r = workload_resource(run, "airflow-worker")
    assert not r.options.get("ignoreChanges") and "annotations" not in r.manifest()["metadata"]
    assert r.manifest()["spec"]["replicas"] == 1  # the local stack file's


def test_each_set_is_its_own_statefulset_with_its_queues_concurrency_and_placement() -> None:
    run = render("local", *SETS)
    default = named(run, "StatefulSet", "airflow-worker")
    gpu = named(run, "StatefulSet", "airflow-worker-gpu")
    io = named(run, "StatefulSet", "airflow-worker-io")
    c = pod_spec(gpu)["containers"][0]
    assert c["args"] == ["celery", "worker", "--queues", "gpu,ml"]
    assert {e["name"]: e.get("value") for e in c["env"]}["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "4"
    assert pod_spec(default)["containers"][0]["args"] == ["celery", "worker"]  # Airflow's default queue
    assert pod_spec(gpu)["nodeSelector"] == {"pool": "gpu"} and "nodeSelector" not in pod_spec(io)
    assert io["spec"]["replicas"] == 3
    # The memory floor holds per group: 4 tasks get the 4-task floor, not the default 16-task one.
    assert c["resources"]["limits"]["memory"] == f"{worker_memory_floor(4) // 2**20}Mi"
    # Same account, token rule, secrets and grace as the default workers (the table's `worker` row).
    for key in ("serviceAccountName", "automountServiceAccountToken", "terminationGracePeriodSeconds"):
        assert pod_spec(gpu)[key] == pod_spec(default)[key]
    refs = lambda s: sorted(str(e.get("valueFrom")) for e in pod_spec(s)["containers"][0]["env"] if "valueFrom" in e)  # noqa: E731
    assert refs(gpu) == refs(default)


def test_set_pods_are_told_apart_and_no_selector_of_one_group_matches_anothers_pods() -> None:
    run = render("local", *SETS)
    groups = {"worker": "airflow-worker", "worker-gpu": "airflow-worker-gpu", "worker-io": "airflow-worker-io"}
    for component, name in groups.items():
        sts = named(run, "StatefulSet", name)
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["app.kubernetes.io/component"] == component
        for other, other_name in groups.items():
            sel = named(run, "StatefulSet", other_name)["spec"]["selector"]["matchLabels"]
            matches = all(pod_labels.get(k) == v for k, v in sel.items())
            assert matches == (other == component), (component, other)
            # A pod under two PDBs cannot be evicted (the eviction API refuses it): one each.
            pdb = named(run, "PodDisruptionBudget", other_name)["spec"]["selector"]["matchLabels"]
            assert all(pod_labels.get(k) == v for k, v in pdb.items()) == (other == component)


def test_each_sets_log_server_is_reachable_by_pod_dns_and_from_the_api_server_only() -> None:
    run = render("local", *SETS)
    for name in ("airflow-worker-gpu", "airflow-worker-io"):
        sts = named(run, "StatefulSet", name)
        svc = named(run, "Service", name)
        # Airflow records the worker's FQDN (getfqdn) as the task's hostname and fetches
        # http://<hostname>:8793; a pod's FQDN resolves through its StatefulSet's headless Service.
        assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
        assert [p["port"] for p in svc["spec"]["ports"]] == [8793]
        pol = named(run, "NetworkPolicy", f"{name}-logs")
        assert pol["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        [rule] = pol["spec"]["ingress"]
        assert rule["ports"] == [{"port": 8793, "protocol": "TCP"}]
        assert rule["from"] == [{"podSelector": {"matchLabels": selector("airflow", "api-server")}}]


def test_autoscaled_groups_leave_replicas_to_keda_and_fixed_ones_do_not() -> None:
    run = render("local", *SETS)
    assert workload_resource(run, "airflow-worker-gpu").options["ignoreChanges"] == ["spec.replicas"]
    assert workload_resource(run, "airflow-worker").options["ignoreChanges"] == ["spec.replicas"]
    assert not workload_resource(run, "airflow-worker-io").options.get("ignoreChanges")
    # The count at creation is minReplicas (0: the group starts scaled to zero).
    assert named(run, "StatefulSet", "airflow-worker-gpu")["spec"]["replicas"] == 0
    # Switching autoscaling off later takes spec.replicas back from the HPA (a forced apply).
    for name in ("airflow-worker-gpu", "airflow-worker-io", "airflow-worker"):
        assert named(run, "StatefulSet", name)["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
    off = render("local", "airflow.workers.autoscaling={enabled: false}")
    r = workload_resource(off, "airflow-worker")
    assert not r.options.get("ignoreChanges") and r.manifest()["metadata"]["annotations"]["pulumi.com/patchForce"]


def test_an_autoscaled_group_gets_a_pdb_when_it_may_have_two_pods() -> None:
    run = render("local", "airflow.workerSets=[{name: one, queues: [one], autoscaling: {enabled: true, maxReplicas: 1}}]",
                 "airflow.workers.replicas=1")  # fmt: skip
    names = {o["metadata"]["name"] for o in objects(run, "PodDisruptionBudget")}
    assert "airflow-worker-one" not in names
    assert "airflow-worker-gpu" in {
        o["metadata"]["name"] for o in objects(render("local", *SETS), "PodDisruptionBudget")
    }


def test_scaled_objects_target_their_statefulset_and_count_their_queues() -> None:
    run = render("local", *SETS)
    so = named(run, "ScaledObject", "airflow-worker-gpu")
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "airflow-worker-gpu"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 5)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "postgresql" and trigger["metadata"]["targetQueryValue"] == "1"
    assert trigger["metadata"]["query"] == (
        "SELECT ceil(COUNT(*)::decimal / 4) FROM task_instance WHERE state IN ('queued', 'running') "
        "AND queue IN ('gpu', 'ml')"
    )
    assert (
        "queue IN ('default')"
        in named(run, "ScaledObject", "airflow-worker")["spec"]["triggers"][0]["metadata"]["query"]
    )
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    )
    auth = named(run, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "connection"
    secret = named(run, "Secret", ref["name"], reveal=True)
    assert list(secret["stringData"]) == [ref["key"]]  # only what KEDA needs
    assert named(run, "Secret", ref["name"])["stringData"][ref["key"]] == "[secret]"  # masked in renders
    assert "ScaledObject" not in {o["kind"] for o in objects(run) if o["metadata"]["name"] == "airflow-worker-io"}


def test_a_statefulset_with_log_claims_is_targeted_by_its_real_name() -> None:
    run = render(
        "local", "airflow.workerSets=[{name: gpu, queues: [gpu], storageSize: 5Gi, autoscaling: {enabled: true}}]"
    )
    [sts] = [o for o in objects(run, "StatefulSet") if o["metadata"]["name"].startswith("airflow-worker-gpu-")]
    assert named(run, "ScaledObject", "airflow-worker-gpu")["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"]


def test_with_both_executors_kubernetes_tasks_are_not_counted() -> None:
    run = render(
        "local", "airflow.executor=CeleryExecutor,KubernetesExecutor", "airflow.workers.autoscaling={enabled: true}"
    )
    query = named(run, "ScaledObject", "airflow-worker")["spec"]["triggers"][0]["metadata"]["query"]
    assert "executor NOT IN ('KubernetesExecutor'," in query


def test_the_connection_string_verifies_the_db_like_airflow() -> None:
    pem = open("components/aws/rds_ca/global-bundle.pem").read().split("-----END CERTIFICATE-----")[0]
    pem += "-----END CERTIFICATE-----\n"
    run = render(
        "local", "database.mode=external", "airflow.workers.autoscaling={enabled: true}",
        f"database.external={{host: db.example.com, user: af, password: \"p w'd\", sslmode: verify-full, ca: {{pem: {json.dumps(pem)}}}}}",
    )  # fmt: skip
    conn = named(run, "Secret", "airflow-keda-db", reveal=True)["stringData"]["connection"]
    assert conn == (
        "host=db.example.com port=5432 dbname=airflow user=af password='p w\\'d' sslmode=verify-full "
        "sslrootcert=/etc/airflow-k8s/db-ca/ca.crt"
    )
    [release] = run.by_type("kubernetes:helm.sh/v3:Release")
    mounts = release.inputs["values"]["volumes"]["keda"]["extraVolumeMounts"]
    assert mounts == [{"name": "airflow-db-ca", "mountPath": "/etc/airflow-k8s/db-ca", "readOnly": True}]


def test_keda_is_installed_pinned_in_its_own_restricted_namespace_and_reaches_the_db() -> None:
    run = render("local", *SETS)
    [release] = run.by_type("kubernetes:helm.sh/v3:Release")
    assert (
        (release.inputs["chart"], release.inputs["version"]) == ("keda", KEDA_VERSION) == ("keda", KEDA_SCHEMA_VERSION)
    )
    assert release.inputs["repositoryOpts"]["repo"] == "https://kedacore.github.io/charts"
    ns = named(run, "Namespace", "keda")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Every ScaledObject waits for the chart (its CRDs) and so is deleted before it on destroy.
    for so in [r for r in run.kubernetes() if r.type == "kubernetes:keda.sh/v1alpha1:ScaledObject"]:
        assert release.urn in so.dependencies
    pol = named(run, "NetworkPolicy", "airflow-keda-to-db")
    assert pol["spec"]["podSelector"]["matchLabels"] == selector("airflow", "postgresql")
    [peer] = pol["spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "keda-operator"}
    existing = render("local", *SETS, "airflow.keda.source=existing")
    assert not existing.by_type("kubernetes:helm.sh/v3:Release")
    assert named(existing, "ScaledObject", "airflow-worker-gpu")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_of_an_autoscaled_render_is_strictly_valid(version: str) -> None:
    run = render("local", *SETS, "airflow.executor=CeleryExecutor,KubernetesExecutor")
    keda = 0
    for obj in objects(run, reveal=True):
        if obj["apiVersion"].startswith("keda.sh/"):
            validate_keda(obj)
            keda += 1
        else:
            kubernetes_validate.validate(obj, version, strict=True)
    assert keda == 3  # two ScaledObjects and their TriggerAuthentication


def test_every_worker_set_pod_meets_restricted() -> None:
    run = render("local", *SETS)
    for name in ("airflow-worker", "airflow-worker-gpu", "airflow-worker-io"):
        obj = named(run, "StatefulSet", name)
        pod = {"metadata": obj["spec"]["template"]["metadata"], "spec": pod_spec(obj)}
        assert violations(pod, "restricted") == [], name


def test_the_keda_schemas_refuse_unknown_and_missing_fields() -> None:
    run = render("local", *SETS)
    so = named(run, "ScaledObject", "airflow-worker-gpu")
    for path, value in ((("spec",), "pollingIntervall"), (("spec", "advanced"), "horizontalPodAutoScalerConfig"),
                        (("spec", "triggers", 0), "authRef")):  # fmt: skip
        bad = copy.deepcopy(so)
        node: Any = bad
        for p in path:
            node = node[p]
        node[value] = 1
        with pytest.raises(jsonschema.ValidationError):
            validate_keda(bad)
    bad = copy.deepcopy(so)
    del bad["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        validate_keda(bad)
    auth = copy.deepcopy(named(run, "TriggerAuthentication", "airflow-keda-db"))
    auth["spec"]["secretTargetRef"][0]["paramter"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        validate_keda(auth)


def test_worker_groups_give_the_budget_concurrency_and_most_replicas_per_group() -> None:
    s = AirflowSettings.model_validate({
        "workers": {"replicas": 3, "concurrency": 8},
        "workerSets": [{"name": "gpu", "queues": ["gpu"], "concurrency": 2, "replicas": 1,
                        "autoscaling": {"enabled": True, "maxReplicas": 6}}],
    })  # fmt: skip
    assert [(g.component, g.concurrency, g.max_replicas, g.queues) for g in s.worker_groups()] == [
        ("worker", 8, 3, ("default",)),
        ("worker-gpu", 2, 6, ("gpu",)),
    ]
    assert sum(g.concurrency * g.max_replicas for g in s.worker_groups()) == 8 * 3 + 2 * 6
    assert s.keda_db_connections == 2  # one autoscaled group: one postgresql trigger's pool
    assert AirflowSettings.model_validate({"executor": "KubernetesExecutor"}).worker_groups() == []
    # A changed default queue is the default workers' queue.
    assert AirflowSettings.model_validate({"config": {"operators.default_queue": "main"}}).worker_groups()[
        0
    ].queues == ("main",)


def test_replicas_of_a_query_value_are_ceil_of_tasks_over_concurrency() -> None:
    # What the HPA asks for with targetQueryValue 1: ceil(value / 1), value = ceil(tasks / concurrency).
    for tasks, concurrency, want in ((0, 4, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2), (50, 16, 4)):
        assert math.ceil(math.ceil(tasks / concurrency) / 1) == want


def test_a_sets_log_claims_get_the_aws_stacks_storage_class() -> None:
    run = render("aws-dev", "airflow.workerSets=[{name: gpu, queues: [gpu], storageSize: 20Gi}]")
    [sc] = objects(run, "StorageClass")
    [sts] = [o for o in objects(run, "StatefulSet") if o["metadata"]["name"].startswith("airflow-worker-gpu-")]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == sc["metadata"]["name"]


def test_keda_settings_without_autoscaling_are_a_warning() -> None:
    base = {"cloud": "local", "kubernetes": {"context": "kind"}}
    warnings = parse({**base, "airflow": {"keda": {"source": "existing"}}}).unused_settings()
    assert any("airflow-k8s:airflow.keda.source" in w and "no worker group has autoscaling on" in w for w in warnings)
    on = {"keda": {"source": "existing"}, "workers": {"autoscaling": {"enabled": True}}}
    assert not any("airflow.keda" in w for w in parse({**base, "airflow": on}).unused_settings())
