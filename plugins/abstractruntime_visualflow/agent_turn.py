"""Reading the ReAct child's result into the ``agent`` node (VAM §1.6) and persisting the turn into the parent's
``context.messages`` (VAM §1.7). Pure functions over plain values and the parent's ``vars``."""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime.logs import get_logger

log = get_logger("abstractruntime.visualflow")

MAX_OBSERVATIONS = 20
MAX_DETAILS = 2000
MIN_KEPT = 200


def _dicts(value: Any) -> List[Dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def trace_steps(node_traces: Any) -> List[Dict[str, Any]]:
    """Every dict step of every ``node_traces[*].steps``, copied, sorted by ``str(ts)``."""
    steps: List[Dict[str, Any]] = []
    if isinstance(node_traces, dict):
        for trace in node_traces.values():
            raw = trace.get("steps") if isinstance(trace, dict) else None
            steps.extend(copy.deepcopy(s) for s in (raw if isinstance(raw, list) else []) if isinstance(s, dict))
    return sorted(steps, key=lambda s: str(s.get("ts")))


def tool_activity(steps: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``(tool_calls, tool_results)`` of the ``tool_calls`` steps."""
    calls: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []
    for step in steps:
        effect = step.get("effect") if isinstance(step.get("effect"), dict) else {}
        if effect.get("type") != "tool_calls":
            continue
        payload = effect.get("payload") if isinstance(effect.get("payload"), dict) else {}
        calls += copy.deepcopy(_dicts(payload.get("tool_calls")))
        result = step.get("result")
        if isinstance(result, dict):
            results += copy.deepcopy(_dicts(result.get("results")))
    return calls, results


def read_child_result(sub: Dict[str, Any], task: str) -> Dict[str, Any]:
    """The facts the node reads from the resume payload ``{sub_run_id, output, node_traces?}``."""
    output = sub.get("output") if isinstance(sub.get("output"), dict) else {}
    answer = str(output.get("answer") or "")
    raw_messages = output.get("messages")
    if isinstance(raw_messages, list):
        messages = [copy.deepcopy(m) if isinstance(m, dict) else {"role": "assistant", "content": str(m)}
                    for m in raw_messages]
    else:
        messages = ([{"role": "user", "content": task}] if task.strip() else []) + \
            ([{"role": "assistant", "content": answer}] if answer.strip() else [])
    node_traces = sub.get("node_traces")
    steps = trace_steps(node_traces)
    calls, results = tool_activity(steps)
    sub_run_id = sub.get("sub_run_id")
    return {"answer": answer, "iterations": output.get("iterations"), "messages": messages,
            "node_traces": copy.deepcopy(node_traces) if isinstance(node_traces, dict) else {},
            "steps": steps, "tool_calls": calls, "tool_results": results,
            "sub_run_id": sub_run_id if isinstance(sub_run_id, str) else None}


# --- persisting the turn (VAM §1.7) ------------------------------------------------------------------------------
def _truncate(details: str) -> str:
    if len(details) <= MAX_DETAILS:
        return details
    suffix = f"\n… (truncated, {len(details):,} chars total)"
    keep = MAX_DETAILS - len(suffix)
    if keep < MIN_KEPT:
        return details[:MAX_DETAILS]
    return details[:keep].rstrip() + suffix


def observation_content(result: Dict[str, Any], calls: List[Dict[str, Any]]) -> str:
    """``[name]: <details>`` / ``[name]: Error: <details>`` for one tool result (VAM §1.7)."""
    name = result.get("name") or "tool"
    output = result.get("output")
    rendered = (json.dumps(output, indent=2, ensure_ascii=False) if isinstance(output, (dict, list))
                else str(output or "")).strip()
    success = bool(result.get("success"))
    details = rendered if success else str(result.get("error") or rendered)
    call_id = result.get("call_id")
    if call_id:
        for call in calls:
            args = call.get("arguments")
            if call.get("call_id") == call_id and isinstance(args, dict) and args:
                details = "args=" + json.dumps(args, sort_keys=True, ensure_ascii=False) + "\n" + details
                break
    details = _truncate(details)
    return f"[{name}]: {details}" if success else f"[{name}]: Error: {details}"


def persist_turn(vars: Dict[str, Any], bucket: Dict[str, Any], *, node_id: str, run_id: Optional[str],
                 task: str, answer: str, sub_run_id: Optional[str], tool_calls: List[Dict[str, Any]],
                 tool_results: List[Dict[str, Any]]) -> None:
    """Append task, tool observations and answer to the parent's ``context.messages``, once per ``sub_run_id``.

    Kept reference behaviour: the once-guard compares the stored marker (initially null) with ``sub_run_id``, so a
    resume payload without a string ``sub_run_id`` appends nothing."""
    if bucket.get("context_appended_sub_run_id") == sub_run_id:
        return
    try:
        context = vars.get("context")
        if not isinstance(context, dict):
            context = vars["context"] = {}
        if not isinstance(context.get("messages"), list):
            context["messages"] = []
        messages = context["messages"]
        key = sub_run_id or run_id
        prefix = f"agent:{key}:{node_id}"
        extra = {"sub_run_id": sub_run_id} if sub_run_id else {}
        existing = {(m.get("metadata") or {}).get("message_id") for m in messages
                    if isinstance(m, dict) and isinstance(m.get("metadata"), dict)}

        def add(role: str, content: str, metadata: Dict[str, Any]) -> None:
            if metadata["message_id"] in existing:
                return
            existing.add(metadata["message_id"])
            messages.append({"role": role, "content": content, "metadata": metadata})

        if task.strip():
            add("user", task.strip(), {"kind": "agent_turn", "node_id": node_id, "message_id": f"{prefix}:task",
                                       **extra})
        for index, result in enumerate(tool_results[:MAX_OBSERVATIONS]):
            if not isinstance(result, dict):
                continue
            call_id = result.get("call_id")
            meta = {"kind": "tool_observation", "node_id": node_id,
                    "message_id": f"{prefix}:tool:{call_id or index}", "tool_name": result.get("name") or "tool",
                    "success": bool(result.get("success"))}
            if call_id:
                meta["call_id"] = call_id
            add("assistant", observation_content(result, tool_calls), {**meta, **extra})
        if len(tool_results) > MAX_OBSERVATIONS:
            omitted = len(tool_results) - MAX_OBSERVATIONS
            add("assistant", f"[tools]: (omitted {omitted} additional tool results for brevity; see "
                             f"sub_run_id={sub_run_id})",
                {"kind": "tool_observation_summary", "node_id": node_id, "message_id": f"{prefix}:tool:omitted",
                 "sub_run_id": sub_run_id})
        if answer.strip():
            add("assistant", answer.strip(), {"kind": "agent_turn", "node_id": node_id,
                                              "message_id": f"{prefix}:answer", **extra})
        bucket["context_appended_sub_run_id"] = sub_run_id
    except Exception as exc:  # the reference swallows errors of this step; we log them
        log.warning("agent_turn_not_persisted", node_id=node_id, error=str(exc))


__all__ = ["trace_steps", "tool_activity", "read_child_result", "observation_content", "persist_turn"]
