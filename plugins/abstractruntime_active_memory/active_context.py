"""``ActiveContextPolicy``: a run's active context (what the next LLM call sees) and the host-side helpers over its
memory spans (reference path ``abstractruntime.memory.active_context``).

The run-id methods load the run from ``run_store`` (and ``rehydrate_into_context`` saves it back: a revision-checked
save, so a concurrent writer is refused with ``ConcurrentModificationError`` instead of being overwritten); the
``*_from_run`` variants work on a ``RunState`` the caller holds.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from abstractruntime.errors import UnknownRunError
from abstractruntime.models import RuntimeConfig

from .spans import TimeRange, context_messages, spans_of

#: A span id: an artifact id, or a 1-based index into the newest-first span list (an int or a digit string).
SpanId = Union[str, int]

PLACEMENTS = ("after_summary", "after_system", "end")
PREVIEW_CHARS = 360


def _lower(value: Any) -> str:
    return str(value).strip().lower()


def _values(value: Any) -> List[str]:
    """A required tag value: a string or a list of strings (any of them matches), lower-cased."""
    items = value if isinstance(value, (list, tuple, set)) else [value]
    return [_lower(v) for v in items if v is not None and _lower(v)]


def _candidate_tags(span: Mapping[str, Any], artifact_tags: Mapping[str, Any]) -> Dict[str, str]:
    """The tags a span can be filtered by: artifact tags, then span tags, then ``kind``/``compression_mode``/
    ``focus``; keys and values lower-cased, the first source wins per key."""
    out: Dict[str, str] = {}
    sources = [artifact_tags or {}, span.get("tags") if isinstance(span.get("tags"), Mapping) else {},
               {k: span.get(k) for k in ("kind", "compression_mode", "focus") if span.get(k) is not None}]
    for source in sources:
        for key, value in source.items():
            if value is None or isinstance(value, (dict, list)):
                continue
            out.setdefault(_lower(key), _lower(value))
    return out


def _tags_match(candidates: Mapping[str, str], required: Mapping[str, Any], mode: str) -> bool:
    wanted = {_lower(k): v for k, v in required.items() if _lower(k) and _lower(k) != "kind"}
    if not wanted:
        return True
    hits = []
    for key, value in wanted.items():
        values = _values(value)
        have = candidates.get(key)
        hits.append(have is not None and (not values or have in values))
    return any(hits) if mode == "any" else all(hits)


def _preview(messages: Sequence[Mapping[str, Any]], note: bool) -> str:
    lines = [str(m.get("content") or "") if note else f"{m.get('role')}: {m.get('content')}" for m in messages[:3]]
    text = "\n".join(lines)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "… (truncated)"


def _message_id(message: Any) -> Any:
    meta = message.get("metadata") if isinstance(message, dict) else None
    return meta.get("message_id") if isinstance(meta, dict) else None


def _is_summary_of(message: Mapping[str, Any], artifact_id: str) -> bool:
    meta = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    return meta.get("kind") == "memory_summary" and artifact_id in (meta.get("source_artifact_id"), meta.get("span_id"))


class ActiveContextPolicy:
    """The active context of a run and the filters over its memory spans (reference: ``abstractruntime.memory``).

    The active context is ``vars.context.messages``: what the next LLM call sees. ``MEMORY_COMPACT`` moves older
    messages out of it into a ``conversation_span``; ``MEMORY_REHYDRATE`` (or :meth:`rehydrate_into_context`)
    brings them back.
    """

    def __init__(self, *, run_store: Any, artifact_store: Any) -> None:
        self.run_store = run_store
        self.artifact_store = artifact_store

    def _load(self, run_id: str) -> Any:
        run = self.run_store.load(run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    # --- spans ---------------------------------------------------------------------------------------------------
    def list_memory_spans(self, run_id: str) -> List[Dict[str, Any]]:
        return self.list_memory_spans_from_run(self._load(run_id))

    @staticmethod
    def list_memory_spans_from_run(run: Any) -> List[Dict[str, Any]]:
        """Copies of the run's spans, newest ``created_at`` first."""
        spans = [dict(s) for s in spans_of(run.vars or {})]
        return sorted(spans, key=lambda s: str(s.get("created_at") or ""), reverse=True)

    def filter_spans(self, run_id: str, *, time_range: Optional[TimeRange] = None, tags: Optional[Dict[str, Any]] = None,
                     tags_mode: str = "all", authors: Optional[List[str]] = None,
                     locations: Optional[List[str]] = None, query: Optional[str] = None,
                     limit: int = 1000) -> List[Dict[str, Any]]:
        return self.filter_spans_from_run(self._load(run_id), artifact_store=self.artifact_store,
                                          time_range=time_range, tags=tags, tags_mode=tags_mode, authors=authors,
                                          locations=locations, query=query, limit=limit)

    @staticmethod
    def filter_spans_from_run(run: Any, *, artifact_store: Any, time_range: Optional[TimeRange] = None,
                              tags: Optional[Dict[str, Any]] = None, tags_mode: str = "all",
                              authors: Optional[List[str]] = None, locations: Optional[List[str]] = None,
                              query: Optional[str] = None, limit: int = 1000) -> List[Dict[str, Any]]:
        """The spans with an ``artifact_id`` that pass every filter, newest first, at most ``limit``."""
        mode = "any" if _lower(tags_mode) in ("any", "or") else "all"
        wanted_authors = {_lower(a) for a in authors or [] if _lower(a)}
        wanted_locations = {_lower(x) for x in locations or [] if _lower(x)}
        needle = _lower(query) if query is not None and _lower(query) else None
        summaries = ActiveContextPolicy.summary_text_by_artifact_id_from_run(run)
        out: List[Dict[str, Any]] = []
        for span in ActiveContextPolicy.list_memory_spans_from_run(run):
            artifact_id = span.get("artifact_id")
            if not artifact_id:
                continue
            if time_range is not None and not time_range.contains(start=span.get("from_timestamp"),
                                                                  end=span.get("to_timestamp")):
                continue
            meta = artifact_store.get_metadata(str(artifact_id)) if artifact_store is not None else None
            artifact_tags = dict(getattr(meta, "tags", None) or {})
            if tags and not _tags_match(_candidate_tags(span, artifact_tags), tags, mode):
                continue
            if wanted_authors and _lower(span.get("created_by") or span.get("author") or "") not in wanted_authors:
                continue
            span_tags = span.get("tags") if isinstance(span.get("tags"), dict) else {}
            if wanted_locations and _lower(span.get("location") or span_tags.get("location") or "") \
                    not in wanted_locations:
                continue
            if needle is not None:
                parts = [summaries.get(str(artifact_id)) or span.get("summary") or ""]
                if span.get("kind") == "memory_note" and artifact_store is not None:
                    doc = artifact_store.load_json(str(artifact_id))
                    if isinstance(doc, dict):
                        parts.append(str(doc.get("note") or ""))
                        sources = doc.get("sources") if isinstance(doc.get("sources"), dict) else {}
                        parts += [summaries.get(str(i), "") for i in sources.get("span_ids") or []]
                parts += [str(span.get(k) or "") for k in ("kind", "compression_mode", "focus", "from_timestamp",
                                                           "to_timestamp", "created_by", "author", "location")]
                parts += [f"{k} {v}" for k, v in span_tags.items()]
                parts += [str(getattr(meta, "content_type", "") or "")] + [f"{k} {v}" for k, v in artifact_tags.items()]
                if needle not in " ".join(parts).lower():
                    continue
            out.append(span)
            if len(out) >= limit:
                break
        return out

    @staticmethod
    def resolve_span_ids_from_spans(span_ids: Any, spans: Sequence[Mapping[str, Any]]) -> List[str]:
        """Artifact ids for ``span_ids``: an int or digit string is a 1-based index into ``spans`` (newest first;
        out of range is dropped), anything else an artifact id; de-duplicated, in order."""
        items = span_ids if isinstance(span_ids, (list, tuple)) else [] if span_ids is None else [span_ids]
        out: List[str] = []
        for item in items:
            resolved: Optional[str] = None
            if isinstance(item, int) and not isinstance(item, bool) or isinstance(item, str) and item.strip().isdigit():
                index = int(item)
                if 1 <= index <= len(spans):
                    resolved = str(spans[index - 1].get("artifact_id") or "") or None
            elif item is not None and str(item).strip():
                resolved = str(item).strip()
            if resolved and resolved not in out:
                out.append(resolved)
        return out

    @staticmethod
    def summary_text_by_artifact_id_from_run(run: Any) -> Dict[str, str]:
        """``{artifact id: text}`` of the memory-summary messages in the run's context."""
        out: Dict[str, str] = {}
        for message in ((run.vars or {}).get("context") or {}).get("messages") or []:
            meta = message.get("metadata") if isinstance(message, dict) else None
            if isinstance(meta, dict) and meta.get("kind") == "memory_summary":
                key = meta.get("source_artifact_id") or meta.get("span_id")
                if key:
                    out[str(key)] = str(message.get("content") or "")
        return out

    # --- rehydration ---------------------------------------------------------------------------------------------
    def rehydrate_into_context(self, run_id: str, *, span_ids: Sequence[SpanId], placement: str = "after_summary",
                               dedup_by: str = "message_id", max_messages: Optional[int] = None) -> Dict[str, Any]:
        run = self._load(run_id)
        result = self.rehydrate_into_context_from_run(run, span_ids=span_ids, placement=placement,
                                                      dedup_by=dedup_by, max_messages=max_messages)
        if result["inserted"]:
            self.run_store.save(run)
        return result

    def rehydrate_into_context_from_run(self, run: Any, *, span_ids: Sequence[SpanId],
                                        placement: str = "after_summary", dedup_by: str = "message_id",
                                        max_messages: Optional[int] = None) -> Dict[str, Any]:
        """Put archived messages (or a note) of the spans back into ``run.vars.context.messages``."""
        ids = self.resolve_span_ids_from_spans(span_ids, self.list_memory_spans_from_run(run))
        if not ids:
            return {"inserted": 0, "skipped": 0, "artifacts": []}
        vars = run.vars if isinstance(run.vars, dict) else {}
        messages = context_messages(vars)
        cap = max_messages if isinstance(max_messages, int) and max_messages >= 0 else None
        present = {_message_id(m) for m in messages} - {None} if dedup_by == "message_id" else set()
        total_in = total_skip = 0
        report: List[Dict[str, Any]] = []
        for artifact_id in ids:
            if cap is not None and total_in >= cap:
                report.append({"artifact_id": artifact_id, "inserted": 0, "skipped": 0, "error": "max_messages"})
                continue
            doc = self.artifact_store.load_json(artifact_id) if self.artifact_store is not None else None
            note = isinstance(doc, dict) and not isinstance(doc.get("messages"), list) \
                and isinstance(doc.get("note"), str)
            if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
                archived = [json.loads(json.dumps(m)) for m in doc["messages"] if isinstance(m, dict)]
            elif note:
                archived = [{"role": "system", "content": f"[MEMORY NOTE]\n{doc['note']}",
                             "metadata": {"kind": "memory_note", "message_id": f"memory_note:{artifact_id}"}}]
            else:
                report.append({"artifact_id": artifact_id, "inserted": 0, "skipped": 0, "error": "missing_messages"})
                continue
            fresh: List[Dict[str, Any]] = []
            skipped = 0
            for message in archived:
                if not isinstance(message.get("metadata"), dict):
                    message["metadata"] = {}
                meta = message["metadata"]
                meta["rehydrated"] = True
                meta.setdefault("source_artifact_id", artifact_id)
                if dedup_by == "message_id" and meta.get("message_id") in present:
                    skipped += 1
                    continue
                if cap is not None and total_in + len(fresh) >= cap:
                    break
                fresh.append(message)
                if dedup_by == "message_id" and meta.get("message_id") is not None:
                    present.add(meta["message_id"])
            at = self._position(messages, placement, artifact_id)
            messages[at:at] = fresh
            entry: Dict[str, Any] = {"artifact_id": artifact_id, "inserted": len(fresh), "skipped": skipped}
            if fresh:
                entry["preview"] = _preview(fresh, note)
            report.append(entry)
            total_in += len(fresh)
            total_skip += skipped
        if isinstance(run.output, dict):
            run.output["messages"] = messages
        return {"inserted": total_in, "skipped": total_skip, "artifacts": report}

    @staticmethod
    def _position(messages: List[Dict[str, Any]], placement: str, artifact_id: str) -> int:
        leading = 0
        while leading < len(messages) and isinstance(messages[leading], dict) \
                and messages[leading].get("role") == "system":
            leading += 1
        if placement == "end":
            return len(messages)
        if placement != "after_system":
            for i, message in enumerate(messages):
                if isinstance(message, dict) and _is_summary_of(message, artifact_id):
                    return i + 1
        return leading

    # --- the active view -----------------------------------------------------------------------------------------
    def select_active_messages_for_llm(self, run_id: str, *,
                                       max_history_messages: Optional[int] = None) -> List[Dict[str, Any]]:
        return self.select_active_messages_for_llm_from_run(self._load(run_id),
                                                            max_history_messages=max_history_messages)

    @staticmethod
    def select_active_messages_for_llm_from_run(run: Any, *,
                                                max_history_messages: Optional[int] = None) -> List[Dict[str, Any]]:
        """The active view: system messages first, then the last ``max_history_messages`` others (default
        ``_limits.max_history_messages``; negative = all). Creates ``vars.context`` and ``vars._limits`` (the
        default limits) when missing, as the reference does."""
        vars = run.vars
        context = vars.get("context")
        if not isinstance(context, dict):
            context = vars["context"] = {}
        messages = context.get("messages")
        if not isinstance(messages, list):
            return []
        if not isinstance(vars.get("_limits"), dict):
            vars["_limits"] = RuntimeConfig().to_limits_dict()
        if max_history_messages is None:
            max_history_messages = vars["_limits"].get("max_history_messages", -1)
        return ActiveContextPolicy.select_messages_view(messages, max_history_messages=max_history_messages)

    @staticmethod
    def select_messages_view(messages: Sequence[Any], *, max_history_messages: Any) -> List[Dict[str, Any]]:
        """All system messages (in order), then the non-system ones: all when negative (or not an int), none when
        0, else the last N."""
        try:
            n = int(max_history_messages)
        except (TypeError, ValueError):
            n = -1
        dicts = [m for m in messages if isinstance(m, dict)]
        system = [m for m in dicts if m.get("role") == "system"]
        others = [m for m in dicts if m.get("role") != "system"]
        return system + (others if n < 0 else others[len(others) - n:] if n else [])

    # --- this project's helpers over plain vars ------------------------------------------------------------------
    @staticmethod
    def spans(vars: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """The dict entries of ``vars._runtime.memory_spans`` (in stored order)."""
        return spans_of(vars)

    @staticmethod
    def active_messages(vars: Mapping[str, Any], max_messages: int = -1) -> List[Dict[str, Any]]:
        """The context messages in their order, keeping the system messages and the newest ``max_messages``
        others (-1: all)."""
        messages = [m for m in ((vars.get("context") or {}).get("messages") or []) if isinstance(m, dict)]
        if max_messages is None or max_messages < 0:
            return list(messages)
        others = [i for i, m in enumerate(messages) if m.get("role") != "system"]
        drop = set(others[: max(0, len(others) - max_messages)])
        return [m for i, m in enumerate(messages) if i not in drop]


__all__ = ["ActiveContextPolicy", "TimeRange", "SpanId"]
