"""Compile-time analysis of a VisualFlow: the graph checks and the immutable :class:`CompiledFlow`.

:func:`analyse` runs once when a flow is compiled. It resolves every node's type, sorts nodes into execution, pure
(data) and literal nodes, reads their pins, records data edges (``CompiledNode.data_in``) and execution edges
(``CompiledNode.exec_out``), picks the entry node, computes the reachable execution nodes, and refuses graphs that
cannot run (missing nodes, no entry, unsupported branching, data-edge cycles, subflow nodes naming no flow, node
types whose ``validate`` rejects a node). Nothing here runs at step time; the per-step execution is in
:mod:`.context` and :mod:`.executor`.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from abstractruntime.logs import get_logger
from abstractruntime_pluginkit.paths import parse_path
from abstractruntime_workspace import WORKSPACE_KEYS

from .errors import DataCycleError, UnknownNodeTypeError, VisualFlowCompileError
from .models import VisualFlow
from .nodetypes import VisualNodeType

log = get_logger("abstractruntime.visualflow")

LITERAL_TYPES = frozenset({
    "literal_string", "literal_number", "literal_boolean", "literal_json", "literal_array", "json_schema",
})
LOOP_TYPES = frozenset({"loop", "while", "for"})
SEQUENCE_TYPES = frozenset({"sequence", "parallel"})
BRANCH_HANDLES = frozenset({"true", "false"})
#: node types that are pure when declared without any pin (besides the node types flagged ``pure=True``)
PURE_BY_NAME = frozenset({"get_var", "get_context", "bool_var", "var_decl", "break_object", "tool_parameters"})
SUBFLOW_ID_KEYS = ("subflowId", "flowId", "workflowId", "workflow_id")

_PASSTHROUGH = VisualNodeType("__passthrough__", handler=lambda inputs: dict(inputs),
                              description="unknown node type: output = input")


def _is_case_handle(handle: str) -> bool:
    return handle == "default" or handle.startswith("case:")


def _pin_list(value: Any) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    if isinstance(value, list):
        for pin in value:
            if isinstance(pin, dict) and isinstance(pin.get("id"), str) and pin["id"]:
                out.append((pin["id"], str(pin.get("type") or "any")))
    return out


def subflow_id_of(data: Dict[str, Any]) -> Optional[str]:
    for key in SUBFLOW_ID_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class CompiledNode:
    """One node of a compiled flow: immutable after compilation."""

    __slots__ = (
        "id", "type", "ntype", "data", "config", "pin_defaults", "in_pins", "out_pins", "exec_in_pins",
        "exec_out_pins", "has_pins", "is_exec", "is_literal", "literal_output", "data_in", "exec_out", "branching",
        "input_key", "output_key", "unknown", "index",
    )

    def __init__(self, node_id: str, node_type: str, data: Dict[str, Any], ntype: VisualNodeType, unknown: bool,
                 index: int) -> None:
        self.id = node_id
        self.type = node_type
        self.ntype = ntype
        self.unknown = unknown
        self.index = index
        self.data = data
        cfg = data.get("effectConfig")
        self.config: Dict[str, Any] = cfg if isinstance(cfg, dict) else {}
        pd = data.get("pinDefaults")
        self.pin_defaults: Dict[str, Any] = pd if isinstance(pd, dict) else {}
        inputs = _pin_list(data.get("inputs"))
        outputs = _pin_list(data.get("outputs"))
        self.has_pins = bool(inputs or outputs)
        self.in_pins: Tuple[Tuple[str, str], ...] = tuple(p for p in inputs if p[1] != "execution")
        self.out_pins: Tuple[Tuple[str, str], ...] = tuple(p for p in outputs if p[1] != "execution")
        self.exec_in_pins = tuple(p[0] for p in inputs if p[1] == "execution")
        self.exec_out_pins = tuple(p[0] for p in outputs if p[1] == "execution")
        self.is_literal = node_type in LITERAL_TYPES
        self.literal_output = {"value": data.get("literalValue")} if self.is_literal else None
        if self.is_literal:
            self.is_exec = False
        elif self.has_pins:
            self.is_exec = bool(self.exec_in_pins or self.exec_out_pins)
        else:
            self.is_exec = not (ntype.pure or node_type in PURE_BY_NAME)
        self.data_in: Dict[str, Tuple[str, str]] = {}
        self.exec_out: Dict[str, str] = {}
        self.branching = False
        ik = data.get("inputKey")
        ok = data.get("outputKey")
        self.input_key: Optional[str] = ik if isinstance(ik, str) and ik.strip() else None
        self.output_key: Optional[str] = ok if isinstance(ok, str) and ok.strip() else None

    @property
    def declared_inputs(self) -> List[str]:
        return [p for p, _t in self.in_pins]

    @property
    def declared_outputs(self) -> List[str]:
        return [p for p, _t in self.out_pins]

    def pin_type(self, pin: str) -> Optional[str]:
        for p, t in self.in_pins:
            if p == pin:
                return t
        return None


class CompiledFlow:
    """The analysed graph of one VisualFlow (immutable; shared by every run of the compiled spec)."""

    __slots__ = ("id", "name", "description", "interfaces", "nodes", "entry", "reachable", "ignored",
                 "effect_output_keys", "subflow_ids")

    def __init__(self, flow_id: str, name: str, description: str, interfaces: List[str]) -> None:
        self.id = flow_id
        self.name = name
        self.description = description
        self.interfaces = interfaces
        self.nodes: Dict[str, CompiledNode] = {}
        self.entry: str = ""
        self.reachable: List[str] = []
        self.ignored: List[str] = []
        self.effect_output_keys: Tuple[Tuple[str, str, str], ...] = ()
        self.subflow_ids: List[str] = []


# ---------------------------------------------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------------------------------------------
def _check_output_key(node: "CompiledNode", fid: str) -> None:
    """A node's ``outputKey`` may not write the runtime's namespace (``_runtime``: the sealed workspace policy, run
    control) or the host's ``workspace_*`` policy variables."""
    try:
        head = parse_path(node.output_key)[:1] if node.output_key else []
    except ValueError:
        return  # a malformed path fails when it is written, as before
    if head and (head[0] == "_runtime" or head[0] in WORKSPACE_KEYS):
        raise VisualFlowCompileError(
            f"node '{node.id}' has outputKey {node.output_key!r}, which is reserved: a flow cannot write "
            f"vars._runtime or the workspace policy ({', '.join(WORKSPACE_KEYS)})",
            code="reserved_output_key", flow_id=fid, node_id=node.id)


