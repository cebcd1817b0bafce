"""Long-tail families (LLM, tools, memory, files; the agent is in :mod:`.agent`). LLM, tools and memory nodes only
build effects (``llm_call``, ``tool_calls``, ``memory_*``) with the reference's pin names; the handlers of
those effects come from other plugins (AbstractCore integration, active_memory); without them the run fails with
"No effect handler registered". ``read_file`` / ``write_file`` do their file I/O in the node, under the run's
workspace policy (:mod:`abstractruntime_workspace`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from abstractruntime_storekit import write_atomic
from abstractruntime_workspace import workspace_for_vars

from ..nodetypes import PURE_BASE, EffectMapping, VisualNodeType
from .common import first as _first  # noqa: F401 - used by tool families
from .llm_node import llm_node_type
from .memory_nodes import memory_node_types


# --- tools ---------------------------------------------------------------------------------------------------------
def _tool_calls_list(value: Any) -> List[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            value = []
    if isinstance(value, dict):
        if isinstance(value.get("tool_calls"), list):
            return list(value["tool_calls"])
        return [value]
    return list(value) if isinstance(value, list) else []


def _allowed(inputs: Dict[str, Any], cfg: Dict[str, Any]) -> Any:
    if inputs.get("allowed_tools") is not None:
        return inputs["allowed_tools"]
    for key in ("allowed_tools", "allowedTools"):
        if cfg.get(key) is not None:
            return cfg[key]
    return None


def _tool_calls_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"tool_calls": _tool_calls_list(inputs.get("tool_calls"))}
    allowed = _allowed(inputs, ctx.config)
    if allowed is not None:
        payload["allowed_tools"] = list(allowed) if isinstance(allowed, list) else [allowed]
    return payload


def _tool_calls_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {}
    results = r.get("results") if isinstance(r.get("results"), list) else []
    success = r.get("mode", "executed") == "executed" and all(
        isinstance(x, dict) and x.get("success") for x in results)
    return {"results": results, "success": success, "raw": result}


def _tool_parameters(d: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    cfg = ctx.data.get("toolParametersConfig") if ctx is not None else None
    tool = cfg.get("tool") if isinstance(cfg, dict) else None
    pins = ctx.declared_inputs if ctx is not None else [k for k in d if not k.startswith("_")]
    out = {p: d.get(p) for p in pins}
    out["tool_call"] = {"name": tool, "arguments": {p: v for p, v in out.items() if v is not None}}
    return out


# --- files ---------------------------------------------------------------------------------------------------------
def _file_path(inputs: Dict[str, Any], ctx: Any) -> Path:
    """The node's ``file_path`` under the run's workspace policy, the one the host sealed when the run started
    (relative to its root if it has one, else to the working directory; see :mod:`abstractruntime_workspace`)."""
    return workspace_for_vars(ctx.vars).resolve(inputs.get("file_path"))


def _read_file(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    path = _file_path(inputs, ctx)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return {"content": json.loads(text)}
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):  # JSON-looking text: parsed best-effort
        try:
            return {"content": json.loads(stripped)}
        except ValueError:
            pass
    return {"content": text}


def _write_file(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    path = _file_path(inputs, ctx)
    content = inputs.get("content")
    if path.suffix.lower() == ".json":
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError:
                pass
        text = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    else:
        text = content if isinstance(content, str) else "" if content is None else json.dumps(content,
                                                                                               ensure_ascii=False)
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)  # a reader never sees half a file, and the file survives a crash once written
    return {"bytes": len(data), "file_path": str(path)}


def longtail_node_types() -> List[VisualNodeType]:
    T, E, X = VisualNodeType, EffectMapping, "execution"
    types = [
        T("tool_calls", effect=E("tool_calls", _tool_calls_payload, map_result=_tool_calls_map,
                                 main_output="results"),
          inputs=[("exec-in", X), "tool_calls", "allowed_tools"], outputs=[("exec-out", X), "results", "success"]),
        T("read_file", handler=_read_file, context=True, inputs=[("exec-in", X), "file_path"],
          outputs=[("exec-out", X), "content"], description="Read a file (workspace policy of the run applies)"),
        T("write_file", handler=_write_file, context=True, inputs=[("exec-in", X), "file_path", "content"],
          outputs=[("exec-out", X), "bytes", "file_path"],
          description="Write a file atomically, creating parent directories (workspace policy applies)"),
        T("tool_parameters", handler=_tool_parameters, context=True, pure=True, base_input=PURE_BASE,
          outputs=["tool_call"]),
    ]
    types += [llm_node_type()] + memory_node_types()  # VAM §2, §3
    return types


__all__ = ["longtail_node_types"]
