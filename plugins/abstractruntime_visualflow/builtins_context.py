"""Pure builtins of the context, builder, trace and tool-result family (VAM §4.2-§4.7): ``make_context``,
``add_message`` (its pure form; the execution form is in :mod:`.catalogue.variables`), ``make_meta``,
``make_scratchpad``, ``agent_trace_report`` and ``format_tool_results``. Each is ``fn(inputs, ctx=None) -> output``
and is exported through :data:`.builtins.BUILTINS`.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

AGENT_META_SCHEMA = "abstractcode.agent.v1.meta"
_PRIMARY_LIMIT = 160
_OBSERVATION_LIMIT = 420


def _nonblank(value: Any) -> Optional[str]:
    """A string with non-whitespace content, stripped; else None."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _nonblank_str(value: Any) -> Optional[str]:
    """``str(value)`` stripped when non-blank (None stays None)."""
    return None if value is None else _nonblank(str(value))


def as_list(value: Any) -> List[Any]:
    """list/tuple -> list, None -> [], anything else -> [value]."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def _as_int(value: Any) -> Optional[int]:
    """An int from a number or a numeric string (bools are not numbers here); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            return int(value)
        except (OverflowError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            return int(float(value.strip()))
        except (OverflowError, ValueError):
            return None
    return None


# --- §4.2 make_context ---------------------------------------------------------------------------------------------
def make_context(d, ctx=None):
    """A context object ``{context: {...context_extra, task, messages}}``."""
    extra = d.get("context_extra")
    context = copy.deepcopy(extra) if isinstance(extra, dict) else {}
    task = d.get("task")
    context["task"] = "" if task is None else (task if isinstance(task, str) else str(task))
    context["messages"] = as_list(d.get("messages"))
    return {"context": context}


# --- §4.3 add_message ----------------------------------------------------------------------------------------------
def new_message(d: Dict[str, Any]) -> Dict[str, Any]:
    """``{role, content, timestamp (UTC ISO), metadata: {message_id: msg_<32 hex>}}`` from ``role``/``content``."""
    role, content = d.get("role"), d.get("content")
    return {"role": "user" if role is None else str(role), "content": "" if content is None else str(content),
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "metadata": {"message_id": f"msg_{uuid.uuid4().hex}"}}


def add_message(d, ctx=None):
    """A chat message ``{message: {role, content, timestamp, metadata: {message_id}}}``."""
    return {"message": new_message(d)}


# --- §4.4 make_meta ------------------------------------------------------------------------------------------------
def make_meta(d, ctx=None):
    """An agent meta object ``{meta: {schema, version, ...}}``; invalid fields are left out."""
    extra = d.get("extra")
    meta: Dict[str, Any] = copy.deepcopy(extra) if isinstance(extra, dict) else {}
    meta["schema"] = _nonblank(d.get("schema")) or AGENT_META_SCHEMA
    version = _as_int(d.get("version"))
    meta["version"] = 1 if version is None else version
    for key in ("output_mode", "sub_run_id", "finish_reason"):
        if _nonblank(d.get(key)):
            meta[key] = _nonblank(d.get(key))
    for key in ("provider", "model"):
        if _nonblank_str(d.get(key)):
            meta[key] = _nonblank_str(d.get(key))
    for key in ("iterations", "tool_calls", "tool_results"):
        if _as_int(d.get(key)) is not None:
            meta[key] = _as_int(d.get(key))
    for key in ("gen_time", "ttft_ms"):
        if d.get(key) is not None and not isinstance(d.get(key), bool):
            meta[key] = d[key]
    if isinstance(d.get("usage"), dict):
        meta["usage"] = copy.deepcopy(d["usage"])
    trace = d.get("trace")
    if isinstance(trace, dict):
        meta["trace"] = copy.deepcopy(trace)
    elif _nonblank(trace):
        meta["trace"] = {"trace_id": _nonblank(trace)}
    if _nonblank_str(d.get("trace_id")):
        current = meta.get("trace") if isinstance(meta.get("trace"), dict) else {}
        meta["trace"] = dict(current, trace_id=_nonblank_str(d.get("trace_id")))
    warnings = d.get("warnings")
    if isinstance(warnings, (list, tuple)):
        meta["warnings"] = [str(w) for w in warnings if _nonblank_str(w)]
    elif _nonblank(warnings):
        meta["warnings"] = [warnings]
    debug = d.get("debug")
    if debug is not None:
        meta["debug"] = copy.deepcopy(debug) if isinstance(debug, dict) else debug
    return {"meta": meta}


# --- §4.5 make_scratchpad ------------------------------------------------------------------------------------------
def make_scratchpad(d, ctx=None):
    """An agent scratchpad of the shape the agent node produces."""
    pad: Dict[str, Any] = {}
    for key in ("sub_run_id", "workflow_id"):
        if _nonblank(d.get(key)):
            pad[key] = _nonblank(d.get(key))
    task = d.get("task")
    pad["task"] = "" if task is None else str(task)
    pad["messages"] = as_list(d.get("messages"))
    if isinstance(d.get("context_extra"), dict):
        pad["context_extra"] = copy.deepcopy(d["context_extra"])
    pad["node_traces"] = copy.deepcopy(d["node_traces"]) if isinstance(d.get("node_traces"), dict) else {}
    for key in ("steps", "tool_calls", "tool_results"):
        pad[key] = as_list(d.get(key))
    return {"scratchpad": pad}


# --- §4.6 agent_trace_report ---------------------------------------------------------------------------------------
def agent_trace_report(d, ctx=None):
    """The rendering library's agent trace report (VAM §4.6) of the ``scratchpad`` input."""
    from abstractruntime_rendering import render_agent_trace_markdown

    return render_agent_trace_markdown(d.get("scratchpad"))


# --- §4.7 format_tool_results --------------------------------------------------------------------------------------
def _clamp(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _one_line(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return " ".join(value.split())
    return _compact_json(value)


def default_tool_specs() -> Dict[str, Dict[str, Any]]:
    """The default tool specs by name (through the reference path of the AbstractCore integration); ``{}`` when
    AbstractCore (or the integration) is not installed."""
    try:
        from abstractruntime.integrations.abstractcore.default_tools import list_default_tool_specs
        specs = list_default_tool_specs()
    except ImportError:
        return {}
    return {s["name"]: s for s in specs if isinstance(s, dict) and isinstance(s.get("name"), str)}


def _primary(item: Dict[str, Any], spec: Optional[Dict[str, Any]]) -> Optional[str]:
    args = item.get("arguments") if isinstance(item.get("arguments"), dict) else {}
    output = item.get("output") if isinstance(item.get("output"), dict) else {}
    keys: List[Any] = []
    if spec is not None:
        required = spec.get("required_args")
        params = spec.get("parameters")
        if isinstance(required, list) and required:
            keys = list(required)
        elif isinstance(params, dict) and params:
            props = params.get("properties") if params.get("type") == "object" else None
            keys = list(props if isinstance(props, dict) else params)
    if not keys:
        keys = list(args) + [k for k in output if k not in args]
    for source in (args, output):
        for key in keys:
            if source.get(key) is not None:
                return _clamp(_one_line(source[key]), _PRIMARY_LIMIT)
    return None


def _observation(item: Dict[str, Any], success: Any) -> str:
    if success is False and item.get("error") is not None:
        return str(item["error"])
    output = item.get("output")
    if isinstance(output, dict) and _nonblank(output.get("rendered")):
        return str(output["rendered"])
    if output is None or output == "" or output == {} or output == []:
        return "(no output)"
    text = _clamp(_one_line(output), _OBSERVATION_LIMIT)
    return text if text.strip() else "(no output)"


def format_tool_results(d, ctx=None):
    """Tool results as lines ``- name(primary) [SUCCESS|FAILURE|DONE] : observation``."""
    results = d.get("tool_results")
    if results is None:
        results = d.get("results")
    items = [r for r in as_list(results) if isinstance(r, dict)]
    specs = default_tool_specs() if items else {}
    lines = []
    for item in items:
        name = item.get("name") or item.get("tool") or "tool"
        name = str(name)
        primary = _primary(item, specs.get(name))
        success = item.get("success")
        status = ("SUCCESS" if success else "FAILURE") if isinstance(success, bool) else "DONE"
        signature = f"{name}({primary})" if primary is not None else f"{name}()"
        lines.append(f"- {signature} [{status}] : {_observation(item, success)}")
    return "\n".join(lines)


CONTEXT_BUILTINS = {
    "make_context": make_context, "add_message": add_message, "make_meta": make_meta,
    "make_scratchpad": make_scratchpad, "agent_trace_report": agent_trace_report,
    "format_tool_results": format_tool_results,
}

__all__ = ["CONTEXT_BUILTINS", "new_message", "as_list", "default_tool_specs", "make_context", "add_message",
           "make_meta", "make_scratchpad", "agent_trace_report", "format_tool_results", "AGENT_META_SCHEMA"]
