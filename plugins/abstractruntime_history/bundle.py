"""Run history bundles (reference §13, ``abstractruntime.history_bundle``): a versioned, JSON-safe export of a run,
its subruns' ledgers and a timeline, for UIs and archives.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import NotFoundError, UnknownRunError, ValidationError
from abstractruntime.models import RunState, utc_now_iso
from abstractruntime.storage.base import Capability, declared_capabilities
from abstractruntime_pluginkit.queries import answers_run_index, answers_run_queries
from abstractruntime.timeutil import parse_instant
from abstractruntime_artifacts.offloading import DEFAULT_MAX_INLINE_BYTES, offload_large_values

RUN_HISTORY_BUNDLE_VERSION_V1 = 1
MAX_SUBRUNS = 5000


def _require_id(value: Any, what: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise ValidationError(f"{what} is required (a non-blank string)")
    return text


class HistoryRunNotFoundError(UnknownRunError):
    """The run to export (or to snapshot the workflow of) is not in the run store (a ``KeyError``)."""

    def __init__(self, run_id: str) -> None:
        NotFoundError.__init__(self, f"Run '{run_id}' not found", run_id=run_id)  # the reference's wording


def _load(run_store: Any, run_id: str) -> RunState:
    run = run_store.load(run_id)
    if run is None:
        raise HistoryRunNotFoundError(run_id)
    return run


# --- workflow snapshot --------------------------------------------------------------------------------------------
def _canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def persist_workflow_snapshot(
    *,
    run_store: Any,
    artifact_store: Any,
    run_id: str,
    workflow_id: str,
    snapshot: Dict[str, Any],
    format: str,
) -> Dict[str, Any]:
    """Store the workflow definition a run executes and record a reference to it in
    ``vars._runtime.workflow_snapshot`` = ``{workflow_id, format, sha256, artifact_id, created_at}``.

    Idempotent: an existing reference with an ``artifact_id`` is returned unchanged. ``sha256`` is taken over the
    canonical JSON (sorted keys, compact, UTF-8); the artifact is written with ``store_json`` (run-scoped, tags
    ``{kind: workflow_snapshot, workflow_id, format, sha256}``). The run is saved with its revision bumped, so a
    runtime ticking it concurrently reloads instead of overwriting the reference.
    """
    rid = _require_id(run_id, "run_id")
    wid = _require_id(workflow_id, "workflow_id")
    fmt = str(format or "").strip() or "unknown"
    if not isinstance(snapshot, dict):
        raise ValidationError(f"snapshot must be a dict, got {type(snapshot).__name__}")
    run = _load(run_store, rid)
    runtime_ns = run.vars.get("_runtime")
    if not isinstance(runtime_ns, dict):
        runtime_ns = {}
        run.vars["_runtime"] = runtime_ns
    existing = runtime_ns.get("workflow_snapshot")
    if isinstance(existing, dict) and str(existing.get("artifact_id") or "").strip():
        return dict(existing)
    sha = hashlib.sha256(_canonical(snapshot)).hexdigest()
    meta = artifact_store.store_json(snapshot, run_id=rid, tags={"kind": "workflow_snapshot", "workflow_id": wid,
                                                                 "format": fmt, "sha256": sha})
    ref = {"workflow_id": wid, "format": fmt, "sha256": sha, "artifact_id": meta.artifact_id,
           "created_at": utc_now_iso()}
    runtime_ns["workflow_snapshot"] = ref
    run.revision += 1
    run.updated_at = utc_now_iso()
    run_store.save(run)
    return dict(ref)


# --- run tree and ledgers -----------------------------------------------------------------------------------------
def descendant_run_ids(run_store: Any, root_run_id: str, limit: int = MAX_SUBRUNS) -> List[str]:
    """Descendants of a run, breadth-first through ``list_children`` (empty if the store cannot list them)."""
    if not answers_run_queries(run_store):
        return []
    list_children = run_store.list_children
    out: List[str] = []
    seen = {root_run_id}
    queue = deque([root_run_id])
    while queue and len(out) < limit:
        for child in list_children(parent_run_id=queue.popleft()) or []:
            cid = getattr(child, "run_id", None)
            if not cid or cid in seen:
                continue
            seen.add(cid)
            out.append(cid)
            queue.append(cid)
            if len(out) >= limit:
                break
    return out


def _ledger_window(ledger_store: Any, run_id: str, mode: str, max_items: int) -> Tuple[List[Dict[str, Any]], int, int]:
    """``(records, total, cursor_start)``; a tail read uses ``count`` + ``list_after`` when the store has them."""
    if mode == "tail" and Capability.LEDGER_PAGING in declared_capabilities(ledger_store):
        total = int(ledger_store.count(run_id))
        start = max(0, total - max_items)
        rows = ledger_store.list_after(run_id=run_id, after=start, limit=total - start)[0] if total > start else []
        return [r for r in rows if isinstance(r, dict)], total, start + 1
    rows = [r for r in (ledger_store.list(run_id) or []) if isinstance(r, dict)]
    total = len(rows)
    start = max(0, total - max_items) if mode == "tail" else 0
    return rows[start:], total, start + 1


def _duration_ms(start: Any, end: Any) -> Optional[float]:
    try:
        if not start or not end:
            return None
        return round(max(0.0, (parse_instant(str(end)) - parse_instant(str(start))).total_seconds() * 1000.0), 2)
    except (TypeError, ValueError):
        return None


def _timeline_entry(run_id: str, cursor: int, rec: Mapping[str, Any]) -> Dict[str, Any]:
    effect = rec.get("effect") if isinstance(rec.get("effect"), dict) else None
    ended = rec.get("ended_at") or rec.get("started_at")
    return {
        "run_id": run_id,
        "cursor": cursor,
        "node_id": str(rec.get("node_id") or "").strip() or None,
        "status": str(rec.get("status") or "").strip() or None,
        "effect_type": str((effect or {}).get("type") or "").strip() or None,
        "started_at": rec.get("started_at"),
        "ended_at": ended,
        "duration_ms": _duration_ms(rec.get("started_at"), ended),
    }


# --- session turns ------------------------------------------------------------------------------------------------
_TEXT_KEYS = ("response", "answer", "message", "text", "content")


def _first_text(obj: Any, keys: Iterable[str]) -> Optional[str]:
    if not isinstance(obj, dict):
        return None
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _prompt(vars_: Mapping[str, Any]) -> Optional[str]:
    found = _first_text(vars_, ("prompt", "message", "task"))
    ctx = vars_.get("context") if isinstance(vars_.get("context"), dict) else {}
    found = found or _first_text(ctx, ("task", "message"))
    if found:
        return found
    for msg in reversed(ctx.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), str) \
                and msg["content"].strip():
            return msg["content"].strip()
    return None


def _answer(run: RunState, ledger: List[Dict[str, Any]]) -> Optional[str]:
    out = run.output if isinstance(run.output, dict) else None
    nested = None
    if out is not None:
        nested = out.get("result") if isinstance(out.get("result"), dict) else out.get("output")
    found = _first_text(out, _TEXT_KEYS) or _first_text(nested, _TEXT_KEYS)
    if found:
        return found
    for rec in reversed(ledger):
        effect = rec.get("effect") if isinstance(rec.get("effect"), dict) else {}
        if rec.get("status") == "completed" and effect.get("type") == "answer_user":
            text = _first_text(rec.get("result"), ("message",)) \
                or _first_text(effect.get("payload"), ("message", "text"))
            if text:
                return text
        result = rec.get("result") if isinstance(rec.get("result"), dict) else {}
        text = _first_text(result.get("output"), _TEXT_KEYS)
        if text:
            return text
    return None


def _usage(rec: Mapping[str, Any]) -> Tuple[int, int, int]:
    result = rec.get("result") if isinstance(rec.get("result"), dict) else {}
    usage = result.get("usage")
    if not isinstance(usage, dict) and isinstance(result.get("output"), dict):
        usage = result["output"].get("usage")
    if not isinstance(usage, dict):
        return 0, 0, 0

    def num(*keys: str) -> Optional[int]:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(value)
        return None

    tin = num("input_tokens", "prompt_tokens") or 0
    tout = num("output_tokens", "completion_tokens") or 0
    total = num("total_tokens")
    return tin, tout, total if total is not None else tin + tout


def ledger_stats(records: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """``{duration_ms, llm_calls, tool_calls, usage: {input_tokens, output_tokens, total_tokens}, tok_s}``."""
    llm = tools = 0
    usage = [0, 0, 0]
    first = last = None
    for rec in records:
        for key in ("started_at", "ended_at"):
            try:
                t = parse_instant(str(rec.get(key))) if rec.get(key) else None
            except ValueError:
                t = None
            if t is not None:
                first = t if first is None or t < first else first
                last = t if last is None or t > last else last
        effect = rec.get("effect") if isinstance(rec.get("effect"), dict) else {}
        if rec.get("status") != "completed":
            continue
        if effect.get("type") == "llm_call":
            llm += 1
            for i, n in enumerate(_usage(rec)):
                usage[i] += n
        elif effect.get("type") == "tool_calls":
            calls = (effect.get("payload") or {}).get("tool_calls") if isinstance(effect.get("payload"), dict) else None
            tools += len(calls) if isinstance(calls, list) else 0
    duration = int((last - first).total_seconds() * 1000) if first is not None and last is not None else 0
    return {
        "duration_ms": duration,
        "llm_calls": llm,
        "tool_calls": tools,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": usage[2]},
        "tok_s": (usage[2] / (duration / 1000.0)) if duration > 0 and usage[2] > 0 else None,
    }


def _instant_key(value: Any) -> float:
    try:
        return parse_instant(str(value)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def session_turns(*, run_store: Any, ledger_store: Any, session_id: str, limit: int,
                  until: Optional[str] = None) -> List[Dict[str, Any]]:
    """The root runs of a session (created no later than ``until``), oldest first, the last ``limit`` of them."""
    roots: List[RunState] = []
    if answers_run_index(run_store):
        for row in run_store.list_run_index(session_id=session_id, root_only=True, limit=max(1000, limit * 5)) or []:
            run = run_store.load(row["run_id"]) if isinstance(row, dict) and row.get("run_id") else None
            if run is not None:
                roots.append(run)
    elif answers_run_queries(run_store):
        roots = [r for r in run_store.list_runs(limit=max(1000, limit * 5))
                 if r.session_id == session_id and not r.parent_run_id]
    if until is not None:
        bound = _instant_key(until)
        roots = [r for r in roots if _instant_key(r.created_at) <= bound]
    roots.sort(key=lambda r: (_instant_key(r.created_at), r.run_id))
    turns = []
    for run in roots[-limit:]:
        ledger = [r for r in ledger_store.list(run.run_id) if isinstance(r, dict)]
        tree = list(ledger)
        for child_id in descendant_run_ids(run_store, run.run_id):
            tree.extend(r for r in ledger_store.list(child_id) if isinstance(r, dict))
        ctx = run.vars.get("context") if isinstance(run.vars.get("context"), dict) else {}
        attachments = [dict(a) for a in ctx.get("attachments") or [] if isinstance(a, dict)]
        out = run.output if isinstance(run.output, dict) else {}
        nested = out.get("result") if isinstance(out.get("result"), dict) else {}
        meta = out.get("meta") if isinstance(out.get("meta"), dict) else nested.get("meta")
        turns.append({
            "run_id": run.run_id,
            "workflow_id": run.workflow_id,
            "kind": "run",
            "status": run.status.value,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "prompt": _prompt(run.vars),
            "attachments": attachments,
            "answer": _answer(run, ledger),
            "answer_meta": dict(meta) if isinstance(meta, dict) else None,
            "stats": ledger_stats(tree),
        })
    return turns


# --- the export ---------------------------------------------------------------------------------------------------
def export_run_history_bundle(
    *,
    run_id: str,
    run_store: Any,
    ledger_store: Any,
    artifact_store: Any = None,
    include_subruns: bool = True,
    include_session: bool = False,
    session_turn_limit: int = 200,
    ledger_mode: str = "tail",
    ledger_max_items: int = 2000,
    include_state: bool = False,
    progress: Any = None,
) -> Dict[str, Any]:
    """Export a run as a version-1 history bundle (reference §13).

    Cursors are absolute and 1-based. ``ledger_mode="tail"`` keeps the last ``ledger_max_items`` records of each
    ledger (``ledger_max_items <= 0`` means all); ``"full"`` keeps all. Subruns are found breadth-first through
    ``list_children`` (at most 5000). ``input_data`` is the run's vars without ``_``-prefixed keys, large values
    offloaded when an artifact store is given. ``session`` is filled only with ``include_session`` and a run that
    has a ``session_id``.

    Our addition: ``include_state=True`` adds ``"states": {run_id: full checkpoint dict}`` for every exported run
    (what :func:`import_history_bundle` needs to recreate the runs elsewhere), and ``progress`` (an
    ``abstractruntime_pluginkit.console.Progress``) is told of each run whose ledger was read.
    """
    rid = _require_id(run_id, "run_id")
    mode = "full" if str(ledger_mode or "").strip().lower() == "full" else "tail"  # anything else tails (0.4.2)
    max_items = int(ledger_max_items)
    if max_items <= 0:
        mode = "full"
    run = _load(run_store, rid)
    run_ids = [rid] + (descendant_run_ids(run_store, rid) if include_subruns else [])

    runtime_ns = run.vars.get("_runtime") if isinstance(run.vars.get("_runtime"), dict) else {}
    ws = runtime_ns.get("workflow_snapshot")
    snapshot_ref = dict(ws) if isinstance(ws, dict) and str(ws.get("artifact_id") or "").strip() else None

    ledgers: Dict[str, Any] = {}
    timeline: List[Dict[str, Any]] = []
    advance = progress.stage("reading ledgers (runs)", len(run_ids)) if progress is not None else None
    for rid2 in run_ids:
        rows, total, cursor_start = _ledger_window(ledger_store, rid2, mode, max_items)
        if advance is not None:
            advance(1)
        items = [{"cursor": cursor_start + i, "record": rec} for i, rec in enumerate(rows)]
        ledgers[rid2] = {"run_id": rid2, "total": total, "cursor_start": cursor_start,
                         "cursor_end": cursor_start + len(items) - 1, "items": items}
        timeline.extend(_timeline_entry(rid2, it["cursor"], it["record"]) for it in items)

    session = None
    if include_session and run.session_id:
        limit = int(session_turn_limit) if int(session_turn_limit) > 0 else 200
        session = {"session_id": run.session_id,
                   "turns": session_turns(run_store=run_store, ledger_store=ledger_store,
                                          session_id=run.session_id, limit=limit, until=run.created_at)}

    input_data: Any = {k: v for k, v in run.vars.items() if isinstance(k, str) and not k.startswith("_")}
    if artifact_store is not None:
        input_data = offload_large_values(
            input_data, artifact_store=artifact_store, run_id=rid, max_inline_bytes=DEFAULT_MAX_INLINE_BYTES,
            base_tags={"source": "history_bundle", "kind": "input_data"}, root_path="input_data",
            allow_root_replace=False)

    bundle: Dict[str, Any] = {
        "version": RUN_HISTORY_BUNDLE_VERSION_V1,
        "generated_at": utc_now_iso(),
        "root_run_id": rid,
        "run": {
            "run_id": run.run_id,
            "workflow_id": run.workflow_id,
            "status": run.status.value,
            "current_node": run.current_node,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "error": run.error,
            "waiting": codec.converter.unstructure(run.waiting) if run.waiting is not None else None,
            "parent_run_id": run.parent_run_id,
            "session_id": run.session_id,
            "actor_id": run.actor_id,
        },
        "workflow_snapshot": snapshot_ref,
        "input_data": input_data,
        "ledgers": ledgers,
        "timeline": timeline,
        "session": session,
    }
    if include_state:
        states = {}
        for rid2 in run_ids:
            state = run if rid2 == rid else run_store.load(rid2)
            if state is not None:
                states[rid2] = codec.from_json_text(codec.encode_run(state))
        bundle["states"] = states
    return bundle


__all__ = [
    "RUN_HISTORY_BUNDLE_VERSION_V1",
    "export_run_history_bundle",
    "persist_workflow_snapshot",
    "descendant_run_ids",
    "ledger_stats",
    "session_turns",
]
