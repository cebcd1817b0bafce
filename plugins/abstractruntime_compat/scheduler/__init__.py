"""Reference package ``abstractruntime.scheduler`` (the scheduler lives in the ``scheduler`` plugin); its modules
``.scheduler``, ``.registry`` and ``.convenience`` are importable by path, as hosts of 0.4.2 import them."""

from .convenience import ScheduledRuntime, create_scheduled_runtime
from .registry import WorkflowRegistry
from .scheduler import Scheduler, SchedulerStats

__all__ = ["Scheduler", "SchedulerStats", "WorkflowRegistry", "ScheduledRuntime", "create_scheduled_runtime"]
