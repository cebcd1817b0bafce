"""What the console shows, as plain dicts: the runs list (filters, paging, counts per status), one run (state,
children, ledger timeline, provenance report). The HTML pages and the JSON API render the same dicts.

Every query goes through the store's query API (``Capability.RUN_QUERIES``: ``list_runs``, ``list_run_index``,
``list_children``), so a store's indexes serve the status and workflow filters and the newest-first order. The
counts per status come from the store's index keys when it can count them (storekit's ``count_by_status``: the
memory, LMDB and JSON-files stores), else from at most ``COUNT_LIMIT`` index rows. The text filter has no store
query: it reads at most ``TEXT_SCAN_LIMIT`` runs. Both say so when their limit was reached.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Tuple

from abstractruntime.codec import run_to_dict
from abstractruntime.errors import ConfigurationError, ValidationError
from abstractruntime.models import RunState, RunStatus, WaitReason
from abstractruntime.storage.base import Capability, declared_capabilities
from abstractruntime.timeutil import parse_instant
from abstractruntime_pluginkit.queries import answers_run_index, answers_run_queries, count_by_status

from .graph import flow_graph

STATUSES = [s.value for s in RunStatus]
MAX_PAGE = 500
DEFAULT_PAGE = 50
#: runs read for a text search (the stores have no text query)
TEXT_SCAN_LIMIT = 10_000
#: index rows read to count runs per status (the stores have no count query)
COUNT_LIMIT = 200_000
#: how long counts per status are reused (the list polls every 2 s)
COUNT_TTL_S = 5.0
#: ledger rows shown on a run page (the newest)
LEDGER_LIMIT = 500
#: snapshots listed on a run page (the newest)
SNAPSHOT_LIMIT = 50
_TERMINAL_KEY = "system:terminal_status:"


def _require_queries(run_store: Any) -> None:
    if not answers_run_queries(run_store):
        raise ConfigurationError(f"{type(run_store).__name__} cannot list runs (no Capability.RUN_QUERIES): "
                                 f"open the console on a store that can (lmdb, sqlite, postgres, memory, jsonfiles)")


def parse_filters(params: Any) -> Dict[str, Any]:
    """``status``, ``workflow``, ``q``, ``limit``, ``offset`` from query parameters, checked."""
    status = (params.get("status") or "").strip() or None
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    out: Dict[str, Any] = {"status": status, "workflow": (params.get("workflow") or "").strip() or None,
                           "q": (params.get("q") or "").strip() or None}
    for name, default, high in (("limit", DEFAULT_PAGE, MAX_PAGE), ("offset", 0, 10_000_000)):
        text = (params.get(name) or "").strip()
        try:
            value = int(text) if text else default
        except ValueError:
            raise ValidationError(f"{name} must be a whole number, got {text!r}") from None
        if not (0 if name == "offset" else 1) <= value <= high:
            raise ValidationError(f"{name} must be from {0 if name == 'offset' else 1} to {high}, got {value}")
        out[name] = value
    return out


def waiting_info(run: RunState) -> Optional[Dict[str, Any]]:
    """What a waiting run waits for: reason, prompt, choices, wait key, deadline, child run."""
    wait = run.waiting
    if run.status is not RunStatus.WAITING or wait is None:
        return None
    return {"reason": wait.reason.value, "prompt": wait.prompt, "choices": list(wait.choices or []),
            "allow_free_text": wait.allow_free_text, "wait_key": wait.wait_key, "until": wait.until,
            "sub_run_id": (wait.details or {}).get("sub_run_id") if wait.reason is WaitReason.SUBWORKFLOW else None,
            "answerable": wait.reason in (WaitReason.USER, WaitReason.EVENT, WaitReason.JOB)}


def run_row(run: RunState) -> Dict[str, Any]:
    return {"run_id": run.run_id, "workflow_id": run.workflow_id, "status": run.status.value,
            "paused": run.is_paused, "current_node": run.current_node, "waiting": waiting_info(run),
            "error": run.error, "parent_run_id": run.parent_run_id, "session_id": run.session_id,
            "created_at": run.created_at, "updated_at": run.updated_at}


def _matches(run: RunState, text: str) -> bool:
    wait = run.waiting
    hay = [run.run_id, run.workflow_id, run.current_node, run.error or "", run.session_id or ""]
    if wait is not None:
        hay += [wait.prompt or "", wait.wait_key or ""]
    needle = text.casefold()
    return any(needle in h.casefold() for h in hay)


class Counts:
    """Counts per status (from the store's index, else its run index rows), reused for ``COUNT_TTL_S`` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: Dict[Optional[str], Tuple[float, Dict[str, Any]]] = {}

    def get(self, run_store: Any, workflow: Optional[str]) -> Dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(workflow)
            if hit is not None and now - hit[0] < COUNT_TTL_S:
                return hit[1]
        counter: Dict[str, int] = count_by_status(run_store, workflow_id=workflow) or {}
        capped = False
        if not counter:  # the store cannot count from its index (or has no runs): read index rows
            if answers_run_index(run_store):
                rows = run_store.list_run_index(workflow_id=workflow, limit=COUNT_LIMIT)
                statuses = [r["status"] for r in rows]
            else:
                statuses = [r.status.value for r in run_store.list_runs(workflow_id=workflow, limit=COUNT_LIMIT)]
            counter, capped = Counter(statuses), len(statuses) >= COUNT_LIMIT
        result = {"by_status": {s: counter.get(s, 0) for s in STATUSES}, "total": sum(counter.values()),
                  "capped": capped}
        with self._lock:
            self._cache[workflow] = (now, result)
        return result

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def list_page(runtime: Any, filters: Dict[str, Any], counts: Counts) -> Dict[str, Any]:
    """One page of runs (newest ``updated_at`` first) with the counts per status."""
    store = runtime.run_store
    _require_queries(store)
    status = RunStatus(filters["status"]) if filters["status"] else None
    offset, limit = filters["offset"], filters["limit"]
    scan_capped = False
    if filters["q"]:
        scanned = store.list_runs(status=status, workflow_id=filters["workflow"], limit=TEXT_SCAN_LIMIT)
        scan_capped = len(scanned) >= TEXT_SCAN_LIMIT
        runs = [r for r in scanned if _matches(r, filters["q"])][offset:offset + limit + 1]
    else:
        runs = store.list_runs(status=status, workflow_id=filters["workflow"], limit=offset + limit + 1)[offset:]
    more = len(runs) > limit
    return {"runs": [run_row(r) for r in runs[:limit]], "offset": offset, "limit": limit,
            "next_offset": offset + limit if more else None,
            "prev_offset": max(0, offset - limit) if offset else None,
            "counts": counts.get(store, filters["workflow"]), "text_scan_capped": scan_capped,
            "filters": {k: filters[k] for k in ("status", "workflow", "q")}}


def _duration_ms(started: Optional[str], ended: Optional[str]) -> Optional[float]:
    if not started or not ended:
        return None
    try:
        return round((parse_instant(ended) - parse_instant(started)).total_seconds() * 1000, 1)
    except (ValueError, TypeError):
        return None


def ledger_rows(records: List[Dict[str, Any]], first_seq: int = 1) -> List[Dict[str, Any]]:
    """The timeline: one row per ledger record (the synthetic last record of a finished run reads ``run ...``)."""
    out = []
    for i, r in enumerate(records, first_seq):
        key = r.get("idempotency_key") or ""
        terminal = key.startswith(_TERMINAL_KEY)
        out.append({"seq": i, "node_id": r.get("node_id"),
                    "status": f"run {key[len(_TERMINAL_KEY):]}" if terminal else r.get("status"),
                    "effect_type": "(run status)" if terminal else (r.get("effect") or {}).get("type"),
                    "attempt": r.get("attempt"), "started_at": r.get("started_at"), "ended_at": r.get("ended_at"),
                    "duration_ms": _duration_ms(r.get("started_at"), r.get("ended_at")), "error": r.get("error")})
    return out


def read_ledger(runtime: Any, run_id: str, limit: int = LEDGER_LIMIT) -> Tuple[List[Dict[str, Any]], int, int]:
    """The newest ``limit`` records, the seq of the first one and the total (one page read with
    ``Capability.LEDGER_PAGING``, else the whole ledger)."""
    ledger = runtime.ledger_store
    if Capability.LEDGER_PAGING in declared_capabilities(ledger):
        total = ledger.count(run_id)
        after = max(0, total - limit)
        rows, _cursor = ledger.list_after(run_id=run_id, after=after, limit=limit)
        return rows, after + 1, total
    rows = runtime.get_ledger(run_id)
    return rows[-limit:], max(1, len(rows) - limit + 1), len(rows)


def verify_report(runtime: Any, run_id: str) -> Optional[Dict[str, Any]]:
    """``runtime.verify_ledger(run_id)`` when the provenance plugin provides it, else None."""
    verify = getattr(runtime, "verify_ledger", None)  # a plugin-provided method (provenance), not a capability
    if not callable(verify):
        return None
    return verify(run_id)


def snapshots_of(runtime: Any, run_id: str) -> Optional[List[Dict[str, Any]]]:
    """The run's snapshots (newest first, at most ``SNAPSHOT_LIMIT``) when the snapshots plugin is loaded, else
    None. The store is the one ``abstractruntime snapshots list`` uses."""
    lister = runtime.plugin_methods().get("list_snapshots")  # the snapshots plugin's, when it is loaded
    if lister is None:
        return None
    snaps = lister(run_id=run_id, limit=SNAPSHOT_LIMIT)
    return [{"snapshot_id": s.snapshot_id, "name": s.name, "created_at": s.created_at, "tags": list(s.tags),
             "description": s.description} for s in snaps]


def run_detail(runtime: Any, run_id: str, workflows: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Everything the run page shows; ``workflows``: the console's, to find a VisualFlow run's graph."""
    state = runtime.get_state(run_id)
    store = runtime.run_store
    children = ([run_row(c) for c in store.list_children(parent_run_id=run_id)]
                if answers_run_queries(store) else [])
    records, first_seq, total = read_ledger(runtime, run_id)
    data = run_to_dict(state)
    return {"run": run_row(state), "vars": data["vars"], "output": data["output"], "step": state.step,
            "revision": state.revision, "children": children, "ledger": ledger_rows(records, first_seq),
            "ledger_total": total, "verify": verify_report(runtime, run_id), "paused": state.is_paused,
            "terminal": state.status.is_terminal, "visualflow": _visualflow_meta(runtime, state),
            "graph": flow_graph(runtime, state, records, workflows), "snapshots": snapshots_of(runtime, run_id)}


def _visualflow_meta(runtime: Any, state: RunState) -> Optional[Dict[str, Any]]:
    meta = state.vars.get("_visualflow") if isinstance(state.vars, dict) else None
    return dict(meta) if isinstance(meta, dict) else None


__all__ = ["STATUSES", "parse_filters", "list_page", "run_detail", "run_row", "ledger_rows", "read_ledger",
           "verify_report", "Counts", "waiting_info", "snapshots_of"]
