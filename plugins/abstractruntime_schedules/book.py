"""Where schedules live: each is a *record run* in the runtime's own store, so every process on the store -- several
schedulers on one LMDB directory, many workers on one PostgreSQL database, the CLI -- sees the same schedules, and
``store copy`` / backups carry them like any run.

A record run has the reserved workflow id :data:`SCHEDULE_WORKFLOW_ID`, the run id ``uuid5(schedule_id)``, status
WAITING for an event nobody emits (no driver ever ticks it) and the definition under ``vars["schedule"]``; its
ledger tells its history (added, paused, resumed, replaced, removed). Removing a schedule cancels its record run.
Changes are revision-checked commits (``update_run``); a new record is created only if no process created it first
(a create-only precondition checked inside the store's write transaction: :func:`create_only`).
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional, Tuple

from attrs import define, field

from abstractruntime import codec
from abstractruntime.errors import (AbstractRuntimeError, ConcurrentModificationError, ConfigurationError,
                                    NotFoundError, ValidationError)
from abstractruntime.ledger_rows import row
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason, WaitState, utc_now_iso
from abstractruntime.storage.base import CommitView, Precondition
from abstractruntime.timeutil import now_utc, parse_instant
from abstractruntime_pluginkit.queries import answers_run_queries

from .choices import OVERLAPS
from .timing import CATCH_UPS, InvalidScheduleError, Timing, fire_time_text, make_timing, next_fire_after

#: the workflow id of schedule record runs (never a workflow of yours)
SCHEDULE_WORKFLOW_ID = "abstractruntime.schedule"
#: the ``effect.type`` of the ledger rows of record runs, and of the first row of every run a schedule starts
SCHEDULE_EFFECT_TYPE = "schedule"
FIRE_EFFECT_TYPE = "schedule_fire"
MAX_SCHEDULES = 10_000
_NAMESPACE = uuid.UUID("6f1c0a52-3b7e-5d0e-9a55-2f8e6c1d7b40")
#: the idempotency key of the first ledger row of a run that must not exist yet (see :func:`create_only`)
CREATE_KEY_PREFIX = "system:create:"


class ScheduleError(AbstractRuntimeError):
    """Base class of the schedules plugin's errors."""


class ScheduleNotFoundError(ScheduleError, NotFoundError):
    """No (active) schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"No schedule {schedule_id!r} (`abstractruntime schedules list` shows the schedules)")
        self.schedule_id = schedule_id


class ScheduleExistsError(ScheduleError, ValidationError):
    """``add_schedule`` for an id that is taken; nothing was changed."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"Schedule {schedule_id!r} already exists; nothing was changed (pass replace=True / "
                         f"--replace to redefine it, or remove it first)")
        self.schedule_id = schedule_id


class SchedulesNotSupportedError(ScheduleError, ConfigurationError):
    """The runtime's run store cannot list runs, so schedules cannot be found in it."""


class AlreadyCreatedError(ConcurrentModificationError):
    """A create-only commit found its run already created (by another process); nothing was written."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id=run_id, expected=None, actual=None,
                         message=f"Run {run_id} was already created by another writer; nothing was written.")


def create_key(run_id: str) -> str:
    return CREATE_KEY_PREFIX + run_id


def create_only(run_id: str) -> Precondition:
    """The commit precondition of a run that must be new: its ledger is still empty inside the store's write
    transaction (runs created this way always have a first row, so another process's creation is seen)."""

    def check(view: CommitView) -> None:
        if view.last_record(run_id) is not None:
            raise AlreadyCreatedError(run_id)

    return check


def record_run_id(schedule_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "schedule\x00" + schedule_id))


def fire_run_id(schedule_id: str, fire_time: str) -> str:
    """The id of the run a schedule starts for a fire time: the same in every process, so one run per fire."""
    return str(uuid.uuid5(_NAMESPACE, f"fire\x00{schedule_id}\x00{fire_time}"))


