"""Reference path ``abstractruntime.integrations.abstractmemory.effect_handlers``."""

from abstractruntime_kg_memory import build_memory_kg_effect_handlers, resolve_scope_owner_id

__all__ = ["build_memory_kg_effect_handlers", "resolve_scope_owner_id"]
