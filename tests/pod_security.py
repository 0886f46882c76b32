"""A checker for the Kubernetes Pod Security Standards, `baseline` and `restricted`.

Each control is written as the standard lists it
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), and where that page leaves a
detail open (which containers count, what a version changed) as the reference implementation does it:
kubernetes/pod-security-admission, `policy/check_*.go` (the file is named beside each control). The
checker takes a Pod manifest as the API server receives it (camelCase) and returns every violation,
so a test can say not only *whether* a pod is admitted but *why not*.

Versions: a namespace's `pod-security.kubernetes.io/enforce-version` defaults to `latest`, i.e. the
cluster's own version; the controls that changed between the versions this project supports take a
`version` ("1.31" ... "1.35") and default to the newest of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")
LATEST = "1.35"

ENFORCE = "pod-security.kubernetes.io/enforce"
POD = "pod"  # the `subject` of a violation of a pod-level field

# check_capabilities_baseline.go: Docker's default set.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# check_sysctls.go: the "safe" sysctls, by the version that allowed them.
SAFE_SYSCTLS: tuple[tuple[tuple[int, int], frozenset[str]], ...] = (
    (
        (1, 0),
        frozenset(
            {
                "kernel.shm_rmid_forced",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range",
                "net.ipv4.ip_unprivileged_port_start",
            }
        ),
    ),
    ((1, 27), frozenset({"net.ipv4.ip_local_reserved_ports"})),
    (
        (1, 29),
        frozenset(
            {
                "net.ipv4.tcp_keepalive_time",
                "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes",
            }
        ),
    ),
    ((1, 32), frozenset({"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})),
)
# check_seLinuxOptions.go
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SELINUX_TYPES_1_31 = SELINUX_TYPES | {"container_engine_t"}
# check_restrictedVolumes.go: the only inline volume sources `restricted` admits.
RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


@dataclass(frozen=True)
class Violation:
    level: Level  # the lowest level whose control this breaks
    control: str  # the control's name, as the standard's table lists it
    subject: str  # "pod", or the container's name
    detail: str

    def __str__(self) -> str:
        return f"{self.level}/{self.control}: {self.subject}: {self.detail}"


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container the standard covers (visitor.go: init, regular and ephemeral)."""
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []
    yield from spec.get("ephemeralContainers") or []


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _user_namespace(spec: dict[str, Any]) -> bool:
    """helpers.go relaxPolicyForUserNamespacePod: `hostUsers: false` (from 1.35 on)."""
    return spec.get("hostUsers") is False


def _windows(spec: dict[str, Any]) -> bool:
    return (spec.get("os") or {}).get("name") == "windows"


