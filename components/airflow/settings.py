"""The Airflow component's settings (`airflow-k8s:airflow`): every field typed, defaulted to what a
production user would choose, and described where it is declared (the README's reference is
generated from these descriptions)."""

from __future__ import annotations

import base64
import math
import re
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from components.airflow import pools as pools_job
from components.airflow.autoscaling import KEDA_CONNECTIONS_PER_SCALED_OBJECT, Autoscaling, Keda
from components.airflow.housekeeping_settings import Housekeeping
from components.airflow.metrics import STATSD_OWNED_OPTIONS, Statsd
from components.airflow.pools import Pool, check_pools
from components.airflow.sso import CLIENT_SECRET_VARIABLE, Sso
from components.kube_types import (
    Affinity,
    Container,
    EnvFromSource,
    EnvVar,
    LabelValue,
    QualifiedName,
    Subdomain,
    Toleration,
    TopologySpreadConstraint,
    Volume,
    VolumeMount,
)
from components.settings import (
    DnsLabel,
    Quantity,
    Resources,
    SettingsModel,
    bad,
    defaults,
    has_control_character,
    parse_quantity,
    resources_field,
)

# The one place the Airflow version is set: the image tag (and the e2e lock file tracks it).
AIRFLOW_VERSION = "3.3.2"

# Paths inside Airflow containers that the program mounts (env.py and pods.py use them).
HOME = "/opt/airflow"
LOGS = f"{HOME}/logs"
CONFIG_DIR = f"{HOME}/config"
POD_TEMPLATE_DIR = f"{HOME}/pod_templates"
SIMPLE_AUTH_DIR = f"{HOME}/simple_auth"
# Where the metadata DB's CA bundle is mounted read-only when the stack supplies one (the database
# URLs point here; a bundle already in the image is used where it is).
DB_CA_DIR = f"{HOME}/db-ca"
# The volumes the program puts in Airflow pods, and where the Airflow container mounts them (the DAG
# folder is `dags.folder`): an extra volume or mount may not take a name or path of these.
GENERATED_VOLUMES = frozenset(
    {"tmp", "config", "logs", "dags", "db-ca", "pod-template", "simple-auth", "local-settings", pools_job.VOLUME}
)
GENERATED_PATHS = ("/tmp", CONFIG_DIR, LOGS, DB_CA_DIR, POD_TEMPLATE_DIR, SIMPLE_AUTH_DIR, pools_job.MOUNT)
# Names of the program's helper containers in Airflow pods (and the task pod template's `base`); the
# Airflow container itself is named after its component, which roster.py checks.
GENERATED_CONTAINERS = ("base", "wait-for-migrations", "git-sync", "git-sync-init")
# Environment variables the program sets that are not `AIRFLOW__<section>__<option>` (those are
# OWNED_OPTIONS below): extraEnv may not shadow them.
GENERATED_ENV = {
    "AIRFLOW_HOME": "the image's Airflow home",
    "AIRFLOW_CONFIG": "the pods' config path",
    "AIRFLOW_CONN_KUBERNETES_DEFAULT": "airflow.podOperator (or airflow.connections)",
    "DUMB_INIT_SETSID": "the worker's warm shutdown",
    "CONNECTION_CHECK_MAX_COUNT": "the image entrypoint's DB check",
    "ADMIN_USER": "the admin-user Job",
    "ADMIN_EMAIL": "the admin-user Job",
    "ADMIN_PASSWORD": "the admin-user Job",
    "FLOWER_BASIC_AUTH": "Flower's generated basic-auth login",
    "CLEANUP_NAMESPACES": "the pod-cleanup CronJob (airflow.housekeeping.podCleanup)",
    CLIENT_SECRET_VARIABLE: "airflow.auth.sso.clientSecret",
    "AIRFLOW_CONN_GIT_DAGS": "airflow.dags.git.ssh (GitDagBundle's connection, GIT_CONNECTION_ID)",
    # The cloud stacks' task-log connections (components/aws/storage.py, components/azure/storage.py).
    "AIRFLOW_CONN_AWS_TASK_LOGS": "the aws stack's task logs",
    "AIRFLOW_CONN_AZURE_TASK_LOGS": "the azure stack's task logs",
}


# The image reference grammar of distribution/reference (what kubelet and containerd parse).
_DOMAIN = r"[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"


def _repository(value: str) -> str:
    """A repository without tag or digest: `[domain[:port]/]path`, the path in lower case."""
    shape = "an image repository such as 'apache/airflow' or 'registry.example.com:5000/team/airflow'"
    if "@" in value or re.search(r":[^/]*$", value.split("/", 1)[1] if "/" in value else value):
        raise ValueError(f"{value!r} carries a tag or digest: give {shape} and the tag in image.tag")
    first, _, rest = value.partition("/")
    # As distribution/reference splits it: the first component is a registry when it looks like a host.
    is_domain = bool(rest) and (any(c in first for c in ".:") or first == "localhost" or first != first.lower())
    path = rest if is_domain else value
    if (is_domain and not re.fullmatch(_DOMAIN, first)) or not all(
        re.fullmatch(_PATH_COMPONENT, part) for part in path.split("/")
    ):
        raise ValueError(f"{value!r} is not {shape} (path components in lower case: letters, digits, '.', '_', '-')")
    return value


class Image(SettingsModel):
    repository: Annotated[str, AfterValidator(_repository)] = Field(
        "apache/airflow", description="Airflow image repository, without the tag."
    )
    tag: str = Field(
        AIRFLOW_VERSION,
        description="Exact Airflow image tag; a new tag gives a new migration Job.",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", description="Image pull policy.")

    @field_validator("tag")
    @classmethod
    def _no_latest(cls, v: str) -> str:
        if v == "latest":
            raise ValueError("must be an exact tag such as '3.3.2', not 'latest'")
        return v


class Placement(SettingsModel):
    """Where pods may run. Each field mirrors the pod spec's own; unset inherits (a component from
    `airflow.placement`), and a set field replaces the inherited one whole: an empty list or map
    clears it."""

    # The config reference lists these keys once, under `airflow.placement`.
    DOC_ONCE: ClassVar[bool] = True

    node_selector: dict[QualifiedName, LabelValue] | None = Field(
        None, description="Node labels the pods require (pod `nodeSelector`)."
    )
    tolerations: list[Toleration] | None = Field(None, description="Taints the pods tolerate (GPU, spot pools).")
    affinity: Affinity | None = Field(None, description="Node and pod (anti-)affinity, as in the pod spec.")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        None,
        description=(
            "Replaces the program's soft spread over nodes and zones; a constraint without labelSelector "
            "selects the component's own pods."
        ),
    )
    priority_class_name: Subdomain | None = Field(None, description="An existing PriorityClass.")

    def over(self, default: Placement | None) -> Placement:
        """This placement with every unset field taken from `default` (per field, no deeper merge)."""
        if default is None:
            return self
        return self.model_copy(
            update={
                name: getattr(default, name)
                for name in type(self).model_fields
                if getattr(self, name) is None and getattr(default, name) is not None
            }
        )