def analyse(visual: VisualFlow, node_types: Dict[str, VisualNodeType], *, strict: bool = False,
            entry_node: Optional[str] = None) -> CompiledFlow:
    """Check the graph and build the :class:`CompiledFlow`. Raises :class:`VisualFlowCompileError` subclasses."""
    fid = visual.id
    cflow = CompiledFlow(fid, visual.name, visual.description, list(visual.interfaces))
    for index, vnode in enumerate(visual.nodes):
        if vnode.id in cflow.nodes:
            raise VisualFlowCompileError(f"duplicate node id '{vnode.id}'", code="duplicate_node", flow_id=fid,
                                         node_id=vnode.id)
        ntype = node_types.get(vnode.type)
        unknown = ntype is None
        if unknown and vnode.type not in LITERAL_TYPES:
            if strict:
                raise UnknownNodeTypeError(
                    f"node '{vnode.id}' has unknown type '{vnode.type}' (strict mode; install the plugin that "
                    f"provides it, or compile without strict=True to pass its input through)",
                    code="unknown_node_type", flow_id=fid, node_id=vnode.id)
            log.warning("visualflow_unknown_node_type", flow_id=fid, node_id=vnode.id, node_type=vnode.type,
                        behaviour="pass-through (output = input)")
        cflow.nodes[vnode.id] = CompiledNode(vnode.id, vnode.type, vnode.data, ntype or _PASSTHROUGH, unknown,
                                             index)
        _check_output_key(cflow.nodes[vnode.id], fid)

    exec_edges: List[Tuple[int, str, str, str]] = []
    for i, edge in enumerate(visual.edges):
        for end, nid in (("source", edge.source), ("target", edge.target)):
            if nid not in cflow.nodes:
                raise VisualFlowCompileError(
                    f"edge #{i} ({edge.source}.{edge.sourceHandle} -> {edge.target}.{edge.targetHandle}) has a "
                    f"{end} '{nid}' that is not a node of the flow",
                    code="missing_node", flow_id=fid, node_id=nid, edge=i)
        src, tgt = cflow.nodes[edge.source], cflow.nodes[edge.target]
        if edge.targetHandle == "exec-in":
            if src.is_exec and tgt.is_exec:
                exec_edges.append((i, edge.source, edge.sourceHandle, edge.target))
        elif edge.sourceHandle != "exec-out":
            tgt.data_in[edge.targetHandle] = (edge.source, edge.sourceHandle)  # a later edge replaces an earlier one

    exec_ids = [n.id for n in cflow.nodes.values() if n.is_exec]
    if not exec_ids:
        raise VisualFlowCompileError("Invalid flow: Flow must have an entry node (the flow has no execution node)",
                                     code="no_entry", flow_id=fid)
    wanted = entry_node if entry_node is not None else visual.entryNode
    if wanted is not None and wanted not in cflow.nodes:
        raise VisualFlowCompileError(f"entryNode '{wanted}' is not a node of the flow", code="missing_entry",
                                     flow_id=fid, node_id=wanted)
    if wanted is not None and cflow.nodes[wanted].is_exec:
        entry = wanted
    else:
        targets = {t for _i, _s, _h, t in exec_edges}
        entry = next((nid for nid in exec_ids if nid not in targets), exec_ids[0])
    cflow.entry = entry

    out_edges: Dict[str, List[Tuple[int, str, str]]] = {}
    for i, s, h, t in exec_edges:
        out_edges.setdefault(s, []).append((i, h, t))
    seen: Set[str] = {entry}
    order = [entry]
    queue = [entry]
    while queue:
        cur = queue.pop(0)
        for _i, _h, t in out_edges.get(cur, ()):
            if t not in seen:
                seen.add(t)
                order.append(t)
                queue.append(t)
    cflow.reachable = [nid for nid in cflow.nodes if nid in seen]
    cflow.ignored = [nid for nid in exec_ids if nid not in seen]

    for nid in cflow.reachable:
        node = cflow.nodes[nid]
        _check_branching(fid, node, out_edges.get(nid, []))
        for _i, h, t in out_edges.get(nid, []):
            node.exec_out[h] = t
        node.branching = any(h in BRANCH_HANDLES or _is_case_handle(h) for h in node.exec_out) \
            and node.type not in LOOP_TYPES and node.type not in SEQUENCE_TYPES
        if node.type == "subflow":
            sub = subflow_id_of(node.data)
            if sub is None:
                raise VisualFlowCompileError(
                    f"subflow node '{nid}' names no flow (data.subflowId / flowId / workflowId)",
                    code="missing_subflow_id", flow_id=fid, node_id=nid)
            cflow.subflow_ids.append(sub)

    _check_data_cycles(cflow)
    for node in cflow.nodes.values():
        validate = getattr(node.ntype, "validate", None)
        if validate is not None and not node.unknown:
            validate(NodeInfo(cflow, node))
    cflow.effect_output_keys = tuple(
        (nid, cflow.nodes[nid].output_key, _main_output(cflow.nodes[nid]))
        for nid in cflow.reachable
        if cflow.nodes[nid].output_key and _maps_effect(cflow.nodes[nid].ntype)
    )
    return cflow


