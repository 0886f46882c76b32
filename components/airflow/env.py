"""Airflow's configuration as environment variables, per component.

Airflow 3 is configured purely by `AIRFLOW__SECTION__KEY` variables here: no airflow.cfg is rendered.
Plain settings are values; everything secret is a `secretKeyRef` to the generated Secret, and which
keys a component receives is the components table's answer (roster.py), never a list kept here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi

from components.airflow import roster
from components.airflow.roster import Roster
from components.airflow.settings import AirflowSettings
from components.endpoints import RemoteLogs

HOME = "/opt/airflow"
LOGS = f"{HOME}/logs"
CONFIG_DIR = f"{HOME}/config"
POD_TEMPLATE_DIR = f"{HOME}/pod_templates"
POD_TEMPLATE_FILE = f"{POD_TEMPLATE_DIR}/pod_template_file.yaml"
SIMPLE_AUTH_DIR = f"{HOME}/simple_auth"
# Where the metadata DB's CA bundle is mounted read-only when the stack supplies one (the database
# URLs point here; a bundle already in the image is used where it is).
DB_CA_DIR = f"{HOME}/db-ca"
DB_CA_FILE = f"{DB_CA_DIR}/ca.crt"
GIT_ROOT_LINK = "repo"  # git-sync's symlink (relative) to the current checkout

AUTH_MANAGERS = {
    "fab": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
    "simple": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
}
GIT_BUNDLE_CLASS = "airflow.providers.git.bundles.git.GitDagBundle"

# The variable each secret key of the generated Secret arrives in, in the order pods list them.
SECRET_VARIABLES = (
    (roster.FERNET_KEY, "AIRFLOW__CORE__FERNET_KEY"),
    (roster.JWT_SECRET, "AIRFLOW__API_AUTH__JWT_SECRET"),
    (roster.API_SECRET_KEY, "AIRFLOW__API__SECRET_KEY"),
    (roster.SQL_ALCHEMY_CONN, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
    (roster.SQL_ALCHEMY_CONN_ASYNC, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"),
    (roster.BROKER_URL, "AIRFLOW__CELERY__BROKER_URL"),
    (roster.RESULT_BACKEND, "AIRFLOW__CELERY__RESULT_BACKEND"),
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
        remote_logs: RemoteLogs | None,
        instance: str,
    ) -> None:
        self._settings = settings
        self._roster = roster
        self._namespace = namespace
        self._api_url = api_url
        self._dags_folder = dags_folder
        self._secret_name = secret_name
        self._connection_keys = connection_keys
        self._remote_logs = remote_logs
        self._instance = instance

    def secret_ref(self, component: str, key: str, variable: str) -> dict[str, Any]:
        """`variable` from the generated Secret's `key`, if the table grants `component` that key."""
        if key not in self._roster.secret_keys(component):
            raise ValueError(f"component {component!r} is not granted secret {key!r} (components/airflow/roster.py)")
        return self._ref(key, variable)

    def _ref(self, key: str, variable: str) -> dict[str, Any]:
        return {"name": variable, "valueFrom": {"secretKeyRef": {"name": self._secret_name, "key": key}}}

    def _plain(self) -> Mapping[str, pulumi.Input[str]]:
        """Settings as values (no secrets), in the order pods list them."""
        s = self._settings
        c = self._roster.conditions
        plain: dict[str, pulumi.Input[str]] = {
            "AIRFLOW_HOME": HOME,
            "AIRFLOW_CONFIG": f"{CONFIG_DIR}/airflow.cfg",
            "AIRFLOW__CORE__EXECUTOR": s.executor,
            # Tasks talk to the api-server's execution API; the default (localhost) fails in a pod.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": pulumi.Output.concat(self._api_url, "/execution/"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": self._dags_folder,
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGERS[s.auth.manager],
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": LOGS,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(roster.component("worker").port("worker-logs").number),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(
                roster.component("triggerer").port("triggerer-logs").number
            ),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__FAB__CONFIG_FILE": f"{CONFIG_DIR}/webserver_config.py",
        }
        if c.celery:
            plain["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(s.workers.concurrency)
        if c.kubernetes_executor:
            plain["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] = self._namespace
            plain["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] = POD_TEMPLATE_FILE
            plain["AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS"] = "True"
        if c.simple_auth:
            plain["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{s.auth.admin_user}:admin"
            plain["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = (
                f"{SIMPLE_AUTH_DIR}/{roster.SIMPLE_AUTH_PASSWORDS}"
            )
        if s.dags.source == "bundle" and s.dags.git:
            g = s.dags.git
            plain["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
                [
                    {
                        "name": "dags",
                        "classpath": GIT_BUNDLE_CLASS,
                        "kwargs": {
                            "repo_url": g.repo,
                            "tracking_ref": g.ref,
                            "subdir": g.sub_path or None,
                            "refresh_interval": g.period_seconds,
                        },
                    }
                ]
            )
            plain["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] = "/tmp/airflow/dag_bundles"
        logs = self._remote_logs
        if logs is not None:
            plain["AIRFLOW__LOGGING__REMOTE_LOGGING"] = "True"
            plain["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] = logs.base_folder
            plain["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] = logs.conn_id
            plain[f"AIRFLOW_CONN_{logs.conn_id.upper()}"] = logs.connection
            plain.update(logs.extra_env)
        if c.statsd:
            plain["AIRFLOW__METRICS__STATSD_ON"] = "True"
            plain["AIRFLOW__METRICS__STATSD_HOST"] = f"{self._instance}-statsd"
            plain["AIRFLOW__METRICS__STATSD_PORT"] = str(roster.component("statsd").port("statsd").number)
            plain["AIRFLOW__METRICS__STATSD_PREFIX"] = "airflow"
        for name, value in sorted(s.variables.items()):
            plain[f"AIRFLOW_VAR_{name.upper()}"] = value
        for key, value in sorted(s.config.items()):
            section, option = key.split(".", 1)
            plain[f"AIRFLOW__{section.upper()}__{option.upper()}"] = value
        return plain

    def for_component(self, component: str) -> list[dict[str, Any]]:
        """The env of `component`'s Airflow containers: the shared settings, then the secrets the
        components table grants it (and the stack has: no broker without Celery)."""
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in self._plain().items()]
        granted = self._roster.secret_keys(component)
        present = {key for key, _ in SECRET_VARIABLES}
        if not self._roster.conditions.celery:
            present -= {roster.BROKER_URL, roster.RESULT_BACKEND}
        env += [self.secret_ref(component, key, var) for key, var in SECRET_VARIABLES if key in granted & present]
        if roster.CONNECTIONS in granted:
            env += [self._ref(key, key) for key in self._connection_keys]
        return env