def _env_problem(e: EnvVar) -> str | None:
    """Why `e` may not be an extra env variable of an Airflow container, if it may not."""
    name = e.name
    if name in GENERATED_ENV:
        return f"{name} is set by the program ({GENERATED_ENV[name]})"
    m = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", name)
    if m:
        option = f"{m.group(1).lower()}.{m.group(2).lower()}"
        if option in OWNED_OPTIONS:
            return f"{name} is set by the program ({OWNED_OPTIONS[option]})"
    return _plain_secret(e)


def _plain_secret(e: EnvVar) -> str | None:
    if e.value is None:
        return None
    name = e.name
    if name.startswith("AIRFLOW_CONN_") or SECRET_OPTION.search(name.lower()):
        return (
            f"{name} looks like a secret, and a plain value is plain text in the pod spec: use "
            "valueFrom.secretKeyRef (or airflow.connections for a connection)"
        )
    return None


def _unique(items: list[Any], what: str, key: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        name = getattr(item, "name", None) or getattr(item, "mount_path", "")
        if name in seen:
            raise bad(f"{key}.{i}", f"{what} {name!r} is declared twice")
        seen.add(name)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


class PodOptions(SettingsModel):
    """Placement and escape hatches of one component's pods (components/airflow/roster.py says which
    component reads which block). Everything here is checked like the rest of the config: extra env
    never shadows what the program sets, a mount names a declared volume and never a generated path,
    and extra containers keep the pod within Pod Security `restricted`."""

    # Generated volumes an extra container may mount too (a log shipper reads `logs`).
    SHARED_VOLUMES: ClassVar[frozenset[str]] = frozenset({"logs"})

    placement: Placement | None = Field(
        None, description="Placement of these pods; each field set here replaces `airflow.placement`'s."
    )
    extra_env: list[EnvVar] = Field(
        default_factory=list,
        description="Env of the Airflow container (value, or valueFrom secretKeyRef/configMapKeyRef/fieldRef); "
        "never a variable the program sets.",
    )
    extra_env_from: list[EnvFromSource] = Field(
        default_factory=list,
        description="Whole Secrets/ConfigMaps as env of the Airflow container (the program's own env wins).",
    )
    extra_volumes: list[Volume] = Field(
        default_factory=list,
        description="Volumes added to the pod (configMap, secret, emptyDir, persistentVolumeClaim, csi, projected).",
    )
    extra_volume_mounts: list[VolumeMount] = Field(
        default_factory=list, description="Mounts of extraVolumes in the Airflow container."
    )
    extra_init_containers: list[Container] = Field(
        default_factory=list,
        description="Init containers run before the program's own (restartPolicy Always: a native sidecar).",
    )
    extra_containers: list[Container] = Field(
        default_factory=list, description="Sidecar containers beside the Airflow container."
    )

    @model_validator(mode="after")
    def _coherent(self) -> PodOptions:
        for i, e in enumerate(self.extra_env):
            problem = _env_problem(e)
            if problem:
                raise bad(f"extraEnv.{i}.name", problem)
        _unique(self.extra_env, "variable", "extraEnv")
        _unique(self.extra_volumes, "volume", "extraVolumes")
        _unique(self.extra_volume_mounts, "mount path", "extraVolumeMounts")
        for i, v in enumerate(self.extra_volumes):
            if v.name in GENERATED_VOLUMES:
                raise bad(f"extraVolumes.{i}.name", f"{v.name!r} is a volume the program makes; choose another name")
        declared = {v.name for v in self.extra_volumes}
        for i, m in enumerate(self.extra_volume_mounts):
            if m.name not in declared:
                raise bad(
                    f"extraVolumeMounts.{i}.name",
                    f"{m.name!r} is not in extraVolumes (declared: {', '.join(sorted(declared)) or 'none'})",
                )
            if HOME.startswith(m.mount_path.rstrip("/") + "/") or m.mount_path == HOME:
                raise bad(
                    f"extraVolumeMounts.{i}.mountPath",
                    f"{m.mount_path!r} would hide Airflow's home {HOME!r}; mount into a folder of its own",
                )
            for path in GENERATED_PATHS:
                if _overlaps(m.mount_path, path):
                    raise bad(
                        f"extraVolumeMounts.{i}.mountPath",
                        f"{m.mount_path!r} collides with {path!r}, which the program mounts or needs",
                    )
        names: list[str] = list(GENERATED_CONTAINERS)
        for key in ("extra_init_containers", "extra_containers"):
            camel = "extraInitContainers" if key == "extra_init_containers" else "extraContainers"
            containers: list[Container] = getattr(self, key)
            for i, c in enumerate(containers):
                if c.name in names:
                    raise bad(f"{camel}.{i}.name", f"container {c.name!r} is already in the pod; choose another name")
                names.append(c.name)
                if c.restart_policy and key == "extra_containers":
                    raise bad(f"{camel}.{i}.restartPolicy", "only applies to init containers (native sidecars)")
                for j, e in enumerate(c.env or []):
                    problem = _plain_secret(e)
                    if problem:
                        raise bad(f"{camel}.{i}.env.{j}.name", problem)
                shareable = declared | self.SHARED_VOLUMES
                for j, m in enumerate(c.volume_mounts or []):
                    if m.name not in shareable:
                        raise bad(
                            f"{camel}.{i}.volumeMounts.{j}.name",
                            f"{m.name!r} is not in extraVolumes (or one of {', '.join(sorted(self.SHARED_VOLUMES))})",
                        )
        return self

    def env_names(self) -> set[str]:
        return {e.name for e in self.extra_env}


class JobPodOptions(PodOptions):
    # The Jobs' pods have no log volume.
    SHARED_VOLUMES: ClassVar[frozenset[str]] = frozenset()


class Component(PodOptions):
    replicas: int = Field(2, ge=1, le=50, description="Replicas.")
    resources: Resources = resources_field("250m", "512Mi", "1Gi")


class ApiServer(Component):
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Service type of the UI/API; LoadBalancer creates a cloud load balancer."
    )
    resources: Resources = resources_field("250m", "1Gi", "2Gi")


