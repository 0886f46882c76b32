"""Airflow's configuration as environment variables, per component.

Airflow 3 is configured purely by `AIRFLOW__SECTION__KEY` variables here: no airflow.cfg is rendered.
Plain settings are values; everything secret is a `secretKeyRef` to the generated Secret, and which
keys a component receives is the components table's answer (roster.py), never a list kept here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pulumi

from components.airflow import git_ssh, kpo, roster
from components.airflow.roster import Roster
from components.airflow.settings import (
    CONFIG_DIR,
    DB_CA_DIR,
    HOME,
    LOGS,
    POD_TEMPLATE_DIR,
    SIMPLE_AUTH_DIR,
    AirflowSettings,
)
from components.airflow.sso import CLIENT_SECRET_VARIABLE
from components.endpoints import RemoteLogs

POD_TEMPLATE_FILE = f"{POD_TEMPLATE_DIR}/pod_template_file.yaml"
DB_CA_FILE = f"{DB_CA_DIR}/ca.crt"
GIT_ROOT_LINK = "repo"  # git-sync's symlink (relative) to the current checkout

AUTH_MANAGERS = {
    "fab": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
    "simple": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
}
GIT_BUNDLE_CLASS = "airflow.providers.git.bundles.git.GitDagBundle"
# The peers whose X-Forwarded-Proto/For the api-server believes when it serves `ui.host` (uvicorn's
# and, under `[api] server_type = gunicorn`, Airflow's gunicorn app both read FORWARDED_ALLOW_IPS;
# airflow-core's api_server_command.py and api_fastapi/gunicorn_app.py at 3.3.2). Private ranges,
# not "*": the ingress controller's pods and a cloud load balancer's nodes reach the pods from
# inside the cluster or VPC, while with "*" any client that reaches the api-server directly (a
# port-forward, a NodePort or LoadBalancer Service) could claim https, or another address in the
# access log. Loopback covers a proxy sidecar in the pod.
TRUSTED_PROXIES = ",".join(
    ("127.0.0.0/8", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

# The variable each secret key of the generated Secret arrives in, in the order pods list them.
SECRET_VARIABLES = (
    (roster.FERNET_KEY, "AIRFLOW__CORE__FERNET_KEY"),
    (roster.JWT_SECRET, "AIRFLOW__API_AUTH__JWT_SECRET"),
    (roster.API_SECRET_KEY, "AIRFLOW__API__SECRET_KEY"),
    (roster.SQL_ALCHEMY_CONN, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
    (roster.SQL_ALCHEMY_CONN_ASYNC, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"),
    # The same variable, for the Jobs, when PgBouncer pools the others (a Job is granted one of the two).
    (roster.SQL_ALCHEMY_CONN_DIRECT, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
    (roster.BROKER_URL, "AIRFLOW__CELERY__BROKER_URL"),
    (roster.RESULT_BACKEND, "AIRFLOW__CELERY__RESULT_BACKEND"),
    # Read by the rendered webserver_config.py (components/airflow/sso.py).
    (roster.SSO_CLIENT_SECRET, CLIENT_SECRET_VARIABLE),
    # Flower reads FLOWER_* variables as its options (flower/command.py, apply_env_options); Airflow's
    # `celery flower` passes --basic-auth only when [celery] flower_basic_auth is set, which it is not.
    (roster.FLOWER_BASIC_AUTH, "FLOWER_BASIC_AUTH"),
)


def dags_folder(settings: AirflowSettings, git_writer: bool) -> str:
    """Where DAG files are: under git-sync's link when git-sync fills the folder."""
    d = settings.dags
    if d.source == "volume" and git_writer or d.source == "gitSync":
        sub = d.git.sub_path.strip("/") if d.git else ""
        return "/".join(p for p in (d.folder, GIT_ROOT_LINK, sub) if p)
    return d.folder


