"""The LLM_CALL effect handler (spec §15.2, integration spec §2.7): the plugin's handler (:func:`llm_call`) and
the reference-style handler factory :func:`make_llm_call_handler`.

Both run the same pipeline (:mod:`.llm_pipeline`): grounding, trace metadata, routing, prompt cache key, pending
media, input trimming, output budget, attachment messages, structured output, media files, the truncation
contract, post-processing and context persistence.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

from abstractruntime import EffectOutcome

from .calls import idempotency_key as _idempotency_key
from .llm_pipeline import run_llm_call, start_llm_call

#: a reference-style handler: ``fn(run, effect, default_next_node) -> EffectOutcome``
EffectHandler = Callable[..., EffectOutcome]


def _estimate_tokens(message: Dict[str, Any]) -> int:
    import json

    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    return max(1, len(text) // 4)


def trim_messages(messages: List[Dict[str, Any]], max_input_tokens: Optional[int],
                  extra: str = "") -> List[Dict[str, Any]]:
    """Drop the oldest non-system messages until the estimate fits (the last message is always kept). Kept for
    callers of this package's earlier API; the handler uses ``trim_messages_to_max_input_tokens`` (spec §6.2)."""
    if not max_input_tokens or max_input_tokens <= 0:
        return messages
    budget = int(max_input_tokens) - len(extra) // 4
    out = list(messages)
    while len(out) > 1 and sum(_estimate_tokens(m) for m in out) > budget:
        for i, m in enumerate(out[:-1]):
            if m.get("role") != "system":
                del out[i]
                break
        else:
            break
    return out


def llm_call(call: Any, llm: Any, *, grounding: bool = True, artifact_store: Any = None) -> EffectOutcome:
    """Execute one LLM_CALL attempt of ``call`` (an ``EffectCall``) with ``llm`` (an AbstractCore LLM client).
    The artifact store is ``artifact_store``, else the runtime's."""
    if artifact_store is None and getattr(call, "runtime", None) is not None:
        from .attachments import artifact_store_of

        artifact_store = artifact_store_of(call.runtime)
    return run_llm_call(run=call.run, effect=call.effect, llm=llm, artifact_store=artifact_store,
                        node_id=call.node_id, idempotency_key=_idempotency_key(call), grounding=grounding)


def llm_call_async(call: Any, llm: Any, *, grounding: bool = True,
                   artifact_store: Any = None) -> Union[EffectOutcome, Awaitable[EffectOutcome]]:
    """:func:`llm_call` for a handler awaited on an asyncio host's loop (``AsyncRuntime``): prepared on this thread,
    it returns a coroutine awaiting ``llm.agenerate`` (AbstractCore's async generation) -- or the outcome, when it
    is known without a request."""
    if artifact_store is None and getattr(call, "runtime", None) is not None:
        from .attachments import artifact_store_of

        artifact_store = artifact_store_of(call.runtime)
    return start_llm_call(run=call.run, effect=call.effect, llm=llm, artifact_store=artifact_store,
                          node_id=call.node_id, idempotency_key=_idempotency_key(call), grounding=grounding)


def make_llm_call_handler(*, llm: Any, artifact_store: Any = None) -> EffectHandler:
    """A reference-style LLM_CALL handler ``(run, effect, default_next_node) -> EffectOutcome`` for
    ``Runtime(effect_handlers={EffectType.LLM_CALL: ...})``; ``artifact_store`` serves ``{"$artifact": id}`` media
    and the session-attachment index."""
    from abstractruntime.policy import compute_idempotency_key

    def handler(run: Any, effect: Any, default_next_node: Optional[str] = None) -> EffectOutcome:
        node_id = run.current_node
        key = compute_idempotency_key(run_id=run.run_id, node_id=node_id, effect=effect,
                                      step=getattr(run, "step", None))
        return run_llm_call(run=run, effect=effect, llm=llm, artifact_store=artifact_store, node_id=node_id,
                            idempotency_key=key)

    return handler


__all__ = ["llm_call", "llm_call_async", "make_llm_call_handler", "trim_messages", "EffectHandler"]
