"""Kubernetes API objects as typed settings: the shapes a stack file may hand to a pod spec as they are
(placement, extra env, volumes, containers), checked where they are declared.

Each model mirrors one Kubernetes API type, field for field, with the API's camelCase keys, so a
block copied from a manifest or the Kubernetes docs works here unchanged. Fields this program does not
pass through are left out on purpose (an unknown key is an error naming what is allowed), and so are
the ones Pod Security `restricted` (which Airflow's namespace enforces) would refuse: host paths,
host ports, privilege. `KubeModel.KIND` names the API type; the config reference shows each as one
row linking to the Kubernetes reference instead of expanding every nested field.

`dump()` gives the manifest: camelCase, unset fields left out.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from components.settings import DNS1123_LABEL, Quantity, SettingsModel, bad, has_control_character

# apimachinery validation: a qualified name (label keys, taint keys, topology keys) and a label value.
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUALIFIED_NAME = rf"^({_PREFIX}/)?{_NAME_PART}$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# An environment variable name as the API validates it before 1.34 relaxed it (C identifiers plus
# '-' and '.'); the strict form keeps a stack valid on every version this project supports.
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def _qualified(value: str) -> str:
    if len(value.rsplit("/", 1)[0]) > 253 or not re.fullmatch(QUALIFIED_NAME, value):
        raise ValueError(
            f"{value!r} is not a Kubernetes qualified name such as 'kubernetes.io/hostname' or 'gpu' "
            "(an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_', '.')"
        )
    return value


QualifiedName = Annotated[str, AfterValidator(_qualified)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]
Subdomain = Annotated[str, Field(pattern=DNS1123_SUBDOMAIN, max_length=253)]
Label = Annotated[str, Field(pattern=DNS1123_LABEL, max_length=63)]
EnvName = Annotated[str, Field(pattern=ENV_NAME, max_length=253)]


def _mount_path(value: str) -> str:
    if not value.startswith("/") or has_control_character(value) or any(p == ".." for p in value.split("/")):
        raise ValueError(f"{value!r} must be an absolute path without '..' or control characters")
    return value.rstrip("/") or "/"


MountPath = Annotated[str, AfterValidator(_mount_path)]


class KubeModel(SettingsModel):
    """A Kubernetes API type, mirrored: KIND is its name in the Kubernetes API reference."""

    KIND: ClassVar[str] = ""

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def dump(value: Any) -> Any:
    """A KubeModel, or a list or map of them, as manifest data."""
    if isinstance(value, KubeModel):
        return value.dump()
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


# ---- selectors ---------------------------------------------------------------------------------


def _check_values(operator: str, values: list[str] | None) -> None:
    """A selector requirement's values, as the API server checks them for its operator."""
    if operator in ("In", "NotIn") and not values:
        raise bad("values", f"operator {operator} needs at least one value")
    if operator in ("Exists", "DoesNotExist") and values:
        raise bad("values", f"must be empty with operator {operator}")
    if operator in ("Gt", "Lt") and (not values or len(values) != 1 or not re.fullmatch(r"-?\d+", values[0])):
        raise bad("values", f"operator {operator} takes exactly one integer value")


class LabelSelectorRequirement(KubeModel):
    KIND = "LabelSelectorRequirement"
    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] | None = None

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        _check_values(self.operator, self.values)
        return self


class LabelSelector(KubeModel):
    KIND = "LabelSelector"
    match_labels: dict[QualifiedName, LabelValue] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class NodeSelectorRequirement(KubeModel):
    KIND = "NodeSelectorRequirement"
    key: str = Field(..., min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values(self) -> NodeSelectorRequirement:
        _check_values(self.operator, self.values)
        return self


class NodeSelectorTerm(KubeModel):
    KIND = "NodeSelectorTerm"
    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeSelectorRequirement] | None = None


class NodeSelector(KubeModel):
    KIND = "NodeSelector"
    node_selector_terms: list[NodeSelectorTerm] = Field(..., min_length=1)


