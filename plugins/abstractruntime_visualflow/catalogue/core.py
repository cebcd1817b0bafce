"""The core node catalogue (§2.6): triggers and terminal, events and scheduling, human-in-the-loop, control flow,
variables, literals, subflows. Every type here is a :class:`VisualNodeType`, registered through the same hook a
third-party package uses.
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import timedelta
from typing import Any, Dict, List

from abstractruntime.models import StepPlan
from abstractruntime.timeutil import now_utc, parse_instant

from ..executor import (
    LITERAL_TYPES,
    MISSING,
    NodeContext,
    effect_plan,
    get_path,
    public_vars,
    set_path,
    subflow_id_of,
)
from ..nodetypes import FUNCTION_BASE, LAST_OUTPUT_BASE, PURE_BASE, EffectMapping, VisualNodeType
from ..builtins import new_message

MAX_LOOP_ITERATIONS = 10_000
SCOPES = ("session", "workflow", "run", "global")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _first(*values: Any) -> Any:
    for v in values:
        if not _blank(v):
            return v
    return None


def normalize_scope(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if text in SCOPES else "session"


def _copy(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


# ================================================================================================================
# triggers and terminal
# ================================================================================================================
def _flow_start_output(ctx: NodeContext) -> Dict[str, Any]:
    vars_, node = ctx.vars, ctx.node
    defaults = node.pin_defaults
    if node.out_pins:
        out: Dict[str, Any] = {}
        for pin, _t in node.out_pins:
            if pin.startswith("_"):
                continue
            if pin in vars_:
                out[pin] = vars_[pin]
            elif pin in defaults:
                out[pin] = _copy(defaults[pin])
            else:
                out[pin] = None
        return out
    out = public_vars(vars_)
    for k, v in defaults.items():
        if not k.startswith("_"):
            out.setdefault(k, _copy(v))
    return out


def _trigger_step(compute):
    def step(ctx: NodeContext) -> StepPlan:
        try:
            out = compute(ctx)
            ctx.store_output(out)
        except Exception as exc:
            return ctx.fail(exc)
        return ctx.continue_after(out)

    return step


def _user_request_output(ctx: NodeContext) -> Dict[str, Any]:
    v = ctx.vars
    return {"message": v.get("message", ""), "context": v.get("context", {})}


def _agent_message_output(ctx: NodeContext) -> Dict[str, Any]:
    v = ctx.vars
    cfg = ctx.data.get("eventConfig") if isinstance(ctx.data.get("eventConfig"), dict) else {}
    return {"sender": v.get("sender", "unknown"), "message": v.get("message", ""), "channel": cfg.get("channel")}


def on_flow_end_step(ctx: NodeContext) -> StepPlan:
    try:
        inputs = ctx.resolve(ctx.base_input(FUNCTION_BASE))
    except Exception as exc:
        return ctx.fail(exc)
    if ctx.node.in_pins:
        out = {pin: inputs.get(pin) for pin, _t in ctx.node.in_pins}
    else:
        out = {k: v for k, v in inputs.items() if not (isinstance(k, str) and k.startswith("_"))}
    out.setdefault("success", True)
    return ctx.complete(out)


# ================================================================================================================
# events and scheduling
# ================================================================================================================
def _event_config(ctx: NodeContext) -> Dict[str, Any]:
    cfg = ctx.data.get("eventConfig")
    return cfg if isinstance(cfg, dict) else {}


def on_event_step(ctx: NodeContext) -> StepPlan:
    inputs = ctx.resolve({})
    cfg = _event_config(ctx)
    name = _first(inputs.get("name"), inputs.get("event_name"), cfg.get("name"), cfg.get("event_name"))
    name = name.strip() if isinstance(name, str) else ("*" if name is None else str(name))
    scope = normalize_scope(_first(inputs.get("scope"), cfg.get("scope")))
    if ctx.frame() is None:
        ctx.push_control({"kind": "listener"})
    nxt = ctx.next_node() or ctx.node.id
    return effect_plan(ctx, "wait_event", {"scope": scope, "name": name or "*", "resume_to_node": nxt}, nxt)


def on_event_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    env = result if isinstance(result, dict) else {"payload": result}
    return {"event": env, "payload": env.get("payload"), "event_id": env.get("event_id"), "name": env.get("name")}


_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.I)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(schedule: Any) -> Dict[str, Any]:
    """``{"until": iso, "interval_s": float | None}`` for ``30s`` / ``1.5h`` / an ISO timestamp; else ValueError."""
    if not isinstance(schedule, str) or not schedule.strip():
        raise ValueError(f"on_schedule: invalid schedule {schedule!r}")
    m = _INTERVAL.match(schedule)
    if m:
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        return {"until": (now_utc() + timedelta(seconds=seconds)).isoformat(), "interval_s": seconds}
    try:
        instant = parse_instant(schedule)
    except ValueError:
        raise ValueError(
            f"on_schedule: invalid schedule {schedule!r} (expected an interval such as '30s', '5m', '1.5h' or an "
            f"ISO timestamp)") from None
    return {"until": instant.isoformat(), "interval_s": None}


def on_schedule_step(ctx: NodeContext) -> StepPlan:
    inputs = ctx.resolve({})
    cfg = _event_config(ctx)
    schedule = _first(inputs.get("schedule"), cfg.get("schedule")) or "15s"
    parsed = parse_schedule(schedule)
    recurrent_in = inputs.get("recurrent") if inputs.get("recurrent") is not None else cfg.get("recurrent", True)
    recurrent = bool(recurrent_in) and parsed["interval_s"] is not None
    # reference quirk kept for compatibility: the *output* reports false when eventConfig.schedule is a string
    recurrent_out = False if isinstance(cfg.get("schedule"), str) and cfg.get("schedule").strip() else recurrent
    if recurrent and ctx.frame() is None:
        ctx.push_control({"kind": "schedule"})
    ctx.store_output({"timestamp": parsed["until"], "recurrent": recurrent_out}, last=False)
    nxt = ctx.next_node() or (ctx.node.id if recurrent else ctx.control_top())
    return effect_plan(ctx, "wait_until", {"until": parsed["until"]}, nxt)


def on_schedule_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    out = dict(pre)
    if isinstance(result, dict):
        out.update({k: v for k, v in result.items() if k != "recurrent"})
        out["timestamp"] = result.get("timestamp") or result.get("scheduled_for") or pre.get("timestamp")
    return out


def _emit_payload(inputs: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    cfg = ctx.config
    name = _first(inputs.get("name"), inputs.get("event_name"), cfg.get("name"), cfg.get("event_name"))
    if name is None:
        raise ValueError(f"emit_event node '{ctx.node_id}' requires an event name (pin 'name' or effectConfig.name)")
    inner = inputs.get("payload")
    if inner is None:
        inner = {}
    elif isinstance(inner, dict):
        inner = dict(inner)
    else:
        inner = {"value": inner}
    counters = ctx.temp.setdefault("event_seq", {})
    if not isinstance(counters, dict):
        counters = {}
        ctx.temp["event_seq"] = counters
    seq = int(counters.get(ctx.node_id) or 0) + 1
    counters[ctx.node_id] = seq
    payload = {"scope": normalize_scope(_first(inputs.get("scope"), cfg.get("scope"))), "name": str(name).strip(),
               "payload": inner, "event_id": f"{ctx.run_id}:{ctx.node_id}:{seq}", "max_steps": 0}
    session = _first(inputs.get("session_id"), cfg.get("session_id"), cfg.get("sessionId"))
    if session is not None:
        payload["session_id"] = str(session)
    return payload


def _duration_until(inputs: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    kind = str(ctx.config.get("durationType") or "seconds").lower()
    duration = inputs.get("duration")
    if kind == "timestamp":
        return {"until": duration}
    try:
        amount = float(duration)
        if not math.isfinite(amount):
            amount = 0.0
    except (TypeError, ValueError):
        amount = 0.0
    factor = {"seconds": 1, "minutes": 60, "hours": 3600}.get(kind, 1)
    return {"until": (now_utc() + timedelta(seconds=amount * factor)).isoformat()}


def _wait_event_payload(inputs: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"wait_key": str(_first(inputs.get("event_key")) or "default")}
    if isinstance(inputs.get("prompt"), str) and inputs["prompt"].strip():
        payload["prompt"] = inputs["prompt"]
    choices = inputs.get("choices")
    if isinstance(choices, list):
        payload["choices"] = [c for c in choices if isinstance(c, str)]
    allow = inputs.get("allow_free_text", inputs.get("allowFreeText"))
    payload["allow_free_text"] = True if allow is None else bool(allow)
    return payload


def _wait_event_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    return {"event_data": result, "event_key": pre.get("event_key")}


# ================================================================================================================
# human in the loop
# ================================================================================================================
def _ask_payload(inputs: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    prompt = inputs.get("prompt")
    choices = inputs.get("choices")
    allow = ctx.config.get("allowFreeText", ctx.config.get("allow_free_text", True))
    return {"prompt": prompt if not _blank(prompt) else "Please respond:",
            "choices": list(choices) if isinstance(choices, list) else [],
            "allow_free_text": True if allow is None else bool(allow)}


def _ask_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    if isinstance(result, dict):
        out = dict(result)
        out["response"] = result.get("response", result.get("text"))
        return out
    return {"response": result}


_LEVELS = {"message": "message", "info": "message", "warning": "warning", "warn": "warning", "error": "error"}


def _answer_payload(inputs: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    message = inputs.get("message")
    level = inputs.get("level")
    level_v = _LEVELS.get(level.strip().lower(), "message") if isinstance(level, str) else "message"
    if message is None:
        text = ""
    elif isinstance(message, str):
        text = message
    else:
        text = json.dumps(message, ensure_ascii=False) if isinstance(message, (dict, list)) else str(message)
    return {"message": text, "level": level_v}


# ================================================================================================================
# control flow
# ================================================================================================================
def _if_handler(d: Dict[str, Any]) -> Dict[str, Any]:
    cond = bool(d.get("condition")) if isinstance(d, dict) else bool(d)
    return {"branch": "true" if cond else "false", "condition": cond}


def _switch_handler(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    cfg = ctx.data.get("switchConfig")
    cases = cfg.get("cases") if isinstance(cfg, dict) else None
    value = d.get("value")
    text = "" if value is None else (value if isinstance(value, str) else json.dumps(value)
                                     if isinstance(value, (dict, list, bool)) else str(value))
    for case in cases if isinstance(cases, list) else []:
        if not isinstance(case, dict) or _blank(case.get("id")) or case.get("value") is None:
            continue
        cv = case["value"]
        ctext = cv if isinstance(cv, str) else (json.dumps(cv) if isinstance(cv, (dict, list, bool)) else str(cv))
        if ctext == text:
            return {"branch": f"case:{case['id']}", "value": value, "matched": cv}
    return {"branch": "default", "value": value}


def _then_key(handle: str) -> Any:
    tail = handle.split(":", 1)[1] if ":" in handle else handle
    try:
        return (0, float(tail), "")
    except ValueError:
        return (1, 0.0, tail)


def sequence_step(ctx: NodeContext) -> StepPlan:
    node = ctx.node
    frame = ctx.frame()
    if frame is None:
        handles = sorted((h for h in node.exec_out if h.startswith("then:")), key=_then_key)
        if handles:
            ctx.push_control({"kind": node.type, "handles": handles, "pos": 0})
            return ctx.plan(node.exec_out[handles[0]])
        return _sequence_done(ctx)
    handles = [h for h in frame.get("handles") or [] if h in node.exec_out]
    pos = int(frame.get("pos") or 0) + 1
    if pos < len(handles):
        frame["pos"] = pos
        return ctx.plan(node.exec_out[handles[pos]])
    ctx.pop_control()
    return _sequence_done(ctx)


def _sequence_done(ctx: NodeContext) -> StepPlan:
    if ctx.node.type == "parallel":
        completed = ctx.next_node("completed")
        if completed:
            return ctx.plan(completed)
    return ctx.chain_end(ctx.control_completion())


def _iteration_output(ctx: NodeContext, **fields: Any) -> Dict[str, Any]:
    last = ctx.vars.get("_last_output", MISSING)
    if isinstance(last, dict):
        out = dict(last)
    elif last is MISSING:
        out = {}
    else:
        out = {"input": last}
    out.update(fields)
    return out


def _loop_done(ctx: NodeContext) -> StepPlan:
    done = ctx.next_node("done")
    if done:
        return ctx.plan(done)
    return ctx.chain_end(ctx.control_completion())


def _normalize_items(items: Any) -> List[Any]:
    if items is None:
        return []
    if isinstance(items, tuple):
        return list(items)
    if isinstance(items, list):
        return items
    return [items]


def loop_step(ctx: NodeContext) -> StepPlan:
    frame = ctx.frame()
    body = ctx.next_node("loop")
    if frame is None:
        try:
            inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
        except Exception as exc:
            return ctx.fail(exc)
        items = _normalize_items(inputs.get("items"))
        if not items or not body:
            return _loop_done(ctx)
        frame = {"kind": "loop", "items": items, "index": 0}
        ctx.push_control(frame)
        index = 0
    else:
        index = int(frame.get("index") or 0) + 1
        items = frame.get("items") or []
        if index >= len(items) or not body:
            ctx.pop_control()
            return _loop_done(ctx)
        frame["index"] = index
    out = _iteration_output(ctx, item=items[index], index=index, total=len(items))
    ctx.store_output(out)
    return ctx.plan(body)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"for: '{what}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"for: '{what}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"for: '{what}' must be a finite number, got {value!r}")
    return number


def for_step(ctx: NodeContext) -> StepPlan:
    frame = ctx.frame()
    body = ctx.next_node("loop")
    if frame is None:
        try:
            inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
            start = _number(inputs.get("start"), "start")
            end = _number(inputs.get("end"), "end")
            step = _number(inputs.get("step", 1) if inputs.get("step") is not None else 1, "step")
            if step == 0:
                raise ValueError("for: 'step' must not be 0")
            total = max(0, math.ceil((end - start) / step))
            if total > MAX_LOOP_ITERATIONS:
                raise ValueError(f"for: {total} iterations exceed the cap of {MAX_LOOP_ITERATIONS}")
        except Exception as exc:
            return ctx.fail(exc)
        if total == 0 or not body:
            return _loop_done(ctx)
        frame = {"kind": "for", "start": start, "step": step, "total": total, "index": 0}
        ctx.push_control(frame)
        index = 0
    else:
        index = int(frame.get("index") or 0) + 1
        if index >= int(frame.get("total") or 0) or not body:
            ctx.pop_control()
            return _loop_done(ctx)
        frame["index"] = index
    i = float(frame["start"]) + index * float(frame["step"])
    out = _iteration_output(ctx, i=i, index=index, total=int(frame["total"]))
    ctx.store_output(out)
    return ctx.plan(body)


def while_step(ctx: NodeContext) -> StepPlan:
    frame = ctx.frame()
    body = ctx.next_node("loop")
    try:
        inputs = ctx.resolve(ctx.base_input(LAST_OUTPUT_BASE))
    except Exception as exc:
        return ctx.fail(exc)
    cond = bool(inputs.get("condition"))
    if not cond or not body:
        if frame is not None:
            ctx.pop_control()
        return _loop_done(ctx)
    index = int(frame.get("index") or 0) if frame is not None else 0
    if index >= MAX_LOOP_ITERATIONS:
        ctx.pop_control()
        return ctx.fail(ValueError(f"while: more than {MAX_LOOP_ITERATIONS} iterations"))
    prev = ctx.vars.get("_last_output")
    out = _iteration_output(ctx, index=index)
    out.setdefault("item", prev)
    ctx.push_control({"kind": "while", "index": index + 1})
    ctx.store_output(out)
    return ctx.plan(body)


# ================================================================================================================
# variables
# ================================================================================================================
_ZERO = {"boolean": False, "number": 0, "string": "", "object": {}, "array": []}


def _check_var_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"variable {what} must be a non-empty string, got {name!r}")
    if name.strip().startswith("_"):
        raise ValueError(f"variable {what} {name!r} is reserved (names starting with '_' are internal)")
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
            raise ValueError("set_var_property: 'key' must be a non-empty string")
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
            raise ValueError(f"set_vars: 'updates' must be an object, got {type(updates).__name__}")
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
        value = _copy(default) if _type_ok(kind, default) and default is not None else _copy(_ZERO.get(kind))
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
    context = ctx.vars.get("context") if isinstance(ctx.vars.get("context"), dict) else {}
    task = context.get("task")
    messages = context.get("messages")
    return {"context": context, "task": "" if task is None else str(task),
            "messages": list(messages) if isinstance(messages, list) else []}


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
               "messages": messages}
        ctx.store_output(out, last=False)
    except Exception as exc:
        return ctx.fail(exc)
    nxt = ctx.next_node()
    if nxt:
        return ctx.plan(nxt)
    return ctx.chain_end({"success": True, "message": message})


def _add_message_pure(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    return {"message": new_message(d)}


# ================================================================================================================
# subflows
# ================================================================================================================
CONTROL_PINS = frozenset({"inherit_context", "inheritContext", "session_id", "sessionId", "child_session_id",
                          "childSessionId"})
_SUBFLOW_META_OUTPUTS = frozenset({"output", "child_output", "sub_run_id"})


def merge_inherited_messages(parent: List[Any], child: List[Any]) -> List[Any]:
    """Child system messages, parent system messages, parent others, child others; de-duplicated by
    ``metadata.message_id`` (messages without an id are always kept)."""
    def is_system(m: Any) -> bool:
        return isinstance(m, dict) and m.get("role") == "system"

    ordered = [m for m in child if is_system(m)] + [m for m in parent if is_system(m)] + \
        [m for m in parent if not is_system(m)] + [m for m in child if not is_system(m)]
    seen, out = set(), []
    for m in ordered:
        meta = m.get("metadata") if isinstance(m, dict) else None
        mid = meta.get("message_id") if isinstance(meta, dict) else None
        if isinstance(mid, str) and mid:
            if mid in seen:
                continue
            seen.add(mid)
        out.append(copy.deepcopy(m))
    return out


def _subflow_payload(inputs: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    workflow_id = subflow_id_of(ctx.data)
    if workflow_id is None:
        raise ValueError(f"subflow node '{ctx.node_id}' names no flow (data.subflowId)")
    base = inputs.get("vars") if isinstance(inputs.get("vars"), dict) else (
        inputs.get("input") if isinstance(inputs.get("input"), dict) else None)
    declared = [p for p in ctx.declared_inputs if p not in CONTROL_PINS]
    if declared:
        child = dict(base or {})
        for pin in declared:
            if pin in inputs and not (pin in ("vars", "input") and inputs.get(pin) is base):
                child[pin] = inputs[pin]
    elif base is not None:
        child = dict(base)
    else:
        child = {k: v for k, v in inputs.items()
                 if k not in CONTROL_PINS and not (isinstance(k, str) and k.startswith("_"))}
    if "inherit_context" in inputs or "inheritContext" in inputs:
        inherit = inputs.get("inherit_context", inputs.get("inheritContext"))
    else:
        inherit = ctx.config.get("inherit_context", ctx.config.get("inheritContext", False))
    if inherit:
        parent_ctx = ctx.vars.get("context") if isinstance(ctx.vars.get("context"), dict) else {}
        child_ctx = dict(child.get("context")) if isinstance(child.get("context"), dict) else {}
        parent_msgs = parent_ctx.get("messages") if isinstance(parent_ctx.get("messages"), list) else []
        child_msgs = child_ctx.get("messages") if isinstance(child_ctx.get("messages"), list) else []
        child_ctx["messages"] = merge_inherited_messages(parent_msgs, child_msgs)
        if not child_ctx.get("attachments") and parent_ctx.get("attachments"):
            child_ctx["attachments"] = copy.deepcopy(parent_ctx["attachments"])
        child["context"] = child_ctx
    payload: Dict[str, Any] = {"workflow_id": workflow_id, "vars": child, "async": True, "wait": True}
    session = _first(*(inputs.get(k) for k in ("session_id", "sessionId", "child_session_id", "childSessionId")))
    if session is not None:
        payload["session_id"] = str(session)
    return payload


def subflow_map(result: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = result if isinstance(result, dict) else {}
    child_out = r.get("output")
    output = child_out["result"] if isinstance(child_out, dict) and "result" in child_out else child_out
    outs: Dict[str, Any] = {"output": output, "child_output": child_out, "sub_run_id": r.get("sub_run_id")}
    pins = [p for p in (ctx.declared_outputs if ctx is not None else []) if p not in _SUBFLOW_META_OUTPUTS]
    if isinstance(output, dict):
        for pin in pins:
            outs[pin] = output.get(pin)
    elif len(pins) == 1:
        outs[pins[0]] = output
    if r.get("status") in ("failed", "cancelled"):
        outs["success"] = False
        outs["error"] = r.get("error") or f"subflow {r.get('status')}"
    return outs


# ================================================================================================================
# literals
# ================================================================================================================
def _literal(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    return {"value": ctx.data.get("literalValue")}


# ================================================================================================================
def core_node_types() -> List[VisualNodeType]:
    T = VisualNodeType
    E = EffectMapping
    X = "execution"
    types: List[VisualNodeType] = [
        # triggers and terminal
        T("on_flow_start", step=_trigger_step(_flow_start_output), evaluate=lambda d, c: _flow_start_output(c),
          outputs=[("exec-out", X)], description="Entry: outputs the run's input variables"),
        T("on_user_request", step=_trigger_step(_user_request_output),
          evaluate=lambda d, c: _user_request_output(c), outputs=[("exec-out", X), "message", "context"]),
        T("on_agent_message", step=_trigger_step(_agent_message_output),
          evaluate=lambda d, c: _agent_message_output(c), outputs=[("exec-out", X), "sender", "message", "channel"]),
        T("on_flow_end", step=on_flow_end_step, inputs=[("exec-in", X)],
          description="Completes the run with its declared input pins as output"),
        # events and scheduling
        T("on_event", step=on_event_step, map_result=on_event_map, main_output="payload",
          outputs=[("exec-out", X), "event", "payload", "event_id", "name"],
          description="Listener: WAIT_EVENT, then its branch, then waits again"),
        T("on_schedule", step=on_schedule_step, map_result=on_schedule_map, main_output="timestamp",
          outputs=[("exec-out", X), "timestamp", "recurrent"], description="WAIT_UNTIL an interval or instant"),
        T("emit_event", effect=E("emit_event", _emit_payload, resume_to_node=False, include_type=False),
          inputs=[("exec-in", X), "name", "payload", "scope", "session_id"], outputs=[("exec-out", X)]),
        T("wait_until", effect=E("wait_until", _duration_until, pre_output=_duration_until, main_output="until"),
          inputs=[("exec-in", X), "duration"], outputs=[("exec-out", X)]),
        T("wait_event", effect=E("wait_event", _wait_event_payload, main_output="event_data",
                                 pre_output=lambda i, c: {"event_key": str(_first(i.get("event_key")) or "default")},
                                 map_result=_wait_event_map),
          inputs=[("exec-in", X), "event_key", "prompt", "choices", "allow_free_text"],
          outputs=[("exec-out", X), "event_data", "event_key"]),
        # human in the loop
        T("ask_user", effect=E("ask_user", _ask_payload, map_result=_ask_map, main_output="response"),
          inputs=[("exec-in", X), "prompt", "choices"], outputs=[("exec-out", X), "response"],
          description="ASK_USER; resume with {'response': ...}"),
        T("answer_user", effect=E("answer_user", _answer_payload, pre_output=_answer_payload, main_output="message"),
          inputs=[("exec-in", X), "message", "level"], outputs=[("exec-out", X), "message", "level"]),
        # control flow
        T("if", handler=_if_handler, inputs=[("exec-in", X), "condition"],
          outputs=[("true", X), ("false", X), "branch", "condition"]),
        T("switch", handler=_switch_handler, context=True, inputs=[("exec-in", X), "value"],
          outputs=[("default", X), "branch", "value", "matched"]),
        T("sequence", step=sequence_step, inputs=[("exec-in", X)], outputs=[("then:0", X), ("then:1", X)]),
        T("parallel", step=sequence_step, inputs=[("exec-in", X)],
          outputs=[("then:0", X), ("then:1", X), ("completed", X)]),
        T("loop", step=loop_step, inputs=[("exec-in", X), "items"],
          outputs=[("loop", X), ("done", X), "item", "index", "total"]),
        T("for", step=for_step, inputs=[("exec-in", X), "start", "end", "step"],
          outputs=[("loop", X), ("done", X), "i", "index", "total"]),
        T("while", step=while_step, inputs=[("exec-in", X), "condition"],
          outputs=[("loop", X), ("done", X), "index", "item"]),
        # variables
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
        # subflows
        T("subflow", effect=E("start_subworkflow", _subflow_payload, map_result=subflow_map, main_output="output"),
          inputs=[("exec-in", X)], outputs=[("exec-out", X), "output"],
          description="START_SUBWORKFLOW async+wait; the child's output is mapped onto declared output pins"),
    ]
    for lit in sorted(LITERAL_TYPES):
        types.append(T(lit, handler=_literal, context=True, pure=True, base_input=PURE_BASE, outputs=["value"]))
    return types


__all__ = ["core_node_types", "merge_inherited_messages", "parse_schedule", "normalize_scope"]
