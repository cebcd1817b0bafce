"""Builtin plugin ``scheduler``: drives due timers, event-woken runs and woken parents with a worker pool.

Options (``[abstractruntime.plugin_options.scheduler]``): ``workers`` (default 2), ``poll_interval_s``.
"""

from __future__ import annotations

from typing import Any

from abstractruntime import RunState, RunStatus, hookimpl

from .scheduler import (
    ScheduledRuntime,
    Scheduler,
    SchedulerStats,
    create_scheduled_runtime,
    notify_runnable,
)

#: drives event listeners; in-memory default stores
abstractruntime_requires = ('events', 'memory')

__all__ = ["Scheduler", "SchedulerStats", "ScheduledRuntime", "create_scheduled_runtime"]


@hookimpl
def abstractruntime_run_status_changed(run: RunState, previous_status: RunStatus, runtime: Any) -> None:
    """A run that became RUNNING (resumed by an event, a woken parent, ...) is work: wake the poller now."""
    if run.status is RunStatus.RUNNING:
        notify_runnable(runtime, run.run_id)
