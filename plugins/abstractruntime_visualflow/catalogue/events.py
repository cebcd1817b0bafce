"""Node family: triggers and the terminal node (``on_flow_start``, ``on_user_request``, ``on_agent_message``,
``on_flow_end``), events and scheduling (``on_event``, ``on_schedule``, ``emit_event``, ``wait_until``,
``wait_event``) and human-in-the-loop (``ask_user``, ``answer_user``).
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import Any, Dict, List

from abstractruntime.models import StepPlan
from abstractruntime.timeutil import now_utc, parse_instant

from ..context import NodeContext, public_vars
from ..errors import VisualNodeError
from ..executor import effect_plan
from ..nodetypes import FUNCTION_BASE, EffectMapping, VisualNodeType
from .common import blank, copy_value, first, normalize_scope


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
                out[pin] = copy_value(defaults[pin])
            else:
                out[pin] = None
        return out
    out = public_vars(vars_)
    for k, v in defaults.items():
        if not k.startswith("_"):
            out.setdefault(k, copy_value(v))
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
    name = first(inputs.get("name"), inputs.get("event_name"), cfg.get("name"), cfg.get("event_name"))
    name = name.strip() if isinstance(name, str) else ("*" if name is None else str(name))
    scope = normalize_scope(first(inputs.get("scope"), cfg.get("scope")))
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
        raise VisualNodeError(f"on_schedule: invalid schedule {schedule!r}")
    m = _INTERVAL.match(schedule)
    if m:
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        return {"until": (now_utc() + timedelta(seconds=seconds)).isoformat(), "interval_s": seconds}
    try:
        instant = parse_instant(schedule)
    except ValueError:
        raise VisualNodeError(
            f"on_schedule: invalid schedule {schedule!r} (expected an interval such as '30s', '5m', '1.5h' or an "
            f"ISO timestamp)") from None
    return {"until": instant.isoformat(), "interval_s": None}


def on_schedule_step(ctx: NodeContext) -> StepPlan:
    inputs = ctx.resolve({})
    cfg = _event_config(ctx)
    schedule = first(inputs.get("schedule"), cfg.get("schedule")) or "15s"
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
    name = first(inputs.get("name"), inputs.get("event_name"), cfg.get("name"), cfg.get("event_name"))
    if name is None:
        raise VisualNodeError(
            f"emit_event node '{ctx.node_id}' requires an event name (pin 'name' or effectConfig.name)")
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
    payload = {"scope": normalize_scope(first(inputs.get("scope"), cfg.get("scope"))), "name": str(name).strip(),
               "payload": inner, "event_id": f"{ctx.run_id}:{ctx.node_id}:{seq}", "max_steps": 0}
    session = first(inputs.get("session_id"), cfg.get("session_id"), cfg.get("sessionId"))
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
    payload: Dict[str, Any] = {"wait_key": str(first(inputs.get("event_key")) or "default")}
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
    return {"prompt": prompt if not blank(prompt) else "Please respond:",
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


def event_node_types() -> List[VisualNodeType]:
    """Triggers and terminal, events and scheduling, human in the loop."""
    T, E, X = VisualNodeType, EffectMapping, "execution"
    return [
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
                                 pre_output=lambda i, c: {"event_key": str(first(i.get("event_key")) or "default")},
                                 map_result=_wait_event_map),
          inputs=[("exec-in", X), "event_key", "prompt", "choices", "allow_free_text"],
          outputs=[("exec-out", X), "event_data", "event_key"]),
        # human in the loop
        T("ask_user", effect=E("ask_user", _ask_payload, map_result=_ask_map, main_output="response"),
          inputs=[("exec-in", X), "prompt", "choices"], outputs=[("exec-out", X), "response"],
          description="ASK_USER; resume with {'response': ...}"),
        T("answer_user", effect=E("answer_user", _answer_payload, pre_output=_answer_payload, main_output="message"),
          inputs=[("exec-in", X), "message", "level"], outputs=[("exec-out", X), "message", "level"]),
    ]


__all__ = [
    "event_node_types", "on_flow_end_step", "on_event_step", "on_event_map", "parse_schedule", "on_schedule_step",
    "on_schedule_map",
]
