"""The memory effects that move messages between the active context and the archive: MEMORY_COMPACT (older
messages into a ``conversation_span``, replaced by a summary from the host's ``chat_summarizer`` or ``LLM_CALL``)
and MEMORY_REHYDRATE (archived messages or notes back into the context).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime import Effect, EffectCall, EffectOutcome, EffectType

from .memory_call import Memory, Refused, envelope, int_option, log, text_of, tool_ids
from .recall_levels import Budget, level_of, policy_for
from .spans import context_messages, run_spans, span_id_of, spans_of

COMPRESSION = {
    "light": "Light compression: keep most details and drop only redundancy.",
    "standard": "Standard compression: keep the main points and the context needed to continue.",
    "heavy": "Heavy compression: keep only the critical facts and decisions, in a few sentences.",
}
PLACEMENTS = ("after_summary", "after_system", "end")


# --- MEMORY_COMPACT ------------------------------------------------------------------------------------------------
def _summarize(m: Memory, messages: List[Dict[str, Any]], mode: str, focus: Optional[str]
               ) -> Tuple[str, Dict[str, Any]]:
    """The summary of ``messages``: through the host's chat summariser, else through ``LLM_CALL``."""
    summarizer = m.runtime.chat_summarizer
    if summarizer is not None:
        mode_arg: Any = mode
        if type(summarizer).__module__.startswith("abstractcore"):
            from abstractcore.processing.basic_summarizer import CompressionMode  # the host already imported it

            mode_arg = CompressionMode(mode)
        try:
            fn = getattr(summarizer, "summarize_chat_history", None)
            out = (fn(messages, preserve_recent=0, focus=focus, compression_mode=mode_arg) if fn is not None
                   else summarizer(messages, focus=focus, compression_mode=mode_arg))
        except Exception as exc:
            raise Refused(f"chat_summarizer failed: {type(exc).__name__}: {exc}") from None
        text = out if isinstance(out, str) else out.get("summary") if isinstance(out, dict) \
            else getattr(out, "summary", None)
        if not isinstance(text, str) or not text.strip():
            raise Refused("chat_summarizer returned no summary text")
        return text.strip(), {"via": "chat_summarizer"}
    if "llm_call" not in m.runtime.effect_handler_types():
        raise Refused("memory_compact summarises through LLM_CALL, and no LLM_CALL handler is installed: install "
                      "abstractruntime[abstractcore] (or another LLM_CALL plugin) or pass Runtime(chat_summarizer=...)")
    transcript = "\n".join(f"{x.get('role')}: {text_of(x.get('content'))[:4000]}" for x in messages)
    system = ("You summarise a conversation so that it can continue without the original messages. Keep decisions, "
              "facts, names, numbers, commitments and open questions. " + COMPRESSION[mode]
              + (f" Focus especially on: {focus}." if focus else "") + " Answer with the summary only.")
    payload: Dict[str, Any] = {"prompt": f"Conversation to summarise:\n\n{transcript}", "system_prompt": system,
                               "params": {"temperature": 0.2}}
    for key in ("provider", "model"):
        if m.payload.get(key):
            payload[key] = m.payload[key]
    outcome = m.runtime.execute_effect(m.call.run, Effect(EffectType.LLM_CALL, payload, None),
                                       node_id=m.call.node_id, idempotency_key=f"{m.key}:compact")
    if outcome.status == "waiting":  # reference defect 25: say so instead of hanging or losing the wait
        raise Refused("the summarising LLM_CALL asked to wait, and a compaction cannot wait: configure an LLM_CALL "
                      "handler that answers directly, or pass Runtime(chat_summarizer=...)")
    if outcome.status != "completed":
        raise Refused(f"the summarising LLM_CALL failed: {outcome.error}")
    result = outcome.result or {}
    text = result.get("content") or result.get("response") or result.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Refused("the summarising LLM_CALL returned no text")
    return text.strip(), {"via": "llm_call", "usage": result.get("usage"), "model": result.get("model")}