class Scheduler(Component):
    resources: Resources = resources_field("500m", "1Gi", "2Gi")


class DagProcessor(Component):
    replicas: int = Field(1, ge=1, le=20, description="Replicas.")
    resources: Resources = resources_field("250m", "1Gi", "2Gi")


class Triggerer(Component):
    pass


# A Celery worker's memory: the Celery parent with its prefork pool, then per running task a
# supervisor and a task runner (Airflow 3 forks both). Measured in the e2e suite at full
# concurrency (tests/e2e/test_airflow_e2e.py prints it): 409-631 MiB idle and 944-960 MiB with 8
# sleeping tasks (PSS, Airflow 3.3.2), i.e. 41-67 MiB per task over idle. The floor keeps headroom over that for real task code (a task that
# imports pandas alone adds ~100 MiB), and the default limit is the floor.
WORKER_BASE_MIB = 512
WORKER_TASK_MIB = 192


def worker_memory_floor(concurrency: int) -> int:
    """The smallest memory limit (bytes) a worker running `concurrency` tasks is allowed."""
    mib = WORKER_BASE_MIB + concurrency * WORKER_TASK_MIB
    return math.ceil(mib / 256) * 256 * 2**20


# A Celery queue name: it becomes `celery worker --queues a,b` and a literal in KEDA's SQL query,
# so no comma, quote or space; Airflow's task_instance.queue column is 256 characters.
Queue = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=256)]


class Workers(Component):
    replicas: int = Field(2, ge=0, le=200, description="Celery worker replicas (0 to scale to none).")
    concurrency: int = Field(16, ge=1, le=256, description="Celery worker concurrency per replica.")
    resources: Resources = Field(
        default_factory=defaults(Resources),
        description=(
            f"Requests and limits; the memory limit defaults to {WORKER_BASE_MIB}Mi + {WORKER_TASK_MIB}Mi per "
            "concurrent task (rounded up to 256Mi) and may not be set below that."
        ),
    )
    storage_size: Quantity | None = Field(
        None, description="Per-worker log volume (PVC) size; unset means an emptyDir."
    )
    storage_class: str | None = Field(
        None,
        description="StorageClass of the per-worker log volumes; unset: the cluster default (on a cluster the aws "
        "stack creates, its encrypted gp3 class).",
    )
    queues: list[Queue] | None = Field(
        None,
        min_length=1,
        description="Celery queues these workers consume; unset: Airflow's default queue ([operators] "
        "default_queue, 'default').",
    )
    autoscaling: Autoscaling = Field(
        default_factory=defaults(Autoscaling),
        description="KEDA autoscaling on queued plus running tasks; replicas is then only the count at creation.",
    )

    @model_validator(mode="after")
    def _memory_holds_concurrency(self) -> Workers:
        floor = worker_memory_floor(self.concurrency)
        r = self.resources
        explicit = "resources" in self.model_fields_set and "memory_limit" in r.model_fields_set
        if not explicit:
            update: dict[str, Any] = {"memory_limit": f"{floor // 2**20}Mi"}
            if "resources" not in self.model_fields_set or "cpu_request" not in r.model_fields_set:
                update["cpu_request"] = "500m"
            if "resources" not in self.model_fields_set or "memory_request" not in r.model_fields_set:
                update["memory_request"] = "1Gi"
            object.__setattr__(self, "resources", r.model_copy(update=update))
        elif parse_quantity(r.memory_limit) < floor:
            raise bad(
                "resources.memoryLimit",
                f"{r.memory_limit} cannot hold {self.concurrency} concurrent tasks: at least "
                f"{floor // 2**20}Mi ({WORKER_BASE_MIB}Mi + {WORKER_TASK_MIB}Mi per task); "
                "raise it or lower concurrency",
            )
        return self


class WorkerSet(Workers):
    """One more group of Celery workers (`airflow.workerSets[*]`): its own queues, concurrency,
    resources, placement and autoscaling, in a StatefulSet `<instance>-worker-<name>`; it shares the
    workers' ServiceAccount, rights and secrets (components/airflow/roster.py, row `worker`)."""

    name: str = Field(
        ...,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,22}[a-z0-9])?$",
        description="The group's name (DNS label, at most 24 characters): objects are <instance>-worker-<name>.",
    )
    queues: list[Queue] = Field(  # type: ignore[assignment]  # required here, optional on airflow.workers
        ..., min_length=1, description="Celery queues the group consumes (a task picks one with its `queue`)."
    )

    @field_validator("name")
    @classmethod
    def _not_a_claims_suffix(cls, v: str) -> str:
        # The default workers' StatefulSet with a log claim is `<instance>-worker-<6 hex digits>`
        # (workloads.claims_suffix): a group of such a name could take the same object name.
        if re.fullmatch(r"[0-9a-f]{6}", v):
            raise ValueError(f"{v!r} looks like the suffix of the default workers' StatefulSet; choose another name")
        return v


# The components-table row (roster.py) every Celery worker group is, and the default group's label.
WORKER = "worker"


class WorkerGroup(NamedTuple):
    """A Celery worker group as the connection budget and KEDA see it."""

    component: str  # the pods' component label: `worker`, or `worker-<name>` for a worker set
    key: str  # its config key under airflow-k8s:airflow
    concurrency: int
    max_replicas: int  # replicas, or autoscaling.maxReplicas when autoscaled
    queues: tuple[str, ...]
    autoscaled: bool
    settings: Workers  # airflow.workers or the worker set


class Flower(PodOptions):
    enabled: bool = Field(False, description="Run Celery Flower (needs the Celery executor).")
    user: str = Field(
        "flower",
        pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
        description="Flower's basic-auth user; its password is generated (outputs flowerUser, flowerPassword).",
    )
    resources: Resources = resources_field("100m", "256Mi", "512Mi")