class AirflowEnv:
    """The environment of every Airflow container, asked for per component."""

    def __init__(
        self,
        *,
        settings: AirflowSettings,
        roster: Roster,
        namespace: pulumi.Input[str],
        api_url: pulumi.Input[str],
        dags_folder: str,
        secret_name: str,
        connection_keys: list[str],
        secret_names: Mapping[str, str] | None = None,
        remote_logs: RemoteLogs | None,
        instance: str,
        secret_values: Mapping[str, pulumi.Output[str]] | None = None,
        task_namespace: pulumi.Input[str] | None = None,
        ui_url: str | None = None,
    ) -> None:
        self._settings = settings
        self._ui_url = ui_url
        self._roster = roster
        self._namespace = namespace
        self._api_url = api_url
        self._dags_folder = dags_folder
        self._secret_name = secret_name
        self._secret_names = dict(secret_names or {})
        self._connection_keys = connection_keys
        self._remote_logs_settings = remote_logs
        self._instance = instance
        self._secret_values = dict(secret_values or {})
        # Where KubernetesPodOperator pods go: the task namespace, else Airflow's own.
        self._pod_namespace = task_namespace if task_namespace is not None else namespace

    def secret_ref(self, component: str, key: str, variable: str) -> dict[str, Any]:
        """`variable` from the generated Secret's `key`, if the table grants `component` that key."""
        if key not in self._roster.secret_keys(component):
            raise ValueError(f"component {component!r} is not granted secret {key!r} (components/airflow/roster.py)")
        return self._ref(key, variable)

    def _ref(self, key: str, variable: str) -> dict[str, Any]:
        name = self._secret_names.get(key, self._secret_name)
        return {"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}

    def _groups(self) -> dict[str, Mapping[str, pulumi.Input[str]]]:
        """The plain settings (no secrets) by group (roster.py's BASE, RUNTIME, ...), in the order
        pods list them."""
        s = self._settings
        c = self._roster.conditions
        base: dict[str, pulumi.Input[str]] = {
            "AIRFLOW_HOME": HOME,
            "AIRFLOW_CONFIG": f"{CONFIG_DIR}/airflow.cfg",
            "AIRFLOW__CORE__EXECUTOR": s.executor,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGERS[s.auth.manager],
            "AIRFLOW__FAB__CONFIG_FILE": f"{CONFIG_DIR}/webserver_config.py",
        }
        runtime: dict[str, pulumi.Input[str]] = {
            # Tasks talk to the api-server's execution API; the default (localhost) fails in a pod.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": pulumi.Output.concat(self._api_url, "/execution/"),
            "AIRFLOW__CORE__DAGS_FOLDER": self._dags_folder,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": LOGS,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(roster.component("worker").port("worker-logs").number),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(
                roster.component("triggerer").port("triggerer-logs").number
            ),
        }
        celery_worker: dict[str, pulumi.Input[str]] = {}
        if c.celery:
            celery_worker["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(s.workers.concurrency)
        kubernetes_executor: dict[str, pulumi.Input[str]] = {}
        if c.kubernetes_executor:
            kubernetes_executor["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] = self._namespace
            kubernetes_executor["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] = POD_TEMPLATE_FILE
            kubernetes_executor["AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS"] = "True"
        simple_auth: dict[str, pulumi.Input[str]] = {}
        if c.simple_auth:
            simple_auth["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{s.auth.admin_user}:admin"
            simple_auth["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = (
                f"{SIMPLE_AUTH_DIR}/{roster.SIMPLE_AUTH_PASSWORDS}"
            )
        if s.dags.source == "bundle" and s.dags.git:
            g = s.dags.git
            kwargs: dict[str, Any] = {
                "repo_url": g.repo,
                "tracking_ref": g.ref,
                "subdir": g.sub_path or None,
                "refresh_interval": g.period_seconds,
            }
            if g.ssh is not None:
                # The deploy key and host keys, through the connection only its fetchers get.
                kwargs["git_conn_id"] = git_ssh.CONNECTION_ID
            runtime["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
                [{"name": "dags", "classpath": GIT_BUNDLE_CLASS, "kwargs": kwargs}]
            )
            runtime["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] = "/tmp/airflow/dag_bundles"
        if c.statsd:
            runtime["AIRFLOW__METRICS__STATSD_ON"] = "True"
            # The Service's full name: Airflow resolves it once, at start-up (statsd.StatsClient), in
            # whichever namespace the pod runs, without relying on the pod's DNS search path.
            runtime["AIRFLOW__METRICS__STATSD_HOST"] = pulumi.Output.concat(
                self._instance, "-statsd.", self._namespace, ".svc.cluster.local"
            )
            runtime["AIRFLOW__METRICS__STATSD_PORT"] = str(roster.component("statsd").port("statsd").number)
            runtime["AIRFLOW__METRICS__STATSD_PREFIX"] = "airflow"
            # Tags as InfluxDB-style labels on fixed names, and no legacy copy with ids in the name:
            # what the exporter's mappings expect (components/airflow/metrics.py, statsd-mappings.yaml).
            runtime["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] = "True"
            runtime["AIRFLOW__METRICS__LEGACY_NAMES_ON"] = "False"
        task_context: dict[str, pulumi.Input[str]] = {
            f"AIRFLOW_VAR_{name.upper()}": value for name, value in sorted(s.variables.items())
        }
        proxy: dict[str, pulumi.Input[str]] = {}
        if self._ui_url:
            # Where people open the UI: the api-server's redirects, login and OAuth callback URLs and
            # operator links, and a task's `ti.log_url` (task_runner.py) in alerts. Tasks keep reaching
            # the execution API in-cluster: AIRFLOW__CORE__EXECUTION_API_SERVER_URL is set above, and
            # only its absence would derive it from this URL.
            task_context["AIRFLOW__API__BASE_URL"] = self._ui_url
            proxy["FORWARDED_ALLOW_IPS"] = TRUSTED_PROXIES
        sso: dict[str, pulumi.Input[str]] = {}
        if s.auth.sso is not None:
            sso["AIRFLOW__FAB__SESSION_LIFETIME_MINUTES"] = str(s.auth.sso.session_lifetime_minutes)
        return {
            roster.BASE: base,
            roster.RUNTIME: runtime,
            roster.SCHEDULER: {
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(
                    roster.component("scheduler").port("health").number
                ),
            },
            roster.CELERY_WORKER: celery_worker,
            roster.KUBERNETES_EXECUTOR: kubernetes_executor,
            roster.SIMPLE_AUTH: simple_auth,
            roster.TASK_CONTEXT: task_context,
            roster.PROXY: proxy,
            roster.SSO: sso,
        }

    def _remote_logs(self) -> dict[str, pulumi.Input[str]]:
        logs = self._remote_logs_settings
        if logs is None:
            return {}
        return {
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": logs.base_folder,
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": logs.conn_id,
            f"AIRFLOW_CONN_{logs.conn_id.upper()}": logs.connection,
            **logs.extra_env,
        }

    def _user_config(self, sections: frozenset[str] | None) -> dict[str, pulumi.Input[str]]:
        """`airflow.config` as AIRFLOW__S__K, optionally only from `sections`."""
        out: dict[str, pulumi.Input[str]] = {}
        for key, value in sorted(self._settings.config.items()):
            section, option = key.split(".", 1)
            if sections is None or section in sections:
                out[f"AIRFLOW__{section.upper()}__{option.upper()}"] = value
        return out

    def plain(self, component: str) -> dict[str, pulumi.Input[str]]:
        """The plain settings of `component`: the groups the components table gives it, remote-log
        settings where it reads or writes task logs, then the stack's `airflow.config` (last, so a
        user's setting wins; a Job takes only the sections a migration can need)."""
        groups = self._groups()
        wanted = self._roster.settings(component)
        out: dict[str, pulumi.Input[str]] = {}
        for name, values in groups.items():
            if name in wanted:
                out.update(values)
        if roster.RUNTIME in wanted and component in self._roster.task_log_users:
            out.update(self._remote_logs())
        # The components that run KubernetesPodOperator get its connection; one the user defines in
        # `airflow.connections` (delivered from the Secret, see for_component) wins.
        users = kpo.CONNECTION_VARIABLE in self._connection_keys and roster.CONNECTIONS in self._roster.secret_keys(
            component
        )
        if component in self._roster.task_pod_launchers and not users:
            out[kpo.CONNECTION_VARIABLE] = kpo.connection(self._pod_namespace)
        git = self._settings.dags.git
        bundle_over_ssh = self._settings.dags.source == "bundle" and git is not None and git.ssh is not None
        if bundle_over_ssh and roster.RUNTIME in wanted and self._roster.runs_dag_bundles(component):
            # Paths to the mounted key and host keys: no credential in it, so a plain value.
            out[git_ssh.CONNECTION_VARIABLE] = git_ssh.connection()
        if wanted:
            job = self._roster.is_job(component)
            out.update(self._user_config(roster.JOB_CONFIG_SECTIONS if job else None))
        return out

    def secret_keys(self, component: str) -> list[str]:
        """The keys of the generated Secret that `component`'s containers read, in a stable order."""
        granted = self._roster.secret_keys(component)
        present = {key for key, _ in SECRET_VARIABLES} | {roster.SIMPLE_AUTH_PASSWORDS, roster.ADMIN_PASSWORD}
        if not self._roster.conditions.sso:
            present -= {roster.SSO_CLIENT_SECRET}
        if not self._roster.conditions.celery:
            present -= {roster.BROKER_URL, roster.RESULT_BACKEND}
        keys = sorted(granted & present)
        if roster.CONNECTIONS in granted:
            keys += sorted(self._connection_keys)
        return keys

    def checksum(self, component: str) -> pulumi.Output[str] | None:
        """A hash of the secret values `component` reads, itself a secret: as a pod-template
        annotation it rolls exactly the pods whose secret inputs changed (env from a Secret is read
        only when a container starts)."""
        keys = [k for k in self.secret_keys(component) if k in self._secret_values]
        if not keys:
            return None

        def digest(values: list[str]) -> str:
            return hashlib.sha256(json.dumps(dict(zip(keys, values, strict=True)), sort_keys=True).encode()).hexdigest()

        return pulumi.Output.secret(pulumi.Output.all(*[self._secret_values[k] for k in keys]).apply(digest))

    def for_component(self, component: str) -> list[dict[str, Any]]:
        """The env of `component`'s Airflow containers: the shared settings, then the secrets the
        components table grants it (and the stack has: no broker without Celery)."""
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in self.plain(component).items()]
        granted = self._roster.secret_keys(component)
        present = {key for key, _ in SECRET_VARIABLES}
        if not self._roster.conditions.celery:
            present -= {roster.BROKER_URL, roster.RESULT_BACKEND}
        if not self._roster.conditions.sso:
            present -= {roster.SSO_CLIENT_SECRET}
        if not self._roster.conditions.flower:
            present -= {roster.FLOWER_BASIC_AUTH}
        env += [self.secret_ref(component, key, var) for key, var in SECRET_VARIABLES if key in granted & present]
        if roster.CONNECTIONS in granted:
            env += [self._ref(key, key) for key in self._connection_keys]
        env += [{"name": k, "value": v} for k, v in roster.component(component).process_env]
        if not granted & {roster.SQL_ALCHEMY_CONN, roster.SQL_ALCHEMY_CONN_DIRECT}:
            # The image's entrypoint checks the metadata DB before any command. Without the DB URL
            # that check opens Airflow's default sqlite file under the read-only AIRFLOW_HOME, fails
            # every try and exits; where the URL is granted, the check is a wait for the database.
            env.append({"name": "CONNECTION_CHECK_MAX_COUNT", "value": "0"})
        return env
