"""Node family: variables (``var_decl``, ``get_var``, ``bool_var``, ``get_context``, ``set_var``,
``set_var_property``, ``set_vars``) and context messages (``add_message``). Variables are the run's ``vars``,
addressed by dotted paths (:func:`..context.get_path` / :func:`..context.set_path`, the kernel's path helpers);
names starting with ``_`` are internal and refused, and so are the ``workspace_*`` variables (the host's workspace
policy, sealed when the run starts: :mod:`abstractruntime_workspace`).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List

from abstractruntime.models import StepPlan
from abstractruntime_pluginkit.paths import parse_path
from abstractruntime_workspace import WORKSPACE_KEYS

from ..builtins_context import as_list, new_message
from ..context import NodeContext, get_path, set_path
from ..errors import VisualNodeError
from ..nodetypes import LAST_OUTPUT_BASE, PURE_BASE, VisualNodeType
from .common import copy_value


_ZERO = {"boolean": False, "number": 0, "string": "", "object": {}, "array": []}


def _check_var_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise VisualNodeError(f"variable {what} must be a non-empty string, got {name!r}")
    if name.strip().startswith("_"):
        raise VisualNodeError(f"variable {what} {name!r} is reserved (names starting with '_' are internal)")
    try:
        head = parse_path(name.strip())[:1]
    except ValueError:
        head = []
    if head and head[0] in WORKSPACE_KEYS:
        raise VisualNodeError(f"variable {what} {name!r} is reserved: the workspace policy "
                              f"({', '.join(WORKSPACE_KEYS)}) is set by the host when the run starts, and a flow "
                              f"cannot change it")
    return name.strip()


def _after_var(ctx: NodeContext, **extra: Any) -> StepPlan:
    nxt = ctx.next_node()
    if nxt:
        return ctx.plan(nxt)
    return ctx.chain_end(ctx.control_completion(**extra))


def set_var_step(ctx: NodeContext) -> StepPlan:
    try:
        inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
        name = _check_var_name(inputs.get("name"))
        if "value" in inputs:
            value = inputs["value"]
        else:
            value = {"boolean": False, "number": 0, "string": ""}.get(ctx.node.pin_type("value") or "", None)
        set_path(ctx.vars, name, value)
        ctx.store_output({"name": name, "value": value}, last=False)
    except Exception as exc:
        return ctx.fail(exc)
    return _after_var(ctx)


def set_var_property_step(ctx: NodeContext) -> StepPlan:
    try:
        inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
        name = _check_var_name(inputs.get("name"))
        key = inputs.get("key")
        if not isinstance(key, str) or not key.strip():
            raise VisualNodeError("set_var_property: 'key' must be a non-empty string")
        current = get_path(ctx.vars, name)
        obj = copy.deepcopy(current) if isinstance(current, dict) else {}
        set_path(obj, key.strip(), inputs.get("value"))
        set_path(ctx.vars, name, obj)
        ctx.store_output({"value": obj}, last=False)
    except Exception as exc:
        return ctx.fail(exc)
    return _after_var(ctx, value=obj)


def set_vars_step(ctx: NodeContext) -> StepPlan:
    try:
        inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
        updates = inputs.get("updates")
        if isinstance(updates, str):
            updates = json.loads(updates) if updates.strip() else {}
        if updates is None:
            updates = {}
        if not isinstance(updates, dict):
            raise VisualNodeError(f"set_vars: 'updates' must be an object, got {type(updates).__name__}")
        for key in updates:
            _check_var_name(key, "key")
        for key, value in updates.items():
            set_path(ctx.vars, key.strip(), value)
        ctx.store_output({"updates": updates}, last=False)
    except Exception as exc:
        return ctx.fail(exc)
    return _after_var(ctx, updates=updates)


def _get_var(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    name = d.get("name")
    return {"value": get_path(ctx.vars, name) if isinstance(name, str) else None}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return True


def _var_decl(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    lit = ctx.data.get("literalValue")
    lit = lit if isinstance(lit, dict) else {}
    name = lit.get("name") if isinstance(lit.get("name"), str) else ""
    kind = lit.get("type") if lit.get("type") in ("boolean", "number", "string", "object", "array", "any") else "any"
    value = get_path(ctx.vars, name) if name else None
    if not _type_ok(kind, value) or (kind != "any" and value is None):
        default = lit.get("default")
        value = copy_value(default) if _type_ok(kind, default) and default is not None else copy_value(_ZERO.get(kind))
    return {"name": name, "value": value}


def _bool_var(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    lit = ctx.data.get("literalValue")
    if isinstance(lit, dict):
        name, default = lit.get("name"), lit.get("default", False)
    else:
        name, default = lit, False
    name = name if isinstance(name, str) else ""
    value = get_path(ctx.vars, name) if name else None
    return {"name": name, "value": value if isinstance(value, bool) else bool(default)}


def _get_context(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    """The live run context (VAM §4.1): ``{context, task: str(task or ""), messages}`` (a list; tuple -> list,
    null -> [], another value -> [value])."""
    context = ctx.vars.get("context") if isinstance(ctx.vars.get("context"), dict) else {}
    task = context.get("task")
    messages = context.get("messages")
    return {"context": context, "task": task if isinstance(task, str) else str(task or ""),
            "messages": messages if isinstance(messages, list) else as_list(messages)}


def add_message_step(ctx: NodeContext) -> StepPlan:
    try:
        inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
        message = new_message(inputs)
        context = ctx.vars.get("context")
        if not isinstance(context, dict):
            context = {}
            ctx.vars["context"] = context
        messages = context.get("messages")
        if not isinstance(messages, list):
            messages = []
            context["messages"] = messages
        messages.append(message)
        out = {"message": message, "context": context, "task": str(context.get("task") or ""),
               "messages": copy.deepcopy(messages)}
        ctx.store_output(out, last=False)
    except Exception as exc:
        return ctx.fail(exc)
    nxt = ctx.next_node()
    if nxt:
        return ctx.plan(nxt)
    return ctx.chain_end({"success": True, "message": message})


def _add_message_pure(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    return {"message": new_message(d)}


def variable_node_types() -> List[VisualNodeType]:
    """Variables and context messages."""
    T, X = VisualNodeType, "execution"
    return [
        T("var_decl", handler=_var_decl, context=True, pure=True, base_input=PURE_BASE, outputs=["name", "value"]),
        T("get_var", handler=_get_var, context=True, pure=True, base_input=LAST_OUTPUT_BASE, inputs=["name"],
          outputs=["value"]),
        T("bool_var", handler=_bool_var, context=True, pure=True, base_input=PURE_BASE, outputs=["name", "value"]),
        T("get_context", handler=_get_context, context=True, pure=True, base_input=LAST_OUTPUT_BASE,
          outputs=["context", "task", "messages"]),
        T("set_var", step=set_var_step, inputs=[("exec-in", X), "name", "value"], outputs=[("exec-out", X)]),
        T("set_var_property", step=set_var_property_step, inputs=[("exec-in", X), "name", "key", "value"],
          outputs=[("exec-out", X), "value"]),
        T("set_vars", step=set_vars_step, inputs=[("exec-in", X), "updates"], outputs=[("exec-out", X), "updates"]),
        T("add_message", step=add_message_step, evaluate=_add_message_pure, pure=True,
          inputs=["role", "content"], outputs=["message"]),
    ]


__all__ = ["variable_node_types", "set_var_step", "set_var_property_step", "set_vars_step", "add_message_step"]