class Auth(SettingsModel):
    manager: Literal["fab", "simple"] = Field(
        "fab",
        description="'fab': FabAuthManager with a generated admin; 'simple': SimpleAuthManager, local play only.",
    )
    admin_user: str = Field("admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="Admin user name.")
    admin_email: str = Field("admin@example.com", description="Admin e-mail (FAB only).")
    sso: Sso | None = Field(
        None, description="Single sign-on for the UI through an OAuth/OpenID Connect provider (needs manager 'fab')."
    )

    @model_validator(mode="after")
    def _sso_needs_fab(self) -> Auth:
        if self.sso is not None and self.manager != "fab":
            raise bad("sso", f"needs manager 'fab' (FAB's OAuth login); manager is '{self.manager}'")
        return self

    @property
    def local_admin(self) -> bool:
        """Whether the generated FAB admin is created (and exported)."""
        return self.manager == "fab" and (self.sso is None or self.sso.keep_local_admin)


# The Airflow connection through which GitDagBundle gets the deploy key (components/airflow/git_ssh.py).
GIT_CONNECTION_ID = "git_dags"
# Where a repository URL says ssh: `ssh://...`, `git+ssh://...` or scp-like `user@host:path` (what
# git itself reads as ssh; GitHook and git-sync hand such URLs to ssh as they are).
_SSH_URL = re.compile(r"^(ssh://|git\+ssh://|[^/@:]+@[^/:]+:)")
# One known_hosts line (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"): an optional @cert-authority or
# @revoked marker, comma-separated host patterns (or a hashed `|1|salt|hash`), a key type, and the
# base64 key, then an optional comment.
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
)
_KNOWN_HOST = re.compile(
    r"^(@(cert-authority|revoked)\s+)?(?P<hosts>\S+)\s+(?P<type>\S+)\s+(?P<key>[A-Za-z0-9+/]+={0,3})(\s+.*)?$"
)
# A private key in one of the encodings OpenSSH reads (its own, PKCS#1/SEC1 and PKCS#8 PEM).
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<kind>OPENSSH|RSA|EC|DSA|ENCRYPTED)? ?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=:,\- \r\n]+"
    r"-----END (?P=kind)? ?PRIVATE KEY-----\s*"
)


def _known_hosts(value: str) -> str:
    """Loosely, each non-comment line of a known_hosts file: catches an empty file, a fingerprint,
    a bare public key or an unknown key type, not every malformed key."""
    lines = [ln.strip() for ln in value.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise ValueError(
            "is empty: give the server's host keys as known_hosts lines ('HOST KEYTYPE BASE64KEY', e.g. from "
            "`ssh-keyscan HOST`, checked against the fingerprints the git host publishes)"
        )
    for n, line in enumerate(lines, 1):
        m = _KNOWN_HOST.match(line)
        if m is None or m.group("type") not in _KEY_TYPES or len(m.group("key")) < 60:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise ValueError(
                f"line {n} ({shown!r}) is not a known_hosts entry: expected 'HOST[,HOST...] KEYTYPE BASE64KEY' "
                f"with KEYTYPE one of {', '.join(_KEY_TYPES[:5])}, ... (ssh-keyscan prints such lines)"
            )
    return value


def _private_key(value: SecretStr) -> SecretStr:
    """An unencrypted private key OpenSSH can read; the messages never echo the value."""
    text = value.get_secret_value().strip()
    if text.startswith(_KEY_TYPES) or text.startswith("---- BEGIN SSH2 PUBLIC KEY"):
        raise ValueError(
            "is a public key: give the private half of the deploy key (its public half goes to the git host)"
        )
    m = _PRIVATE_KEY.fullmatch(text + "\n")
    if m is None:
        raise ValueError(
            "is not a private key: expected the whole file, from '-----BEGIN OPENSSH PRIVATE KEY-----' (or "
            "'-----BEGIN RSA/EC PRIVATE KEY-----') to its END line, with its line breaks"
        )
    if (
        m.group("kind") == "ENCRYPTED"
        or "Proc-Type: 4,ENCRYPTED" in text
        or _openssh_cipher(text) not in ("none", None)
    ):
        raise ValueError("is protected by a passphrase, which git-sync cannot enter: use a key without one")
    return value


def _openssh_cipher(text: str) -> str | None:
    """The cipher an OpenSSH-format key is encrypted with ('none' when it is not; OpenSSH's
    PROTOCOL.key: "openssh-key-v1\\0", then the cipher name as a length-prefixed string)."""
    if not text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):
        return None
    body = "".join(text.splitlines()[1:-1])
    try:
        blob = base64.b64decode(body, validate=False)
    except ValueError:
        return None
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return None
    n = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
    return blob[len(magic) + 4 : len(magic) + 4 + n].decode("ascii", "replace")


class GitSsh(SettingsModel):
    """A deploy key for an ssh repository; strict host key checking is always on."""

    secret: DnsLabel | None = Field(
        None,
        description=(
            "Existing Secret in the namespace holding the key as `ssh` and the host keys as `known_hosts` "
            "(git-sync's layout); instead of privateKey/knownHosts."
        ),
    )
    private_key: SecretStr | None = Field(
        None,
        description=(
            "The deploy key (OpenSSH or PEM private key, no passphrase); must be a Pulumi secret: "
            "`pulumi config set --secret --path airflow.dags.git.ssh.privateKey < key`."
        ),
    )
    known_hosts: str | None = Field(
        None,
        description=(
            "The git server's host keys as known_hosts lines (e.g. from `ssh-keyscan`, checked against the "
            "fingerprints the host publishes); required with privateKey."
        ),
    )

    @field_validator("known_hosts")
    @classmethod
    def _check_known_hosts(cls, v: str | None) -> str | None:
        return v if v is None else _known_hosts(v)

    @field_validator("private_key")
    @classmethod
    def _check_private_key(cls, v: SecretStr | None) -> SecretStr | None:
        return v if v is None else _private_key(v)

    @model_validator(mode="after")
    def _one_source(self) -> GitSsh:
        if self.secret and (self.private_key is not None or self.known_hosts is not None):
            key = "privateKey" if self.private_key is not None else "knownHosts"
            raise bad(key, f"comes from Secret '{self.secret}' (keys `ssh` and `known_hosts`); set one or the other")
        if not self.secret and self.private_key is None:
            raise bad("privateKey", "is required (or name an existing Secret in 'secret')")
        if self.private_key is not None and self.known_hosts is None:
            raise bad(
                "knownHosts",
                "is required with privateKey: strict host key checking is always on, so the server's host keys "
                "must be given (e.g. from `ssh-keyscan HOST`, checked against the host's published fingerprints)",
            )
        return self


