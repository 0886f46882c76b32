"""The Pod Security Standards checker (tests/pod_security.py) on known-good and known-bad pods: each
control must be able to fail, and a pod that meets a level must pass it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.pod_security import Level, admits, enforced_level, violations
from tests.render import K8S_VERSIONS, named, objects, pod_spec, pod_template, render
from tests.stacks.test_local_render import VARIANTS

Pod = dict[str, Any]


def hardened() -> Pod:
    """A pod that meets `restricted`: what every pod of this project looks like."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [{"name": "init", "image": "busybox:1", "securityContext": _container_ok()}],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1",
                    "ports": [{"containerPort": 8080}],
                    "securityContext": _container_ok(),
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
        },
    }


def _container_ok() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def minimal() -> Pod:
    """The default (minimally specified) pod: `baseline` exists to admit exactly this."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "main", "image": "python:3.12-slim"}]},
    }


def spec(p: Pod) -> dict[str, Any]:
    return p["spec"]


def main(p: Pod) -> dict[str, Any]:
    return p["spec"]["containers"][0]


def init(p: Pod) -> dict[str, Any]:
    return p["spec"]["initContainers"][0]


# (name, mutation of the hardened pod, lowest level that rejects it, the control that must name it)
BAD: list[tuple[str, Callable[[Pod], Any], Level, str]] = [
    ("hostProcess", lambda p: spec(p)["securityContext"].update(windowsOptions={"hostProcess": True}), "baseline",
     "HostProcess"),
    ("hostNetwork", lambda p: spec(p).update(hostNetwork=True), "baseline", "Host Namespaces"),
    ("hostPID", lambda p: spec(p).update(hostPID=True), "baseline", "Host Namespaces"),
    ("hostIPC", lambda p: spec(p).update(hostIPC=True), "baseline", "Host Namespaces"),
    ("privileged", lambda p: main(p)["securityContext"].update(privileged=True), "baseline",
     "Privileged Containers"),
    ("privileged init", lambda p: init(p)["securityContext"].update(privileged=True), "baseline",
     "Privileged Containers"),
    ("SYS_ADMIN", lambda p: main(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "baseline",
     "Capabilities"),
    ("hostPath", lambda p: spec(p)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "baseline",
     "HostPath Volumes"),
    ("hostPort", lambda p: main(p)["ports"][0].update(hostPort=80), "baseline", "Host Ports"),
    ("probe host", lambda p: main(p).update(livenessProbe={"httpGet": {"port": 80, "host": "10.0.0.1"}}),
     "baseline", "Host Probes / Lifecycle Hooks"),
    ("lifecycle host", lambda p: main(p).update(
        lifecycle={"preStop": {"tcpSocket": {"port": 80, "host": "10.0.0.1"}}}), "baseline",
     "Host Probes / Lifecycle Hooks"),
    ("apparmor annotation", lambda p: p["metadata"]["annotations"].update(
        {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}), "baseline", "AppArmor"),
    ("apparmor field", lambda p: main(p)["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
     "baseline", "AppArmor"),
    ("selinux type", lambda p: spec(p)["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "baseline",
     "SELinux"),
    ("selinux user", lambda p: main(p)["securityContext"].update(seLinuxOptions={"user": "root"}), "baseline",
     "SELinux"),
    ("procMount", lambda p: main(p)["securityContext"].update(procMount="Unmasked"), "baseline",
     "/proc Mount Type"),
    ("seccomp unconfined", lambda p: spec(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
     "baseline", "Seccomp"),
    ("unsafe sysctl", lambda p: spec(p)["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
     "baseline", "Sysctls"),
    ("nfs volume", lambda p: spec(p)["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
     "restricted", "Volume Types"),
    ("allowPrivilegeEscalation unset", lambda p: main(p)["securityContext"].pop("allowPrivilegeEscalation"),
     "restricted", "Privilege Escalation"),
    ("allowPrivilegeEscalation true", lambda p: init(p)["securityContext"].update(allowPrivilegeEscalation=True),
     "restricted", "Privilege Escalation"),
    ("runAsNonRoot unset", lambda p: spec(p)["securityContext"].pop("runAsNonRoot"), "restricted",
     "Running as Non-root"),
    ("runAsNonRoot false on a container", lambda p: main(p)["securityContext"].update(runAsNonRoot=False),
     "restricted", "Running as Non-root"),
    ("runAsUser 0", lambda p: main(p)["securityContext"].update(runAsUser=0), "restricted",
     "Running as Non-root user"),
    ("seccomp unset", lambda p: spec(p)["securityContext"].pop("seccompProfile"), "restricted", "Seccomp"),
    ("capabilities not dropped", lambda p: main(p)["securityContext"].pop("capabilities"), "restricted",
     "Capabilities"),
    ("NET_RAW added", lambda p: main(p)["securityContext"]["capabilities"].update(add=["NET_RAW"]), "baseline",
     "Capabilities"),
    ("CHOWN added", lambda p: main(p)["securityContext"]["capabilities"].update(add=["CHOWN"]), "restricted",
     "Capabilities"),
]  # fmt: skip


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_a_hardened_pod_meets_every_level(version: str) -> None:
    for level in ("privileged", "baseline", "restricted"):
        assert violations(hardened(), level, version) == [], level


@pytest.mark.parametrize("name,mutate,level,control", BAD, ids=[b[0] for b in BAD])
def test_each_control_rejects_what_it_forbids(
    name: str, mutate: Callable[[Pod], Any], level: Level, control: str
) -> None:
    pod = hardened()
    mutate(pod)
    found = violations(pod, level)
    assert control in {v.control for v in found}, found
    assert not admits(pod, "restricted")
    assert admits(pod, "baseline") == (level == "restricted"), violations(pod, "baseline")
    assert admits(pod, "privileged")


def test_violations_name_the_container_that_breaks_the_rule() -> None:
    pod = hardened()
    main(pod)["securityContext"]["capabilities"] = {"drop": []}
    assert {(v.control, v.subject) for v in violations(pod, "restricted")} == {("Capabilities", "main")}


def test_the_minimal_pod_meets_baseline_but_not_restricted() -> None:
    pod = minimal()
    assert admits(pod, "baseline")
    assert {v.control for v in violations(pod, "restricted")} == {
        "Running as Non-root",
        "Privilege Escalation",
        "Seccomp",
        "Capabilities",
    }


def test_pod_level_settings_cover_containers_that_leave_them_unset() -> None:
    pod = minimal()
    spec(pod)["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    main(pod)["securityContext"] = _container_ok()
    assert admits(pod, "restricted")


def test_version_gated_controls() -> None:
    probe = hardened()
    main(probe)["readinessProbe"] = {"tcpSocket": {"port": 80, "host": "example.com"}}
    assert admits(probe, "baseline", "1.33") and not admits(probe, "baseline", "1.34")
    sysctl = hardened()
    spec(sysctl)["securityContext"]["sysctls"] = [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]
    assert not admits(sysctl, "baseline", "1.31") and admits(sysctl, "baseline", "1.32")
    userns = minimal()
    spec(userns)["hostUsers"] = False
    assert "Running as Non-root" not in {v.control for v in violations(userns, "restricted", "1.35")}
    assert "Running as Non-root" in {v.control for v in violations(userns, "restricted", "1.34")}


@pytest.mark.parametrize("variant", [(), VARIANTS["housekeeping"]], ids=["default", "housekeeping"])
def test_every_pod_this_project_renders_meets_restricted(variant: tuple[str, ...]) -> None:
    run = render("local", *variant)
    pods = [
        o
        for o in objects(run)
        if o["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob") and o["metadata"]["namespace"] == "airflow"
    ]
    assert len(pods) > 5
    if variant:  # the CronJobs' pods are checked too
        assert {o["metadata"]["name"] for o in pods if o["kind"] == "CronJob"} == {
            "airflow-db-clean",
            "airflow-pod-cleanup",
            "airflow-log-groomer",
        }
    for obj in pods:
        pod = {"metadata": pod_template(obj).get("metadata", {}), "spec": pod_spec(obj)}
        assert violations(pod, "restricted") == [], obj["metadata"]["name"]


def test_namespace_level_comes_from_the_enforce_label() -> None:
    run = render("local")
    assert enforced_level(named(run, "Namespace", "airflow")) == "restricted"
    assert enforced_level({"metadata": {"labels": {}}}) == "privileged"


def test_a_copy_is_checked_not_changed() -> None:
    pod = minimal()
    before = copy.deepcopy(pod)
    violations(pod, "restricted")
    assert pod == before
