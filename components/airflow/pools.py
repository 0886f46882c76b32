"""Airflow pools declared in the stack config (`airflow.pools`), applied by a Job on every `up`.

The Job runs scripts/apply_pools.py (mounted from a ConfigMap) with Airflow's own Pool model, in one
database transaction: each declared pool is created or brought to its declared slots, description
and `include_deferred`; a pool this program created that is no longer declared is deleted, unless
task instances still wait or run in it. "Created by this program" is a marker at the end of the
pool's description (MARKER): a pool made in the UI or by the API has none and is never deleted, and
`default_pool` is never deleted (Airflow refuses to: models/pool.py `Pool.delete_pool`).

Why a script and not `airflow pools import`: the CLI creates and updates (`Pool.create_or_update_pool`,
one session per pool) but cannot tell which pools it made, so it cannot remove one; the script uses
the same model call and adds the deletion, all in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from components.settings import SettingsModel, has_control_character

# What Airflow calls the pool every task uses unless told otherwise; it always exists (the
# migration creates it) and cannot be deleted, but its slots can be set like any pool's.
DEFAULT_POOL = "default_pool"
# Appended to the description of every pool the Job writes: how the next run tells a pool it made
# (and may delete once undeclared) from one made in the UI. Visible in the UI, on purpose.
MARKER = "[managed by airflow-k8s: airflow.pools]"
# Where the ConfigMap (script + declared pools) is mounted in the Job's container.
MOUNT = "/opt/airflow/pools"
VOLUME = "pools"
SCRIPT = Path(__file__).with_name("scripts") / "apply_pools.py"
# Airflow takes any non-blank name up to 256 characters (models/pool.py: `String(256)`; the REST
# API's PoolBody `max_length=256`), but reports pool metrics under a name with every character
# outside `[A-Za-z0-9_.-]` replaced by `_` (models/pool.py normalize_pool_name_for_stats): two pools
# could then report as one. Names are kept to the characters metrics keep.
POOL_NAME = r"^[A-Za-z0-9_.-]{1,256}$"


def _description(value: str) -> str:
    if has_control_character(value):
        raise ValueError("contains a control character (newline, tab, ...), which is not allowed")
    return value


class Pool(SettingsModel):
    """One pool: how many task slots it has, and whether deferred tasks take one."""

    slots: int = Field(
        ...,
        ge=-1,
        le=2**31 - 1,
        description="Task slots (Airflow's `slot_pool.slots`, a 32-bit integer); -1 means unlimited.",
    )
    description: Annotated[str, AfterValidator(_description)] = Field(
        "", max_length=1000, description="Shown in the UI (the program appends a 'managed by' marker)."
    )
    include_deferred: bool = Field(False, description="Deferred tasks count against the pool's slots.")


def check_pools(pools: dict[str, Pool]) -> None:
    """Names Airflow and its metrics take; names that differ only in case are refused too: on
    PostgreSQL they would be two pools that a reader (and a DAG author typing `pool=`) takes for one."""
    seen: dict[str, str] = {}
    for name in pools:
        if not re.match(POOL_NAME, name):
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise ValueError(
                f"pool name {shown!r} must be 1-256 letters, digits, '_', '.' or '-' (Airflow reports pool metrics "
                "under names of these characters only)"
            )
        if name.lower() in seen:
            raise ValueError(f"pool names {seen[name.lower()]!r} and {name!r} differ only in case")
        seen[name.lower()] = name


def document(pools: dict[str, Pool]) -> str:
    """The declared pools as the script reads them: name -> the row the Job makes it (the marker
    already in the description), in a stable order so the same config gives the same bytes."""
    rows = {
        name: {
            "slots": p.slots,
            "description": f"{p.description} {MARKER}" if p.description else MARKER,
            "include_deferred": p.include_deferred,
        }
        for name, p in sorted(pools.items())
    }
    return json.dumps({"marker": MARKER, "default_pool": DEFAULT_POOL, "pools": rows}, indent=2, sort_keys=True)


def content_hash(image: str, data: dict[str, str]) -> str:
    """Names the Job: a new image or new declared pools (or a new script) make a new Job, so the
    pools are applied again; the same config keeps the Job, so an `up` with nothing changed does not
    re-run it."""
    body = json.dumps({"image": image, "data": data}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:8]


def configmap_data(pools: dict[str, Pool]) -> dict[str, str]:
    return {"apply_pools.py": SCRIPT.read_text(), "pools.json": document(pools)}