class GitSource(SettingsModel):
    repo: str = Field(..., description="Git URL of the DAG repository (https:// or ssh).")
    ref: str = Field("main", description="Branch, tag or commit to check out.")
    sub_path: str = Field("", description="Folder inside the repository that holds the DAGs.")
    period_seconds: int = Field(60, ge=5, le=3600, description="How often git-sync pulls.")
    credentials_secret: DnsLabel | None = Field(
        None,
        description="Existing Secret in the namespace with GITSYNC_USERNAME/GITSYNC_PASSWORD (https) keys.",
    )
    image: str = Field("registry.k8s.io/git-sync/git-sync:v4.4.2", description="git-sync image.")
    ssh: GitSsh | None = Field(
        None, description="Deploy key and host keys for an ssh repository URL (ssh://, git@host:path)."
    )

    @field_validator("repo")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(https://|ssh://|git@|file://)\S+$", v):
            raise ValueError("must be a git URL starting with https://, ssh://, git@ or file://")
        return v

    @property
    def uses_ssh(self) -> bool:
        return bool(_SSH_URL.match(self.repo))

    @model_validator(mode="after")
    def _ssh_matches_url(self) -> GitSource:
        if self.uses_ssh and self.ssh is None:
            raise bad(
                "ssh",
                f"is required: repo {self.repo!r} is an ssh URL, and ssh needs a deploy key and the server's host "
                "keys (ssh.privateKey + ssh.knownHosts, or ssh.secret)",
            )
        if self.ssh is not None and not self.uses_ssh:
            raise bad("ssh", f"only applies to an ssh repo URL (ssh://... or git@host:path), not {self.repo!r}")
        if self.ssh is not None and self.credentials_secret:
            raise bad("credentialsSecret", "holds https credentials; an ssh repo authenticates with ssh")
        return self


class Dags(SettingsModel):
    source: Literal["volume", "gitSync", "image", "bundle"] = Field(
        "volume",
        description=(
            "'volume': a ReadWriteMany claim mounted read-only (optionally filled by one git-sync writer); "
            "'gitSync': git-sync sidecars, no volume; 'image': DAGs baked into the image; "
            "'bundle': Airflow 3 GitDagBundle."
        ),
    )
    claim_name: DnsLabel | None = Field(
        None, description="Existing claim to mount (volume source); unset lets the stack provide one."
    )
    git: GitSource | None = Field(
        None, description="Git repository: fills the volume (volume), feeds sidecars (gitSync) or the bundle."
    )
    folder: str = Field("/opt/airflow/dags", description="Where DAGs appear inside Airflow containers.")

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str) -> str:
        # A mount path: absolute, normalized, and not a directory the image or Airflow itself needs.
        if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", v) or any(p in (".", "..") for p in v.split("/")):
            raise ValueError(
                f"{v!r} must be an absolute path such as '/opt/airflow/dags' (letters, digits, '.', '_', '-')"
            )
        reserved = ("/opt/airflow", "/opt/airflow/logs", "/opt/airflow/config", "/tmp", "/home/airflow")
        if v in reserved or v.split("/")[1] in (
            "bin",
            "dev",
            "etc",
            "lib",
            "lib64",
            "proc",
            "sbin",
            "sys",
            "usr",
            "var",
        ):
            raise ValueError(
                f"{v!r} would hide a directory the image needs; use a folder of its own such as '/opt/airflow/dags'"
            )
        return v

    @property
    def git_writer(self) -> bool:
        """Whether one git-sync Deployment fills the DAG volume (source `volume` with `git`)."""
        return self.source == "volume" and self.git is not None

    @model_validator(mode="after")
    def _needs_git(self) -> Dags:
        if self.source in ("gitSync", "bundle") and self.git is None:
            raise bad("git", f"source '{self.source}' needs 'git' (repo, ref, subPath)")
        if self.source in ("gitSync", "bundle", "image") and self.claim_name:
            raise bad("claimName", f"only applies to source 'volume', not '{self.source}'")
        if self.source == "image" and self.git is not None:
            raise bad("git", "names a repository, but source 'image' takes the DAGs baked into the image")
        return self


# Kinds that are not namespaced (the API's own, and the common add-ons'): an extra object lives in
# Airflow's namespace and goes with it, so none of these; cluster-wide objects belong to whoever runs
# the cluster. A kind named `Cluster...` is taken as cluster-scoped too (ClusterIssuer,
# ClusterSecretStore, ClusterPolicy).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService", "CertificateSigningRequest", "ComponentStatus", "CSIDriver", "CSINode",
        "CustomResourceDefinition", "DeviceClass", "FlowSchema", "IngressClass", "IPAddress",
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "MutatingWebhookConfiguration",
        "Namespace", "Node", "PersistentVolume", "PriorityClass", "PriorityLevelConfiguration",
        "ResourceSlice", "RuntimeClass", "ServiceCIDR", "StorageClass", "StorageVersionMigration",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration",
        "VolumeAttachment", "VolumeAttributesClass",
    }
)  # fmt: skip
SECRET_BODY = frozenset({"data", "stringData", "type", "immutable"})


class ObjectMeta(SettingsModel):
    name: Subdomain = Field(..., description="Object name.")
    namespace: DnsLabel | None = Field(None, description="Only Airflow's own namespace (the default).")
    labels: dict[QualifiedName, LabelValue] | None = Field(None, description="Labels.")
    annotations: dict[QualifiedName, str] | None = Field(None, description="Annotations.")


