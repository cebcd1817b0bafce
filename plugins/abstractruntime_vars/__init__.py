"""Builtin plugin ``vars``: the VARS_QUERY effect (inspect a run's variables as a tool result).

``target_run_id`` may only name a run of the caller's own run tree (itself, an ancestor, or a descendant): the
reference let any caller read any run (§17 #18). Errors are ``success: false`` results, never a failed effect.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from abstractruntime import EffectCall, EffectHandlerDescriptor, EffectOutcome, EffectType, hookimpl
from abstractruntime_pluginkit.run_tree import find_in_run_tree
from abstractruntime_pluginkit.paths import get_path as resolve_vars_path


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), type(value).__name__)


def vars_query(call: EffectCall) -> EffectOutcome:
    payload = call.effect.payload
    tool_name = payload.get("tool_name") or "inspect_vars"
    call_id = payload.get("call_id") or "vars"
    path = payload.get("path", payload.get("var_path"))
    path = path if isinstance(path, str) and path.strip() else "scratchpad"

    def result(success: bool, output: Optional[str], error: Optional[str]) -> EffectOutcome:
        return EffectOutcome.completed({"mode": "executed", "results": [
            {"call_id": call_id, "name": tool_name, "success": success, "output": output, "error": error}]})

    run = call.run
    target_id = payload.get("target_run_id")
    if isinstance(target_id, str) and target_id.strip():
        target = find_in_run_tree(call.runtime.run_store, run, target_id.strip())
        if target is None:
            return result(False, None, f"Unknown target_run_id: {target_id.strip()} (only runs of this run's tree "
                                       f"can be inspected)")
        run = target
    try:
        value = resolve_vars_path(run.vars, path)
    except (KeyError, ValueError) as exc:
        return result(False, None, str(exc.args[0]) if exc.args else str(exc))
    data: Dict[str, Any] = {"path": path, "type": _type_name(value)}
    if payload.get("keys_only"):
        if isinstance(value, dict):
            data["keys"] = sorted(value)
        elif isinstance(value, list):
            data["length"] = len(value)
        else:
            data["value"] = value
    else:
        data["value"] = value
    return result(True, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str), None)


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [EffectHandlerDescriptor(EffectType.VARS_QUERY, vars_query, "Inspect run variables", side_effects=False)]
