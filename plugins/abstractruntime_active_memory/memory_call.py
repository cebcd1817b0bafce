"""One memory effect call (:class:`Memory`): its payload, its target run, where its spans live; the result
envelope and the input checks every memory effect shares.

Bad input or an unreachable target raises :class:`Refused`, which every handler turns into an error result
(``success: false``) the workflow can read: it never fails the run.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from abstractruntime import EffectCall, EffectOutcome, RunState
from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.logs import get_logger
from abstractruntime_artifacts import artifact_store_for
from abstractruntime_pluginkit.run_tree import find_in_run_tree, root_of

from .spans import GLOBAL_TAGS, SCOPES, run_spans, span_id_of, spans_of

log = get_logger("abstractruntime.memory")

NO_STORE = ("memory effects need an artifact store: pass Runtime(artifact_store=...) or use a persistent store "
            "(LMDB, SQLite, JSON files)")


class Refused(AbstractRuntimeError):
    """Bad input or an unreachable target: becomes an error result, never a failed run."""


def envelope(tool: str, call_id: str, *, output: Any = None, error: Optional[str] = None,
             meta: Optional[Dict[str, Any]] = None, **extra: Any) -> EffectOutcome:
    """The reference tool envelope (``meta`` on its result when given), plus top-level ``extra`` keys (ids a
    workflow can read directly)."""
    result: Dict[str, Any] = {"mode": "executed", "results": [
        {"call_id": call_id, "name": tool, "success": error is None, "output": output, "error": error}]}
    if meta is not None:
        result["results"][0]["meta"] = meta
    result.update(extra)
    return EffectOutcome.completed(result)


def tool_ids(call: EffectCall, default_tool: str) -> Tuple[str, str]:
    """``(tool name, call id)`` of the result envelope: the payload's ``tool_name``/``call_id``, else defaults."""
    payload = call.effect.payload or {}
    return str(payload.get("tool_name") or default_tool), str(payload.get("call_id") or "memory")


def text_of(value: Any) -> str:
    """A string as it is; anything else as JSON text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def int_option(payload: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    """``payload[key]`` as an integer >= ``minimum`` (``default`` when absent); :class:`Refused` otherwise."""
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
        spans = spans_of(owner.vars) if owner is not None else self.global_spans()
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


__all__ = ["Memory", "Refused", "envelope", "tool_ids", "text_of", "int_option", "NO_STORE"]
