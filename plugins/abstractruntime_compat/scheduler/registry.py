"""Reference path ``abstractruntime.scheduler.registry``."""

from abstractruntime.registry import WorkflowRegistry

__all__ = ["WorkflowRegistry"]
