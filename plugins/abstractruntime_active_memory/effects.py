"""The memory effects: MEMORY_NOTE, MEMORY_QUERY, MEMORY_TAG, MEMORY_COMPACT, MEMORY_REHYDRATE.

Every handler is safe to re-run for the same step (a crash between a write and the step's commit): ids derive from
the step's idempotency key, a span already written is not written twice, and a compaction already applied is not
applied again. Bad input never fails the run: it is an error result (``success: false``) the workflow can read.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from abstractruntime import Effect, EffectCall, EffectOutcome, EffectType, RunState
from abstractruntime.logs import get_logger
from abstractruntime.run_tree import find_in_run_tree, root_of
from abstractruntime_artifacts import artifact_store_for

from .spans import (
    GLOBAL_TAGS,
    SCOPES,
    ActiveContextPolicy,
    TimeRange,
    context_messages,
    normalize_tags,
    run_spans,
    span_id_of,
)

log = get_logger("abstractruntime.memory")

#: recall_level -> (limit_spans, max_messages, deep): defaults an explicit payload value overrides.
RECALL_LEVELS = {"urgent": (3, 20, False), "standard": (5, 80, False), "deep": (10, 200, True)}
COMPRESSION = {
    "light": "Light compression: keep most details and drop only redundancy.",
    "standard": "Standard compression: keep the main points and the context needed to continue.",
    "heavy": "Heavy compression: keep only the critical facts and decisions, in a few sentences.",
}
PLACEMENTS = ("after_summary", "after_system", "end")
NO_STORE = ("memory effects need an artifact store: pass Runtime(artifact_store=...) or use a persistent store "
            "(LMDB, SQLite, JSON files)")


class Refused(Exception):
    """Bad input or an unreachable target: becomes an error result, never a failed run."""


def envelope(tool: str, call_id: str, *, output: Any = None, error: Optional[str] = None,
             **extra: Any) -> EffectOutcome:
    """The reference tool envelope, plus top-level ``extra`` keys (ids a workflow can read directly)."""
    result: Dict[str, Any] = {"mode": "executed", "results": [
        {"call_id": call_id, "name": tool, "success": error is None, "output": output, "error": error}]}
    result.update(extra)
    return EffectOutcome.completed(result)


def _tool_ids(call: EffectCall, default_tool: str) -> Tuple[str, str]:
    payload = call.effect.payload or {}
    return str(payload.get("tool_name") or default_tool), str(payload.get("call_id") or "memory")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _int(payload: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Refused(f"{key} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise Refused(f"{key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise Refused(f"{key} must be >= {minimum}, got {number}")
    return number


class Memory:
    """One memory effect call: its payload, its target run and the places spans live."""

    def __init__(self, call: EffectCall) -> None:
        self.call = call
        self.runtime = call.runtime
        self.payload: Dict[str, Any] = dict(call.effect.payload or {})
        self.key = call.idempotency_key
        self.store = artifact_store_for(call.runtime)

    def require_store(self) -> Any:
        if self.store is None:
            raise Refused(NO_STORE)
        return self.store

    # --- runs ---------------------------------------------------------------------------------------------------
    def target(self) -> RunState:
        """The run the effect acts on: the caller, or ``target_run_id`` when it is in the caller's run tree."""
        target_id = self.payload.get("target_run_id")
        if not isinstance(target_id, str) or not target_id.strip():
            return self.call.run
        found = find_in_run_tree(self.runtime.run_store, self.call.run, target_id.strip())
        if found is None:
            raise Refused(f"Unknown target_run_id: {target_id.strip()} (only runs of this run's tree can be used)")
        return found

    def scope(self, default: str = "run", allowed: Tuple[str, ...] = SCOPES) -> str:
        scope = str(self.payload.get("scope") or default).strip().lower()
        if scope not in allowed:
            raise Refused(f"scope must be one of {', '.join(allowed)}, got {scope!r}")
        return scope

    def owner(self, scope: str, target: RunState) -> Optional[RunState]:
        """The run whose ``memory_spans`` hold spans of ``scope`` (None for global)."""
        if scope == "run":
            return target
        if scope == "session":
            return root_of(self.runtime.run_store, target)
        return None

    def change_run(self, run: RunState, mutate: Callable[[Dict[str, Any]], None]) -> None:
        """Apply ``mutate(vars)`` to ``run``: in place for the calling run (its step commits it), else as its own
        revision-checked commit."""
        if run.run_id == self.call.run.run_id:
            mutate(self.call.run.vars)
            return

        def update(other: RunState) -> List[Any]:
            mutate(other.vars)
            return []

        self.runtime.update_run(run.run_id, update)

    # --- spans --------------------------------------------------------------------------------------------------
    def global_spans(self) -> List[Dict[str, Any]]:
        if self.store is None:
            return []
        spans = []
        for meta in self.store.search(tags=GLOBAL_TAGS, limit=0):
            doc = self.store.load_json(meta.artifact_id)
            if isinstance(doc, dict) and isinstance(doc.get("span"), dict):
                spans.append(doc["span"])
        return spans

    def spans_in(self, scope: str, target: RunState) -> List[Dict[str, Any]]:
        owner = self.owner(scope, target)
        spans = ActiveContextPolicy.spans(owner.vars) if owner is not None else self.global_spans()
        return [dict(s, scope=s.get("scope") or scope) for s in spans]

    def find_span(self, span_id: str, target: RunState, scopes: Tuple[str, ...] = SCOPES
                  ) -> Optional[Tuple[str, Dict[str, Any]]]:
        for scope in scopes:
            for span in self.spans_in(scope, target):
                if span_id_of(span) == span_id:
                    return scope, span
        return None

    def save_span(self, scope: str, target: RunState, span: Dict[str, Any], content: Dict[str, Any]) -> None:
        """Store the span's content (artifact id = span id) and index the span in its scope; idempotent."""
        store = self.require_store()
        owner = self.owner(scope, target)
        tags = dict(GLOBAL_TAGS) if owner is None else {"kind": "memory_span", "scope": scope}
        tags["span_id"] = span["span_id"]
        store.store(json.dumps({"span": span, **content}, ensure_ascii=False).encode("utf-8"),
                    content_type="application/json", run_id=owner.run_id if owner is not None else None,
                    tags=tags, artifact_id=span["artifact_id"])
        if owner is None:
            return

        def add(vars: Dict[str, Any]) -> None:
            spans = run_spans(vars)
            if not any(span_id_of(s) == span["span_id"] for s in spans):
                spans.append(span)

        self.change_run(owner, add)

    def load_content(self, span: Mapping[str, Any]) -> Dict[str, Any]:
        artifact_id = span.get("artifact_id") or span.get("evidence_id")
        doc = self.store.load_json(artifact_id) if self.store is not None and artifact_id else None
        return doc if isinstance(doc, dict) else {}


