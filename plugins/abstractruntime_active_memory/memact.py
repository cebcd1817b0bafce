"""MemAct active memory: a durable, structured memory of an agent kept in ``vars._runtime.active_memory``, changed
by envelopes of ``{added, removed}`` statements and rendered as system-prompt blocks (reference path
``abstractruntime.memory.active_memory``)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Tuple

from abstractruntime.errors import InvalidTypeError

MEMACT_ACTIVE_MEMORY_VERSION = 1

MEMORY_BLUEPRINTS_MD = """## MEMORY BLUEPRINTS
Your memory is made of modules; keep each one small, current and true.
- MY PERSONA: who you are and how you work.
- RELATIONSHIPS: the people and agents you deal with, and how.
- CURRENT TASKS: what you are doing now (few items).
- CURRENT CONTEXT: the facts that matter for the current tasks.
- CRITICAL INSIGHTS: lessons worth keeping across tasks.
- REFERENCES: pointers (files, URLs, ids) to things you may need again.
- HISTORY: an append-only log of what happened.
To change your memory, answer with an envelope listing, per module, the statements `added` and `removed`."""

DEFAULT_PERSONA_MD = ("I am a careful, helpful assistant. I keep my memory accurate, I say what I do not know, "
                      "and I act on the current tasks.")

DEFAULT_LIMITS: Dict[str, int] = {"relationships": 40, "current_tasks": 8, "current_context": 60,
                                  "critical_insights": 60, "references": 80, "history": 200}

#: module -> record id prefix of the modules an envelope edits (history is append-only)
_EDITABLE: Tuple[Tuple[str, str], ...] = (("relationships", "rel"), ("current_tasks", "tsk"),
                                         ("current_context", "ctx"), ("critical_insights", "ins"),
                                         ("references", "ref"))
MODULES = tuple(m for m, _ in _EDITABLE) + ("history",)
TITLES = {"memory_blueprints": "MEMORY BLUEPRINTS", "persona": "MY PERSONA", "relationships": "RELATIONSHIPS",
          "current_tasks": "CURRENT TASKS", "current_context": "CURRENT CONTEXT",
          "critical_insights": "CRITICAL INSIGHTS", "references": "REFERENCES", "history": "HISTORY"}


def _delta_schema(*, with_removed: bool) -> Dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    props = {"added": strings, "removed": strings} if with_removed else {"added": strings}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


MEMACT_ENVELOPE_SCHEMA_V1: Dict[str, Any] = {
    "type": "object",
    "properties": {"content": {"type": "string"},
                   **{m: _delta_schema(with_removed=True) for m, _ in _EDITABLE},
                   "history": _delta_schema(with_removed=False)},
    "required": ["content", *MODULES],
    "additionalProperties": False,
}

_STAMP = re.compile(r"^\[?\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\]?\s*")


def utc_now_iso_seconds() -> str:
    """The current UTC instant, ISO 8601 with seconds precision (``2026-01-02T03:04:05+00:00``)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def utc_now_compact_seconds() -> str:
    """The current UTC instant as ``YY/MM/DD HH:MM:SS``."""
    return datetime.now(timezone.utc).strftime("%y/%m/%d %H:%M:%S")


def normalize_statement(text: Any) -> str:
    """Whitespace collapsed and a leading ``YY/MM/DD HH:MM:SS`` stamp (optionally bracketed) removed."""
    collapsed = " ".join(str(text or "").split())
    return " ".join(_STAMP.sub("", collapsed).split())


