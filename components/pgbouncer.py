"""PgBouncer in front of the metadata database: takes a DatabaseEndpoint, returns one.

Airflow's long-running components each keep a SQLAlchemy pool per process (5 + 10 overflow by
default), so the server's connections grow with every replica, worker and api-server process. In
transaction pooling a server connection is lent to a client only for one transaction: hundreds of
client connections share `defaultPoolSize` server connections per PgBouncer replica.

What it is made of (all children of the component, named `<name>-<piece>`):
- a ConfigMap with pgbouncer.ini (no secret in it) and a Secret with the auth file; the Secret is
  mounted into the PgBouncer pods only, and the Airflow pods never see it;
- a Deployment of `replicas` pods (spread, rolling one at a time, a PodDisruptionBudget), each with
  PgBouncer and a pgbouncer-exporter sidecar on a port named `metrics`;
- a ClusterIP Service (`pgbouncer` and `metrics` ports), a ServiceAccount without a token, and a
  NetworkPolicy: this instance's pods may connect, anyone may scrape the metrics port.

Authentication (pgbouncer docs, config.md "Authentication file format", 1.18 to 1.25):
- Clients (Airflow) log in as CLIENT_USER with a password PgBouncer alone issues; the auth file holds
  only its SCRAM-SHA-256 verifier (`auth_type = scram-sha-256`), never that password.
- PgBouncer logs in to the server as the endpoint's user: the database entry forces `user=` and
  names no password, so PgBouncer takes that user's password from the auth file. A SCRAM verifier
  there would not do: PgBouncer can log in with a verifier only by passing a client's SCRAM proof
  through, which needs the client to log in as the same user with the same salt and iterations as
  the server keeps (not known for RDS or Flexible Server). So the server user's line holds its
  plain password, in the Secret only; the ini names no password at all.
- The exporter logs in as STATS_USER (a `stats_users` member: SHOW commands only), SCRAM as well.

Shutdown: on SIGINT PgBouncer stops accepting, waits until every server connection is released
(with transaction pooling: until each transaction in flight ends) and exits ("safe shutdown",
usage.md "Signals"). SIGTERM, what Kubernetes sends, waits since 1.23 for every *client* to
disconnect, which Airflow's pools never do; and a second signal during a shutdown is an immediate
one. So preStop keeps serving while the endpoint is removed, sends SIGINT, and waits for PgBouncer
to exit: the kubelet's SIGTERM comes only after it has gone. Clients then reconnect through the
Service to another replica (Airflow pings pooled connections before use, `sql_alchemy_pool_pre_ping`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Annotated, Any
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import AfterValidator, Field

from components.endpoints import CaBundle, DatabaseEndpoint
from components.k8s import Manifest, container_security, labels, pod_security, resources, selector, spread
from components.settings import Resources, SettingsModel, resources_field

COMPONENT = "pgbouncer"
# The user names PgBouncer knows besides the server's: Airflow's login and the exporter's.
CLIENT_USER = "airflow_pooled"
STATS_USER = "pgbouncer_stats"
METRICS_PORT = 9127  # pgbouncer-exporter's default listen port (the official chart's `pgbouncerScrape`)
CONFIG_DIR = "/etc/pgbouncer"
INI = "pgbouncer.ini"
USERLIST = "userlist.txt"
CA_DIR = "/etc/pgbouncer/ca"
CA_FILE = f"{CA_DIR}/ca.crt"
# Secret keys: the auth file (PgBouncer's container) and the exporter's connection URL (its own).
USERLIST_KEY = USERLIST
STATS_URL_KEY = "stats-url"
# The images' `nobody` (the official chart runs PgBouncer as 65534 too).
UID = 65534
# PostgreSQL's default SCRAM iteration count (scram_iterations, 4096).
SCRAM_ITERATIONS = 4096
# Seconds a stopping pod keeps serving while its endpoint leaves the Service (kube-proxy, DNS).
DRAIN_SECONDS = 10
# The safe shutdown waits for transactions in flight; Airflow's are short (a heartbeat, a state change).
GRACE_SECONDS = 60


def _pinned(image: str) -> str:
    """An image reference with an exact tag (or a digest): `latest` or no tag would let a restart
    pull something else than what was reviewed."""
    m = re.fullmatch(
        r"[a-z0-9][a-z0-9._/:-]*?(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?", image
    )
    if m is None or ("@" not in image and (m.group("tag") in (None, "latest"))):
        raise ValueError(f"{image!r} must name an exact tag, e.g. 'repository:1.2.3' (not 'latest', not untagged)")
    return image


PinnedImage = Annotated[str, AfterValidator(_pinned)]


class PgBouncerSettings(SettingsModel):
    """`airflow-k8s:pgbouncer`: a connection pooler between Airflow and its metadata database."""

    enabled: bool | None = Field(
        None,
        description="Put PgBouncer between Airflow's long-running components and the database (migrations "
        "always go direct). Unset: on exactly when Airflow's peak connections would not fit the database (the "
        "connection budget).",
    )
    replicas: int = Field(2, ge=1, le=20, description="PgBouncer pods (spread over nodes, one may be disrupted).")
    port: int = Field(6432, ge=1024, le=65535, description="The port PgBouncer listens on and its Service serves.")
    default_pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="Server connections per PgBouncer pod: Airflow's transactions are milliseconds long, so ten "
        "carry hundreds of pooled clients; the server sees replicas x (this + reservePoolSize) at most.",
    )
    reserve_pool_size: int = Field(
        2, ge=0, le=100, description="Extra server connections a pod may open when a client waited reservePoolTimeout."
    )
    reserve_pool_timeout: int = Field(3, ge=1, le=60, description="Seconds a client waits before the reserve opens.")
    max_client_conn: int = Field(
        1000,
        ge=10,
        le=100000,
        description="Client connections per pod: every Airflow process keeps up to 15 (SQLAlchemy's pool_size 5 + "
        "max_overflow 10), and an idle client costs PgBouncer a file descriptor and a few kB.",
    )
    max_prepared_statements: int = Field(
        100,
        ge=0,
        le=5000,
        description="Prepared statements PgBouncer tracks per server connection (PgBouncer 1.21+): the "
        "api-server's asyncpg and the result backend's psycopg prepare statements, which transaction pooling "
        "breaks without this.",
    )
    image: PinnedImage = Field(
        "apache/airflow:airflow-pgbouncer-2025.03.05-1.23.1",
        description="PgBouncer image, exact tag (the official Helm chart's, PgBouncer 1.23.1).",
    )
    exporter_image: PinnedImage = Field(
        "apache/airflow:airflow-pgbouncer-exporter-2025.03.05-0.18.0",
        description="pgbouncer-exporter image, exact tag (the official Helm chart's).",
    )
    resources: Resources = resources_field("100m", "64Mi", "256Mi")


def scram_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 secret for a password (RFC 5802, RFC 7677; the form `pg_authid`
    and PgBouncer's auth file keep): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    The password is used as given: SASLprep leaves the ASCII letters and digits generated here alone."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _quoted(value: str) -> str:
    # The auth file's fields are in double quotes; a quote inside one is doubled.
    return '"' + value.replace('"', '""') + '"'


def userlist(entries: list[tuple[str, str]]) -> str:
    """PgBouncer's auth file: one `"user" "password or verifier"` line each."""
    return "".join(f"{_quoted(user)} {_quoted(secret)}\n" for user, secret in entries)


