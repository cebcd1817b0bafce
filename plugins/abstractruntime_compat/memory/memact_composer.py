"""Reference path ``abstractruntime.memory.memact_composer``."""

from abstractruntime_active_memory.memact_composer import compose_memact_current_context_from_kg_result

__all__ = ["compose_memact_current_context_from_kg_result"]
