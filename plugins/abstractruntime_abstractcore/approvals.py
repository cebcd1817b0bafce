"""Resuming tool waits (spec §3.5) and tool approvals.

* :func:`prepare_resume` -- the plugin's ``abstractruntime_prepare_resume_payload``: host results are merged back
  between blocked calls and the runtime's pre-results; an approval decision that denies every call given to
  ``resume`` becomes denial results.
* :func:`resolve_tool_approval` -- the runtime method ``resolve_tool_approval``: runs the approved calls
  (journalled under the step's key), records decisions and results in the resume row and continues the run.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from abstractruntime import RunStatus
from abstractruntime.errors import RunNotWaitingError
from abstractruntime.models import utc_now_iso

from .errors import ToolApprovalError
from .tool_effect import MISSING_RESULT, _execute_journalled
from .tool_executor import error_result, journal_for


def merge_results(details: Mapping[str, Any], payload: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """Put host results back between blocked entries and runtime pre-results (spec §3.5)."""
    blocked = details.get("blocked_by_index") if isinstance(details.get("blocked_by_index"), Mapping) else {}
    pre = details.get("pre_results_by_index") if isinstance(details.get("pre_results_by_index"), Mapping) else {}
    if not blocked and not pre:
        return None
    results = payload.get("results")
    count = details.get("original_call_count")
    if not isinstance(results, list) or not isinstance(count, int) or len(results) == count:
        return None
    host = iter(results)
    merged = []
    for i in range(count):
        k = str(i)
        if k in blocked:
            merged.append(blocked[k])
        elif k in pre:
            merged.append(pre[k])
        else:
            merged.append(next(host, dict(MISSING_RESULT)))
    out = dict(payload)
    out["results"] = merged
    out.setdefault("mode", "executed")
    return out


_APPROVE = {"approve", "approved", "yes", "y", "allow", "ok", "true"}
_DENY = {"deny", "denied", "no", "n", "reject", "rejected", "false"}


def _decision(value: Any) -> Tuple[bool, Optional[str]]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.strip().lower() in _APPROVE | _DENY:
        return value.strip().lower() in _APPROVE, None
    if isinstance(value, Mapping):
        if "approved" in value:
            ok = value["approved"]
        elif "decision" in value:
            ok = _decision(value["decision"])[0]
        else:
            raise ToolApprovalError(f"Decision {dict(value)!r} has no 'approved' field")
        reason = value.get("reason")
        return bool(ok), str(reason) if reason not in (None, "") else None
    raise ToolApprovalError(
        f"Invalid decision {value!r}: use true/false, 'approve'/'deny' or {{'approved': bool}}")


def parse_decisions(decisions: Any, calls: Sequence[Mapping[str, Any]]) -> List[Tuple[bool, Optional[str]]]:
    """One ``(approved, reason)`` per pending call. Accepts a single decision for all calls, a list (positional,
    or entries naming ``runtime_call_id``/``call_id``/``index``), or a mapping from those ids (or the index) to a
    decision. Every call needs a decision."""
    if isinstance(decisions, Mapping) and set(decisions) & {"approvals", "decisions"}:
        decisions = decisions.get("approvals", decisions.get("decisions"))
    if isinstance(decisions, (bool, str)) or (isinstance(decisions, Mapping) and "approved" in decisions):
        one = _decision(decisions)
        return [one for _ in calls]
    by_id: Dict[str, Any] = {}
    if isinstance(decisions, Mapping):
        by_id = {str(k): v for k, v in decisions.items()}
    elif isinstance(decisions, list):
        if all(not isinstance(d, Mapping) or not ({"runtime_call_id", "call_id", "index"} & set(d))
               for d in decisions):
            if len(decisions) != len(calls):
                raise ToolApprovalError(
                    f"{len(decisions)} positional decision(s) for {len(calls)} tool call(s)")
            return [_decision(d) for d in decisions]
        for d in decisions:
            if not isinstance(d, Mapping):
                raise ToolApprovalError(f"Invalid decision {d!r}")
            ident = d.get("runtime_call_id") or d.get("call_id")
            by_id[str(ident if ident is not None else d.get("index"))] = d
    else:
        raise ToolApprovalError(f"Invalid decisions {decisions!r}")
    out = []
    missing = []
    for i, c in enumerate(calls):
        for ident in (c.get("runtime_call_id"), c.get("call_id"), str(i)):
            if ident is not None and str(ident) in by_id:
                out.append(_decision(by_id[str(ident)]))
                break
        else:
            missing.append(str(c.get("runtime_call_id") or i))
    if missing:
        raise ToolApprovalError(f"No decision for tool call(s): {', '.join(missing)}")
    return out


def _looks_like_decision(payload: Mapping[str, Any]) -> bool:
    return "results" not in payload and bool(set(payload) & {"approvals", "decisions", "approved", "approve",
                                                              "decision"})


def approval_payload(details: Mapping[str, Any], decisions: Any, *, approver: Optional[str],
                     execute: Any) -> Dict[str, Any]:
    """The resume payload of an approval wait: results of approved calls (``execute(call) -> result``) and
    denials, plus the decisions themselves (recorded in the ledger's resume row)."""
    calls = [c for c in details.get("tool_calls") or [] if isinstance(c, Mapping)]
    parsed = parse_decisions(decisions, calls)
    now = utc_now_iso()
    results, approvals = [], []
    for c, (ok, reason) in zip(calls, parsed):
        approvals.append({"runtime_call_id": c.get("runtime_call_id"), "call_id": c.get("call_id"),
                          "name": c.get("name"), "approved": ok, "reason": reason, "approver": approver,
                          "decided_at": now})
        if ok:
            results.append(execute(c))
        else:
            who = f" by {approver}" if approver else ""
            result = error_result(c, f"Tool call denied{who}" + (f": {reason}" if reason else ""))
            result["meta"] = {"denied": True}
            results.append(result)
    return {"mode": "executed", "results": results, "approvals": approvals}


def prepare_resume(wait: Any, payload: Any) -> Optional[Dict[str, Any]]:
    """The plugin's ``abstractruntime_prepare_resume_payload``: merge tool-wait results; turn an approval
    decision that denies every call into denial results (approving needs ``resolve_tool_approval``)."""
    details = getattr(wait, "details", None)
    if not isinstance(details, Mapping) or not isinstance(payload, Mapping) or "tool_calls" not in details \
            or "mode" not in details:
        return None
    if details.get("mode") == "approval_required" and _looks_like_decision(payload):
        def refuse(_call: Mapping[str, Any]) -> Dict[str, Any]:
            raise ToolApprovalError("approved tool calls must be executed by the runtime: call "
                                    "runtime.resolve_tool_approval(workflow=..., run_id=..., decisions=...) "
                                    "instead of resume()")

        approver = payload.get("approver") if isinstance(payload.get("approver"), str) else None
        decided = approval_payload(details, payload, approver=approver, execute=refuse)
        return merge_results(details, decided) or decided
    return merge_results(details, payload)


def resolve_tool_approval(runtime: Any, *, workflow: Any, run_id: str, decisions: Any,
                          approver: Optional[str] = None, tools: Any = None, max_steps: int = 100) -> Any:
    """Answer a tool-approval wait: run the approved calls (journalled under the step's key), record the
    decisions and results in the resume row, and continue the run. Returns the new ``RunState``.

    ``tools`` defaults to the executor the approval wrapped (``attach(runtime, tools=ApprovalToolExecutor(...))``
    or the plugin options)."""
    from .plugin import integration_for

    run = runtime.get_state(run_id)
    wait = run.waiting
    details = wait.details if wait is not None else None
    if run.status is not RunStatus.WAITING or not isinstance(details, Mapping) or \
            details.get("mode") != "approval_required":
        raise RunNotWaitingError(f"Run {run_id} is not waiting for a tool approval", run_id=run_id)
    if tools is None:
        configured = integration_for(runtime).tools
        tools = getattr(configured, "inner", configured)
    approval = details.get("approval") if isinstance(details.get("approval"), Mapping) else {}
    key = str(approval.get("id") or f"approval:{run_id}:{wait.wait_key}")
    journal = journal_for(runtime)

    def execute(c: Mapping[str, Any]) -> Dict[str, Any]:
        done = journal.get(key, str(c.get("runtime_call_id")))
        if done is not None:
            return done
        if tools is None:
            raise ToolApprovalError(
                "resolve_tool_approval: no tool executor to run the approved calls (pass tools=)")
        results: Dict[int, Dict[str, Any]] = {}
        _execute_journalled(tools, [(0, dict(c))], journal, key, run_id, results)
        return results[0]

    payload = approval_payload(details, decisions, approver=approver, execute=execute)
    return runtime.resume(workflow=workflow, run_id=run_id, wait_key=wait.wait_key, payload=payload,
                          max_steps=max_steps)


__all__ = ["prepare_resume", "merge_results", "parse_decisions", "approval_payload", "resolve_tool_approval"]