def _ini_value(key: str, value: str) -> str:
    # A connection-string value with a space or a quote would break PgBouncer's parser; none of ours has one.
    if any(c in value for c in " '\"\n\\="):
        raise ValueError(f"the database's {key} {value!r} cannot go into pgbouncer.ini")
    return value


def pgbouncer_ini(
    settings: PgBouncerSettings,
    *,
    host: str,
    port: int,
    name: str,
    user: str,
    sslmode: str,
    ca_file: str | None,
) -> str:
    """pgbouncer.ini: one database, Airflow's, with the server login forced to the endpoint's user."""
    target = (
        f"host={_ini_value('host', host)} port={port} dbname={_ini_value('name', name)} user={_ini_value('user', user)}"
    )
    tls = [f"server_tls_sslmode = {sslmode}"] + ([f"server_tls_ca_file = {ca_file}"] if ca_file else [])
    s = settings
    lines = [
        "[databases]",
        f"{name} = {target}",
        "",
        "[pgbouncer]",
        "listen_addr = *",
        f"listen_port = {s.port}",
        # No Unix socket: nothing in the pod uses one, and the root filesystem is read-only.
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {CONFIG_DIR}/{USERLIST}",
        f"stats_users = {STATS_USER}",
        "pool_mode = transaction",
        f"max_client_conn = {s.max_client_conn}",
        f"default_pool_size = {s.default_pool_size}",
        f"reserve_pool_size = {s.reserve_pool_size}",
        f"reserve_pool_timeout = {s.reserve_pool_timeout}",
        # The hard cap per pod, so the connection budget is replicas x this, whatever the demand.
        f"max_db_connections = {s.default_pool_size + s.reserve_pool_size}",
        f"max_prepared_statements = {s.max_prepared_statements}",
        *tls,
        # Logged per connection, these would be most of the log (Airflow's pools recycle every 30 min).
        "log_connections = 0",
        "log_disconnections = 0",
        "stats_period = 60",
        "",
    ]
    return "\n".join(lines)