class PreferredSchedulingTerm(KubeModel):
    KIND = "PreferredSchedulingTerm"
    weight: int = Field(..., ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(KubeModel):
    KIND = "NodeAffinity"
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = None


class PodAffinityTerm(KubeModel):
    KIND = "PodAffinityTerm"
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: list[Label] | None = None
    topology_key: QualifiedName
    match_label_keys: list[QualifiedName] | None = None
    mismatch_label_keys: list[QualifiedName] | None = None


class WeightedPodAffinityTerm(KubeModel):
    KIND = "WeightedPodAffinityTerm"
    weight: int = Field(..., ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(KubeModel):
    KIND = "PodAffinity"
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = None


class Affinity(KubeModel):
    KIND = "Affinity"
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


# ---- placement ---------------------------------------------------------------------------------


class Toleration(KubeModel):
    KIND = "Toleration"
    key: QualifiedName | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Toleration:
        # The API server's own rules (core/validation ValidateTolerations).
        if not self.key and self.operator != "Exists":
            raise bad("operator", "must be 'Exists' when key is empty (that tolerates every taint)")
        if self.operator == "Exists" and self.value:
            raise bad("value", "must be empty with operator 'Exists'")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise bad("tolerationSeconds", "only applies to effect 'NoExecute'")
        return self

    def dump(self) -> dict[str, Any]:
        out = super().dump()
        out["operator"] = self.operator  # explicit, even where it is the API's default
        return out


class TopologySpreadConstraint(KubeModel):
    KIND = "TopologySpreadConstraint"
    max_skew: int = Field(..., ge=1)
    topology_key: QualifiedName
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: int | None = Field(None, ge=1)
    match_label_keys: list[QualifiedName] | None = None
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None

    @model_validator(mode="after")
    def _min_domains(self) -> TopologySpreadConstraint:
        if self.min_domains is not None and self.when_unsatisfiable != "DoNotSchedule":
            raise bad("minDomains", "only applies to whenUnsatisfiable 'DoNotSchedule'")
        return self


# ---- environment -------------------------------------------------------------------------------


class KeyRef(KubeModel):
    KIND = "SecretKeySelector"
    name: Subdomain
    key: str = Field(..., pattern=r"^[-._a-zA-Z0-9]{1,253}$")
    optional: bool | None = None


class FieldRef(KubeModel):
    KIND = "ObjectFieldSelector"
    field_path: str = Field(..., min_length=1)
    api_version: str | None = None


class ResourceFieldRef(KubeModel):
    KIND = "ResourceFieldSelector"
    resource: str = Field(..., pattern=r"^(limits|requests)\.(cpu|memory|ephemeral-storage)$")
    container_name: Label | None = None
    divisor: Quantity | None = None


class EnvVarSource(KubeModel):
    KIND = "EnvVarSource"
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        given = [
            v for v in (self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref) if v
        ]
        if len(given) != 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef")
        return self


class EnvVar(KubeModel):
    KIND = "EnvVar"
    name: EnvName
    value: str | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise bad("value", f"{self.name}: set exactly one of value or valueFrom")
        if self.value is not None and has_control_character(self.value.replace("\n", "")):
            raise bad("value", f"{self.name}: contains a control character")
        return self


class LocalRef(KubeModel):
    KIND = "LocalObjectReference"
    name: Subdomain
    optional: bool | None = None


class EnvFromSource(KubeModel):
    KIND = "EnvFromSource"
    prefix: str | None = Field(None, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    secret_ref: LocalRef | None = None
    config_map_ref: LocalRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of secretRef or configMapRef")
        return self


# ---- volumes -----------------------------------------------------------------------------------


class KeyToPath(KubeModel):
    KIND = "KeyToPath"
    key: str = Field(..., min_length=1)
    path: str = Field(..., pattern=r"^[^/].*$")
    mode: int | None = Field(None, ge=0, le=0o777)


class ConfigMapVolume(KubeModel):
    KIND = "ConfigMapVolumeSource"
    name: Subdomain
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(None, ge=0, le=0o777)
    optional: bool | None = None


class SecretVolume(KubeModel):
    KIND = "SecretVolumeSource"
    secret_name: Subdomain
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(None, ge=0, le=0o777)
    optional: bool | None = None


class EmptyDirVolume(KubeModel):
    KIND = "EmptyDirVolumeSource"
    medium: Literal["", "Memory"] | None = None
    size_limit: Quantity | None = None


class ClaimVolume(KubeModel):
    KIND = "PersistentVolumeClaimVolumeSource"
    claim_name: Subdomain
    read_only: bool | None = None


class CsiVolume(KubeModel):
    KIND = "CSIVolumeSource"
    driver: Subdomain
    read_only: bool | None = None
    fs_type: str | None = None
    volume_attributes: dict[str, str] | None = None
    node_publish_secret_ref: LocalRef | None = None


class ServiceAccountTokenProjection(KubeModel):
    KIND = "ServiceAccountTokenProjection"
    audience: str | None = None
    expiration_seconds: int | None = Field(None, ge=600)
    path: str = Field(..., pattern=r"^[^/].*$")


class ProjectedKeys(KubeModel):
    KIND = "SecretProjection"  # ConfigMapProjection has the same fields
    name: Subdomain
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class VolumeProjection(KubeModel):
    KIND = "VolumeProjection"
    config_map: ProjectedKeys | None = None
    secret: ProjectedKeys | None = None
    service_account_token: ServiceAccountTokenProjection | None = None

    @model_validator(mode="after")
    def _one(self) -> VolumeProjection:
        if sum(1 for v in (self.config_map, self.secret, self.service_account_token) if v is not None) != 1:
            raise ValueError("set exactly one of configMap, secret or serviceAccountToken")
        return self


class ProjectedVolume(KubeModel):
    KIND = "ProjectedVolumeSource"
    sources: list[VolumeProjection] = Field(..., min_length=1)
    default_mode: int | None = Field(None, ge=0, le=0o777)


# The inline volume sources Pod Security `restricted` admits (hostPath and the rest are refused):
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ ("Volume Types").
class Volume(KubeModel):
    KIND = "Volume"
    name: Label
    config_map: ConfigMapVolume | None = None
    secret: SecretVolume | None = None
    empty_dir: EmptyDirVolume | None = None
    persistent_volume_claim: ClaimVolume | None = None
    csi: CsiVolume | None = None
    projected: ProjectedVolume | None = None

    @model_validator(mode="after")
    def _one(self) -> Volume:
        given = [
            f
            for f in ("config_map", "secret", "empty_dir", "persistent_volume_claim", "csi", "projected")
            if getattr(self, f) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"volume {self.name!r}: set exactly one of configMap, secret, emptyDir, persistentVolumeClaim, csi or "
                "projected (the sources Pod Security 'restricted' admits)"
            )
        return self


class VolumeMount(KubeModel):
    KIND = "VolumeMount"
    name: Label
    mount_path: MountPath
    sub_path: str | None = Field(None, pattern=r"^[^/]")
    read_only: bool | None = None

    @model_validator(mode="after")
    def _sub_path(self) -> VolumeMount:
        if self.sub_path is not None and ".." in self.sub_path.split("/"):
            raise bad("subPath", "must not contain '..'")
        return self


# ---- containers --------------------------------------------------------------------------------


class Capabilities(KubeModel):
    KIND = "Capabilities"
    add: list[Literal["NET_BIND_SERVICE"]] | None = None
    drop: list[str] | None = None


class SeccompProfile(KubeModel):
    KIND = "SeccompProfile"
    type: Literal["RuntimeDefault", "Localhost"]
    localhost_profile: str | None = None

    @model_validator(mode="after")
    def _localhost(self) -> SeccompProfile:
        if (self.type == "Localhost") != bool(self.localhost_profile):
            raise bad("localhostProfile", "is required with type 'Localhost', and only with it")
        return self


class SecurityContext(KubeModel):
    """What a container may change of the program's restricted defaults (components/k8s.py
    `container_security`): only towards what Pod Security `restricted` still admits."""

    KIND = "SecurityContext"
    allow_privilege_escalation: bool | None = None
    privileged: bool | None = None
    read_only_root_filesystem: bool | None = None
    run_as_non_root: bool | None = None
    run_as_user: int | None = Field(None, ge=1, description="Not 0: Pod Security 'restricted' refuses root.")
    run_as_group: int | None = Field(None, ge=0)
    capabilities: Capabilities | None = None
    seccomp_profile: SeccompProfile | None = None

    @model_validator(mode="after")
    def _drops_all(self) -> SecurityContext:
        for key, value, allowed in (
            ("privileged", self.privileged, False),
            ("allowPrivilegeEscalation", self.allow_privilege_escalation, False),
            ("runAsNonRoot", self.run_as_non_root, True),
        ):
            if value is not None and value != allowed:
                raise bad(
                    key, f"must be {str(allowed).lower()}: Airflow's namespace enforces Pod Security 'restricted'"
                )
        if self.capabilities is not None and "ALL" not in (self.capabilities.drop or []):
            raise bad("capabilities.drop", "must include 'ALL' (Pod Security 'restricted')")
        return self


class ContainerPort(KubeModel):
    KIND = "ContainerPort"
    name: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15)
    container_port: int = Field(..., ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class ResourceRequirements(KubeModel):
    KIND = "ResourceRequirements"
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class HttpHeader(KubeModel):
    KIND = "HTTPHeader"
    name: str
    value: str


class HttpGet(KubeModel):
    KIND = "HTTPGetAction"
    path: str | None = None
    port: int | str
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: list[HttpHeader] | None = None


class TcpSocket(KubeModel):
    KIND = "TCPSocketAction"
    port: int | str


class ExecAction(KubeModel):
    KIND = "ExecAction"
    command: list[str] = Field(..., min_length=1)


class Probe(KubeModel):
    KIND = "Probe"
    exec: ExecAction | None = None
    http_get: HttpGet | None = None
    tcp_socket: TcpSocket | None = None
    initial_delay_seconds: int | None = Field(None, ge=0)
    period_seconds: int | None = Field(None, ge=1)
    timeout_seconds: int | None = Field(None, ge=1)
    success_threshold: int | None = Field(None, ge=1)
    failure_threshold: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> Probe:
        if sum(1 for h in (self.exec, self.http_get, self.tcp_socket) if h is not None) != 1:
            raise ValueError("set exactly one of exec, httpGet or tcpSocket")
        return self


class Container(KubeModel):
    """An extra (init or sidecar) container. Its securityContext starts from the program's restricted
    defaults; what it sets may only keep the pod within Pod Security `restricted`."""

    KIND = "Container"
    name: Label
    image: str = Field(..., min_length=1, pattern=r"^\S+$")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    security_context: SecurityContext | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    restart_policy: Literal["Always"] | None = Field(
        None, description="'Always' on an init container makes it a native sidecar (Kubernetes 1.29+)."
    )
