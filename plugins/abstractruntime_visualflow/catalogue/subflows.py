"""Node family: ``subflow`` -- start a child run of another flow (``START_SUBWORKFLOW`` async + wait) and map the
child's output onto the node's declared output pins; optionally pass the parent's context messages on.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List

from ..analysis import subflow_id_of
from ..context import NodeContext
from ..errors import VisualNodeError
from ..nodetypes import EffectMapping, VisualNodeType
from .common import first


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
        raise VisualNodeError(f"subflow node '{ctx.node_id}' names no flow (data.subflowId)")
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
    session = first(*(inputs.get(k) for k in ("session_id", "sessionId", "child_session_id", "childSessionId")))
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


def subflow_node_types() -> List[VisualNodeType]:
    """Subflows."""
    T, E, X = VisualNodeType, EffectMapping, "execution"
    return [
        T("subflow", effect=E("start_subworkflow", _subflow_payload, map_result=subflow_map, main_output="output"),
          inputs=[("exec-in", X)], outputs=[("exec-out", X), "output"],
          description="START_SUBWORKFLOW async+wait; the child's output is mapped onto declared output pins"),
    ]


__all__ = ["subflow_node_types", "CONTROL_PINS", "merge_inherited_messages", "subflow_map"]