def _maps_effect(ntype: VisualNodeType) -> bool:
    return ntype.effect is not None or getattr(ntype, "map_result", None) is not None


def _main_output(node: CompiledNode) -> str:
    if node.ntype.effect is not None:
        return node.ntype.effect.main_output
    return getattr(node.ntype, "main_output", None) or "result"


def _check_branching(fid: str, node: CompiledNode, edges: List[Tuple[int, str, str]]) -> None:
    handles = [h for _i, h, _t in edges]
    where = f"node '{node.id}' ({node.type})"
    if len(set(handles)) != len(handles):
        dup = next(h for h in handles if handles.count(h) > 1)
        raise VisualFlowCompileError(
            f"{where} has multiple outgoing edges from '{dup}'. Branching is not yet supported "
            f"(one execution edge per output pin)", code="branching", flow_id=fid, node_id=node.id)
    if node.type in SEQUENCE_TYPES:
        allowed = {p for p in node.exec_out_pins if p.startswith("then:")}
        if node.type == "parallel":
            allowed |= {p for p in node.exec_out_pins if p == "completed"}
        for h in handles:
            if h not in allowed:
                raise VisualFlowCompileError(
                    f"{where}: outgoing edge from '{h}' is not one of its declared execution outputs "
                    f"({', '.join(sorted(allowed)) or 'none declared'})", code="branching", flow_id=fid,
                    node_id=node.id)
        return
    if node.type in LOOP_TYPES:
        for h in handles:
            if h not in ("loop", "done"):
                raise VisualFlowCompileError(f"{where}: unsupported output '{h}' (only 'loop' and 'done')",
                                             code="branching", flow_id=fid, node_id=node.id)
        return
    if len(handles) == 1:
        h = handles[0]
        if h != "exec-out" and h not in BRANCH_HANDLES and not _is_case_handle(h):
            raise VisualFlowCompileError(f"{where}: unsupported branching output '{h}'", code="branching",
                                         flow_id=fid, node_id=node.id)
    elif len(handles) > 1:
        if not (all(h in BRANCH_HANDLES for h in handles) or all(_is_case_handle(h) for h in handles)):
            raise VisualFlowCompileError(
                f"{where} has multiple outgoing edges ({', '.join(handles)}). Branching is not yet supported "
                f"except true/false or case:*/default", code="branching", flow_id=fid, node_id=node.id)


