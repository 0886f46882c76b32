"""Housekeeping: the CronJobs that keep a long-lived Airflow from filling up.

- `db-clean`: `airflow db clean` deletes metadata rows older than `retentionDays` (counted when the
  job runs, not when the stack was rendered).
- `pod-cleanup`: `airflow kubernetes cleanup-pods` deletes task pods that finished (or stayed
  pending) long ago and were kept: failed KubernetesExecutor pods (`delete_worker_pods_on_failure`
  is False by default, so they stay "for investigation"), KubernetesPodOperator pods kept by
  `on_finish_action`, or left behind by a worker that died.
- `log-groomer` (local stack): deletes task logs older than `kubernetes.logRetentionDays` on the
  shared task-log claim.

All three share one CronJob policy (`cron_job_spec`): never two runs at once, a missed start is
caught up only within a deadline, a failed run is retried a little and then left for the next
schedule, and finished Jobs do not pile up. Each run is safe to repeat after a failure halfway:
`db clean` commits table by table (batch by batch with `batchSize`) and its criterion is a time,
cleanup-pods deletes pods one by one, and find/rm skips what is already gone.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.env import LOGS
from components.airflow.housekeeping_settings import DbClean, PodCleanup
from components.airflow.pods import AIRFLOW_GID, AIRFLOW_UID, PodFactory
from components.k8s import Manifest, container_security, labels, pod_security, selector


def cron_job_spec(
    *,
    schedule: str,
    time_zone: str | None,
    pod: Manifest,
    pod_metadata: Manifest,
    starting_deadline_seconds: int,
    active_deadline_seconds: int,
    backoff_limit: int,
) -> Manifest:
    """A CronJob spec with the housekeeping policy.

    - `concurrencyPolicy: Forbid`: a slow run is never joined by the next one (two `db clean` runs
      would delete the same rows under each other's locks).
    - `startingDeadlineSeconds`: a start missed (controller down, no capacity) is made up only within
      this window; it also keeps the controller from giving up on a CronJob that missed more than
      100 starts (it counts misses only within the deadline).
    - `activeDeadlineSeconds` under the interval of the schedule's common use, so a hung run ends.
    - history: one successful Job, three failed ones kept for their logs, each deleted a day after
      it finished (`ttlSecondsAfterFinished`) at the latest.
    """
    spec: Manifest = {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": starting_deadline_seconds,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": backoff_limit,
                "activeDeadlineSeconds": active_deadline_seconds,
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": pod_metadata, "spec": pod},
            }
        },
    }
    if time_zone is not None:
        spec["timeZone"] = time_zone
    return spec


def db_clean_script(s: DbClean) -> str:
    """The db-clean container's bash script. The cut-off is computed by GNU date in the container,
    at run time, in UTC with an explicit offset (Airflow reads a naive timestamp in its default zone).

    `--skip-archive`: without it every run copies the purged rows into a new
    `_airflow_deleted__<table>__<timestamp>` table that nothing drops (airflow/utils/db_cleanup.py,
    `_do_delete`), so the database never shrinks. `--error-on-cleanup-failure`: without it a table
    that failed is only a warning and the Job succeeds. `--yes`: nobody is there to confirm.
    """
    args = ["--skip-archive", "--yes", "--error-on-cleanup-failure"]
    if s.tables:
        args += ["--tables", ",".join(s.tables)]
    if s.batch_size is not None:
        args += ["--batch-size", str(s.batch_size)]
    return (
        "set -euo pipefail\n"
        f'before="$(date -u -d "-{s.retention_days} days" +%Y-%m-%dT%H:%M:%S+00:00)"\n'
        f'echo "airflow db clean: rows older than $before ({s.retention_days} days)"\n'
        f'exec airflow db clean --clean-before-timestamp "$before" {shlex.join(args)}\n'
    )


def pod_cleanup_script(s: PodCleanup) -> str:
    """Runs cleanup-pods once per namespace in $CLEANUP_NAMESPACES; every namespace is tried, and the
    run fails if one failed."""
    return (
        "set -uo pipefail\n"
        "rc=0\n"
        "for ns in $CLEANUP_NAMESPACES; do\n"
        '  airflow kubernetes cleanup-pods --namespace "$ns" '
        f"--min-completed-minutes {s.min_completed_minutes} --min-pending-minutes {s.min_pending_minutes} || rc=$?\n"
        "done\n"
        "exit $rc\n"
    )


class HousekeepingJobs:
    """Makes the Airflow image's CronJobs as children of the Airflow component."""

    def __init__(
        self,
        parent: pulumi.Resource,
        name: str,
        instance: str,
        namespace: pulumi.Input[str],
        pods: PodFactory,
    ) -> None:
        self._parent = parent
        self._name = name
        self._instance = instance
        self._namespace = namespace
        self._pods = pods

    def _cron_job(
        self,
        component: str,
        script: str,
        *,
        schedule: str,
        time_zone: str | None,
        starting_deadline_seconds: int,
        active_deadline_seconds: int,
        backoff_limit: int,
        extra_env: Sequence[Manifest] = (),
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> k8s.batch.v1.CronJob:
        vols, mounts = self._pods.volumes(component, logs=False)
        # The image's entrypoint runs `bash -c ...` as given (after its DB check where the DB URL is set).
        container = self._pods.container(
            component, ["bash", "-c", script], self._pods.settings.scheduler.resources, mounts
        )
        container["env"] = [*container["env"], *extra_env]
        # Where the DB URL is granted (db-clean), an init container first waits for the schema of
        # this image: a run due while an upgrade migrates does not clean a half-migrated database.
        pod = self._pods.pod_spec(component, [container], vols, mounts, restart="Never")
        return k8s.batch.v1.CronJob(
            f"{self._name}-{component}",
            metadata={
                "name": f"{self._instance}-{component}",
                "namespace": self._namespace,
                "labels": labels(self._instance, component),
            },
            spec=cron_job_spec(
                schedule=schedule,
                time_zone=time_zone,
                pod=pod,
                pod_metadata=self._pods.meta(component),
                starting_deadline_seconds=starting_deadline_seconds,
                active_deadline_seconds=active_deadline_seconds,
                backoff_limit=backoff_limit,
            ),
            opts=pulumi.ResourceOptions(parent=self._parent, depends_on=list(depends_on)),
        )

    def db_clean(self, s: DbClean, migration: pulumi.Resource) -> k8s.batch.v1.CronJob:
        """Daily by default; two retries (a run that failed halfway resumes where the rows are)."""
        return self._cron_job(
            "db-clean",
            db_clean_script(s),
            schedule=s.schedule,
            time_zone=s.time_zone,
            starting_deadline_seconds=3600,
            active_deadline_seconds=s.timeout_minutes * 60,
            backoff_limit=2,
            # Not before the schema it cleans exists at this image's version.
            depends_on=[migration],
        )

    def pod_cleanup(self, s: PodCleanup, namespaces: Sequence[pulumi.Input[str]]) -> k8s.batch.v1.CronJob:
        """Every 15 minutes by default; a failed run is simply followed by the next."""
        listed = pulumi.Output.all(*namespaces).apply(lambda names: " ".join(dict.fromkeys(names)))
        return self._cron_job(
            "pod-cleanup",
            pod_cleanup_script(s),
            schedule=s.schedule,
            time_zone=s.time_zone,
            starting_deadline_seconds=600,
            active_deadline_seconds=600,
            backoff_limit=0,
            extra_env=[{"name": "CLEANUP_NAMESPACES", "value": listed}],
        )

    def log_groomer(self, claim: pulumi.Input[str], retention_days: int, access_mode: str) -> k8s.batch.v1.CronJob:
        """Hourly on the task-log claim: Airflow deletes no task logs, so a shared claim would fill and
        every task would then fail to write its log.

        Its own ServiceAccount (no token), and through `finish` the stack's pull secrets and the
        placement of airflow.jobs over airflow.placement: on a cluster whose nodes are all tainted, or
        with a private image, a pod without them never starts. With a ReadWriteOnce claim it must run
        on the node the claim is attached to (a second node gets a Multi-Attach error and the pod
        waits until its deadline), so it follows the api-server, which always mounts the claim.
        """
        component = "log-groomer"
        pod: Manifest = {
            "serviceAccountName": self._pods.service_account(component),
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "securityContext": pod_security(AIRFLOW_UID, AIRFLOW_GID, fs_group=AIRFLOW_GID),
            "containers": [
                {
                    "name": "groom",
                    "image": self._pods.image,
                    "imagePullPolicy": self._pods.settings.image.pull_policy,
                    # A command of its own: the image's entrypoint (and its DB check) does not run.
                    "command": ["bash", "-c", groom_script(LOGS, retention_days)],
                    "securityContext": container_security(),
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "volumeMounts": [{"name": "logs", "mountPath": LOGS}],
                }
            ],
            "volumes": [{"name": "logs", "persistentVolumeClaim": {"claimName": claim}}],
        }
        pod = self._pods.finish(component, pod)
        if access_mode == "ReadWriteOnce":
            term = {
                "labelSelector": {"matchLabels": selector(self._instance, "api-server")},
                "topologyKey": "kubernetes.io/hostname",
            }
            affinity = pod.setdefault("affinity", {})
            pod_affinity = affinity.setdefault("podAffinity", {})
            pod_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = [
                *pod_affinity.get("requiredDuringSchedulingIgnoredDuringExecution", []),
                term,
            ]
        return k8s.batch.v1.CronJob(
            f"{self._name}-{component}",
            metadata={
                "name": f"{self._instance}-{component}",
                "namespace": self._namespace,
                "labels": labels(self._instance, component),
            },
            spec=cron_job_spec(
                schedule="17 * * * *",
                time_zone=None,
                pod=pod,
                pod_metadata={"labels": labels(self._instance, component)},
                starting_deadline_seconds=1800,
                active_deadline_seconds=3000,
                backoff_limit=2,
            ),
            # It was made by stacks/local.py at the stack's root until it moved here: the alias makes
            # that an update, not a new CronJob of the same name next to the old one.
            opts=pulumi.ResourceOptions(
                parent=self._parent, aliases=[pulumi.create_urn(component, "kubernetes:batch/v1:CronJob")]
            ),
        )


def groom_script(logs: str, retention_days: int) -> str:
    """Delete task logs older than the retention, then directories empty for over an hour (a task
    may have just made one). `lost+found` (root's, 0700 on a formatted volume) is pruned, never read:
    hence `-exec` and not `-delete`, which turns on `-depth` and so disables `-prune`. A file or
    directory that goes while find runs (another groomer, a task) is no error."""
    prune = f"-ignore_readdir_race -mindepth 1 -path {logs}/lost+found -prune -o"
    return (
        "set -eu\n"
        f"find {logs} {prune} -type f -mmin +{retention_days * 24 * 60} -print -exec rm -f {{}} +\n"
        f"find {logs} {prune} -type d -empty -mmin +60 -print -exec rmdir --ignore-fail-on-non-empty {{}} +\n"
    )
