"""The LLM_CALL and TOOL_CALLS effect handlers (spec §15.2 / §15.3), the tool-wait resume merge and approvals.

Durability of TOOL_CALLS
------------------------
The handlers are registered with ``side_effects=True``: the kernel commits a ``started`` reservation before a
handler runs and, after a crash, re-executes the in-doubt step under the *same* idempotency key. To keep a tool
that already ran from running again, every completed tool result is written to a journal keyed by
``(idempotency key, runtime_call_id)`` *before* the next call starts and before the handler returns
(:mod:`.tool_executor`: the runtime's artifact store -- a ``FileArtifactStore`` beside a persistent store is
written atomically and fsynced -- else a process-local journal). On re-execution, journalled calls are served from
the journal and only the calls that never completed run again. Executing executors are therefore driven one call
at a time. What remains at-least-once is a call that was *in flight* when the process died.

Runtime-owned tools: ``open_attachment`` calls are answered by the handler itself (:mod:`.attachments`), with any
executor; they only read, so they are neither journalled nor sent for approval.

Runtime call ids: a call without ``runtime_call_id`` gets ``rtcall_<key>_<n>`` (``n`` 1-based), stable across a
crash-and-retry of the step because the key is.

The handlers live by concern: :mod:`.llm_effect` (LLM_CALL), :mod:`.tool_effect` (TOOL_CALLS) and
:mod:`.approvals` (resuming tool waits, approvals); this module keeps their public names and builds the
reference-style handlers (:func:`build_effect_handlers`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from abstractruntime import EffectOutcome
from abstractruntime.policy import compute_idempotency_key

from .approvals import approval_payload, merge_results, parse_decisions, prepare_resume, resolve_tool_approval
from .calls import idempotency_key as _idempotency_key  # noqa: F401 - the former private name
from .llm_effect import llm_call, make_llm_call_handler, trim_messages  # noqa: F401 - make_llm_call_handler
from .tool_effect import (  # noqa: F401 - re-exported
    MISSING_RESULT,
    PATH_ARGUMENTS,
    _execute_journalled,
    apply_workspace,
    normalize_result,
    prepare_calls,
    tool_calls,
)


# --- reference-style handlers (``Runtime(effect_handlers=...)``) ---------------------------------------------------
class _LegacyCall:
    """What a reference-style handler ``fn(run, effect, default_next_node)`` can offer: the key is recomputed the
    way ``DefaultEffectPolicy`` computes it."""

    def __init__(self, run: Any, effect: Any, default_next_node: Optional[str], runtime: Any = None) -> None:
        self.run = run
        self.effect = effect
        self.default_next_node = default_next_node
        self.node_id = run.current_node
        self.runtime = runtime
        self.idempotency_key = compute_idempotency_key(run_id=run.run_id, node_id=run.current_node, effect=effect,
                                                       step=getattr(run, "step", None))
        self.attempt = 1


class _LegacyStores:
    """The stores a reference-style handler was given: what ``open_attachment`` reads."""

    def __init__(self, artifact_store: Any, run_store: Any) -> None:
        self.artifact_store = artifact_store
        self.run_store = run_store


def build_effect_handlers(*, llm: Any, tools: Any = None, artifact_store: Any = None,
                          run_store: Any = None) -> Dict[Any, Any]:
    """``{EffectType.LLM_CALL: fn, EffectType.TOOL_CALLS: fn}`` for ``Runtime(effect_handlers=...)``.

    Reference-style handlers do not see the runtime: prefer the plugin (the factories use it). Tool results are
    journalled in ``artifact_store`` when given, else in process memory; ``open_attachment`` reads
    ``artifact_store`` (and ``run_store`` for the ancestors of a child run)."""
    from abstractruntime import EffectType

    def llm_handler(run: Any, effect: Any, default_next_node: Optional[str] = None) -> EffectOutcome:
        return llm_call(_LegacyCall(run, effect, default_next_node), llm, artifact_store=artifact_store)

    return {EffectType.LLM_CALL: llm_handler,
            EffectType.TOOL_CALLS: make_tool_calls_handler(tools=tools, artifact_store=artifact_store,
                                                           run_store=run_store)}


def make_tool_calls_handler(*, tools: Any = None, artifact_store: Any = None, run_store: Any = None) -> Any:
    """A reference-style TOOL_CALLS handler ``fn(run, effect, default_next_node)`` (integration-surface §3.1).

    Tool results are journalled in ``artifact_store`` when given, else in process memory; ``open_attachment`` and
    the session attachments read and write ``artifact_store``; ``run_store`` is where the session-memory owner run
    is created (and the ancestors of a child run are read)."""
    from .tool_executor import ArtifactToolResultJournal, MemoryToolResultJournal

    journal = ArtifactToolResultJournal(artifact_store) if artifact_store is not None else MemoryToolResultJournal()
    stores = _LegacyStores(artifact_store, run_store)

    def tools_handler(run: Any, effect: Any, default_next_node: Optional[str] = None) -> EffectOutcome:
        return tool_calls(_LegacyCall(run, effect, default_next_node, runtime=stores), tools, journal=journal,
                          artifact_store=artifact_store, run_store=run_store)

    return tools_handler


__all__ = ["llm_call", "tool_calls", "make_tool_calls_handler", "prepare_resume", "merge_results",
           "resolve_tool_approval", "build_effect_handlers", "parse_decisions", "approval_payload", "prepare_calls",
           "apply_workspace", "normalize_result", "trim_messages", "PATH_ARGUMENTS", "MISSING_RESULT"]