class PgBouncer(pulumi.ComponentResource):
    """PgBouncer pods in front of `server`.

    Attributes:
        endpoint: how Airflow's long-running components reach the database through PgBouncer (the
            client login and password PgBouncer issues; usable once the Deployment is ready).
        service_name, deployment: the Kubernetes objects, for callers that need them.
    """

    endpoint: DatabaseEndpoint

    def __init__(
        self,
        name: str,
        *,
        namespace: pulumi.Input[str],
        instance: str,
        server: DatabaseEndpoint,
        settings: PgBouncerSettings,
        network_policy: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create PgBouncer.

        Args:
            name: Pulumi name prefix of the children; the generated passwords are keyed by it in state.
            namespace: namespace of every object.
            instance: the Airflow instance; objects are `<instance>-pgbouncer` and only pods labelled
                `app.kubernetes.io/instance: <instance>` may connect.
            server: the database PgBouncer logs in to (its TLS mode and CA bundle apply to that login).
            settings: pool sizes, replicas, images, resources.
            network_policy: create the NetworkPolicy.
            opts: options of the component; pass the Kubernetes provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:kubernetes:PgBouncer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = settings
        meta: Manifest = {
            "name": f"{instance}-{COMPONENT}",
            "namespace": namespace,
            "labels": labels(instance, COMPONENT),
        }
        self.service_name = meta["name"]

        # Generated once, kept in state: the verifiers (salt included) stay the same across deploys,
        # so an unchanged stack never rolls the pods.
        def password(suffix: str) -> random.RandomPassword:
            return random.RandomPassword(f"{name}-{suffix}-password", length=32, special=False, opts=child)

        def salt(suffix: str) -> random.RandomBytes:
            return random.RandomBytes(f"{name}-{suffix}-salt", length=16, opts=child)

        client_pw, stats_pw = password("client"), password("stats")
        client_salt, stats_salt = salt("client"), salt("stats")

        def auth_file(a: list[Any]) -> str:
            server_user, server_password, client, c_salt, stats, s_salt = a
            if server_user in (CLIENT_USER, STATS_USER):
                raise ValueError(f"the database user may not be {server_user!r}: PgBouncer uses that name itself")
            return userlist([
                (CLIENT_USER, scram_verifier(client, base64.b64decode(c_salt))),
                (STATS_USER, scram_verifier(stats, base64.b64decode(s_salt))),
                # The server login's password: PgBouncer needs it in clear (see the module docstring).
                (server_user, server_password),
            ])  # fmt: skip

        users = pulumi.Output.secret(
            pulumi.Output.all(server.user, server.password, client_pw.result, client_salt.base64,
                              stats_pw.result, stats_salt.base64).apply(auth_file)
        )  # fmt: skip
        stats_url = pulumi.Output.secret(
            stats_pw.result.apply(
                lambda p: f"postgres://{STATS_USER}:{quote(p, safe='')}@127.0.0.1:{s.port}/pgbouncer?sslmode=disable"
            )
        )
        secret = k8s.core.v1.Secret(
            f"{name}-secret", metadata=meta, type="Opaque",
            string_data={USERLIST_KEY: users, STATS_URL_KEY: stats_url}, opts=child,
        )  # fmt: skip

        ca_volume, ca_file = self._ca(name, meta, server.ca, child)
        ini = pulumi.Output.all(server.host, server.port, server.name, server.user).apply(
            lambda a: pgbouncer_ini(
                s, host=a[0], port=int(a[1]), name=a[2], user=a[3], sslmode=server.sslmode, ca_file=ca_file
            )
        )
        config = k8s.core.v1.ConfigMap(f"{name}-config", metadata=meta, data={INI: ini}, opts=child)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-serviceaccount", metadata=meta, automount_service_account_token=False, opts=child
        )
        service_spec: Manifest = {
            "type": "ClusterIP",
            "selector": selector(instance, COMPONENT),
            "ports": [
                {"name": COMPONENT, "port": s.port, "targetPort": COMPONENT, "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        }
        service = k8s.core.v1.Service(f"{name}-service", metadata=meta, spec=service_spec, opts=child)
        self.host = pulumi.Output.concat(service.metadata.name, ".", namespace, ".svc.cluster.local")

        mounts: list[Manifest] = [
            {"name": "config", "mountPath": f"{CONFIG_DIR}/{INI}", "subPath": INI, "readOnly": True},
            {"name": "users", "mountPath": f"{CONFIG_DIR}/{USERLIST}", "subPath": USERLIST, "readOnly": True},
        ]
        volumes: list[Manifest] = [
            {"name": "config", "configMap": {"name": config.metadata.name}},
            # Only the auth file, readable by the pod's group: the exporter's URL is not in it.
            {"name": "users", "secret": {"secretName": secret.metadata.name, "defaultMode": 0o440,
                                         "items": [{"key": USERLIST_KEY, "path": USERLIST}]}},
        ]  # fmt: skip
        if ca_volume is not None:
            volumes.append(ca_volume)
            mounts.append({"name": "db-ca", "mountPath": CA_DIR, "readOnly": True})
        tcp = {"tcpSocket": {"port": COMPONENT}}
        pgbouncer: Manifest = {
            "name": COMPONENT,
            "image": s.image,
            "imagePullPolicy": "IfNotPresent",
            # PgBouncer only logs its file-descriptor limit (src/main.c, check_limits): raise the soft
            # limit to the hard one first, as containerd 2 leaves it at 1024, below maxClientConn plus
            # the pools. `exec` keeps PgBouncer PID 1, where preStop signals it.
            "command": ["/bin/sh", "-c", f'ulimit -n "$(ulimit -Hn)"; exec pgbouncer {CONFIG_DIR}/{INI}'],
            "ports": [{"name": COMPONENT, "containerPort": s.port, "protocol": "TCP"}],
            "readinessProbe": {**tcp, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2},
            "livenessProbe": {**tcp, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4},
            "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", _PRE_STOP]}}},
            "securityContext": container_security(),
            "resources": resources(s.resources),
            "volumeMounts": mounts,
        }
        exporter_port = {"tcpSocket": {"port": "metrics"}}
        exporter: Manifest = {
            "name": "exporter",
            "image": s.exporter_image,
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "DATABASE_URL",
                     "valueFrom": {"secretKeyRef": {"name": secret.metadata.name, "key": STATS_URL_KEY}}}],
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
            # Its own port only: a PgBouncer hiccup must not take the pod out of the Service.
            "readinessProbe": {**exporter_port, "periodSeconds": 10},
            "livenessProbe": {**exporter_port, "periodSeconds": 30, "failureThreshold": 4},
            "securityContext": container_security(),
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        }  # fmt: skip
        # A changed ini or auth file is read only when PgBouncer starts: these roll the pods.
        checksum = pulumi.Output.secret(
            pulumi.Output.all(ini, users).apply(lambda a: hashlib.sha256("\0".join(a).encode()).hexdigest())
        )
        pod: Manifest = {
            "serviceAccountName": account.metadata.name,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(UID, UID, fs_group=UID),
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "topologySpreadConstraints": spread(instance, COMPONENT),
            "containers": [pgbouncer, exporter],
            "volumes": volumes,
        }
        deployment_spec: Manifest = {
            "replicas": s.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(instance, COMPONENT)},
            # One pod at a time, a new one ready before an old one goes: capacity never drops.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(instance, COMPONENT), "annotations": {"checksum/config": checksum}},
                "spec": pod,
            },
        }
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta,
            spec=deployment_spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service]),
        )
        if s.replicas >= 2:
            budget: Manifest = {"maxUnavailable": 1, "selector": {"matchLabels": selector(instance, COMPONENT)}}
            k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec=budget, opts=child)
        if network_policy:
            policy: Manifest = {
                "podSelector": {"matchLabels": selector(instance, COMPONENT)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance}}}],
                        "ports": [{"port": s.port, "protocol": "TCP"}],
                    },
                    # The scrape port from anywhere (Prometheus runs in its own namespace).
                    {"ports": [{"port": METRICS_PORT, "protocol": "TCP"}]},
                ],
            }
            k8s.networking.v1.NetworkPolicy(f"{name}-networkpolicy", metadata=meta, spec=policy, opts=child)

        self.endpoint = DatabaseEndpoint(
            host=self.host,
            port=s.port,
            name=server.name,
            user=CLIENT_USER,
            password=pulumi.Output.secret(client_pw.result),
            # Inside the cluster, behind the NetworkPolicy; SCRAM never sends the password itself.
            sslmode="disable",
            depends_on=[self.deployment],
        )
        self.register_outputs({"host": self.host, "port": s.port})

    def _ca(
        self, name: str, meta: Manifest, ca: CaBundle | None, child: pulumi.ResourceOptions
    ) -> tuple[Manifest | None, str | None]:
        """The volume that brings the server's CA bundle to CA_FILE, and the file the ini names."""
        if ca is None:
            return None, None
        if ca.image_file:
            return None, ca.image_file
        items = [{"key": ca.key, "path": CA_FILE.rsplit("/", 1)[1]}]
        if ca.secret:
            return {"name": "db-ca", "secret": {"secretName": ca.secret, "items": items}}, CA_FILE
        source: pulumi.Input[str] | None = ca.config_map
        if ca.pem:
            ca_meta: Manifest = {**meta, "name": f"{meta['name']}-db-ca"}
            cm = k8s.core.v1.ConfigMap(f"{name}-db-ca", metadata=ca_meta, data={ca.key: ca.pem}, opts=child)
            source = cm.metadata.name
        return {"name": "db-ca", "configMap": {"name": source, "items": items}}, CA_FILE


# Serve while the endpoint leaves the Service, then the safe shutdown (SIGINT), then wait for
# PgBouncer (PID 1) to exit so the kubelet's SIGTERM never turns it into an immediate one.
_PRE_STOP = f"sleep {DRAIN_SECONDS}; kill -INT 1; while kill -0 1 2>/dev/null; do sleep 1; done"