def _choice(name: str, value: Any, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidScheduleError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


@define
class Schedule:
    """A schedule's definition and where it got to (``cursor``: the fire times up to it are handled)."""

    schedule_id: str
    workflow_id: str
    cron: Optional[str] = None
    every_s: Optional[int] = None
    timezone: str = "UTC"
    vars: Dict[str, Any] = field(factory=dict)
    overlap: str = "skip"
    catch_up: str = "none"
    paused: bool = False
    created_at: str = field(factory=utc_now_iso)
    cursor: str = field(factory=utc_now_iso)
    last_fire_time: Optional[str] = None
    last_run_id: Optional[str] = None
    last_skipped_time: Optional[str] = None
    fired: int = 0

    @property
    def timing(self) -> Timing:
        return Timing(cron=self.cron, every_s=self.every_s, timezone=self.timezone)

    def next_fire_time(self) -> str:
        """When it fires next (for ``catch_up="none"``, never in the past: missed fire times are dropped)."""
        after = max(parse_instant(self.cursor), now_utc()) if self.catch_up == "none" else parse_instant(self.cursor)
        return fire_time_text(next_fire_after(self.timing, after))

    def to_dict(self) -> Dict[str, Any]:
        return codec.converter.unstructure(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Schedule":
        return codec.converter.structure(dict(data), cls)


def new_schedule(*, schedule_id: Any, workflow_id: Any, cron: Optional[str], every_s: Optional[float], vars: Any,
                 timezone: Optional[str], overlap: str, catch_up: str) -> Schedule:
    """A checked definition (:class:`InvalidScheduleError` says what is wrong) whose fire times start now."""
    for name, value in (("schedule_id", schedule_id), ("workflow_id", workflow_id)):
        if not isinstance(value, str) or not value.strip() or len(value) > 200 or not value.isprintable():
            raise InvalidScheduleError(f"{name} must be a non-blank printable string of at most 200 characters, "
                                       f"got {value!r}")
    if workflow_id == SCHEDULE_WORKFLOW_ID:
        raise InvalidScheduleError(f"workflow_id {SCHEDULE_WORKFLOW_ID!r} is reserved for schedule records")
    timing = make_timing(cron=cron, every_s=every_s, timezone=timezone)
    if vars is None:
        vars = {}
    if not isinstance(vars, dict):
        raise InvalidScheduleError(f"vars must be a dict (the new runs' variables), got {type(vars).__name__}")
    try:
        codec.check_json(vars, "vars")
    except Exception as exc:
        raise InvalidScheduleError(f"vars must be plain JSON: {exc}") from None
    return Schedule(schedule_id=schedule_id, workflow_id=workflow_id, cron=timing.cron, every_s=timing.every_s,
                    timezone=timing.timezone, vars=codec.from_json_text(codec.to_json_bytes(vars)),
                    overlap=_choice("overlap", overlap, OVERLAPS), catch_up=_choice("catch_up", catch_up, CATCH_UPS))


# --- the record runs ----------------------------------------------------------------------------------------------
def schedule_of(run: RunState) -> Schedule:
    return Schedule.from_dict(run.vars["schedule"])


def _row(run: RunState, action: str, schedule: Schedule, **extra: Any) -> StepRecord:
    payload = {"action": action, "schedule_id": schedule.schedule_id, **extra}
    return row(run, "schedule", StepStatus.COMPLETED,
               effect={"type": SCHEDULE_EFFECT_TYPE, "payload": payload, "result_key": None},
               result={"schedule": schedule.to_dict()} if action in ("added", "replaced") else {action: True})


def _wait(schedule_id: str) -> WaitState:
    return WaitState(reason=WaitReason.EVENT, wait_key=f"{SCHEDULE_WORKFLOW_ID}:{schedule_id}",
                     prompt="schedule record (no one resumes it)", allow_free_text=False,
                     details={"kind": "schedule", "schedule_id": schedule_id})


def _require_queries(runtime: Any) -> None:
    if not answers_run_queries(runtime.run_store):
        raise SchedulesNotSupportedError(
            f"Schedules need a store that can list runs (Capability.RUN_QUERIES); "
            f"{type(runtime.run_store).__name__} cannot. Use the lmdb, sqlite, postgres or memory store.")


def load_record(runtime: Any, schedule_id: str, *, active: bool = True) -> Optional[RunState]:
    run = runtime.run_store.load(record_run_id(schedule_id))
    if run is None or run.workflow_id != SCHEDULE_WORKFLOW_ID:
        return None
    if active and run.status is not RunStatus.WAITING:
        return None
    return run


def add(runtime: Any, schedule: Schedule, *, replace: bool = False) -> Schedule:
    """Store a new schedule (or, with ``replace``, redefine an existing one: its fire times start again now)."""
    _require_queries(runtime)
    rid = record_run_id(schedule.schedule_id)
    existing = runtime.run_store.load(rid)
    if existing is None:
        run = RunState(run_id=rid, workflow_id=SCHEDULE_WORKFLOW_ID, status=RunStatus.WAITING,
                       current_node="schedule", vars={"schedule": schedule.to_dict()},
                       waiting=_wait(schedule.schedule_id))
        first = _row(run, "added", schedule)
        first.idempotency_key = create_key(rid)
        try:
            runtime.commit(run, [first], expected_revision=None)
            return schedule
        except ConcurrentModificationError:
            if runtime.run_store.load(rid) is None:
                raise
            existing = None  # another process added it in between: treat as existing below
    if not replace and (existing is None or existing.status is RunStatus.WAITING):
        raise ScheduleExistsError(schedule.schedule_id)

    def mutate(run: RunState) -> Optional[List[StepRecord]]:
        if run.status is RunStatus.WAITING and not replace:
            raise ScheduleExistsError(schedule.schedule_id)
        action = "replaced" if run.status is RunStatus.WAITING else "added"
        run.status, run.error, run.waiting = RunStatus.WAITING, None, _wait(schedule.schedule_id)
        run.vars["schedule"] = schedule.to_dict()
        return [_row(run, action, schedule)]

    runtime.update_run(rid, mutate)
    return schedule


def change(runtime: Any, schedule_id: str, action: str) -> Schedule:
    """``paused`` / ``resumed`` / ``removed``: one revision-checked commit with a ledger row."""
    _require_queries(runtime)
    if load_record(runtime, schedule_id) is None:
        raise ScheduleNotFoundError(schedule_id)

    def mutate(run: RunState) -> Optional[List[StepRecord]]:
        if run.status is not RunStatus.WAITING:
            raise ScheduleNotFoundError(schedule_id)
        schedule = schedule_of(run)
        if action == "removed":
            run.status, run.waiting, run.error = RunStatus.CANCELLED, None, "schedule removed"
            return [_row(run, action, schedule)]
        paused = action == "paused"
        if schedule.paused == paused:
            return None
        schedule.paused = paused
        if not paused:  # fire times missed while paused are not made up: the schedule goes on from now
            schedule.cursor = max(parse_instant(schedule.cursor), now_utc()).isoformat()
        run.vars["schedule"] = schedule.to_dict()
        return [_row(run, action, schedule)]

    return schedule_of(runtime.update_run(record_run_id(schedule_id), mutate))


def active_records(runtime: Any) -> List[RunState]:
    """The record runs of the active (not removed) schedules, by schedule id."""
    _require_queries(runtime)
    runs = runtime.run_store.list_runs(workflow_id=SCHEDULE_WORKFLOW_ID, status=RunStatus.WAITING,
                                       limit=MAX_SCHEDULES)
    return sorted((r for r in runs if isinstance(r.vars.get("schedule"), dict)),
                  key=lambda r: r.vars["schedule"].get("schedule_id", ""))


def listing(runtime: Any) -> List[Dict[str, Any]]:
    out = []
    for run in active_records(runtime):
        schedule = schedule_of(run)
        data = schedule.to_dict()
        data["next_fire_time"] = None if schedule.paused else schedule.next_fire_time()
        out.append(data)
    return out


__all__ = ["Schedule", "SCHEDULE_WORKFLOW_ID", "FIRE_EFFECT_TYPE", "ScheduleError", "ScheduleNotFoundError",
           "ScheduleExistsError", "SchedulesNotSupportedError", "AlreadyCreatedError", "create_only", "create_key",
           "record_run_id", "fire_run_id", "new_schedule", "add", "change", "active_records", "listing"]
