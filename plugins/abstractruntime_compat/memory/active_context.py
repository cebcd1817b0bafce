"""Reference path ``abstractruntime.memory.active_context``."""

from abstractruntime_active_memory.active_context import ActiveContextPolicy, SpanId
from abstractruntime_active_memory.spans import TimeRange

__all__ = ["SpanId", "TimeRange", "ActiveContextPolicy"]