def memory_compact(call: EffectCall) -> EffectOutcome:
    tool, call_id = tool_ids(call, "compact_memory")
    try:
        m = Memory(call)
        preserve = int_option(m.payload, "preserve_recent", 6)
        mode = str(m.payload.get("compression_mode") or "standard").lower()
        if mode not in COMPRESSION:
            raise Refused(f"compression_mode must be one of {', '.join(COMPRESSION)}, got {mode!r}")
        focus = m.payload.get("focus") if isinstance(m.payload.get("focus"), str) else None
        target = m.target()
        span_id = f"span_{m.key[:24]}"
        if any(span_id_of(s) == span_id for s in spans_of(target.vars)):
            return envelope(tool, call_id, output=f"Already compacted into {span_id}.", span_id=span_id)
        messages = [x for x in ((target.vars.get("context") or {}).get("messages") or []) if isinstance(x, dict)]
        conversation = [i for i, x in enumerate(messages) if x.get("role") != "system"]
        older = conversation[: max(0, len(conversation) - preserve)]
        if not older:
            return envelope(tool, call_id, output=f"Nothing to compact: {len(conversation)} conversation messages, "
                                                  f"preserve_recent={preserve}.", span_id=None, compacted=0)
        m.require_store()
        archived = []
        for n, i in enumerate(older):
            message = json.loads(json.dumps(messages[i]))
            message.setdefault("metadata", {}).setdefault("message_id", f"msg_{span_id}_{n + 1}")
            archived.append(message)
        summary, how = _summarize(m, archived, mode, focus)
        now = call.now_iso()
        stamps = [x.get("timestamp") for x in archived if isinstance(x.get("timestamp"), str)]
        span = {
            "kind": "conversation_span", "span_id": span_id, "artifact_id": span_id, "created_at": now,
            "scope": "run", "from_timestamp": stamps[0] if stamps else None,
            "to_timestamp": stamps[-1] if stamps else None, "message_count": len(archived),
            "compression_mode": mode, "focus": focus, "summary": summary, "tags": {},
            "summary_message_id": f"summary_{span_id}", "run_id": target.run_id,
        }
        summary_message = {
            "role": "system", "timestamp": now,
            "content": f"[CONVERSATION HISTORY SUMMARY {span_id}: {len(archived)} earlier messages]\n{summary}",
            "metadata": {"kind": "memory_summary", "span_id": span_id, "source_artifact_id": span_id,
                         "message_id": f"summary_{span_id}"},
        }
        m.require_store().store(json.dumps({"span": span, "messages": archived}, ensure_ascii=False).encode("utf-8"),
                                content_type="application/json", run_id=target.run_id,
                                tags={"kind": "memory_span", "scope": "run", "span_id": span_id},
                                artifact_id=span_id)
        originals = [messages[i] for i in older]

        def compact(vars: Dict[str, Any]) -> None:
            spans = run_spans(vars)
            if any(span_id_of(s) == span_id for s in spans):
                return
            current = context_messages(vars)
            positions = [i for i, x in enumerate(current) if isinstance(x, dict) and x.get("role") != "system"]
            positions = positions[: len(originals)]
            if [current[i] for i in positions] != originals:  # another writer changed the context meanwhile
                raise Refused(f"the context of run {target.run_id} changed during the compaction; nothing was "
                              f"changed, retry")
            dropped = set(positions)
            kept = [x for i, x in enumerate(current) if i not in dropped]
            kept.insert(sum(1 for i in range(positions[0]) if i not in dropped), summary_message)
            current[:] = kept
            spans.append(span)

        m.change_run(target, compact)
    except Refused as exc:
        return envelope(tool, call_id, error=str(exc))
    log.info("memory_compacted", run_id=target.run_id, span_id=span_id, messages=len(archived), via=how["via"])
    return envelope(tool, call_id, output=f"Compacted {len(archived)} messages into {span_id}; kept "
                                          f"{len(conversation) - len(archived)} recent messages.",
                    meta={"span_id": span_id, "preserve_recent": preserve, "compression_mode": mode, "focus": focus},
                    span_id=span_id, compacted=len(archived), summary=summary, summarizer=how)


# --- MEMORY_REHYDRATE ----------------------------------------------------------------------------------------------
def _message_id(message: Any) -> Any:
    return (message.get("metadata") or {}).get("message_id") if isinstance(message, dict) else None


def _insert_at(messages: List[Dict[str, Any]], placement: str, span_id: str) -> Tuple[int, Optional[str]]:
    leading = 0
    while leading < len(messages) and messages[leading].get("role") == "system":
        leading += 1
    if placement == "end":
        return len(messages), None
    if placement == "after_summary":
        for i, x in enumerate(messages):
            meta = x.get("metadata") or {}
            if meta.get("kind") == "memory_summary" and meta.get("span_id") == span_id:
                return i + 1, None
        return leading, f"{span_id}: no summary message in the context; inserted after the system messages"
    return leading, None


