"""Reference path ``abstractruntime.scheduler.scheduler``."""

from abstractruntime.models import utc_now_iso
from abstractruntime_scheduler.scheduler import Scheduler, SchedulerStats

__all__ = ["Scheduler", "SchedulerStats", "utc_now_iso"]
