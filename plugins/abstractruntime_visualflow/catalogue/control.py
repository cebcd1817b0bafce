"""Node family: control flow -- ``if``, ``switch``, ``sequence``, ``parallel``, ``loop``, ``for``, ``while``.

Loop and sequence state lives in the run's control frames (``_temp._control``, see :mod:`..executor`), never in the
process: a loop resumes where it was after a restart.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List

from abstractruntime.models import StepPlan

from ..context import MISSING, NodeContext
from ..errors import VisualNodeError
from ..nodetypes import LAST_OUTPUT_BASE, VisualNodeType
from .common import blank

MAX_LOOP_ITERATIONS = 10_000


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
        if not isinstance(case, dict) or blank(case.get("id")) or case.get("value") is None:
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
        raise VisualNodeError(f"for: '{what}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VisualNodeError(f"for: '{what}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise VisualNodeError(f"for: '{what}' must be a finite number, got {value!r}")
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
                raise VisualNodeError("for: 'step' must not be 0")
            total = max(0, math.ceil((end - start) / step))
            if total > MAX_LOOP_ITERATIONS:
                raise VisualNodeError(f"for: {total} iterations exceed the cap of {MAX_LOOP_ITERATIONS}")
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
        return ctx.fail(VisualNodeError(f"while: more than {MAX_LOOP_ITERATIONS} iterations"))
    prev = ctx.vars.get("_last_output")
    out = _iteration_output(ctx, index=index)
    out.setdefault("item", prev)
    ctx.push_control({"kind": "while", "index": index + 1})
    ctx.store_output(out)
    return ctx.plan(body)


def control_node_types() -> List[VisualNodeType]:
    """Control flow: branches, sequences and loops."""
    T, X = VisualNodeType, "execution"
    return [
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
    ]


__all__ = ["control_node_types", "MAX_LOOP_ITERATIONS", "sequence_step", "loop_step", "for_step", "while_step"]
