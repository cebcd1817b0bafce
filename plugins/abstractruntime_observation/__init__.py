"""Builtin plugin ``observation``: the read-side methods of the reference ``Runtime`` that are derived from what a
run stored -- node traces from its ledger, limits from ``vars._limits``.

Runtime methods (``abstractruntime_register_runtime_methods``): ``get_node_traces(run_id)``,
``get_node_trace(run_id, node_id)``, ``get_limit_status(run_id)``, ``check_limits(run)``,
``update_limits(run_id, updates)``. Traces are derived from the ledger instead of being kept in
``vars._runtime.node_traces`` as the reference did, so the checkpoint does not grow with the run. Limits are advisory:
the kernel counts ``current_iteration``, nodes enforce.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from abstractruntime import hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor
from attrs import frozen

from abstractruntime.models import RunState, RuntimeConfig, StepRecord, StepStatus
from abstractruntime.timeutil import parse_instant

@frozen
class LimitWarning:
    limit_type: str
    status: str
    current: int
    maximum: int
    pct: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.maximum > 0:
            object.__setattr__(self, "pct", round(self.current / self.maximum * 100, 1))


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


def _attempt(row: Mapping[str, Any]) -> int:
    try:
        return int(row.get("attempt") or 1)
    except (TypeError, ValueError):
        return 1


def build_node_traces(rows: Sequence[Mapping[str, Any]], keep: int = 100) -> Dict[str, Any]:
    """Node traces from ledger rows: one entry per effect step, newest ``keep`` per node.

    A step retried after a failed attempt is one entry, as in the reference: the retry (same idempotency key, a
    higher ``attempt``) replaces the failed attempt's entry, and ``duration_ms`` runs from the first attempt's
    start. A failed entry carries the run's error, ``Effect failed after <n> attempt(s): <last error>``.
    """
    traces: Dict[str, Any] = {}
    last_step: Dict[str, Any] = {}  # node -> (key, attempt, started_at of the step) of its last entry
    for row in rows:
        effect = row.get("effect")
        status = row.get("status")
        if not effect or status == StepStatus.STARTED.value or effect.get("type") == "resume":
            continue
        if str(row.get("idempotency_key") or "").startswith("system:"):
            continue
        node_id = row.get("node_id")
        key, attempt, started = row.get("idempotency_key"), _attempt(row), row.get("started_at")
        trace = traces.setdefault(node_id, {"node_id": node_id, "steps": [], "updated_at": None})
        last = trace["steps"][-1] if trace["steps"] else None
        prior = last_step.get(node_id)
        if (last is not None and last["status"] == StepStatus.FAILED.value and key and prior is not None
                and prior[0] == key and attempt > prior[1]):
            trace["steps"].pop()  # a retry of the same step: one entry per step
            started = prior[2]
        last_step[node_id] = (key, attempt, started)
        entry: Dict[str, Any] = {
            "ts": row.get("ended_at") or row.get("started_at"),
            "node_id": node_id,
            "status": status,
            "idempotency_key": key,
            "reused_prior_result": False,
            "effect": effect,
            "duration_ms": _ms_between(started, row.get("ended_at")),
        }
        if status == StepStatus.COMPLETED.value:
            entry["result"] = row.get("result")
        elif status == StepStatus.FAILED.value:
            error = str(row.get("error") or "unknown error")
            plural = "" if attempt == 1 else "s"  # the kernel's wording of the run error
            entry["error"] = error if error.startswith("Effect failed after ") else \
                f"Effect failed after {attempt} attempt{plural}: {error}"
        else:
            entry["wait"] = (row.get("result") or {}).get("wait")
        trace["steps"].append(entry)
        trace["updated_at"] = entry["ts"]
        if len(trace["steps"]) > keep:
            del trace["steps"][0]
    return traces


def get_node_traces(runtime: Any, run_id: str) -> Dict[str, Any]:
    """Per-node traces of effect steps (newest 100 per node), derived from the ledger.

    Same shape as the reference's ``vars._runtime.node_traces``; deriving them from the ledger keeps the
    checkpoint from growing with the run.
    """
    runtime.get_state(run_id)
    return build_node_traces(runtime.ledger_store.list(run_id))


def get_node_trace(runtime: Any, run_id: str, node_id: str) -> Dict[str, Any]:
    return get_node_traces(runtime, run_id).get(node_id) or {"node_id": node_id, "steps": []}


def get_limit_status(runtime: Any, run_id: str) -> Dict[str, Any]:
    limits = runtime.get_state(run_id).vars.get("_limits")
    return limit_status(limits if isinstance(limits, dict) else {})


def check_limits(runtime: Any, run: RunState) -> List[LimitWarning]:
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


def update_limits(runtime: Any, run_id: str, updates: Mapping[str, Any]) -> None:
    """Durably update ``vars._limits`` (only the reference's updatable keys; others are ignored)."""
    allowed = {k: v for k, v in dict(updates or {}).items() if k in UPDATABLE_LIMITS}

    def mutate(run: RunState) -> Optional[List[StepRecord]]:
        limits = run.vars.get("_limits")
        if not isinstance(limits, dict):
            limits = runtime.config.to_limits_dict()
            run.vars["_limits"] = limits
        limits.update(allowed)
        return []

    runtime.update_run(run_id, mutate)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor("get_node_traces", get_node_traces, "Per-node traces of effect steps, from the ledger"),
        RuntimeMethodDescriptor("get_node_trace", get_node_trace, "One node's trace (empty steps when none)"),
        RuntimeMethodDescriptor("get_limit_status", get_limit_status, "Iterations/tokens/history limit status"),
        RuntimeMethodDescriptor("check_limits", check_limits, "LimitWarning list for a run's vars._limits"),
        RuntimeMethodDescriptor("update_limits", update_limits, "Durably update the updatable vars._limits keys"),
    ]


__all__ = ["LimitWarning", "build_node_traces", "limit_status", "UPDATABLE_LIMITS", "get_node_traces", "get_node_trace",
           "get_limit_status", "check_limits", "update_limits"]
