"""The read side of a runtime: ledger subscriptions, node traces derived from the ledger, and the limits of
``vars._limits`` (:class:`RunObservation`, owned by the :class:`~abstractruntime.Runtime`, and its helpers)."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import codec
from .logs import get_logger
from .models import LimitWarning, RunState, RuntimeConfig, StepRecord, StepStatus
from .timeutil import parse_instant

log = get_logger("abstractruntime")


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


class RunObservation:
    """Ledger subscriptions, node traces and limits. ``load(run_id)`` raises for an unknown run; ``update(run_id,
    mutate)`` is the runtime's retried load-mutate-commit."""

    def __init__(self, *, load: Callable[[str], RunState], ledger_store: Any, config: RuntimeConfig,
                 update: Callable[..., RunState]) -> None:
        self._load = load
        self._ledger_store = ledger_store
        self._config = config
        self._update = update
        self._guard = threading.Lock()
        self._subscribers: Tuple[Tuple[Callable[[Dict[str, Any]], None], Optional[str]], ...] = ()

    def subscribe_ledger(
        self, callback: Callable[[Dict[str, Any]], None], *, run_id: Optional[str] = None
    ) -> Callable[[], None]:
        """Call ``callback(record_dict)`` after every committed ledger record (of ``run_id`` only, if given).

        Works with every store (the kernel publishes after each commit). Callback exceptions are logged and
        swallowed. Returns the unsubscribe function.
        """
        entry = (callback, run_id)
        with self._guard:
            self._subscribers = self._subscribers + (entry,)

        def unsubscribe() -> None:
            with self._guard:
                self._subscribers = tuple(e for e in self._subscribers if e is not entry)

        return unsubscribe

    def publish(self, records: Sequence[StepRecord]) -> None:
        subscribers = self._subscribers
        if not subscribers:
            return
        for record in records:
            data = None
            for callback, run_filter in subscribers:
                if run_filter is not None and run_filter != record.run_id:
                    continue
                if data is None:
                    data = codec.record_to_dict(record)
                try:
                    callback(dict(data))
                except Exception as exc:
                    log.warning("ledger_subscriber_failed", run_id=record.run_id, error=f"{type(exc).__name__}: {exc}")

    def get_node_traces(self, run_id: str) -> Dict[str, Any]:
        """Per-node traces of effect steps (newest 100 per node), derived from the ledger.

        Same shape as the reference's ``vars._runtime.node_traces``; deriving them from the ledger keeps the
        checkpoint from growing with the run.
        """
        self._load(run_id)
        return build_node_traces(self._ledger_store.list(run_id))

    def get_node_trace(self, run_id: str, node_id: str) -> Dict[str, Any]:
        return self.get_node_traces(run_id).get(node_id) or {"node_id": node_id, "steps": []}

    # --- limits (advisory; nodes enforce) ---------------------------------------------------------------------
    def get_limit_status(self, run_id: str) -> Dict[str, Any]:
        limits = self._load(run_id).vars.get("_limits")
        return limit_status(limits if isinstance(limits, dict) else {})

    def check_limits(self, run: RunState) -> List[LimitWarning]:
        status = limit_status(run.vars.get("_limits") if isinstance(run.vars.get("_limits"), dict) else {})
        warnings: List[LimitWarning] = []
        it = status["iterations"]
        if it["max"] > 0 and it["warning"]:
            warnings.append(LimitWarning("iterations", "exceeded" if it["pct"] >= 100 else "warning",
                                         it["current"], it["max"]))
        tok = status["tokens"]
        if tok["max"] > 0 and tok["estimated_used"] > 0 and tok["warning"]:
            warnings.append(LimitWarning("tokens", "exceeded" if tok["pct"] >= 100 else "warning",
                                         tok["estimated_used"], tok["max"]))
        return warnings

    def update_limits(self, run_id: str, updates: Mapping[str, Any]) -> None:
        """Durably update ``vars._limits`` (only the reference's updatable keys; others are ignored)."""
        allowed = {k: v for k, v in dict(updates or {}).items() if k in UPDATABLE_LIMITS}

        def mutate(run: RunState) -> Optional[List[StepRecord]]:
            limits = run.vars.get("_limits")
            if not isinstance(limits, dict):
                limits = self._config.to_limits_dict()
                run.vars["_limits"] = limits
            limits.update(allowed)
            return []

        self._update(run_id, mutate)