class ExtraObject(SettingsModel):
    """One Kubernetes object as in a manifest: apiVersion, kind, metadata, and the kind's own body
    (spec, data, rules, ...), which the API server checks."""

    model_config = ConfigDict(extra="allow")
    DOC_TYPE: ClassVar[str] = "Kubernetes object"

    api_version: str = Field(
        ...,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$",
        description="apiVersion, e.g. v1 or monitoring.coreos.com/v1.",
    )
    kind: str = Field(..., pattern=r"^[A-Z][A-Za-z0-9]{0,62}$", description="kind, e.g. ConfigMap.")
    metadata: ObjectMeta = Field(..., description="name (and labels, annotations).")

    @model_validator(mode="after")
    def _namespaced(self) -> ExtraObject:
        if self.kind in CLUSTER_SCOPED_KINDS or self.kind.startswith("Cluster"):
            raise bad(
                "kind",
                f"{self.kind} is cluster-scoped: extra objects live in Airflow's namespace (and go with it); "
                "cluster-wide objects belong to the cluster's own setup",
            )
        body = self.body
        for key in body:
            if key in ("status", "apiVersion", "kind", "metadata") or not re.fullmatch(r"[a-z][A-Za-z0-9]*", key):
                raise bad(key, "is not a field an object's body can have")
        if self.kind == "Secret" and self.api_version == "v1":
            for key in body:
                if key not in SECRET_BODY:
                    raise bad(key, f"is not a Secret field ({', '.join(sorted(SECRET_BODY))})")
            for key in ("data", "stringData"):
                value = body.get(key, {})
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise bad(key, "must map keys to string values")
        # Here, not at registration: a field or kind pulumi-kubernetes does not take would fail the
        # program halfway, after the resources before it were made. (Imported here: that module
        # builds the objects from this model.)
        from components.airflow.extra_objects import body_fields, kubernetes_class

        try:
            cls = kubernetes_class(self.api_version, self.kind)
        except ValueError as e:
            raise bad("kind", str(e)) from None
        if cls is not None:
            fields = body_fields(cls)
            for key in body:
                if key not in fields:
                    raise bad(key, f"is not a field of {self.api_version} {self.kind} (allowed: {', '.join(fields)})")
        return self

    @property
    def body(self) -> dict[str, Any]:
        """Everything but apiVersion, kind and metadata, as given (camelCase)."""
        return dict(self.model_extra or {})

    @property
    def identity(self) -> str:
        """group/kind/name: unique in a namespace, and the stable part of the resource's Pulumi name."""
        group = self.api_version.rpartition("/")[0] or "core"
        return f"{group}/{self.kind}/{self.metadata.name}"

    @property
    def secret_data(self) -> bool:
        return self.kind == "Secret" and any(self.body.get(k) for k in ("data", "stringData"))


class TaskPods(PodOptions):
    """The KubernetesExecutor's task pods (its pod template): resources come from airflow.workers."""


class Jobs(JobPodOptions):
    """The one-shot Jobs (the migration and the FAB admin user) and the Airflow CronJobs of housekeeping."""


class PodOperator(SettingsModel):
    placement: Placement | None = Field(
        None,
        description=(
            "Defaults for KubernetesPodOperator pods, applied by Airflow's pod_mutation_hook to each field the "
            "operator leaves unset (the provider has no setting of its own for them); not inherited from "
            "airflow.placement."
        ),
    )
    enabled: bool = Field(
        True,
        description=(
            "Tasks may use KubernetesPodOperator: workers, task pods and the triggerer may launch pods in the "
            "task namespace (kubernetes.taskNamespace) and get a `kubernetes_default` connection to it; false "
            "grants no pod rights."
        ),
    )


# airflow.cfg options the program sets itself, and what controls each: `airflow.config` may not
# override them (the stack would build for one executor while Airflow ran another, or a generated
# secret would be shadowed by a plain-text one in every pod).
OWNED_OPTIONS = {
    "core.executor": "airflow.executor",
    "core.auth_manager": "airflow.auth.manager",
    "core.fernet_key": "a generated secret",
    "core.dags_folder": "airflow.dags",
    "core.load_examples": "off: DAGs come from airflow.dags",
    "core.execution_api_server_url": "the api-server's in-cluster Service",
    "core.simple_auth_manager_users": "airflow.auth",
    "core.simple_auth_manager_passwords_file": "airflow.auth",
    "database.sql_alchemy_conn": "a generated secret from the stack's database",
    "database.sql_alchemy_conn_async": "a generated secret from the stack's database",
    "celery.broker_url": "a generated secret from the stack's broker",
    "celery.result_backend": "a generated secret from the stack's database",
    "celery.worker_concurrency": "airflow.workers.concurrency",
    "api_auth.jwt_secret": "a generated secret",
    "api.secret_key": "a generated secret",
    "api.base_url": "ui.host (https://<host>/)",
    "fab.config_file": "the rendered webserver_config.py",
    "kubernetes_executor.namespace": "kubernetes.namespace",
    "kubernetes_executor.pod_template_file": "the rendered pod template",
    "kubernetes_executor.delete_worker_pods": "the task-log design (logs outlive pods)",
    "logging.base_log_folder": "the pods' log mount",
    "logging.remote_logging": "the cloud stack's task logs",
    "logging.remote_base_log_folder": "the cloud stack's task logs",
    "logging.remote_log_conn_id": "the cloud stack's task logs",
    "azure_remote_logging.remote_wasb_log_container": "the azure stack's task logs",
    "logging.worker_log_server_port": "the worker's Service port",
    "logging.trigger_log_server_port": "the triggerer's Service port",
    "scheduler.enable_health_check": "the scheduler's probes",
    "scheduler.scheduler_health_check_server_port": "the scheduler's probes",
    "celery.flower_basic_auth": "airflow.flower (a generated password)",
    "metrics.statsd_on": "airflow.statsd",
    "metrics.statsd_host": "airflow.statsd",
    "metrics.statsd_port": "airflow.statsd",
    "metrics.statsd_prefix": "airflow.statsd",
    # Tags as labels on fixed names, no legacy copy with ids in the name (components/airflow/metrics.py).
    "metrics.statsd_influxdb_enabled": "airflow.statsd",
    "metrics.legacy_names_on": "airflow.statsd",
    "dag_processor.dag_bundle_config_list": "airflow.dags",
    "dag_processor.dag_bundle_storage_path": "airflow.dags",
}
# Set from airflow.auth.sso when SSO is on (free to set through airflow.config otherwise).
SSO_OWNED_OPTION = "fab.session_lifetime_minutes"
# Options that hold or fetch a secret: Airflow's `_cmd`/`_secret` variants run a command or read a
# secrets backend, and the rest carry credentials (e.g. smtp.smtp_password, webserver.secret_key).
SECRET_OPTION = re.compile(r"((^|_)(password|passwd|secret|secret_key|token|fernet_key)|_cmd)$")