# --- MEMORY_NOTE ---------------------------------------------------------------------------------------------------
def memory_note(call: EffectCall) -> EffectOutcome:
    tool, call_id = _tool_ids(call, "remember_note")
    try:
        m = Memory(call)
        note = m.payload.get("note", m.payload.get("content", m.payload.get("text")))
        if not isinstance(note, str) or not note.strip():
            raise Refused("memory_note requires payload.note (a non-empty string)")
        target, scope = m.target(), m.scope()
        m.require_store()
        span_id = f"note_{m.key[:24]}"
        now = call.now_iso()
        span = {
            "kind": "memory_note", "span_id": span_id, "artifact_id": span_id, "created_at": now,
            "scope": scope, "tags": normalize_tags(m.payload.get("tags")), "location": m.payload.get("location"),
            "author": m.payload.get("author") or call.run.actor_id, "run_id": call.run.run_id,
            "node_id": call.node_id, "text": note.strip()[:500],
        }
        sources = m.payload.get("sources")
        m.save_span(scope, target, span, {"note": note, "sources": sources})
        if m.payload.get("keep_in_context"):
            message = {"role": "system", "content": f"[MEMORY NOTE {span_id}] {note.strip()}", "timestamp": now,
                       "metadata": {"kind": "memory_note", "span_id": span_id, "message_id": f"msg_{span_id}"}}

            def keep(vars: Dict[str, Any]) -> None:
                messages = context_messages(vars)
                if not any((x.get("metadata") or {}).get("message_id") == message["metadata"]["message_id"]
                           for x in messages if isinstance(x, dict)):
                    messages.append(message)

            m.change_run(target, keep)
    except Refused as exc:
        return envelope(tool, call_id, error=str(exc))
    log.debug("memory_note", run_id=call.run.run_id, span_id=span_id, scope=scope)
    return envelope(tool, call_id, output=f"Noted as {span_id} ({scope} memory).", note_id=span_id,
                    span_id=span_id, artifact_id=span_id, scope=scope)


