"""Reference path ``abstractruntime.memory`` (the memory effects live in the ``active_memory`` plugin)."""

from abstractruntime_active_memory.spans import ActiveContextPolicy, TimeRange

__all__ = ["ActiveContextPolicy", "TimeRange"]
