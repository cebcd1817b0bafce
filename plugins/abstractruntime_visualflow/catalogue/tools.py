"""``call_tool`` (VAM §4.8): one tool call as a plain ``TOOL_CALLS`` effect. The effect is executed by the host's
TOOL_CALLS handler -- e.g. ``make_tool_calls_handler`` of the AbstractCore integration
(``abstractruntime.integrations.abstractcore.effect_handlers``) with the configured ``ToolExecutor``, which also
fills in missing ``call_id`` / ``runtime_call_id``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from ..nodetypes import EffectMapping, VisualNodeType


def _call(value: Any) -> Optional[Dict[str, Any]]:
    """A dict, or a string holding a JSON object; anything else is no call."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _names(value: Any) -> List[str]:
    if not isinstance(value, list):
        return []
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


def _allowed_tools(inputs: Dict[str, Any], cfg: Dict[str, Any]) -> Optional[List[str]]:
    """From the ``allowed_tools`` / ``allowedTools`` pin when either key is present (a non-list is ``[]``), else
    from ``effectConfig`` when that is a list; None: not sent (all tools allowed)."""
    for key in ("allowed_tools", "allowedTools"):
        if key in inputs:
            return _names(inputs[key])
    for key in ("allowed_tools", "allowedTools"):
        if isinstance(cfg.get(key), list):
            return _names(cfg[key])
    return None


def _payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    call = _call(inputs["tool_call"] if "tool_call" in inputs else inputs.get("toolCall"))
    payload: Dict[str, Any] = {"tool_calls": [call] if call is not None else []}
    allowed = _allowed_tools(inputs, ctx.config)
    if allowed is not None:
        payload["allowed_tools"] = allowed
    return payload


def _placeholder(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    return {"result": None, "success": None}


def _map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {}
    mode = r.get("mode", "executed")
    results = r.get("results") if isinstance(r.get("results"), list) else []
    if mode != "executed":
        return {"result": f"Tool execution not completed (mode={mode})", "success": False, "raw": result}
    if not results:
        return {"result": "Missing tool result", "success": False, "raw": result}
    first = results[0]
    if not isinstance(first, dict):
        return {"result": "Missing tool result", "success": False, "raw": result}
    ok = first.get("success") is True
    value = first.get("output") if ok else (first.get("error") or "Tool execution failed")
    return {"result": value, "success": ok, "raw": result}


def tool_node_types() -> List[VisualNodeType]:
    X = "execution"
    return [
        VisualNodeType("call_tool", effect=EffectMapping("tool_calls", _payload, pre_output=_placeholder,
                                                         map_result=_map, main_output="result"),
                       inputs=[("exec-in", X), "tool_call", "allowed_tools"],
                       outputs=[("exec-out", X), "result", "success", "raw"],
                       description="Execute one tool call (TOOL_CALLS effect, handled by the host's tool handler)"),
    ]


__all__ = ["tool_node_types"]
