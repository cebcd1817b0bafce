"""Builtin plugin ``scheduler``: drives due timers, event-woken runs and woken parents with a worker pool.

Options (``[abstractruntime.plugin_options.scheduler]``): ``workers`` (default 2), ``poll_interval_s``.
"""

from __future__ import annotations

import sys
from typing import Any

from abstractruntime import RunState, RunStatus, hookimpl

from abstractruntime_pluginkit.lazy import lazy_exports

# Imported on first use: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(
    ["ScheduledRuntime", "Scheduler", "SchedulerStats", "create_scheduled_runtime", "notify_runnable"], ".scheduler"))

#: drives event listeners; in-memory default stores
abstractruntime_requires = ('events', 'memory')

__all__ = ["Scheduler", "SchedulerStats", "ScheduledRuntime", "create_scheduled_runtime"]


@hookimpl
def abstractruntime_add_hookspecs(pluginmanager: Any) -> None:
    """This plugin owns ``abstractruntime_driver_poll`` (docs/scheduler.md), which its poll loop calls."""
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def abstractruntime_run_status_changed(run: RunState, previous_status: RunStatus, runtime: Any) -> None:
    """A run that became RUNNING (resumed by an event, a woken parent, ...) is work: wake the poller now."""
    if run.status is RunStatus.RUNNING and "abstractruntime_scheduler.scheduler" in sys.modules:
        # no scheduler module loaded: no scheduler runs in this process, none to wake
        sys.modules["abstractruntime_scheduler.scheduler"].notify_runnable(runtime, run.run_id)