def memory_rehydrate(call: EffectCall) -> EffectOutcome:
    warnings: List[str] = []
    report: List[Dict[str, Any]] = []
    inserted = skipped = 0
    m = Memory(call)
    try:  # an invalid recall_level or no artifact store fails the effect, even for no span ids (reference)
        level = level_of(m.payload)
        m.require_store()
    except (ValueError, Refused) as exc:
        return EffectOutcome.failed(str(exc))
    effort: Optional[Dict[str, Any]] = None
    try:
        ids = m.payload.get("span_ids") or ([m.payload["span_id"]] if m.payload.get("span_id") else [])
        ids = [ids] if isinstance(ids, str) else [str(i).strip() for i in ids if str(i).strip()]
        if not ids:
            return EffectOutcome.completed({"inserted": 0, "skipped": 0, "artifacts": []})  # a no-op
        placement = str(m.payload.get("placement") or "after_summary").lower()
        if placement not in PLACEMENTS:
            raise Refused(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        wanted = int_option(m.payload, "max_messages", -1) if m.payload.get("max_messages") is not None else None
        if level is None:
            max_messages = wanted if wanted is not None else 10 ** 9  # without a level: as many as asked (all)
        else:
            limits, b = policy_for(level).rehydrate, Budget(level)
            max_messages = b.clamp("max_messages", wanted, limits.max_messages_default, limits.max_messages_max)
            warnings.extend(b.warnings)
            effort = {"recall_level": level.value, "applied": {"max_messages": max_messages}}
        budget = max_messages
        target = m.target()
        plan: List[Tuple[str, List[Dict[str, Any]], Dict[str, Any]]] = []
        for span_id in ids:
            found = m.find_span(span_id, target)
            if found is None:
                warnings.append(f"{span_id}: unknown span")
                continue
            span = found[1]
            doc = m.load_content(span)
            if span.get("kind") == "conversation_span":
                restored = [json.loads(json.dumps(x)) for x in doc.get("messages") or [] if isinstance(x, dict)]
            elif span.get("kind") == "memory_note" and isinstance(doc.get("note"), str):
                restored = [{"role": "system", "content": f"[MEMORY NOTE]\n{doc['note']}",
                             "metadata": {"kind": "memory_note", "span_id": span_id,
                                          "message_id": f"memory_note:{span_id}"}}]
            elif span.get("kind") == "evidence":
                restored = [{"role": "system", "content": f"[EVIDENCE {span_id}] {text_of(doc)[:4000]}",
                             "metadata": {"kind": "evidence", "span_id": span_id, "message_id": f"msg_{span_id}"}}]
            else:
                warnings.append(f"{span_id}: nothing to rehydrate (kind {span.get('kind')!r}, content missing)")
                continue
            plan.append((span_id, restored, span))

        def rehydrate(vars: Dict[str, Any]) -> None:
            nonlocal inserted, skipped, budget
            messages = context_messages(vars)
            present = {_message_id(x) for x in messages}
            for span_id, restored, span in plan:
                fresh = [x for x in restored if _message_id(x) not in present]
                dup = len(restored) - len(fresh)
                over = fresh[budget:] if budget < len(fresh) else []
                fresh = fresh[:budget]
                budget -= len(fresh)
                source = span.get("artifact_id") or span.get("evidence_id") or span_id
                for x in fresh:  # the reference's marks, and ours (rehydrated_from: the span)
                    meta = x.setdefault("metadata", {})
                    meta.update(rehydrated=True, source_artifact_id=source, rehydrated_from=span_id)
                order = {_message_id(x): k for k, x in enumerate(restored)}
                for x in fresh:  # archive order is kept, also around messages a previous rehydration restored
                    at, warning = _insert_at(messages, placement, span_id)
                    if warning and warning not in warnings:
                        warnings.append(warning)
                    for i, y in enumerate(messages):
                        if order.get(_message_id(y), len(order)) < order[_message_id(x)]:
                            at = max(at, i + 1)
                    messages.insert(at, x)
                present.update(_message_id(x) for x in fresh)
                inserted += len(fresh)
                skipped += dup + len(over)
                if over:
                    warnings.append(f"{span_id}: {len(over)} messages not inserted (max_messages={max_messages})")
                report.append({"span_id": span_id, "artifact_id": source, "inserted": len(fresh),
                               "skipped": dup + len(over), "error": None, "kind": span.get("kind")})

        if plan:
            m.change_run(target, rehydrate)
    except Refused as exc:
        return EffectOutcome.completed({"inserted": 0, "skipped": 0, "artifacts": [], "error": str(exc),
                                        "warnings": [str(exc)]})
    if not plan:  # no span resolved: the reference's no-op result
        log.debug("memory_rehydrate_nothing_resolved", warnings=warnings)
        return EffectOutcome.completed({"inserted": 0, "skipped": 0, "artifacts": []})
    return EffectOutcome.completed({"inserted": inserted, "skipped": skipped, "artifacts": report, "effort": effort,
                                    "warnings": warnings or None, "placement": placement})


__all__ = ["memory_compact", "memory_rehydrate", "COMPRESSION", "PLACEMENTS"]
