"""Reference path ``abstractruntime.scheduler.convenience``."""

from abstractruntime_scheduler.scheduler import ScheduledRuntime, create_scheduled_runtime

__all__ = ["ScheduledRuntime", "create_scheduled_runtime"]