def _check_data_cycles(cflow: CompiledFlow) -> None:
    """Data edges between pure nodes must not form a cycle (execution nodes break cycles: their outputs are
    stored)."""
    state: Dict[str, int] = {}  # 1 = on the path, 2 = done
    for start in cflow.nodes:
        node = cflow.nodes[start]
        if node.is_exec or node.is_literal or state.get(start) == 2:
            continue
        stack: List[Tuple[str, Iterable[str]]] = [(start, iter(_pure_sources(cflow, start)))]
        state[start] = 1
        while stack:
            nid, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[nid] = 2
                stack.pop()
                continue
            s = state.get(nxt)
            if s == 1:
                raise DataCycleError(f"Data edge cycle detected at '{nxt}'", code="data_cycle", flow_id=cflow.id,
                                     node_id=nxt)
            if s is None:
                state[nxt] = 1
                stack.append((nxt, iter(_pure_sources(cflow, nxt))))


def _pure_sources(cflow: CompiledFlow, nid: str) -> List[str]:
    out = []
    for src, _pin in cflow.nodes[nid].data_in.values():
        n = cflow.nodes[src]
        if not n.is_exec and not n.is_literal:
            out.append(src)
    return out


class NodeInfo:
    """Read-only view of a node for ``VisualNodeType.validate`` (compile time)."""

    def __init__(self, flow: CompiledFlow, node: CompiledNode) -> None:
        self.flow_id = flow.id
        self.node_id = node.id
        self.node_type = node.type
        self.data = node.data
        self.node = node


__all__ = [
    "LITERAL_TYPES", "LOOP_TYPES", "SEQUENCE_TYPES", "BRANCH_HANDLES", "PURE_BY_NAME", "SUBFLOW_ID_KEYS",
    "CompiledNode", "CompiledFlow", "NodeInfo", "analyse", "subflow_id_of",
]