def _baseline(pod: dict[str, Any], version: tuple[int, int]) -> Iterator[Violation]:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    psc = _sc(spec)

    def v(control: str, subject: str, detail: str) -> Violation:
        return Violation("baseline", control, subject, detail)

    # HostProcess (check_windowsHostProcess.go)
    if (psc.get("windowsOptions") or {}).get("hostProcess") is True:
        yield v("HostProcess", POD, "securityContext.windowsOptions.hostProcess=true")
    for c in containers(spec):
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess") is True:
            yield v("HostProcess", c["name"], "securityContext.windowsOptions.hostProcess=true")

    # Host Namespaces (check_hostNamespaces.go)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield v("Host Namespaces", POD, f"{field}=true")

    for c in containers(spec):
        sc = _sc(c)
        # Privileged Containers (check_privileged.go)
        if sc.get("privileged") is True:
            yield v("Privileged Containers", c["name"], "securityContext.privileged=true")
        # Capabilities (check_capabilities_baseline.go)
        added = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            yield v("Capabilities", c["name"], f"non-default capabilities {sorted(added)}")
        # Host Ports (check_hostPorts.go)
        for port in c.get("ports") or []:
            if port.get("hostPort") not in (None, 0):
                yield v("Host Ports", c["name"], f"hostPort {port['hostPort']}")
        # Host Probes / Lifecycle Hooks (check_hostProbesAndhostLifecycle.go, from 1.34)
        if version >= (1, 34):
            handlers = [c.get(p) or {} for p in ("livenessProbe", "readinessProbe", "startupProbe")]
            handlers += [(c.get("lifecycle") or {}).get(h) or {} for h in ("postStart", "preStop")]
            for handler in handlers:
                for kind in ("httpGet", "tcpSocket"):
                    host = (handler.get(kind) or {}).get("host")
                    if host:
                        yield v("Host Probes / Lifecycle Hooks", c["name"], f"{kind}.host={host!r}")
        # /proc Mount Type (check_procMount_baseline.go; any value in a user namespace from 1.35)
        if sc.get("procMount") not in (None, "Default") and not (version >= (1, 35) and _user_namespace(spec)):
            yield v("/proc Mount Type", c["name"], f"procMount={sc['procMount']!r}")

    # HostPath Volumes (check_hostPathVolumes.go)
    for vol in spec.get("volumes") or []:
        if vol.get("hostPath") is not None:
            yield v("HostPath Volumes", POD, f"volume {vol['name']!r} is a hostPath")

    # AppArmor (check_appArmorProfile.go): the annotation and the field.
    for key, value in (meta.get("annotations") or {}).items():
        if (
            key.startswith(APPARMOR_ANNOTATION)
            and value not in ("", "runtime/default")
            and not value.startswith("localhost/")
        ):
            yield v("AppArmor", POD, f"annotation {key}={value!r}")
    for subject, sc in [(POD, psc)] + [(c["name"], _sc(c)) for c in containers(spec)]:
        kind = (sc.get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
            yield v("AppArmor", subject, f"appArmorProfile.type={kind!r}")

    # SELinux (check_seLinuxOptions.go)
    types = SELINUX_TYPES_1_31 if version >= (1, 31) else SELINUX_TYPES
    for subject, sc in [(POD, psc)] + [(c["name"], _sc(c)) for c in containers(spec)]:
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in types:
            yield v("SELinux", subject, f"seLinuxOptions.type={opts['type']!r}")
        for field in ("user", "role"):
            if opts.get(field):
                yield v("SELinux", subject, f"seLinuxOptions.{field} is set")

    # Seccomp (check_seccompProfile_baseline.go): if set, RuntimeDefault or Localhost.
    for subject, sc in [(POD, psc)] + [(c["name"], _sc(c)) for c in containers(spec)]:
        kind = (sc.get("seccompProfile") or {}).get("type")
        if kind is not None and kind not in SECCOMP_ALLOWED:
            yield v("Seccomp", subject, f"seccompProfile.type={kind!r}")

    # Sysctls (check_sysctls.go)
    safe = frozenset().union(*(names for since, names in SAFE_SYSCTLS if version >= since))
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in safe:
            yield v("Sysctls", POD, f"sysctl {sysctl.get('name')!r}")


def _restricted(pod: dict[str, Any], version: tuple[int, int]) -> Iterator[Violation]:
    spec = pod.get("spec") or {}
    psc = _sc(spec)
    userns = version >= (1, 35) and _user_namespace(spec)
    windows = _windows(spec)

    def v(control: str, subject: str, detail: str) -> Violation:
        return Violation("restricted", control, subject, detail)

    # Volume Types (check_restrictedVolumes.go)
    for vol in spec.get("volumes") or []:
        sources = set(vol) - {"name"}
        if not sources <= RESTRICTED_VOLUME_SOURCES:
            yield v("Volume Types", POD, f"volume {vol['name']!r} uses {sorted(sources - RESTRICTED_VOLUME_SOURCES)}")

    # Running as Non-root (check_runAsNonRoot.go): the pod says true and no container says false,
    # or every container says true.
    pod_nonroot = psc.get("runAsNonRoot")
    if not userns:
        if pod_nonroot is False:
            yield v("Running as Non-root", POD, "securityContext.runAsNonRoot=false")
        for c in containers(spec):
            own = _sc(c).get("runAsNonRoot")
            if own is False or (own is None and pod_nonroot is not True):
                yield v("Running as Non-root", c["name"], "pod or container must set runAsNonRoot=true")

    # Running as Non-root user (check_runAsUser.go)
    if not userns:
        for subject, sc in [(POD, psc)] + [(c["name"], _sc(c)) for c in containers(spec)]:
            if sc.get("runAsUser") == 0:
                yield v("Running as Non-root user", subject, "runAsUser=0")

    # Privilege Escalation (check_allowPrivilegeEscalation.go; Windows pods are exempt)
    if not windows:
        for c in containers(spec):
            if _sc(c).get("allowPrivilegeEscalation") is not False:
                yield v("Privilege Escalation", c["name"], "must set allowPrivilegeEscalation=false")

    # Seccomp (check_seccompProfile_restricted.go): set, at pod level or on every container.
    if not windows:
        pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
        for c in containers(spec):
            own = (_sc(c).get("seccompProfile") or {}).get("type")
            if own is None and pod_seccomp not in SECCOMP_ALLOWED:
                yield v("Seccomp", c["name"], "pod or container must set seccompProfile RuntimeDefault or Localhost")

    # Capabilities (check_capabilities_restricted.go): drop ALL, add at most NET_BIND_SERVICE.
    if not windows:
        for c in containers(spec):
            caps = _sc(c).get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                yield v("Capabilities", c["name"], "must drop ALL capabilities")
            added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
            if added:
                yield v("Capabilities", c["name"], f"may add only NET_BIND_SERVICE, adds {sorted(added)}")

    # /proc Mount Type (check_procMount_restricted.go, from 1.35: no user-namespace exception)
    if version >= (1, 35):
        for c in containers(spec):
            if _sc(c).get("procMount") not in (None, "Default"):
                yield v("/proc Mount Type", c["name"], f"procMount={_sc(c)['procMount']!r}")


def violations(pod: dict[str, Any], level: Level, version: str = LATEST) -> list[Violation]:
    """Everything in `pod` that the `level` standard forbids (nothing for `privileged`).

    `restricted` includes every `baseline` control, except those a stricter one of its own replaces
    (`OverrideCheckIDs` in the reference): Volume Types replaces HostPath Volumes, its Capabilities
    replaces baseline's, and from 1.35 its /proc Mount Type replaces baseline's. (Its Seccomp control
    replaces baseline's too; baseline's half of it, explicit bad values, is kept here and the restricted
    half, an unset profile, is added.)
    """
    ver = _minor(version)
    if level == "privileged":
        return []
    found = list(_baseline(pod, ver))
    if level == "restricted":
        replaced = {"HostPath Volumes", "Capabilities"} | ({"/proc Mount Type"} if ver >= (1, 35) else set())
        found = [f for f in found if f.control not in replaced] + list(_restricted(pod, ver))
    return found


def admits(pod: dict[str, Any], level: Level, version: str = LATEST) -> bool:
    return not violations(pod, level, version)


def enforced_level(namespace: dict[str, Any]) -> Level:
    """The level a Namespace object enforces (`privileged` when it sets none, as the API server does)."""
    value = (namespace.get("metadata", {}).get("labels") or {}).get(ENFORCE, "privileged")
    assert value in LEVELS, f"unknown Pod Security level {value!r}"
    return value
