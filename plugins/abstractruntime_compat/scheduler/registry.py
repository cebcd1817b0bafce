"""Reference path ``abstractruntime.scheduler.registry``."""

from abstractruntime_pluginkit.registry import WorkflowRegistry

__all__ = ["WorkflowRegistry"]
