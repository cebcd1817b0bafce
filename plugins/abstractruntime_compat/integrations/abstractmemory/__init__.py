"""Reference path ``abstractruntime.integrations.abstractmemory`` (the code lives in the ``kg_memory`` plugin,
:mod:`abstractruntime_kg_memory`). Importing it does not import ``abstractmemory``; building the handlers needs the
``kg`` extra."""

from abstractruntime_kg_memory import build_memory_kg_effect_handlers, resolve_scope_owner_id

__all__ = ["build_memory_kg_effect_handlers", "resolve_scope_owner_id"]
