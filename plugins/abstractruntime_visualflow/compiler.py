"""VisualFlow JSON -> ``WorkflowSpec`` (reference ``visualflow_compiler.compiler``).

``compile_visualflow(raw)`` = ``load_visualflow_json`` -> ``visual_to_flow`` -> ``compile_flow``: one
``WorkflowSpec`` whose nodes are the flow's reachable execution nodes (pure nodes are folded into data
resolution). Every visual execution node is one kernel step; all run state lives in ``run.vars``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Dict, Mapping, Optional, Sequence

from abstractruntime.models import RunState, StepPlan, WorkflowSpec

from .agent_react import agent_workflow_specs
from .analysis import CompiledFlow, CompiledNode, analyse, subflow_id_of
from .errors import VisualFlowTypeError
from .executor import execute_node
from .flow import Flow
from .models import VisualFlow, load_visualflow_json
from .nodetypes import VisualNodeType

LISTENER_SEPARATOR = "::"


class VisualNodeHandler:
    """The kernel node handler of one visual execution node (immutable; all state in ``run.vars``)."""

    __slots__ = ("flow", "node")

    def __init__(self, flow: CompiledFlow, node: CompiledNode) -> None:
        self.flow = flow
        self.node = node

    def __call__(self, run: RunState, ctx: Any) -> StepPlan:
        return execute_node(self.flow, self.node, run, ctx)

    def __repr__(self) -> str:
        return f"<VisualNodeHandler {self.flow.id}:{self.node.id} ({self.node.type})>"


def _spec(cflow: CompiledFlow, workflow_id: Optional[str] = None) -> WorkflowSpec:
    nodes = {nid: VisualNodeHandler(cflow, cflow.nodes[nid]) for nid in cflow.reachable}
    return WorkflowSpec(workflow_id=workflow_id or cflow.id, entry_node=cflow.entry, nodes=nodes)


def compile_flow(flow: Flow) -> WorkflowSpec:
    """The intermediate :class:`Flow` -> ``WorkflowSpec``."""
    cflow = flow.compiled
    if not isinstance(cflow, CompiledFlow):
        raise VisualFlowTypeError("compile_flow expects a Flow produced by visual_to_flow")
    return _spec(cflow)


def _types(node_types: Optional[Mapping[str, VisualNodeType]], runtime: Any, plugins: Sequence[Any]
           ) -> Dict[str, VisualNodeType]:
    if node_types is not None:
        return dict(node_types)
    from .catalogue import load_node_types

    return load_node_types(runtime=runtime, plugins=plugins)


def compile_visualflow(
    raw_or_model: Any,
    *,
    strict: bool = False,
    node_types: Optional[Mapping[str, VisualNodeType]] = None,
    runtime: Any = None,
    plugins: Sequence[Any] = (),
) -> WorkflowSpec:
    """Compile one VisualFlow into one ``WorkflowSpec`` (``workflow_id`` = the flow's ``id``).

    ``strict=True`` refuses unknown node types (else they pass their input through, with a warning). Node types
    come from ``node_types``, else from ``runtime``'s plugins, else from the installed plugins (+ ``plugins``).
    Raises :class:`~abstractruntime_visualflow.errors.VisualFlowCompileError` (a ``ValueError``) naming what is
    wrong and where.
    """
    vf = raw_or_model if isinstance(raw_or_model, VisualFlow) else load_visualflow_json(raw_or_model)
    return _spec(analyse(vf, _types(node_types, runtime, plugins), strict=strict))


def compile_visualflow_tree(
    *,
    root_id: str,
    flows_by_id: Mapping[str, Any],
    strict: bool = False,
    node_types: Optional[Mapping[str, VisualNodeType]] = None,
    runtime: Any = None,
    plugins: Sequence[Any] = (),
    agent_workflows: bool = True,
) -> Dict[str, WorkflowSpec]:
    """Compile ``root_id`` and every flow it reaches through ``subflow`` nodes: ``{workflow_id: spec}``.

    Every entry of ``flows_by_id`` is parsed (an invalid flow anywhere raises); ids missing from ``flows_by_id`` are
    skipped; cycles and recursion are allowed (each flow compiled once). With ``agent_workflows`` the result also
    holds the default ReAct workflow of every ``agent`` node reached (:mod:`.agent_react`; a flow of the same id
    wins); pass False when the host registers its own ReAct workflows.
    """
    if not flows_by_id:
        return {}
    parsed: Dict[str, VisualFlow] = {key: load_visualflow_json(raw) for key, raw in flows_by_id.items()}
    by_id: Dict[str, VisualFlow] = dict(parsed)
    for vf in parsed.values():
        by_id.setdefault(vf.id, vf)
    types = _types(node_types, runtime, plugins)
    start = root_id if isinstance(root_id, str) and root_id.strip() else next(iter(flows_by_id))
    out: Dict[str, WorkflowSpec] = {}
    seen = set()
    agents: list = []
    queue = deque([start])
    while queue:
        key = queue.popleft()
        if key in seen or key not in by_id:
            continue
        seen.add(key)
        vf = by_id[key]
        cflow = analyse(vf, types, strict=strict)
        out.setdefault(vf.id, _spec(cflow))
        agents.extend(agent_workflow_specs(vf).items() if agent_workflows else ())
        for node in vf.nodes:
            if node.type == "subflow":
                sub = subflow_id_of(node.data)
                if sub is not None and sub not in seen:
                    queue.append(sub)
    for wid, spec in agents:
        out.setdefault(wid, spec)
    return out


def listener_workflow_id(flow_id: str, node_id: str) -> str:
    return f"{flow_id}{LISTENER_SEPARATOR}{node_id}"


def compile_visualflow_listeners(
    raw_or_model: Any,
    *,
    strict: bool = False,
    node_types: Optional[Mapping[str, VisualNodeType]] = None,
    runtime: Any = None,
    plugins: Sequence[Any] = (),
) -> Dict[str, WorkflowSpec]:
    """One listener ``WorkflowSpec`` per ``on_event`` node: ``{"<flow_id>::<node_id>": spec}``.

    Each spec is the same flow entered at its ``on_event`` node. A host starts one run per listener (see
    :func:`abstractruntime_visualflow.drive.start_listeners`); it waits for its event, runs its branch, and waits
    again. Events emitted by other runs (``emit_event``) or by ``Scheduler.emit_event`` resume it and the scheduler
    drives it.
    """
    vf = raw_or_model if isinstance(raw_or_model, VisualFlow) else load_visualflow_json(raw_or_model)
    types = _types(node_types, runtime, plugins)
    out: Dict[str, WorkflowSpec] = {}
    for node in vf.nodes:
        if node.type != "on_event":
            continue
        cflow = analyse(vf, types, strict=strict, entry_node=node.id)
        if cflow.entry != node.id:  # declared without exec pins: not an execution node
            continue
        wid = listener_workflow_id(vf.id, node.id)
        out[wid] = _spec(cflow, wid)
    return out


def visual_to_flow(visual: Any, **kwargs: Any) -> Flow:
    from .executor import visual_to_flow as _v2f

    return _v2f(visual, **kwargs)


__all__ = [
    "compile_flow", "compile_visualflow", "compile_visualflow_tree", "compile_visualflow_listeners",
    "listener_workflow_id", "visual_to_flow", "VisualNodeHandler",
]
