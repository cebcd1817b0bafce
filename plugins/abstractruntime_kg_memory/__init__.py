"""Builtin plugin ``kg_memory``: knowledge-graph memory backed by AbstractMemory (``abstractmemory`` on PyPI).

* ``MEMORY_KG_ASSERT`` -- store ``{subject, predicate, object}`` assertions (predicates of the ``abstractsemantics``
  registry, aliases mapped; ``ex:*`` with ``allow_custom_predicates``) under a scope owner (``run``, ``session``,
  ``global``), de-duplicated, with provenance (span, writer run and workflow).
* ``MEMORY_KG_QUERY`` -- filter or semantically search them (one scope or ``all``), optionally packed into the
  ``## KG ACTIVE MEMORY`` text for a token budget; ``recall_level`` sets the defaults and limits.
* ``MEMORY_KG_RESOLVE`` -- which ``ex:`` entities a label names.

The store is durable and chosen by ``[abstractruntime.plugin_options.kg_memory]`` (:mod:`.store`): by default a
SQLite file ``kg_memory.sqlite3`` beside the runtime's store. The packages are optional (``pip install
'abstractruntime[kg]'``): without them the effects fail with a message saying what to install.

Hosts of 0.4.2 build the handlers themselves with :func:`build_memory_kg_effect_handlers` (reference path
``abstractruntime.integrations.abstractmemory``); handlers passed to ``Runtime(effect_handlers=...)`` take
precedence over the plugin's. See docs/memory.md.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import EffectHandlerDescriptor, EffectType, hookimpl

from abstractruntime_pluginkit.lazy import lazy_exports

from .errors import KgMemoryUnavailableError, KgStoreTypeError, UnknownMemoryScopeError
from .store import PLUGIN_NAME, KgMemoryOptions, check_options, close_kg_store, kg_store_for

# The handlers are imported at the first KG effect: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {"build_memory_kg_effect_handlers": ".handlers",
                                               "resolve_scope_owner_id": ".owners"})


def plugin_handler(effect_type: Any) -> Any:
    """:func:`.handlers.plugin_handler`, imported at the first call."""

    def handle(call: Any) -> Any:
        from .handlers import plugin_handler as build

        return build(effect_type)(call)

    handle.__name__ = handle.__qualname__ = f"kg_{str(getattr(effect_type, 'value', effect_type))}"
    return handle

#: the query packs assertions with the active_memory plugin's kg_packets and recall levels
abstractruntime_requires = ("active_memory",)


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [
        # a write to a store outside the run: reserve the step first (a re-run finds its own rows by id)
        EffectHandlerDescriptor(EffectType.MEMORY_KG_ASSERT, plugin_handler(EffectType.MEMORY_KG_ASSERT),
                                "Assert knowledge-graph facts (AbstractMemory)", side_effects=True),
        EffectHandlerDescriptor(EffectType.MEMORY_KG_QUERY, plugin_handler(EffectType.MEMORY_KG_QUERY),
                                "Query knowledge-graph memory (AbstractMemory)", side_effects=False),
        EffectHandlerDescriptor(EffectType.MEMORY_KG_RESOLVE, plugin_handler(EffectType.MEMORY_KG_RESOLVE),
                                "Resolve a label to knowledge-graph entities (AbstractMemory)", side_effects=False),
    ]


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``[abstractruntime.plugin_options.kg_memory]`` fails ``Runtime(...)`` (the store opens later)."""
    check_options(runtime.settings.options_for(PLUGIN_NAME))


__all__ = ["build_memory_kg_effect_handlers", "resolve_scope_owner_id", "kg_store_for", "close_kg_store",
           "KgMemoryOptions", "KgMemoryUnavailableError", "KgStoreTypeError", "UnknownMemoryScopeError"]
