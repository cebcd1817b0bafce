"""Reference path ``abstractruntime.scheduler`` (the scheduler lives in the ``scheduler`` plugin)."""

from abstractruntime_scheduler.scheduler import (
    ScheduledRuntime,
    Scheduler,
    SchedulerStats,
    create_scheduled_runtime,
)

from .registry import WorkflowRegistry

__all__ = ["Scheduler", "SchedulerStats", "WorkflowRegistry", "ScheduledRuntime", "create_scheduled_runtime"]
