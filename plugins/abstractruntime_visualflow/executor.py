"""The per-step executor of compiled VisualFlows, and ``visual_to_flow`` (analysis into the intermediate ``Flow``).

Durability rule (reference defect §17 #24): a compiled flow holds only immutable graph data. Everything a run
needs between steps lives in ``run.vars``:

* ``_temp.node_outputs[node_id]`` -- outputs of execution nodes (function nodes, loops, variables, triggers);
* ``_temp.effects[node_id]`` -- effect results, mapped onto the effect node's output pins when read;
* ``_temp._control = {stack: [node_ids], frames: {node_id: frame}}`` -- control-flow state (loops, sequences,
  listeners);
* ``_last_output`` -- the output of the last function-style node.

Pure (data) nodes are evaluated on demand, at most once per step (a memo local to the step): nothing is cached
across steps, runs or threads.

The module is split by responsibility: compile-time analysis (graph, pins, data edges) is in :mod:`.analysis`, the
step's :class:`~.context.NodeContext` in :mod:`.context`; this module runs one node per step (:func:`execute_node`)
and re-exports the names of both, so ``abstractruntime_visualflow.executor.<name>`` keeps working.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from abstractruntime.models import Effect, RunState, StepPlan

from .analysis import (  # noqa: F401 - re-exported: the public names of this module before the split
    BRANCH_HANDLES,
    LITERAL_TYPES,
    LOOP_TYPES,
    PURE_BY_NAME,
    SEQUENCE_TYPES,
    SUBFLOW_ID_KEYS,
    CompiledFlow,
    CompiledNode,
    NodeInfo,
    analyse,
    subflow_id_of,
)
from .context import MISSING, NodeContext, as_input_dict, get_path, public_vars, set_path  # noqa: F401
from .errors import NodeTypeRegistrationError  # noqa: F401 - re-exported
from .flow import Flow, FlowEdge, FlowNode
from .models import VisualFlow, load_visualflow_json
from .nodetypes import VisualNodeType


# ---------------------------------------------------------------------------------------------------------------
# executing one node (the compiled WorkflowSpec's handlers)
# ---------------------------------------------------------------------------------------------------------------
def _apply_effect_output_keys(ctx: NodeContext) -> None:
    for nid, key, main in ctx.flow.effect_output_keys:
        if ctx.effect_result(nid) is MISSING:
            continue
        out = ctx.output_of(nid)
        value = out.get(main) if isinstance(out, dict) else out
        set_path(ctx.vars, key, value)


def execute_node(flow: CompiledFlow, node: CompiledNode, run: RunState, clock: Any) -> StepPlan:
    ctx = NodeContext(flow, node, run, clock=clock)
    if flow.effect_output_keys:
        _apply_effect_output_keys(ctx)
    ntype = node.ntype
    if ntype.step is not None and not node.unknown:
        return ntype.step(ctx)
    if ntype.effect is not None and not node.unknown:
        return run_effect_node(ctx)
    return run_function_node(ctx)


def run_function_node(ctx: NodeContext) -> StepPlan:
    node = ctx.node
    try:
        inputs = ctx.resolve()
        output = ctx.call_handler(inputs)
        ctx.store_output(output)
    except Exception as exc:
        if node.ntype.error_mode == "raise":
            raise
        return ctx.fail(exc)
    if node.output_key:
        set_path(ctx.vars, node.output_key, output)
    return ctx.continue_after(output)


def build_effect(ctx: NodeContext, inputs: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(pending_effect_payload_with_type, pre_output)`` for an effect node."""
    mapping = ctx.node.ntype.effect
    payload = dict(mapping.build_payload(inputs, ctx) or {})
    pre = dict(mapping.pre_output(inputs, ctx) or {}) if mapping.pre_output is not None else {}
    if mapping.include_type:
        payload = {"type": mapping.effect_type, **payload}
    return payload, pre


