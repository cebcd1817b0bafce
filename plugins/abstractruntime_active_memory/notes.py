"""The memory effects that write and read spans: MEMORY_NOTE (remember a note), MEMORY_TAG (tag a span) and
MEMORY_QUERY (recall spans by text, time window, tags, authors, locations, at a ``recall_level``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from abstractruntime import EffectCall, EffectOutcome

from .memory_call import Memory, Refused, envelope, int_option, log, text_of, tool_ids
from .recall_levels import Budget, level_of, policy_for
from .spans import (
    GLOBAL_TAGS,
    SCOPES,
    TimeRange,
    context_messages,
    filter_span_list,
    normalize_tags,
    run_spans,
    span_id_of,
)


# --- MEMORY_NOTE ---------------------------------------------------------------------------------------------------
def memory_note(call: EffectCall) -> EffectOutcome:
    tool, call_id = tool_ids(call, "remember_note")
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
    meta = {"span_id": span_id, "created_at": now, "note_preview": note.strip()[:160]}
    if m.payload.get("keep_in_context"):
        meta["kept_in_context"] = True
    return envelope(tool, call_id, output=f"Noted as {span_id} ({scope} memory).", meta=meta, note_id=span_id,
                    span_id=span_id, artifact_id=span_id, scope=scope)


# --- MEMORY_TAG ----------------------------------------------------------------------------------------------------
def memory_tag(call: EffectCall) -> EffectOutcome:
    tool, call_id = tool_ids(call, "remember")
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
    return " ".join(text_of(span.get(k)) for k in ("summary", "text", "location", "kind", "tool_name", "note")
                    if span.get(k)) + " " + tags


def _messages_text(messages: Any) -> str:
    return "\n".join(f"{x.get('role')}: {text_of(x.get('content'))}" for x in messages or [] if isinstance(x, dict))


def _render(span: Mapping[str, Any], messages: List[Dict[str, Any]]) -> str:
    start, end = span.get("from_timestamp"), span.get("to_timestamp")
    when = f"{start} -> {end}" if start and end else span.get("created_at")
    tags = ", ".join(f"{k}={v}" for k, v in sorted((span.get("tags") or {}).items()))
    head = f"[{span_id_of(span)}] {span.get('kind')} ({span.get('scope')}) {when}"
    head += f" tags: {tags}" if tags else ""
    head += f" at {span['location']}" if span.get("location") else ""
    body = span.get("summary") or span.get("text") or span.get("tool_name") or ""
    lines = [head, f"  {body}"] if body else [head]
    lines += [f"  {x.get('role')}: {text_of(x.get('content'))[:2000]}" for x in messages]
    return "\n".join(lines)


def memory_query(call: EffectCall) -> EffectOutcome:
    tool, call_id = tool_ids(call, "recall_memory")
    try:
        m = Memory(call)
        try:
            level = level_of(m.payload)
        except ValueError as exc:
            return EffectOutcome.failed(str(exc))  # an invalid recall_level fails the effect (reference §4)
        applied, budget_warnings = _span_budget(m.payload, level)
        limit, max_messages, deep = applied["limit_spans"], applied["max_messages"], applied["deep"]
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
        candidates = filter_span_list(
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
                text += " " + text_of(doc.get("note") or "") + " " + _messages_text(doc.get("messages"))
            lowered = text.lower()
            score = sum(lowered.count(t) for t in terms)
            if terms and score == 0:
                continue
            scored.append((score, str(span.get("created_at") or ""), span))
        scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
        hits = [dict(s, score=score) for score, _, s in scored[:limit]]
        hit_ids = {span_id_of(s) for s in hits}
        if applied["connected"] or m.payload.get("connect_by"):
            hops = applied["neighbor_hops"]
            connect_by = m.payload.get("connect_by") or []
            connect_by = [connect_by] if isinstance(connect_by, str) else list(connect_by)
            index = {span_id_of(s): i for i, s in enumerate(ordered)}
            for hit in list(hits):
                near = []
                if applied["connected"]:
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
        deep_spans = applied["deep_limit_spans"]
        blocks = []
        for span in hits:
            shown: List[Dict[str, Any]] = []
            if (deep or wanted_id) and span.get("kind") == "conversation_span" and budget > 0 and deep_spans != 0:
                per_span = min(budget, applied["deep_limit_messages_per_span"] or budget)
                shown = [x for x in content(span).get("messages") or [] if isinstance(x, dict)][:per_span]
                budget -= len(shown)
                deep_spans = None if deep_spans is None else deep_spans - 1
            blocks.append(_render(span, shown))
    except Refused as exc:
        return envelope(tool, call_id, error=str(exc))
    span_ids = [span_id_of(s) for s in hits]
    rendered = "\n\n".join(blocks) if blocks else "No memory matched."
    if budget_warnings:
        rendered = "[recall warnings]\n" + "\n".join(f"- {w}" for w in budget_warnings) + "\n\n" + rendered
    matches = [{k: s.get(k) for k in ("span_id", "kind", "scope", "created_at", "from_timestamp", "to_timestamp",
                                      "tags", "location", "author", "artifact_id", "summary", "text", "score",
                                      "connected_via", "connected_to") if s.get(k) is not None}
               | {"span_id": span_id_of(s)} for s in hits]
    meta: Dict[str, Any] = {"span_ids": span_ids, "matches": matches}
    effort = None
    if level is not None:  # the reference reports effort only when a recall level applied
        effort = meta["effort"] = {"recall_level": level.value, "applied": applied}
    if budget_warnings:
        meta["warnings"] = budget_warnings
    output: Any = rendered if returns == "rendered" else meta if returns == "meta" else {"rendered": rendered, **meta}
    extra: Dict[str, Any] = {"span_ids": span_ids, "spans_considered": len(pool), "scopes": list(scopes)}
    if effort is not None:
        extra["effort"] = effort
    return envelope(tool, call_id, output=output, meta=meta, **extra)


def _span_budget(payload: Mapping[str, Any], level: Any) -> Tuple[Dict[str, Any], List[str]]:
    """What MEMORY_QUERY may bring back: the payload's values (runtime defaults: 5 spans -- also for 0 --, 80
    messages, one neighbour hop), or with a ``recall_level`` its policy's defaults and limits (values above them
    are clamped, ``deep``/``connected`` disabled where the level does not allow them, each with a warning)."""
    def opt(key: str) -> Optional[int]:
        return int_option(payload, key, -1) if payload.get(key) is not None else None

    limit, messages, hops = opt("limit_spans"), opt("max_messages"), opt("neighbor_hops")
    deep, connected = bool(payload.get("deep")), bool(payload.get("connected"))
    if level is None:
        return {"limit_spans": limit or 5, "deep": deep, "deep_limit_spans": None,
                "deep_limit_messages_per_span": None, "connected": connected,
                "neighbor_hops": 1 if hops is None else hops,
                "max_messages": 80 if messages is None else messages}, []
    span = policy_for(level).span
    b = Budget(level)
    applied = {"limit_spans": b.clamp("limit_spans", limit or None, span.limit_spans_default, span.limit_spans_max),
               "deep": b.allow("deep", deep, span.deep_allowed),
               "deep_limit_spans": span.deep_limit_spans_max,
               "deep_limit_messages_per_span": span.deep_limit_messages_per_span_max,
               "connected": b.allow("connected", connected, span.connected_allowed),
               "neighbor_hops": b.clamp("neighbor_hops", hops, 1 if span.neighbor_hops_max else 0,
                                        span.neighbor_hops_max),
               "max_messages": b.clamp("max_messages", messages, span.max_messages_default,
                                       span.max_messages_max)}
    return applied, b.warnings


__all__ = ["memory_note", "memory_tag", "memory_query"]
