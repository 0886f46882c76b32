"""The one-shot Jobs: the metadata-DB migration every workload waits for, the FAB admin user, and
the declared pools.

A Job's name carries a hash of the image: its pod template is immutable, and a new Job is what makes
an upgrade (a new image or Airflow version) migrate again before the workloads roll.
"""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s

from components.airflow import pools as pools_job
from components.airflow import roster
from components.airflow.pods import PodFactory
from components.airflow.settings import AirflowSettings
from components.k8s import Manifest, labels


def image_hash(image: str) -> str:
    """Short, stable hash naming per-image Jobs (a new image means a new Job, so a new migration)."""
    return hashlib.sha256(image.encode()).hexdigest()[:8]


class Jobs:
    """Makes the Jobs as children of one component resource."""

    def __init__(
        self,
        parent: pulumi.Resource,
        name: str,
        instance: str,
        namespace: pulumi.Input[str],
        settings: AirflowSettings,
        pods: PodFactory,
        database_ready: list[pulumi.Resource],
    ) -> None:
        self._parent = parent
        self._name = name
        self._instance = instance
        self._namespace = namespace
        self._settings = settings
        self._pods = pods
        self._database_ready = database_ready

    def _job(
        self,
        component: str,
        args: list[str],
        depends: list[pulumi.Resource],
        timeout_min: int,
        extra_env: list[Manifest] | None = None,
        extra_volumes: list[tuple[Manifest, Manifest]] | None = None,
        name_hash: str | None = None,
    ) -> k8s.batch.v1.Job:
        vols, mounts = self._pods.volumes(component, logs=False)
        vols += [v for v, _ in extra_volumes or []]
        mounts += [m for _, m in extra_volumes or []]
        container = self._pods.container(component, args, self._settings.scheduler.resources, mounts)
        if extra_env:
            container["env"] = container["env"] + extra_env
        pod = self._pods.pod_spec(component, [container], vols, mounts, wait=False, restart="Never")
        spec: Manifest = {
            "backoffLimit": 4,
            "activeDeadlineSeconds": timeout_min * 60,
            "template": {"metadata": self._pods.meta(component), "spec": pod},
        }
        return k8s.batch.v1.Job(
            f"{self._name}-{component}",
            metadata={
                "name": f"{self._instance}-{component}-{name_hash or image_hash(self._pods.image)}",
                "namespace": self._namespace,
                "labels": labels(self._instance, component),
                # A Job that failed (a migration that hit a DB outage) is replaced on the next `up`
                # instead of being waited on again forever (pulumi-kubernetes' Job await).
                "annotations": {"pulumi.com/replaceUnready": "true"},
            },
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self._parent,
                depends_on=[*depends, *self._database_ready],
                custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout_min}m", update=f"{timeout_min}m"),
                # The pod template of a Job cannot change in place: a changed one (a new secret
                # checksum) replaces the Job. Its name is fixed, so the provider deletes first.
            ),
        )

    def migration(self, secrets: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        """`airflow db migrate`, once the database and what its pod reads (`secrets`) exist."""
        return self._job("migrate", ["db", "migrate"], secrets, self._settings.migration_timeout_minutes)

    def create_user(self, migration: pulumi.Resource) -> k8s.batch.v1.Job:
        """The FAB admin with the generated password, after the migration."""
        auth = self._settings.auth
        # `airflow users create` exits 0 when the user exists (printing "already exists"), so the
        # password is reset on every run: the stack output is always the password that works. The
        # pod template carries a checksum of the password, so a changed one re-runs this Job.
        script = (
            'airflow users create --role Admin --username "$ADMIN_USER" --email "$ADMIN_EMAIL" '
            '--firstname Admin --lastname User --password "$ADMIN_PASSWORD" '
            '&& airflow users reset-password --username "$ADMIN_USER" --password "$ADMIN_PASSWORD"'
        )
        # The image's entrypoint runs `bash -c ...` as given.
        return self._job(
            "create-user",
            ["bash", "-c", script],
            [migration],
            10,
            extra_env=[
                {"name": "ADMIN_USER", "value": auth.admin_user},
                {"name": "ADMIN_EMAIL", "value": auth.admin_email},
                self._pods.env.secret_ref("create-user", roster.ADMIN_PASSWORD, "ADMIN_PASSWORD"),
            ],
        )

    def pools(self, migration: pulumi.Resource) -> k8s.batch.v1.Job:
        """Applies `airflow.pools` after the migration (which creates the `slot_pool` table and
        `default_pool`). Nothing waits for it: a task whose pool does not exist yet is not failed but
        left scheduled until the pool appears (jobs/scheduler_job_runner.py, "Tasks using non-existent
        pool ... will not be scheduled"), so the workloads need not wait, and a pool change never
        rolls them. The Job's name carries a hash of the image and of what it applies: changed
        pools (or a new image, after a migration) run it again; an `up` with the same pools does not."""
        declared = self._settings.pools
        assert declared is not None
        data = pools_job.configmap_data(declared)
        configmap = k8s.core.v1.ConfigMap(
            f"{self._name}-pools",
            metadata={
                "name": f"{self._instance}-pools",
                "namespace": self._namespace,
                "labels": labels(self._instance, "pools"),
            },
            data=data,
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
        volume = {"name": pools_job.VOLUME, "configMap": {"name": configmap.metadata["name"]}}
        mount = {"name": pools_job.VOLUME, "mountPath": pools_job.MOUNT, "readOnly": True}
        # The image's entrypoint runs `python ...` as given, after waiting for the database.
        return self._job(
            "pools",
            ["python", f"{pools_job.MOUNT}/apply_pools.py", f"{pools_job.MOUNT}/pools.json"],
            [migration, configmap],
            10,
            extra_volumes=[(volume, mount)],
            name_hash=pools_job.content_hash(self._pods.image, data),
        )