def run_effect_node(ctx: NodeContext) -> StepPlan:
    node = ctx.node
    mapping = node.ntype.effect
    inputs = ctx.resolve()
    payload, pre = build_effect(ctx, inputs)
    nxt = node.exec_out.get("exec-out") or ctx.control_top()
    if mapping.resume_to_node:
        payload["resume_to_node"] = nxt
    ctx.store_output(pre, last=False)
    ctx.clear_effect_result(node.id)
    return StepPlan(node_id=node.id, effect=Effect(type=mapping.effect_type, payload=payload,
                                                   result_key=f"_temp.effects.{node.id}"), next_node=nxt)


def effect_plan(ctx: NodeContext, effect_type: str, payload: Dict[str, Any], next_node: Optional[str]) -> StepPlan:
    """For step-kind nodes that request an effect whose result their ``map_result`` reads."""
    ctx.clear_effect_result(ctx.node.id)
    return StepPlan(node_id=ctx.node.id, effect=Effect(type=effect_type, payload=payload,
                                                       result_key=f"_temp.effects.{ctx.node.id}"),
                    next_node=next_node)


def dry_handler(flow: CompiledFlow, node: CompiledNode) -> Callable[..., Any]:
    """``flow.nodes[id].handler``: ``handler(base_input, vars=None) -> output dict`` outside any run.

    Effect nodes return their pre-effect outputs plus ``_pending_effect`` (the payload with its ``type``).
    """

    def handler(base_input: Any = None, vars: Optional[Dict[str, Any]] = None) -> Any:
        ctx = NodeContext(flow, node, None, vars if vars is not None else {})
        inputs = ctx.resolve(as_input_dict(base_input))
        ntype = node.ntype
        if ntype.effect is not None and not node.unknown:
            payload, pre = build_effect(ctx, inputs)
            if ntype.effect.resume_to_node:
                payload["resume_to_node"] = node.exec_out.get("exec-out")
            return {**pre, "_pending_effect": payload}
        return ctx.call_handler(inputs)

    return handler


def to_flow(cflow: CompiledFlow) -> Flow:
    nodes = {}
    for nid, node in cflow.nodes.items():
        nodes[nid] = FlowNode(id=nid, type=node.type, handler=dry_handler(cflow, node), data=node.data,
                              is_exec=node.is_exec)
    edges: List[FlowEdge] = []
    for nid in cflow.reachable:
        for h, t in cflow.nodes[nid].exec_out.items():
            edges.append(FlowEdge(nid, t, h, "exec-in", "exec"))
    for nid, node in cflow.nodes.items():
        for pin, (src, src_pin) in node.data_in.items():
            edges.append(FlowEdge(src, nid, src_pin, pin, "data"))
    return Flow(flow_id=cflow.id, name=cflow.name, description=cflow.description, interfaces=list(cflow.interfaces),
                nodes=nodes, edges=edges, entry_node=cflow.entry, _ignored_exec_nodes=list(cflow.ignored),
                compiled=cflow)


def visual_to_flow(visual: Any, *, strict: bool = False, node_types: Optional[Dict[str, VisualNodeType]] = None,
                   runtime: Any = None, plugins: Sequence[Any] = (), entry_node: Optional[str] = None) -> Flow:
    """Analyse a VisualFlow (dict or :class:`VisualFlow`) into the intermediate :class:`Flow`."""
    from .catalogue import load_node_types

    vf = visual if isinstance(visual, VisualFlow) else load_visualflow_json(visual)
    types = node_types if node_types is not None else load_node_types(runtime=runtime, plugins=plugins)
    return to_flow(analyse(vf, types, strict=strict, entry_node=entry_node))


__all__ = [
    "MISSING", "CompiledFlow", "CompiledNode", "NodeContext", "NodeInfo", "analyse", "execute_node",
    "visual_to_flow", "get_path", "set_path", "public_vars", "effect_plan", "build_effect", "LITERAL_TYPES",
    "NodeTypeRegistrationError",
]
