"""The Markdown report of an agent's trace: every step of its node traces in time order, LLM answers and tool calls
with their results (reference path ``abstractruntime.rendering.agent_trace_report``)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from attrs import frozen

from .json_stringify import JsonStringifyMode, stringify_json

TITLE = "# Agent Trace Report"


@frozen
class AgentTraceMarkdownReportConfig:
    """``include_timestamps`` adds each step's ``ts``; ``json_mode`` is accepted for compatibility and unused (JSON
    blocks are always beautified with indent 2)."""

    include_timestamps: bool = False
    json_mode: JsonStringifyMode = JsonStringifyMode.BEAUTIFY


def _json(value: Any) -> str:
    return stringify_json(value, mode=JsonStringifyMode.BEAUTIFY, beautify_indent=2, parse_strings=False)


def _block(lang: str, text: str) -> List[str]:
    return [f"```{lang}", text, "```"]


def _steps(scratchpad: Mapping[str, Any]) -> Optional[List[Dict[str, Any]]]:
    traces = scratchpad.get("node_traces")
    if isinstance(traces, dict):
        trace_list = [t for t in traces.values() if isinstance(t, dict)]
    elif "node_id" in scratchpad and isinstance(scratchpad.get("steps"), list):
        trace_list = [dict(scratchpad)]
    else:
        return None
    steps = []
    for trace in trace_list:
        for step in trace.get("steps") or []:
            if isinstance(step, dict):
                steps.append(dict(step, node_id=step.get("node_id") or trace.get("node_id")))
    return sorted(steps, key=lambda s: str(s.get("ts") or ""))


def _llm_lines(result: Any) -> List[str]:
    result = result if isinstance(result, dict) else {}
    lines = []
    for key in ("model", "finish_reason"):
        if result.get(key) is not None:
            lines.append(f"- **{key}**: `{result[key]}`")
    calls = result.get("tool_calls")
    calls = [calls] if isinstance(calls, dict) else calls if isinstance(calls, list) else []
    if not calls:
        lines.append("- **tool_calls_requested**: none")
    else:
        lines.append("- **tool_calls_requested**:")
        for call in calls:
            call = call if isinstance(call, dict) else {}
            cid = f" (call_id={call['call_id']})" if call.get("call_id") else ""
            lines.append(f"  - `{call.get('name')}`{cid}")
    content = result.get("content")
    if isinstance(content, str) and content.strip():
        lines += ["", "**Assistant content**"] + _block("markdown", content)
    return lines


def _tool_lines(step: Mapping[str, Any]) -> List[str]:
    payload = (step.get("effect") or {}).get("payload") if isinstance(step.get("effect"), dict) else None
    calls = payload.get("tool_calls") if isinstance(payload, dict) else None
    calls = [calls] if isinstance(calls, dict) else calls if isinstance(calls, list) else []
    if not calls:
        return ["- **tool_calls**: none"]
    result = step.get("result") if isinstance(step.get("result"), dict) else {}
    by_id = {r["call_id"]: r for r in result.get("results") or []
             if isinstance(r, dict) and isinstance(r.get("call_id"), str)}
    lines: List[str] = []
    for call in calls:
        call = call if isinstance(call, dict) else {}
        cid = call.get("call_id")
        lines += ["", f"#### Tool: `{call.get('name')}`" + (f" (call_id={cid})" if cid else ""), "",
                  "**Arguments**"] + _block("json", _json(call.get("arguments")))
        found = by_id.get(cid) if isinstance(cid, str) else None
        if found is None:
            lines += ["", "_missing tool result in trace entry_"]
            continue
        lines += ["", "**Result**", f"- **success**: {'true' if found.get('success') else 'false'}"]
        if found.get("error") is not None:
            lines.append(f"- **error**: {found['error']}")
        output = found.get("output")
        lines += _block("text", output) if isinstance(output, str) else _block("json", _json(output))
    return lines


def _step_lines(n: int, step: Mapping[str, Any], config: AgentTraceMarkdownReportConfig) -> List[str]:
    effect = step.get("effect") if isinstance(step.get("effect"), dict) else {}
    kind, status = effect.get("type"), step.get("status")
    lines = [f"### {n}. `{step.get('node_id')}` — `{kind}` ({status})"]
    if config.include_timestamps:
        lines.append(f"- **ts**: `{step.get('ts')}`")
    if status == "failed":
        return lines + ["", "**Error**"] + _block("text", str(step.get("error")))
    duration = step.get("duration_ms")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration >= 0:
        lines.append(f"- **duration_ms**: {float(duration):.3f}")
    if kind == "llm_call":
        return lines + _llm_lines(step.get("result"))
    if kind == "tool_calls":
        return lines + _tool_lines(step)
    raw = step["result"] if "result" in step else step.get("wait")
    return lines + ["", "**Result (raw)**"] + _block("json", _json(raw))


def render_agent_trace_markdown(scratchpad: Any, *, config: Optional[AgentTraceMarkdownReportConfig] = None) -> str:
    """The report of a scratchpad (``{sub_run_id?, workflow_id?, node_traces: {node: {node_id, steps}}}``, or one
    node trace ``{node_id, steps}``), ending with exactly one newline."""
    config = config or AgentTraceMarkdownReportConfig()
    if not isinstance(scratchpad, dict):
        return f"{TITLE}\n\n_No scratchpad provided._\n"
    steps = _steps(scratchpad)
    if steps is None:
        return f"{TITLE}\n\n_No node_traces found in scratchpad._\n"
    lines = [TITLE]
    for key in ("sub_run_id", "workflow_id"):
        if scratchpad.get(key):
            lines.append(f"- **{key}**: `{scratchpad[key]}`")
    if not steps:
        return "\n".join(lines + ["", "_No trace steps found._"]) + "\n"
    lines += ["", "## Timeline"]
    for n, step in enumerate(steps, 1):
        lines += [""] + _step_lines(n, step, config)
    return "\n".join(lines).rstrip("\n") + "\n"


__all__ = ["AgentTraceMarkdownReportConfig", "render_agent_trace_markdown"]
