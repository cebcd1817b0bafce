"""Reference package ``abstractruntime.memory`` (the code lives in the ``active_memory`` plugin). Hosts of 0.4.2
import its modules by path: ``.active_context``, ``.active_memory``, ``.compaction``, ``.kg_packets``,
``.memact_composer``, ``.recall_levels``, ``.token_budget``."""

from abstractruntime_active_memory.active_context import ActiveContextPolicy
from abstractruntime_active_memory.spans import TimeRange

__all__ = ["ActiveContextPolicy", "TimeRange"]
