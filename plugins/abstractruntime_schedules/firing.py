"""Firing due schedules: one run per ``(schedule_id, fire time)``, however many processes fire.

Each process that fires (a scheduler's poll, a PostgreSQL worker's cycle, ``runtime.fire_due_schedules()``) reads
the active schedules, computes what is due (:func:`~.timing.due_fires`) and creates each fire's run under the id
:func:`~.book.fire_run_id` -- the same in every process -- in a *create-only* commit: its first ledger row
(``schedule_fire``) carries a precondition the store checks inside its write transaction, so a second process's
commit for the same fire is refused and writes nothing. Then the schedule's cursor is moved on (revision-checked;
a move another process already made is kept). A crash between the two re-computes the same fires, which are found
created. Runs are created before the cursor moves: a fire is never lost, and never started twice.

``overlap="skip"``: a fire time is skipped while the schedule's previous run is still RUNNING or WAITING.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Set

from abstractruntime import StashKey, codec
from abstractruntime.errors import ConcurrentModificationError
from abstractruntime.ledger_rows import row
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, StepRecord, StepStatus, utc_now_iso
from abstractruntime.timeutil import now_utc, parse_instant
from abstractruntime_pluginkit import plugin_options

from .options import SchedulesOptions
from .book import (FIRE_EFFECT_TYPE, Schedule, active_records, create_key, fire_run_id, record_run_id,
                   schedule_of)
from .timing import due_fires, fire_time_text

log = get_logger("abstractruntime.schedules")

#: fire times one poll starts at most per schedule (catch_up="all" after a long outage goes on at the next poll)
MAX_FIRES_PER_POLL = 100


_WARNED = StashKey[Set[str]]()
_LAST_POLL = StashKey[Dict[str, float]]()
_POLL_LOCK = threading.Lock()


def _active(runtime: Any, run_id: Optional[str]) -> bool:
    if not run_id:
        return False
    run = runtime.run_store.load(run_id)
    return run is not None and not run.status.is_terminal


def _fire_row(run: RunState, schedule: Schedule, fire_time: str, node_id: str) -> StepRecord:
    record = row(run, node_id, StepStatus.COMPLETED,
                 effect={"type": FIRE_EFFECT_TYPE, "result_key": None,
                         "payload": {"schedule_id": schedule.schedule_id, "fire_time": fire_time,
                                     "fired_at": utc_now_iso()}},
                 result={"run_id": run.run_id})
    record.idempotency_key = create_key(run.run_id)
    return record


def _create_fire_run(runtime: Any, schedule: Schedule, spec: Any, fire_time: str) -> bool:
    """Create the fire's run (RUNNING at the workflow's entry node, as ``start`` makes it); False if another process
    created it first."""
    run_id = fire_run_id(schedule.schedule_id, fire_time)
    run_vars = codec.from_json_text(codec.to_json_bytes(schedule.vars))
    run_vars.setdefault("_limits", runtime.config.to_limits_dict())
    runtime_ns = run_vars.setdefault("_runtime", {})
    if isinstance(runtime_ns, dict):
        runtime_ns["schedule"] = {"schedule_id": schedule.schedule_id, "fire_time": fire_time}
    run = RunState.new(workflow_id=spec.workflow_id, entry_node=spec.entry_node, vars=run_vars)
    run.run_id = run_id
    if hasattr(run, "workflow_version"):  # as ``start`` does: the run is driven by the version it started with
        run.workflow_version = getattr(spec, "version", None)
    runtime.hooks.prepare_new_run(runtime=runtime, run=run)
    try:
        runtime.commit(run, [_fire_row(run, schedule, fire_time, spec.entry_node)], expected_revision=None)
    except ConcurrentModificationError:
        if runtime.run_store.load(run_id) is None:
            raise
        log.debug("schedule_fire_taken", schedule_id=schedule.schedule_id, fire_time=fire_time, run_id=run_id)
        return False
    log.info("schedule_fired", schedule_id=schedule.schedule_id, fire_time=fire_time, run_id=run_id)
    return True


def _workflow(runtime: Any, registry: Any, schedule: Schedule) -> Any:
    for source in (registry, getattr(runtime, "workflow_registry", None)):
        get = getattr(source, "get", None)
        spec = get(schedule.workflow_id) if get is not None else None
        if spec is not None:
            return spec
    warned = runtime.stash.setdefault_factory(_WARNED, set)
    if schedule.schedule_id not in warned:
        warned.add(schedule.schedule_id)
        log.warning("schedule_workflow_not_registered", schedule_id=schedule.schedule_id,
                    workflow_id=schedule.workflow_id,
                    hint="this process cannot start the schedule's runs: register the workflow in its registry; "
                         "a process that has it fires the schedule")
    return None


def fire_schedule(runtime: Any, record: RunState, *, now: datetime, registry: Any = None,
                  grace_s: float = 60.0) -> List[str]:
    """Start the runs due for one schedule at ``now``; returns the ids of the runs this call created."""
    schedule = schedule_of(record)
    if schedule.paused:
        return []
    cursor = parse_instant(schedule.cursor)
    fires, new_cursor = due_fires(schedule.timing, cursor=cursor, now=now, catch_up=schedule.catch_up,
                                  grace_s=grace_s, limit=MAX_FIRES_PER_POLL)
    if new_cursor <= cursor:
        return []
    spec = _workflow(runtime, registry, schedule) if fires else None
    if fires and spec is None:
        return []  # the cursor stays: a process that has the workflow fires them
    created: List[str] = []
    previous, last_fire, last_skipped = schedule.last_run_id, None, None
    for when in fires:
        fire_time = fire_time_text(when)
        run_id = fire_run_id(schedule.schedule_id, fire_time)
        if schedule.overlap == "skip" and _active(runtime, previous) and previous != run_id:
            if runtime.run_store.load(run_id) is not None:  # another process fired it: it is the previous run now
                previous, last_fire = run_id, fire_time
            else:
                last_skipped = fire_time
                log.info("schedule_fire_skipped", schedule_id=schedule.schedule_id, fire_time=fire_time,
                         running=previous)
            continue
        if _create_fire_run(runtime, schedule, spec, fire_time):
            created.append(run_id)
        previous, last_fire = run_id, fire_time
    _advance(runtime, schedule.schedule_id, new_cursor, previous, last_fire, last_skipped, len(created))
    return created


def _advance(runtime: Any, schedule_id: str, cursor: datetime, last_run_id: Optional[str],
             last_fire: Optional[str], last_skipped: Optional[str], fired: int) -> None:
    def mutate(run: RunState) -> Optional[List[StepRecord]]:
        if run.status.is_terminal:
            return None  # removed meanwhile
        schedule = schedule_of(run)
        if parse_instant(schedule.cursor) >= cursor and not fired:
            return None  # another process got as far already
        if parse_instant(schedule.cursor) < cursor:
            schedule.cursor = cursor.isoformat()
        if last_fire is not None and (schedule.last_fire_time is None or last_fire >= schedule.last_fire_time):
            schedule.last_fire_time, schedule.last_run_id = last_fire, last_run_id
        if last_skipped is not None and (schedule.last_skipped_time or "") < last_skipped:
            schedule.last_skipped_time = last_skipped
        schedule.fired += fired
        run.vars["schedule"] = schedule.to_dict()
        return []

    runtime.update_run(record_run_id(schedule_id), mutate)


def fire_due_schedules(runtime: Any, *, now: Optional[datetime] = None, registry: Any = None) -> List[str]:
    """Start every run that the active schedules have due at ``now`` (default: the clock); returns the ids of the
    runs this call created. Drivers call it on every poll; a host without a driver may call it from its own loop.
    A schedule that fails (e.g. its workflow's node raises in ``prepare_new_run``) is logged and the others go on."""
    now = parse_instant(now) if now is not None else now_utc()
    grace = plugin_options(runtime, "schedules", SchedulesOptions).misfire_grace_s
    created: List[str] = []
    for record in active_records(runtime):
        try:
            created += fire_schedule(runtime, record, now=now, registry=registry, grace_s=grace)
        except Exception as exc:
            log.warning("schedule_fire_failed", schedule_id=record.vars["schedule"].get("schedule_id"),
                        error=f"{type(exc).__name__}: {exc}")
    return created


def poll(runtime: Any, registry: Any = None) -> List[str]:
    """:func:`fire_due_schedules`, at most every ``poll_interval_s`` per runtime (drivers call it on every cycle)."""
    interval = plugin_options(runtime, "schedules", SchedulesOptions).poll_interval_s
    last = runtime.stash.setdefault_factory(_LAST_POLL, dict)
    now = time.monotonic()
    with _POLL_LOCK:
        if now - last.get("at", float("-inf")) < interval:
            return []
        last["at"] = now
    return fire_due_schedules(runtime, registry=registry)


__all__ = ["fire_due_schedules", "fire_schedule", "poll", "SchedulesOptions", "MAX_FIRES_PER_POLL"]
