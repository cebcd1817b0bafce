"""Builtin plugin ``active_memory``: the memory effects over a run's active context and its memory spans.

* ``MEMORY_NOTE`` -- remember a note (scope ``run``, ``session`` = the root run of the caller's tree, or
  ``global``); ``keep_in_context`` also puts it into ``vars.context.messages``. Tool name ``remember_note``.
* ``MEMORY_QUERY`` -- recall spans by text, time window, tags, authors, locations; ``recall_level`` sets how much
  (``urgent`` / ``standard`` / ``deep``); neighbours and tag-connected spans on request. Tool ``recall_memory``.
* ``MEMORY_TAG`` -- add (``merge``, default) or replace the tags of a span. Tool name ``remember``.
* ``MEMORY_COMPACT`` -- move older context messages into an archived ``conversation_span`` and replace them with a
  summary written by the host's ``chat_summarizer`` or through ``LLM_CALL``. Tool name ``compact_memory``.
* ``MEMORY_REHYDRATE`` -- put archived messages (or notes) back into the active context.

Span contents live in the artifact store (``runtime.artifact_store``, else the files beside a persistent store);
without one the effects answer with an error result. ``target_run_id`` may only name a run of the caller's tree.
See docs/memory.md.
"""

from __future__ import annotations

from typing import List

from abstractruntime import EffectHandlerDescriptor, EffectType, hookimpl
from abstractruntime_pluginkit.lazy import lazy_exports, lazy_function

# The effects are imported at their first call: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {"ActiveContextPolicy": ".active_context", "TimeRange": ".spans"})
memory_note, memory_query, memory_tag = (lazy_function(__name__, ".notes", n) for n in ("memory_note", "memory_query",
                                                                                          "memory_tag"))
memory_compact, memory_rehydrate = (lazy_function(__name__, ".compaction", n) for n in ("memory_compact",
                                                                                        "memory_rehydrate"))

#: memory spans are artifacts
abstractruntime_requires = ('artifacts',)


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [
        EffectHandlerDescriptor(EffectType.MEMORY_NOTE, memory_note, "Remember a note", side_effects=False),
        EffectHandlerDescriptor(EffectType.MEMORY_QUERY, memory_query, "Recall memory spans", side_effects=False),
        EffectHandlerDescriptor(EffectType.MEMORY_TAG, memory_tag, "Tag a memory span", side_effects=False),
        # A compaction calls an LLM: reserve the step first, so a crash mid-call is visible and re-runs under the
        # same idempotency key (the LLM request carries it).
        EffectHandlerDescriptor(EffectType.MEMORY_COMPACT, memory_compact, "Compact the active context",
                                side_effects=True),
        EffectHandlerDescriptor(EffectType.MEMORY_REHYDRATE, memory_rehydrate, "Rehydrate archived messages",
                                side_effects=False),
    ]


__all__ = ["ActiveContextPolicy", "TimeRange"]