class AirflowSettings(SettingsModel):
    image: Image = Field(default_factory=defaults(Image), description="Airflow image.")
    executor: Literal["CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"] = Field(
        "CeleryExecutor", description="Executor(s); both at once route tasks by queue."
    )
    auth: Auth = Field(default_factory=defaults(Auth), description="Authentication.")
    placement: Placement | None = Field(
        None,
        description="Default placement of every Airflow pod (components, Jobs, task pods, git-sync, statsd); "
        "a component's own placement replaces it field by field.",
    )
    api_server: ApiServer = Field(default_factory=defaults(ApiServer), description="api-server.")
    scheduler: Scheduler = Field(default_factory=defaults(Scheduler), description="Scheduler.")
    dag_processor: DagProcessor = Field(default_factory=defaults(DagProcessor), description="DAG processor.")
    triggerer: Triggerer = Field(default_factory=defaults(Triggerer), description="Triggerer.")
    workers: Workers = Field(default_factory=defaults(Workers), description="Celery workers.")
    worker_sets: list[WorkerSet] = Field(
        default_factory=list,
        description="More Celery worker groups, each with its own queues (see the README, Worker sets and autoscaling).",
    )
    keda: Keda = Field(default_factory=defaults(Keda), description="The KEDA that autoscales workers.")
    flower: Flower = Field(default_factory=defaults(Flower), description="Celery Flower.")
    statsd: Statsd = Field(default_factory=defaults(Statsd), description="Metrics.")
    dags: Dags = Field(default_factory=defaults(Dags), description="Where DAGs come from.")
    pod_operator: PodOperator = Field(
        default_factory=defaults(PodOperator), description="KubernetesPodOperator support."
    )
    task_pods: TaskPods = Field(
        default_factory=defaults(TaskPods), description="KubernetesExecutor task pods (the pod template)."
    )
    jobs: Jobs = Field(
        default_factory=defaults(Jobs),
        description="The migration and admin-user Jobs, and the db-clean and pod-cleanup CronJobs' pods.",
    )
    image_pull_secrets: list[Subdomain] = Field(
        default_factory=list,
        description="Existing Secrets (type dockerconfigjson) in the namespace for pulling images; on every "
        "Airflow pod, the Jobs and task pods included.",
    )
    extra_objects: list[ExtraObject] = Field(
        default_factory=list,
        description="Extra namespaced Kubernetes objects applied in Airflow's namespace (a Secret's data only as "
        "Pulumi secrets).",
    )
    migration_timeout_minutes: int = Field(
        15, ge=1, le=120, description="How long `pulumi up` waits for the migration Job."
    )
    housekeeping: Housekeeping = Field(
        default_factory=defaults(Housekeeping), description="Scheduled cleanups: metadata DB rows, kept task pods."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Airflow Variables, injected as AIRFLOW_VAR_<NAME> (plain values)."
    )
    connections: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Airflow Connections as URIs or JSON, injected as AIRFLOW_CONN_<ID> from a Secret (Pulumi "
        "secrets only).",
    )
    secret_variables: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Airflow Variables with secret values (Pulumi secrets only), injected as AIRFLOW_VAR_<NAME> from "
        "a Secret where task or DAG code runs.",
    )
    pools: dict[str, Pool] | None = Field(
        None,
        description="Airflow pools, applied by a Job after each migration and whenever they change; a pool this "
        "setting created is deleted once removed from it (`{}` removes them all; unset: pools are not managed).",
    )
    config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra airflow.cfg settings as 'section.key' -> value (non-secret; becomes AIRFLOW__S__K).",
    )

    @field_validator("variables", "connections", "secret_variables")
    @classmethod
    def _env_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        seen: dict[str, str] = {}
        for k in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise ValueError(f"name {k!r} must be letters, digits and '_' (it becomes an env variable)")
            # AIRFLOW_VAR_<NAME> / AIRFLOW_CONN_<ID> upper-case the name: two spellings would be one variable.
            if k.upper() in seen:
                raise ValueError(
                    f"names {seen[k.upper()]!r} and {k!r} differ only in case and would be one env variable"
                )
            seen[k.upper()] = k
        return v

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, v: dict[str, Pool] | None) -> dict[str, Pool] | None:
        check_pools(v or {})
        return v

    @field_validator("config")
    @classmethod
    def _cfg_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for k, value in v.items():
            if not re.match(r"^[a-z_]+\.[a-z0-9_]+$", k):
                raise ValueError(f"key {k!r} must be 'section.option' in lower case, e.g. 'core.parallelism'")
            if k in OWNED_OPTIONS:
                raise ValueError(f"{k!r} is set by the program ({OWNED_OPTIONS[k]}); it cannot be overridden here")
            if SECRET_OPTION.search(k.split(".", 1)[1]):
                raise ValueError(
                    f"{k!r} looks like a secret, and airflow.config is plain text in every pod's spec; secrets go "
                    "through Pulumi secrets (airflow.connections for connections)"
                )
            if has_control_character(value):
                raise ValueError(f"the value of {k!r} contains a control character")
        return v

    @property
    def executors(self) -> list[str]:
        return str(self.executor).split(",")

    @model_validator(mode="after")
    def _coherent(self) -> AirflowSettings:
        if self.flower.enabled and "CeleryExecutor" not in self.executors:
            raise bad("flower.enabled", f"needs the CeleryExecutor (executor is '{self.executor}')")
        # What the stack's own settings already put in the env of every Airflow container.
        taken = {
            f"AIRFLOW__{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": f"airflow.config {k!r}"
            for k in self.config
        }
        taken |= {f"AIRFLOW_VAR_{k.upper()}": f"airflow.variables {k!r}" for k in self.variables}
        taken |= {f"AIRFLOW_CONN_{k.upper()}": f"airflow.connections {k!r}" for k in self.connections}
        for name in self.secret_variables:
            both = [k for k in self.variables if k.upper() == name.upper()]
            if both:
                raise bad(
                    f"secretVariables.{name}",
                    f"is also in airflow.variables ({both[0]!r}): a Variable is either plain or secret, not both",
                )
            taken[f"AIRFLOW_VAR_{name.upper()}"] = f"airflow.secretVariables {name!r}"
        if self.statsd.enabled:
            taken |= {
                f"AIRFLOW__{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": "airflow.statsd"
                for k in STATSD_OWNED_OPTIONS
            }
        for key, options in self.pod_options().items():
            for i, e in enumerate(options.extra_env):
                if e.name in taken:
                    raise bad(f"{key}.extraEnv.{i}.name", f"{e.name} is already set by {taken[e.name]}")
            for i, m in enumerate(options.extra_volume_mounts):
                if _overlaps(m.mount_path, self.dags.folder):
                    raise bad(
                        f"{key}.extraVolumeMounts.{i}.mountPath",
                        f"{m.mount_path!r} collides with the DAG folder {self.dags.folder!r}",
                    )
        for i, name in enumerate(self.image_pull_secrets):
            if name in self.image_pull_secrets[:i]:
                raise bad(f"imagePullSecrets.{i}", f"{name!r} is listed twice")
        seen: set[str] = set()
        for i, obj in enumerate(self.extra_objects):
            if obj.identity in seen:
                raise bad(f"extraObjects.{i}.metadata.name", f"{obj.kind} {obj.metadata.name!r} is declared twice")
            seen.add(obj.identity)
        git = self.dags.git
        if self.dags.source == "bundle" and git is not None and git.ssh is not None:
            taken = [k for k in self.connections if k.upper() == GIT_CONNECTION_ID.upper()]
            if taken:
                raise bad(
                    f"connections.{taken[0]}",
                    "is the connection the program gives GitDagBundle for dags.git.ssh; use another id",
                )
        if self.statsd.enabled:
            for option, why in STATSD_OWNED_OPTIONS.items():
                if option in self.config:
                    raise bad("config", f"{option!r} is set by the program with statsd on ({why})")
        if self.auth.sso is not None and SSO_OWNED_OPTION in self.config:
            raise bad(
                "config",
                f"{SSO_OWNED_OPTION!r} is set by the program with SSO on (airflow.auth.sso.sessionLifetimeMinutes)",
            )
        return self

    @model_validator(mode="after")
    def _worker_groups(self) -> AirflowSettings:
        celery = "CeleryExecutor" in self.executors
        if self.worker_sets and not celery:
            raise bad("workerSets", f"needs the CeleryExecutor (executor is '{self.executor}')")
        if self.workers.autoscaling.enabled and not celery:
            raise bad("workers.autoscaling.enabled", f"needs the CeleryExecutor (executor is '{self.executor}')")
        names: set[str] = set()
        for i, ws in enumerate(self.worker_sets):
            if ws.name in names:
                raise bad(f"workerSets.{i}.name", f"worker set {ws.name!r} is declared twice")
            names.add(ws.name)
        owner: dict[str, str] = {}
        for group in self.worker_groups():
            for j, queue in enumerate(group.queues):
                if queue in owner:
                    # Two groups on one queue would each be scaled by KEDA for the same tasks.
                    raise bad(
                        f"{group.key}.queues.{j}",
                        f"queue {queue!r} is already consumed by {owner[queue]}; give each queue to one group",
                    )
                owner[queue] = group.key
        for i, ws in enumerate(self.worker_sets):
            key = f"workerSets.{i}"
            for j, e in enumerate(ws.extra_env):
                if e.name in self._taken_env():
                    raise bad(f"{key}.extraEnv.{j}.name", f"{e.name} is already set by {self._taken_env()[e.name]}")
            for j, m in enumerate(ws.extra_volume_mounts):
                if _overlaps(m.mount_path, self.dags.folder):
                    raise bad(
                        f"{key}.extraVolumeMounts.{j}.mountPath",
                        f"{m.mount_path!r} collides with the DAG folder {self.dags.folder!r}",
                    )
            for attr, camel in (
                ("extra_init_containers", "extraInitContainers"),
                ("extra_containers", "extraContainers"),
            ):
                for j, c in enumerate(getattr(ws, attr)):
                    if c.name == WORKER:
                        raise bad(
                            f"{key}.{camel}.{j}.name",
                            f"container {WORKER!r} is already in the pod; choose another name",
                        )
        return self

    def _taken_env(self) -> dict[str, str]:
        taken = {
            f"AIRFLOW__{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": f"airflow.config {k!r}"
            for k in self.config
        }
        taken |= {f"AIRFLOW_VAR_{k.upper()}": f"airflow.variables {k!r}" for k in self.variables}
        taken |= {f"AIRFLOW_CONN_{k.upper()}": f"airflow.connections {k!r}" for k in self.connections}
        return taken

    @property
    def default_queue(self) -> str:
        """The queue a task without its own goes to, and the default workers' when they name none."""
        return self.config.get("operators.default_queue", "default")

    def worker_groups(self) -> list[WorkerGroup]:
        """Every Celery worker group, the default `airflow.workers` first: what each may run at
        once (concurrency x most replicas) is what the connection budget counts."""
        if "CeleryExecutor" not in self.executors:
            return []

        def most(w: Workers) -> int:
            return w.autoscaling.max_replicas if w.autoscaling.enabled else w.replicas

        w = self.workers
        groups = [
            WorkerGroup(WORKER, "workers", w.concurrency, most(w), tuple(w.queues or [self.default_queue]),
                        w.autoscaling.enabled, w)
        ]  # fmt: skip
        groups += [
            WorkerGroup(f"{WORKER}-{ws.name}", f"workerSets.{i}", ws.concurrency, most(ws), tuple(ws.queues),
                        ws.autoscaling.enabled, ws)
            for i, ws in enumerate(self.worker_sets)
        ]  # fmt: skip
        return groups

    @property
    def keda_db_connections(self) -> int:
        """Metadata-DB connections KEDA's operator may hold for this instance: one postgresql
        trigger (so one connection pool) per autoscaled group."""
        return KEDA_CONNECTIONS_PER_SCALED_OBJECT * sum(g.autoscaled for g in self.worker_groups())

    @property
    def autoscaled(self) -> bool:
        """Some worker group is scaled by KEDA."""
        return any(g.autoscaled for g in self.worker_groups())

    @model_validator(mode="after")
    def _housekeeping(self) -> AirflowSettings:
        kube = "KubernetesExecutor" in self.executors
        if self.housekeeping.pod_cleanup.enabled and not kube and not self.pod_operator.enabled:
            raise bad(
                "housekeeping.podCleanup.enabled",
                "there are no task pods to clean up: it needs the KubernetesExecutor or airflow.podOperator.enabled",
            )
        return self

    def pod_options(self) -> dict[str, PodOptions]:
        """Every block of per-component pod options, by its camelCase key under `airflow`."""
        return {
            field.alias or name: value
            for name, field in type(self).model_fields.items()
            if isinstance(value := getattr(self, name), PodOptions)
        }