# --- MEMORY_TAG ----------------------------------------------------------------------------------------------------
def memory_tag(call: EffectCall) -> EffectOutcome:
    tool, call_id = _tool_ids(call, "remember")
    try:
        m = Memory(call)
        span_id = str(m.payload.get("span_id") or "").strip()
        tags = normalize_tags(m.payload.get("tags"))
        if not span_id or not tags:
            raise Refused("memory_tag requires payload.span_id and non-empty payload.tags")
        target = m.target()
        scopes = (m.scope(),) if m.payload.get("scope") else SCOPES
        found = m.find_span(span_id, target, scopes)
        if found is None:
            raise Refused(f"Unknown span_id: {span_id} (searched {', '.join(scopes)} memory)")
        scope, span = found
        merge = m.payload.get("merge", True) is not False
        new_tags = {**(span.get("tags") or {}), **tags} if merge else tags
        owner = m.owner(scope, target)
        if owner is None:
            doc = m.load_content(span)
            meta = m.store.get_metadata(span["artifact_id"])
            doc["span"] = dict(doc.get("span") or span, tags=new_tags)
            m.store.store(json.dumps(doc, ensure_ascii=False).encode("utf-8"), content_type="application/json",
                          tags=meta.tags if meta is not None else dict(GLOBAL_TAGS, span_id=span_id),
                          artifact_id=span["artifact_id"])
        else:
            def retag(vars: Dict[str, Any]) -> None:
                for s in run_spans(vars):
                    if span_id_of(s) == span_id:
                        s["tags"] = new_tags

            m.change_run(owner, retag)
    except Refused as exc:
        return envelope(tool, call_id, error=str(exc))
    rendered = ", ".join(f"{k}={v}" for k, v in sorted(new_tags.items()))
    return envelope(tool, call_id, output=f"Tagged {span_id}: {rendered}", span_id=span_id, tags=new_tags,
                    scope=scope)


# --- MEMORY_QUERY --------------------------------------------------------------------------------------------------
def _terms(query: Any) -> List[str]:
    return [t for t in re.findall(r"\w+", str(query or "").lower()) if len(t) > 1]


def _span_text(span: Mapping[str, Any]) -> str:
    tags = " ".join(f"{k} {v}" for k, v in (span.get("tags") or {}).items())
    return " ".join(_text(span.get(k)) for k in ("summary", "text", "location", "kind", "tool_name", "note")
                    if span.get(k)) + " " + tags


def _messages_text(messages: Any) -> str:
    return "\n".join(f"{x.get('role')}: {_text(x.get('content'))}" for x in messages or [] if isinstance(x, dict))


def _render(span: Mapping[str, Any], messages: List[Dict[str, Any]]) -> str:
    start, end = span.get("from_timestamp"), span.get("to_timestamp")
    when = f"{start} -> {end}" if start and end else span.get("created_at")
    tags = ", ".join(f"{k}={v}" for k, v in sorted((span.get("tags") or {}).items()))
    head = f"[{span_id_of(span)}] {span.get('kind')} ({span.get('scope')}) {when}"
    head += f" tags: {tags}" if tags else ""
    head += f" at {span['location']}" if span.get("location") else ""
    body = span.get("summary") or span.get("text") or span.get("tool_name") or ""
    lines = [head, f"  {body}"] if body else [head]
    lines += [f"  {x.get('role')}: {_text(x.get('content'))[:2000]}" for x in messages]
    return "\n".join(lines)


