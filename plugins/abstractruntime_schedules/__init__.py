"""Builtin plugin ``schedules``: recurring runs (docs/operations.md#schedules).

Runtime methods: ``add_schedule(schedule_id=..., workflow_id=..., cron="*/5 * * * *" or every_s=..., vars=...,
timezone=..., overlap="skip"|"allow", catch_up="none"|"one"|"all")``, ``list_schedules()``, ``pause_schedule(id)``,
``resume_schedule(id)``, ``remove_schedule(id)``, ``fire_due_schedules(now=None)``; command line ``abstractruntime
schedules list|add|remove|pause|resume``.

Schedules are stored in the runtime's store (record runs, :mod:`.book`); the drivers -- the scheduler plugin's poll
loop and the PostgreSQL worker -- start the due runs through the scheduler's ``abstractruntime_driver_poll`` hook,
one run per ``(schedule_id, fire time)`` even with many processes (:mod:`.firing`). Options
(``[abstractruntime.plugin_options.schedules]``): ``misfire_grace_s`` (60), ``poll_interval_s`` (0.5).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from abstractruntime import hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor
from abstractruntime.models import StepRecord

from abstractruntime_pluginkit.lazy import lazy_exports

# Imported on first use: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["Schedule", "ScheduleError", "ScheduleExistsError", "ScheduleNotFoundError",
                     "SchedulesNotSupportedError", "AlreadyCreatedError", "SCHEDULE_WORKFLOW_ID", "FIRE_EFFECT_TYPE",
                     "record_run_id", "fire_run_id"], ".book"),
    **dict.fromkeys(["Timing", "make_timing", "due_fires", "fire_times_after", "latest_fire_at_or_before",
                     "next_fire_after", "fire_time_text", "InvalidScheduleError"], ".timing"),
    **dict.fromkeys(["SchedulesOptions"], ".options"),
})

#: the drivers' poll hook (abstractruntime_driver_poll) is the scheduler plugin's extension point
abstractruntime_requires = ("scheduler",)

#: the idempotency key prefix of a create-only first row (as ``book.CREATE_KEY_PREFIX``; here to stay cheap)
_CREATE_KEY_PREFIX = "system:create:"


def add_schedule(runtime: Any, *, schedule_id: str, workflow_id: str, cron: Optional[str] = None,
                 every_s: Optional[float] = None, vars: Optional[Dict[str, Any]] = None,
                 timezone: Optional[str] = None, overlap: str = "skip", catch_up: str = "none",
                 replace: bool = False) -> Any:
    """Store a schedule that starts a run of ``workflow_id`` (with ``vars``) at every fire time after now: ``cron``
    (five fields, evaluated in ``timezone``, default UTC) or ``every_s`` (whole seconds, epoch-aligned). ``overlap``
    ``"skip"`` skips a fire time while the previous run is unfinished; ``catch_up`` says what happens to fire
    times missed while no driver ran (``"none"``: dropped, ``"one"``: one run, ``"all"``: every one). An existing
    id raises ``ScheduleExistsError`` unless ``replace``. Returns the stored ``Schedule``."""
    from . import book

    schedule = book.new_schedule(schedule_id=schedule_id, workflow_id=workflow_id, cron=cron, every_s=every_s,
                                 vars=vars, timezone=timezone, overlap=overlap, catch_up=catch_up)
    return book.add(runtime, schedule, replace=bool(replace))


def list_schedules(runtime: Any) -> List[Any]:
    """The active schedules (paused ones included), by id."""
    from . import book

    return [book.schedule_of(run) for run in book.active_records(runtime)]


def pause_schedule(runtime: Any, schedule_id: str) -> Any:
    """Stop starting runs for the schedule until ``resume_schedule`` (runs already started go on)."""
    from . import book

    return book.change(runtime, schedule_id, "paused")


def resume_schedule(runtime: Any, schedule_id: str) -> Any:
    """Start runs again from now on (fire times missed while paused are not made up)."""
    from . import book

    return book.change(runtime, schedule_id, "resumed")


def remove_schedule(runtime: Any, schedule_id: str) -> Any:
    """Remove the schedule (its record run is cancelled; runs it started are untouched)."""
    from . import book

    return book.change(runtime, schedule_id, "removed")


def fire_due_schedules(runtime: Any, now: Any = None) -> List[str]:
    """Start the runs the active schedules have due at ``now`` (default: the clock); the ids of the runs created.
    Drivers do it on every poll; a host without one may call it from its own loop."""
    from .firing import fire_due_schedules as fire

    return fire(runtime, now=now)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor("add_schedule", add_schedule, "Store a recurring schedule (cron or every_s)"),
        RuntimeMethodDescriptor("list_schedules", list_schedules, "The active schedules"),
        RuntimeMethodDescriptor("pause_schedule", pause_schedule, "Pause a schedule"),
        RuntimeMethodDescriptor("resume_schedule", resume_schedule, "Resume a paused schedule from now on"),
        RuntimeMethodDescriptor("remove_schedule", remove_schedule, "Remove a schedule"),
        RuntimeMethodDescriptor("fire_due_schedules", fire_due_schedules,
                                "Start the runs the schedules have due now (drivers do it on every poll)"),
    ]


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from .cli import cli_commands

    return cli_commands()


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """Bad ``plugin_options.schedules`` fail ``Runtime(...)``."""
    from abstractruntime_pluginkit import plugin_options

    from .options import SchedulesOptions

    plugin_options(runtime, "schedules", SchedulesOptions)


@hookimpl
def abstractruntime_prepare_ledger_records(runtime: Any, run_id: str, records: List[StepRecord]) -> Any:
    """A run created with a ``system:create:<run_id>`` first row (a schedule record, a fire's run) is written only
    if no one created it first: checked by the store inside its write transaction."""
    key = _CREATE_KEY_PREFIX + run_id
    for record in records:
        if record.idempotency_key == key:
            from .book import create_only

            return create_only(run_id)
    return None


@hookimpl
def abstractruntime_driver_poll(runtime: Any, registry: Any) -> None:
    from .firing import poll

    poll(runtime, registry)


__all__ = [
    "add_schedule", "list_schedules", "pause_schedule", "resume_schedule", "remove_schedule", "fire_due_schedules",
    "Schedule", "Timing", "make_timing", "due_fires", "fire_times_after", "latest_fire_at_or_before",
    "next_fire_after", "fire_time_text", "ScheduleError", "ScheduleExistsError", "ScheduleNotFoundError",
    "SchedulesNotSupportedError", "InvalidScheduleError", "AlreadyCreatedError", "SchedulesOptions",
    "SCHEDULE_WORKFLOW_ID", "FIRE_EFFECT_TYPE", "record_run_id", "fire_run_id",
]