def _statements(value: Any) -> List[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [s for s in (normalize_statement(x) for x in items if isinstance(x, str)) if s]


def _record(prefix: str, text: str, ts: str, created_at: str) -> Dict[str, Any]:
    return {"id": f"{prefix}_{uuid.uuid4().hex[:12]}", "text": text, "ts": ts, "created_at": created_at}


def _require_dict(vars: Any) -> Dict[str, Any]:
    if not isinstance(vars, dict):
        raise InvalidTypeError(f"vars must be a dict (a run's variables), got {type(vars).__name__}")
    return vars


def get_memact_memory(vars: Dict[str, Any]) -> Dict[str, Any]:
    """The (mutable) dict ``vars._runtime.active_memory``, created when missing."""
    runtime = _require_dict(vars).get("_runtime")
    if not isinstance(runtime, dict):
        runtime = vars["_runtime"] = {}
    memory = runtime.get("active_memory")
    if not isinstance(memory, dict):
        memory = runtime["active_memory"] = {}
    return memory


def ensure_memact_memory(vars: Dict[str, Any], *, now_iso: Callable[[], str] = utc_now_iso_seconds
                         ) -> Dict[str, Any]:
    """The active memory in its v1 shape: version 1, a persona, the six module lists of records, the limits."""
    memory = get_memact_memory(vars)
    memory["version"] = MEMACT_ACTIVE_MEMORY_VERSION
    if not isinstance(memory.get("persona"), str) or not memory["persona"].strip():
        memory["persona"] = DEFAULT_PERSONA_MD
    for module in MODULES:
        records = []
        for entry in memory.get(module) if isinstance(memory.get(module), list) else []:
            if isinstance(entry, dict):
                records.append(dict(entry))
            elif isinstance(entry, str) and entry.strip():
                records.append(_record("m", entry.strip(), utc_now_compact_seconds(), now_iso()))
        memory[module] = records
    given = memory.get("limits") if isinstance(memory.get("limits"), dict) else {}
    limits = {k: v for k, v in given.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}
    for key, value in DEFAULT_LIMITS.items():
        limits.setdefault(key, value)
    memory["limits"] = limits
    memory.setdefault("created_at", now_iso())
    return memory


def apply_memact_envelope(vars: Dict[str, Any], *, envelope: Any,
                          now_iso: Callable[[], str] = utc_now_iso_seconds,
                          now_compact: Callable[[], str] = utc_now_compact_seconds) -> Dict[str, Any]:
    """Apply ``{<module>: {added, removed}}``: removals by normalised, case-folded text; additions de-duplicated,
    each inserted at the front, then the list trimmed to its limit. ``history`` only takes ``added``."""
    if not isinstance(envelope, dict):
        return {"ok": False, "error": "envelope must be an object"}
    memory = ensure_memact_memory(vars, now_iso=now_iso)
    applied: Dict[str, Any] = {}
    for module, prefix in _EDITABLE + (("history", "hist"),):
        delta = envelope.get(module) if isinstance(envelope.get(module), dict) else {}
        records: List[Dict[str, Any]] = memory[module]
        removed: List[str] = []
        if module != "history":
            gone = {s.casefold() for s in _statements(delta.get("removed"))}
            kept = []
            for record in records:
                if normalize_statement(record.get("text")).casefold() in gone:
                    removed.append(str(record.get("text")))
                else:
                    kept.append(record)
            records = kept
        present = {normalize_statement(r.get("text")).casefold() for r in records}
        added: List[str] = []
        for text in _statements(delta.get("added")):
            if text.casefold() in present:
                continue
            present.add(text.casefold())
            records.insert(0, _record(prefix, text, now_compact(), now_iso()))
            added.append(text)
        limit = memory["limits"].get(module, DEFAULT_LIMITS[module])
        trimmed = max(0, len(records) - limit)
        memory[module] = records[:limit]
        applied[module] = {"added": added, "trimmed": trimmed} if module == "history" else \
            {"added": added, "removed": removed, "trimmed": trimmed}
    memory["updated_at"] = now_iso()
    return {"ok": True, "applied": applied}


def _list_block(records: List[Dict[str, Any]]) -> str:
    lines = []
    for record in records:
        text, ts = str(record.get("text") or ""), record.get("ts")
        lines.append(f"- [{ts}] {text}" if ts else f"- {text}")
    return "\n".join(lines) or "(empty)"


def render_memact_blocks(vars: Dict[str, Any]) -> List[Dict[str, str]]:
    """Eight ``{component_id, title, content}`` blocks: the blueprints, the persona, the six modules."""
    memory = ensure_memact_memory(vars)
    blocks = [{"component_id": "memory_blueprints", "title": TITLES["memory_blueprints"],
               "content": MEMORY_BLUEPRINTS_MD},
              {"component_id": "persona", "title": TITLES["persona"], "content": str(memory["persona"])}]
    blocks += [{"component_id": m, "title": TITLES[m], "content": _list_block(memory[m])} for m in MODULES]
    return blocks


def render_memact_system_prompt(vars: Dict[str, Any]) -> str:
    """The blueprints, then ``## <TITLE>\\n<content>`` per block, separated by blank lines."""
    blocks = render_memact_blocks(vars)
    return "\n\n".join([blocks[0]["content"]] + [f"## {b['title']}\n{b['content']}" for b in blocks[1:]])


__all__ = ["MEMACT_ACTIVE_MEMORY_VERSION", "MEMORY_BLUEPRINTS_MD", "DEFAULT_PERSONA_MD", "DEFAULT_LIMITS",
           "MEMACT_ENVELOPE_SCHEMA_V1", "utc_now_iso_seconds", "utc_now_compact_seconds", "get_memact_memory",
           "ensure_memact_memory", "apply_memact_envelope", "render_memact_blocks", "render_memact_system_prompt"]
