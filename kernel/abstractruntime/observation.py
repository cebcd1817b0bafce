"""Read-side helpers: node traces derived from the ledger, and the limits status of ``vars._limits``."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from .models import RuntimeConfig, StepStatus
from .timeutil import parse_instant


UPDATABLE_LIMITS = frozenset({
    "max_iterations", "max_tokens", "max_output_tokens", "max_input_tokens", "max_history_messages",
    "warn_iterations_pct", "warn_tokens_pct", "estimated_tokens_used", "current_iteration",
})


def _pct(current: Any, maximum: Any) -> float:
    try:
        cur, mx = float(current or 0), float(maximum or 0)
    except (TypeError, ValueError):
        return 0.0
    return round(cur / mx * 100, 1) if mx > 0 else 0.0


def limit_status(limits: Mapping[str, Any]) -> Dict[str, Any]:
    """The reference's ``get_limit_status`` shape; missing keys fall back to the defaults."""
    d = RuntimeConfig().to_limits_dict()
    get = lambda k: limits.get(k, d[k]) if limits.get(k) is not None else d[k]  # noqa: E731
    it_cur, it_max = int(get("current_iteration") or 0), int(get("max_iterations") or 0)
    tok_used, tok_max = int(get("estimated_tokens_used") or 0), int(get("max_tokens") or 0)
    it_pct, tok_pct = _pct(it_cur, it_max), _pct(tok_used, tok_max)
    return {
        "iterations": {"current": it_cur, "max": it_max, "pct": it_pct,
                       "warning": it_pct >= float(get("warn_iterations_pct"))},
        "tokens": {"estimated_used": tok_used, "max": tok_max, "max_input_tokens": limits.get("max_input_tokens"),
                   "max_output_tokens": limits.get("max_output_tokens"), "pct": tok_pct,
                   "warning": tok_pct >= float(get("warn_tokens_pct"))},
        "history": {"max_messages": get("max_history_messages")},
    }


def _ms_between(start: Optional[str], end: Optional[str]) -> float:
    try:
        return round((parse_instant(end) - parse_instant(start)).total_seconds() * 1000, 3)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def build_node_traces(rows: Sequence[Mapping[str, Any]], keep: int = 100) -> Dict[str, Any]:
    """Node traces from ledger rows: one entry per finished effect attempt, newest ``keep`` per node."""
    traces: Dict[str, Any] = {}
    for row in rows:
        effect = row.get("effect")
        status = row.get("status")
        if not effect or status == StepStatus.STARTED.value or effect.get("type") == "resume":
            continue
        if str(row.get("idempotency_key") or "").startswith("system:"):
            continue
        node_id = row.get("node_id")
        entry: Dict[str, Any] = {
            "ts": row.get("ended_at") or row.get("started_at"),
            "node_id": node_id,
            "status": status,
            "idempotency_key": row.get("idempotency_key"),
            "reused_prior_result": False,
            "effect": effect,
            "duration_ms": _ms_between(row.get("started_at"), row.get("ended_at")),
        }
        if status == StepStatus.COMPLETED.value:
            entry["result"] = row.get("result")
        elif status == StepStatus.FAILED.value:
            entry["error"] = row.get("error")
        else:
            entry["wait"] = (row.get("result") or {}).get("wait")
        trace = traces.setdefault(node_id, {"node_id": node_id, "steps": [], "updated_at": entry["ts"]})
        trace["steps"].append(entry)
        trace["updated_at"] = entry["ts"]
        if len(trace["steps"]) > keep:
            del trace["steps"][0]
    return traces
