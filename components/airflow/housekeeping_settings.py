"""Settings of the housekeeping CronJobs (`airflow-k8s:airflow.housekeeping`), and the grammar a
CronJob's schedule and time zone must follow.

The schedule is checked here as the API server checks it (kubernetes pkg/apis/batch/validation:
`validateScheduleFormat` parses with robfig/cron v3's `ParseStandard` and refuses `TZ`/`CRON_TZ` in a
new object's schedule; `validateTimeZone` wants an IANA name that loads, never `Local`), so a bad one
fails at preview with the config key, not halfway through `pulumi up`.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, Field

from components.settings import SettingsModel, defaults

# robfig/cron v3 (ParseStandard): minute, hour, day of month, month, day of week; names for months
# and weekdays, case-insensitive; `*` and `?` for any value.
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}),
    ("day of week", 0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
)
# The descriptors ParseStandard knows (`@every <Go duration>` aside).
DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_GO_DURATION = re.compile(r"^(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))*$")
SCHEDULE_HELP = (
    "five fields 'minute hour day-of-month month day-of-week' (e.g. '17 3 * * *'), or @yearly, @monthly, "
    "@weekly, @daily, @hourly or '@every <duration>'; the zone goes in timeZone"
)


def _value(text: str, lo: int, hi: int, names: dict[str, int], what: str) -> int:
    v = names.get(text.lower())
    if v is None:
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a number or name in the {what} field")
        v = int(text)
    if not lo <= v <= hi:
        raise ValueError(f"{v} is outside {lo}-{hi} in the {what} field")
    return v


def _field(text: str, lo: int, hi: int, names: dict[str, int], what: str) -> None:
    for part in text.split(","):
        if not part:
            raise ValueError(f"an empty list entry in the {what} field")
        rng, _, step = part.partition("/")
        if _:
            if not step.isdigit() or int(step) == 0:
                raise ValueError(f"the step {step!r} in the {what} field must be a positive number")
        if rng in ("*", "?"):
            continue
        start, dash, end = rng.partition("-")
        first = _value(start, lo, hi, names, what)
        if dash and _value(end, lo, hi, names, what) < first:
            raise ValueError(f"the range {rng!r} in the {what} field runs backwards")


def cron_schedule(value: str) -> str:
    """A Kubernetes CronJob schedule, or ValueError saying what is wrong with it."""
    s = value.strip()
    if "TZ" in s:
        # The API server refuses TZ= and CRON_TZ= in a new CronJob's schedule.
        raise ValueError(f"{value!r}: a time zone does not go in the schedule; set timeZone (e.g. 'Europe/Paris')")
    if s.startswith("@"):
        if s.lower() in DESCRIPTORS:
            return s
        every, _, duration = s.partition(" ")
        if every.lower() == "@every" and _GO_DURATION.match(duration.strip()):
            return s
        raise ValueError(f"{value!r} is not a schedule: {SCHEDULE_HELP}")
    fields = s.split()
    if len(fields) != 5:
        raise ValueError(f"{value!r} has {len(fields)} fields, not 5: {SCHEDULE_HELP}")
    for text, (what, lo, hi, names) in zip(fields, _FIELDS, strict=True):
        _field(text, lo, hi, names, what)
    return s


def time_zone(value: str) -> str:
    """An IANA time zone name the CronJob controller can load (Go's time.LoadLocation)."""
    parts = value.split("/")
    if (
        value.lower() == "local"
        or any(p in ("", ".", "..") or not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", p) for p in parts)
        or value not in zoneinfo.available_timezones()
    ):
        raise ValueError(f"{value!r} is not an IANA time zone name such as 'UTC' or 'Europe/Paris'")
    return value


CronSchedule = Annotated[str, AfterValidator(cron_schedule)]
TimeZone = Annotated[str, AfterValidator(time_zone)]

# The tables `airflow db clean` knows in Airflow 3.3.2 (airflow/utils/db_cleanup.py, config_list;
# `session` only under FAB with database sessions). tests/e2e/test_housekeeping_e2e.py compares this
# with the installed Airflow's list.
DB_CLEAN_TABLES = (
    "_xcom_archive",
    "asset_event",
    "callback",
    "celery_taskmeta",
    "celery_tasksetmeta",
    "connection_test_request",
    "dag",
    "dag_run",
    "dag_version",
    "deadline",
    "import_error",
    "job",
    "log",
    "partitioned_asset_key_log",
    "revoked_token",
    "session",
    "task_instance",
    "task_instance_history",
    "task_reschedule",
    "task_state_store",
    "trigger",
    "xcom",
)


def db_clean_table(value: str) -> str:
    if value not in DB_CLEAN_TABLES:
        raise ValueError(f"{value!r} is not a table `airflow db clean` knows ({', '.join(DB_CLEAN_TABLES)})")
    return value


DbCleanTable = Annotated[str, AfterValidator(db_clean_table)]


class DbClean(SettingsModel):
    """`airflow db clean` on a schedule: rows older than the retention leave the metadata DB."""

    enabled: bool = Field(
        False,
        description="Run `airflow db clean` on a schedule. Off by default: it deletes run history (dag runs, task "
        "instances, logs, XComs) older than retentionDays for good.",
    )
    schedule: CronSchedule = Field("17 3 * * *", description="When it runs (a CronJob schedule).")
    time_zone: TimeZone | None = Field(
        None, description="IANA time zone of the schedule; unset: the kube-controller-manager's (UTC on most)."
    )
    retention_days: int = Field(
        90, ge=1, le=3650, description="Rows older than this many days (counted when the job runs) are deleted."
    )
    tables: list[DbCleanTable] = Field(
        default_factory=list, description="Only these tables (`airflow db clean --tables`); empty: every table."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Rows deleted per transaction (shorter locks on a large first clean); unset: one per table.",
    )
    timeout_minutes: int = Field(
        120, ge=5, le=1440, description="A run that takes longer is stopped (it resumes on the next schedule)."
    )


class PodCleanup(SettingsModel):
    """`airflow kubernetes cleanup-pods` on a schedule, where KubernetesExecutor or KubernetesPodOperator
    pods run."""

    enabled: bool = Field(
        False,
        description="Delete finished task pods that were kept (failed KubernetesExecutor pods, KubernetesPodOperator "
        "pods kept by on_finish_action or left by a worker that died) and pods pending too long.",
    )
    schedule: CronSchedule = Field("*/15 * * * *", description="When it runs (a CronJob schedule).")
    time_zone: TimeZone | None = Field(None, description="IANA time zone of the schedule; unset: the controller's.")
    min_completed_minutes: int = Field(
        1440,
        ge=0,
        le=525_600,
        description="A finished pod is kept this long after it ended (time to look at a failed one).",
    )
    min_pending_minutes: int = Field(
        60,
        ge=5,
        le=525_600,
        description="A pod pending this long is deleted (its task has failed by then unless an operator waits "
        "longer: KubernetesPodOperator's startup_timeout_seconds).",
    )


class Housekeeping(SettingsModel):
    db_clean: DbClean = Field(default_factory=defaults(DbClean), description="Scheduled `airflow db clean`.")
    pod_cleanup: PodCleanup = Field(
        default_factory=defaults(PodCleanup), description="Scheduled cleanup of kept task pods."
    )