def memory_query(call: EffectCall) -> EffectOutcome:
    tool, call_id = _tool_ids(call, "recall_memory")
    try:
        m = Memory(call)
        level = str(m.payload.get("recall_level") or "standard").lower()
        if level not in RECALL_LEVELS:
            raise Refused(f"recall_level must be one of {', '.join(RECALL_LEVELS)}, got {level!r}")
        limit_default, messages_default, deep_default = RECALL_LEVELS[level]
        limit = _int(m.payload, "limit_spans", limit_default, 1)
        max_messages = _int(m.payload, "max_messages", messages_default)
        deep = bool(m.payload.get("deep", deep_default))
        returns = str(m.payload.get("return") or "rendered").lower()
        if returns not in ("rendered", "meta", "both"):
            raise Refused(f"return must be rendered, meta or both, got {returns!r}")
        tags_mode = str(m.payload.get("tags_mode") or "all").lower()
        if tags_mode not in ("all", "any"):
            raise Refused(f"tags_mode must be all or any, got {tags_mode!r}")
        scope = m.scope(allowed=SCOPES + ("all",))
        try:
            window = TimeRange(m.payload.get("since"), m.payload.get("until")) \
                if m.payload.get("since") or m.payload.get("until") else None
        except ValueError as exc:
            raise Refused(str(exc)) from None
        target = m.target()
        scopes = SCOPES if scope == "all" else (scope,)
        pool: Dict[str, Dict[str, Any]] = {}
        for s in scopes:
            for span in m.spans_in(s, target):
                pool.setdefault(span_id_of(span), span)
        ordered = sorted(pool.values(), key=lambda s: str(s.get("created_at") or ""))
        candidates = ActiveContextPolicy.filter_spans(
            ordered, time_range=window, tags=m.payload.get("tags"), tags_mode=tags_mode,
            authors=m.payload.get("authors", m.payload.get("usernames")), locations=m.payload.get("locations"))
        wanted_id = str(m.payload.get("span_id") or "").strip()
        if wanted_id:
            candidates = [s for s in candidates if span_id_of(s) == wanted_id]
        terms = _terms(m.payload.get("query"))
        contents: Dict[str, Dict[str, Any]] = {}

        def content(span: Mapping[str, Any]) -> Dict[str, Any]:
            sid = span_id_of(span)
            if sid not in contents:
                contents[sid] = m.load_content(span)
            return contents[sid]

        scored = []
        for span in candidates:
            text = _span_text(span)
            if deep:
                doc = content(span)
                text += " " + _text(doc.get("note") or "") + " " + _messages_text(doc.get("messages"))
            lowered = text.lower()
            score = sum(lowered.count(t) for t in terms)
            if terms and score == 0:
                continue
            scored.append((score, str(span.get("created_at") or ""), span))
        scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
        hits = [dict(s, score=score) for score, _, s in scored[:limit]]
        hit_ids = {span_id_of(s) for s in hits}
        if m.payload.get("connected") or m.payload.get("connect_by"):
            hops = _int(m.payload, "neighbor_hops", 1)
            connect_by = m.payload.get("connect_by") or []
            connect_by = [connect_by] if isinstance(connect_by, str) else list(connect_by)
            index = {span_id_of(s): i for i, s in enumerate(ordered)}
            for hit in list(hits):
                near = []
                if m.payload.get("connected"):
                    i = index.get(span_id_of(hit), 0)
                    near += [(s, "neighbor") for s in ordered[max(0, i - hops): i + hops + 1]]
                for key in connect_by:
                    if key in (hit.get("tags") or {}):
                        near += [(s, f"tag:{key}") for s in ordered
                                 if (s.get("tags") or {}).get(key) == hit["tags"][key]]
                for s, via in near:
                    if span_id_of(s) not in hit_ids:
                        hit_ids.add(span_id_of(s))
                        hits.append(dict(s, connected_via=via, connected_to=span_id_of(hit)))
        budget = max_messages
        blocks = []
        for span in hits:
            shown: List[Dict[str, Any]] = []
            if (deep or wanted_id) and span.get("kind") == "conversation_span" and budget > 0:
                shown = [x for x in content(span).get("messages") or [] if isinstance(x, dict)][:budget]
                budget -= len(shown)
            blocks.append(_render(span, shown))
    except Refused as exc:
        return envelope(tool, call_id, error=str(exc))
    span_ids = [span_id_of(s) for s in hits]
    rendered = "\n\n".join(blocks) if blocks else "No memory matched."
    matches = [{k: s.get(k) for k in ("span_id", "kind", "scope", "created_at", "from_timestamp", "to_timestamp",
                                      "tags", "location", "author", "artifact_id", "summary", "text", "score",
                                      "connected_via", "connected_to") if s.get(k) is not None}
               | {"span_id": span_id_of(s)} for s in hits]
    effort = {"recall_level": level, "limit_spans": limit, "max_messages": max_messages, "deep": deep,
              "scopes": list(scopes), "spans_considered": len(pool)}
    meta = {"span_ids": span_ids, "matches": matches, "effort": effort}
    output: Any = rendered if returns == "rendered" else meta if returns == "meta" else {"rendered": rendered, **meta}
    return envelope(tool, call_id, output=output, span_ids=span_ids, effort=effort)


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
    transcript = "\n".join(f"{x.get('role')}: {_text(x.get('content'))[:4000]}" for x in messages)
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
    tool, call_id = _tool_ids(call, "compact_memory")
    try:
        m = Memory(call)
        preserve = _int(m.payload, "preserve_recent", 6)
        mode = str(m.payload.get("compression_mode") or "standard").lower()
        if mode not in COMPRESSION:
            raise Refused(f"compression_mode must be one of {', '.join(COMPRESSION)}, got {mode!r}")
        focus = m.payload.get("focus") if isinstance(m.payload.get("focus"), str) else None
        target = m.target()
        span_id = f"span_{m.key[:24]}"
        if any(span_id_of(s) == span_id for s in ActiveContextPolicy.spans(target.vars)):
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
            "metadata": {"kind": "memory_summary", "span_id": span_id, "message_id": f"summary_{span_id}"},
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
    try:
        m = Memory(call)
        ids = m.payload.get("span_ids") or ([m.payload["span_id"]] if m.payload.get("span_id") else [])
        ids = [ids] if isinstance(ids, str) else [str(i).strip() for i in ids if str(i).strip()]
        if not ids:
            raise Refused("memory_rehydrate requires payload.span_ids (or span_id)")
        placement = str(m.payload.get("placement") or "after_summary").lower()
        if placement not in PLACEMENTS:
            raise Refused(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        level = str(m.payload.get("recall_level") or "standard").lower()
        if level not in RECALL_LEVELS:
            raise Refused(f"recall_level must be one of {', '.join(RECALL_LEVELS)}, got {level!r}")
        budget = max_messages = _int(m.payload, "max_messages", RECALL_LEVELS[level][1])
        target = m.target()
        m.require_store()
        plan: List[Tuple[str, List[Dict[str, Any]]]] = []
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
                restored = [{"role": "system", "content": f"[MEMORY NOTE {span_id}] {doc['note']}",
                             "metadata": {"kind": "memory_note", "span_id": span_id, "message_id": f"msg_{span_id}"}}]
            elif span.get("kind") == "evidence":
                restored = [{"role": "system", "content": f"[EVIDENCE {span_id}] {_text(doc)[:4000]}",
                             "metadata": {"kind": "evidence", "span_id": span_id, "message_id": f"msg_{span_id}"}}]
            else:
                warnings.append(f"{span_id}: nothing to rehydrate (kind {span.get('kind')!r}, content missing)")
                continue
            plan.append((span_id, restored))

        def rehydrate(vars: Dict[str, Any]) -> None:
            nonlocal inserted, skipped, budget
            messages = context_messages(vars)
            present = {_message_id(x) for x in messages}
            for span_id, restored in plan:
                fresh = [x for x in restored if _message_id(x) not in present]
                dup = len(restored) - len(fresh)
                over = fresh[budget:] if budget < len(fresh) else []
                fresh = fresh[:budget]
                budget -= len(fresh)
                for x in fresh:
                    x.setdefault("metadata", {})["rehydrated_from"] = span_id
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
                report.append({"span_id": span_id, "artifact_id": span_id, "inserted": len(fresh),
                               "skipped": dup + len(over)})

        if plan:
            m.change_run(target, rehydrate)
    except Refused as exc:
        return EffectOutcome.completed({"inserted": 0, "skipped": 0, "artifacts": [], "error": str(exc),
                                        "warnings": [str(exc)]})
    result: Dict[str, Any] = {"inserted": inserted, "skipped": skipped, "artifacts": report,
                              "effort": {"recall_level": level, "max_messages": max_messages,
                                         "placement": placement}}
    if warnings:
        result["warnings"] = warnings
    return EffectOutcome.completed(result)


__all__ = ["memory_note", "memory_query", "memory_tag", "memory_compact", "memory_rehydrate", "RECALL_LEVELS"]
