"""Graph analysis (``visual_to_flow``) and the per-step executor of compiled VisualFlows.

Durability rule (reference defect §17 #24): a compiled flow holds only immutable graph data. Everything a run
needs between steps lives in ``run.vars``:

* ``_temp.node_outputs[node_id]`` -- outputs of execution nodes (function nodes, loops, variables, triggers);
* ``_temp.effects[node_id]`` -- effect results, mapped onto the effect node's output pins when read;
* ``_temp._control = {stack: [node_ids], frames: {node_id: frame}}`` -- control-flow state (loops, sequences,
  listeners);
* ``_last_output`` -- the output of the last function-style node.

Pure (data) nodes are evaluated on demand, at most once per step (a memo local to the step): nothing is cached
across steps, runs or threads.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from abstractruntime import codec
from abstractruntime.logs import get_logger
from abstractruntime.models import Effect, RunState, StepPlan, utc_now_iso

from .errors import DataCycleError, NodeTypeRegistrationError, UnknownNodeTypeError, VisualFlowCompileError
from .flow import Flow, FlowEdge, FlowNode
from .models import VisualFlow, load_visualflow_json
from .nodetypes import LAST_OUTPUT_BASE, PURE_BASE, VisualNodeType

log = get_logger("abstractruntime.visualflow")

MISSING: Any = type("MISSING", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()

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


# ---------------------------------------------------------------------------------------------------------------
# helpers on vars
# ---------------------------------------------------------------------------------------------------------------
def get_path(container: Any, path: str, default: Any = None) -> Any:
    """Read a dotted path (``a.b.0``; ``a.b[0]`` also accepted) from dicts and lists."""
    if not isinstance(path, str) or not path:
        return default
    cur = container
    for part in path.replace("[", ".").replace("]", "").split("."):
        if part == "":
            continue
        if isinstance(cur, dict):
            if part not in cur:
                return default
            cur = cur[part]
        elif isinstance(cur, list):
            try:
                idx = int(part)
            except ValueError:
                return default
            if -len(cur) <= idx < len(cur):
                cur = cur[idx]
            else:
                return default
        else:
            return default
    return cur


def set_path(container: Dict[str, Any], path: str, value: Any) -> None:
    """Write at a dotted path; missing or non-dict intermediates become new dicts."""
    parts = [p for p in path.split(".") if p != ""]
    if not parts:
        raise ValueError("empty variable path")
    cur = container
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def public_vars(vars: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in vars.items() if not (isinstance(k, str) and k.startswith("_"))}


def as_input_dict(value: Any) -> Dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if value is None:
        return {}
    return {"value": value, "a": value, "text": value}


class NodeInfo:
    """Read-only view of a node for ``VisualNodeType.validate`` (compile time)."""

    def __init__(self, flow: CompiledFlow, node: CompiledNode) -> None:
        self.flow_id = flow.id
        self.node_id = node.id
        self.node_type = node.type
        self.data = node.data
        self.node = node


# ---------------------------------------------------------------------------------------------------------------
# the per-step context
# ---------------------------------------------------------------------------------------------------------------
class NodeContext:
    """What a node type sees while one step of a run executes one node.

    Public attributes for node types: ``node_id``, ``node_type``, ``data`` (the node's ``data``), ``config`` (its
    ``effectConfig``), ``declared_inputs`` / ``declared_outputs`` (non-exec pin ids), ``vars`` (the run's
    variables: the only place state may be kept), ``run`` (``RunState`` or None for a dry evaluation), ``run_id``,
    ``workflow_id``, ``session_id``, ``now_iso()``.
    """

    __slots__ = ("flow", "node", "run", "vars", "_memo", "_evaluating", "_clock")

    def __init__(self, flow: CompiledFlow, node: CompiledNode, run: Optional[RunState] = None,
                 vars: Optional[Dict[str, Any]] = None, clock: Any = None,
                 _memo: Optional[Dict[str, Any]] = None, _evaluating: Optional[Set[str]] = None) -> None:
        self.flow = flow
        self.node = node
        self.run = run
        self.vars: Dict[str, Any] = run.vars if run is not None else (vars if vars is not None else {})
        self._memo = _memo if _memo is not None else {}
        self._evaluating = _evaluating if _evaluating is not None else set()
        self._clock = clock

    # --- node facts -------------------------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self.node.id

    @property
    def node_type(self) -> str:
        return self.node.type

    @property
    def data(self) -> Dict[str, Any]:
        return self.node.data

    @property
    def config(self) -> Dict[str, Any]:
        return self.node.config

    @property
    def declared_inputs(self) -> List[str]:
        return self.node.declared_inputs

    @property
    def declared_outputs(self) -> List[str]:
        return self.node.declared_outputs

    @property
    def run_id(self) -> Optional[str]:
        return self.run.run_id if self.run is not None else None

    @property
    def workflow_id(self) -> str:
        return self.run.workflow_id if self.run is not None else self.flow.id

    @property
    def session_id(self) -> Optional[str]:
        return self.run.session_id if self.run is not None else None

    def now_iso(self) -> str:
        if self._clock is not None and hasattr(self._clock, "now_iso"):
            return self._clock.now_iso()
        return utc_now_iso()

    def for_node(self, node: CompiledNode) -> "NodeContext":
        return NodeContext(self.flow, node, self.run, self.vars, self._clock, self._memo, self._evaluating)

    # --- state in vars ----------------------------------------------------------------------------------------
    @property
    def temp(self) -> Dict[str, Any]:
        t = self.vars.get("_temp")
        if not isinstance(t, dict):
            t = {}
            self.vars["_temp"] = t
        return t

    def _ns(self, name: str) -> Dict[str, Any]:
        t = self.temp
        ns = t.get(name)
        if not isinstance(ns, dict):
            ns = {}
            t[name] = ns
        return ns

    @property
    def node_outputs(self) -> Dict[str, Any]:
        return self._ns("node_outputs")

    def effect_result(self, node_id: str) -> Any:
        temp = self.vars.get("_temp")
        effects = temp.get("effects") if isinstance(temp, dict) else None
        if not isinstance(effects, dict):
            return MISSING
        if node_id in effects:
            return effects[node_id]
        if "." in node_id:  # the kernel writes result keys as dotted paths
            cur: Any = effects
            for part in node_id.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    return MISSING
                cur = cur[part]
            return cur
        return MISSING

    def clear_effect_result(self, node_id: str) -> None:
        temp = self.vars.get("_temp")
        effects = temp.get("effects") if isinstance(temp, dict) else None
        if isinstance(effects, dict):
            effects.pop(node_id, None)

    @property
    def control(self) -> Dict[str, Any]:
        c = self._ns("_control")
        if not isinstance(c.get("stack"), list):
            c["stack"] = []
        if not isinstance(c.get("frames"), dict):
            c["frames"] = {}
        return c

    def control_top(self) -> Optional[str]:
        temp = self.vars.get("_temp")
        c = temp.get("_control") if isinstance(temp, dict) else None
        stack = c.get("stack") if isinstance(c, dict) else None
        return stack[-1] if stack else None

    def frame(self) -> Optional[Dict[str, Any]]:
        f = self.control["frames"].get(self.node.id)
        return f if isinstance(f, dict) else None

    def push_control(self, frame: Dict[str, Any]) -> None:
        c = self.control
        c["frames"][self.node.id] = frame
        if self.node.id not in c["stack"]:
            c["stack"].append(self.node.id)

    def pop_control(self) -> None:
        c = self.control
        c["frames"].pop(self.node.id, None)
        stack = c["stack"]
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] == self.node.id:
                del stack[i]
                break

    @property
    def last_output(self) -> Any:
        return self.vars.get("_last_output", MISSING)

    # --- data resolution --------------------------------------------------------------------------------------
    def base_input(self, mode: Optional[str] = None) -> Dict[str, Any]:
        mode = mode or self.node.ntype.base_input
        if mode == PURE_BASE:
            return {}
        if mode == LAST_OUTPUT_BASE:
            last = self.vars.get("_last_output")
            return dict(last) if isinstance(last, dict) else {}
        if self.node.input_key:
            return as_input_dict(self.vars.get(self.node.input_key))
        if "_last_output" in self.vars:
            return as_input_dict(self.vars["_last_output"])
        return public_vars(self.vars)

    def resolve(self, base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The node's input: base, then connected pins, then ``pinDefaults``, then the type's defaults."""
        node = self.node
        inputs = dict(base) if base is not None else self.base_input()
        for pin, (src, src_pin) in node.data_in.items():
            value = self.read(src, src_pin)
            if value is not MISSING:
                inputs[pin] = value
        for pin, value in node.pin_defaults.items():
            if pin not in node.data_in and pin not in inputs:
                inputs[pin] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
        for pin, value in node.ntype.defaults.items():
            if pin not in node.data_in and pin not in inputs:
                inputs[pin] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
        return inputs

    def read(self, src: str, src_pin: str) -> Any:
        """The value of output pin ``src_pin`` of node ``src`` (MISSING if that node produced nothing yet)."""
        out = self.output_of(src)
        if out is MISSING:
            return MISSING
        if isinstance(out, dict) and src_pin in out:
            return out[src_pin]
        if src_pin in ("result", "output"):
            return out
        return None

    def output_of(self, nid: str) -> Any:
        node = self.flow.nodes[nid]
        if node.is_literal:
            return node.literal_output
        if nid in self._memo:
            return self._memo[nid]
        if node.is_exec:
            out = self._stored_output(node)
        else:
            out = self._evaluate_pure(node)
        self._memo[nid] = out
        return out

    def _stored_output(self, node: CompiledNode) -> Any:
        temp = self.vars.get("_temp")
        outputs = temp.get("node_outputs") if isinstance(temp, dict) else None
        pre = outputs.get(node.id, MISSING) if isinstance(outputs, dict) else MISSING
        mapper = node.ntype.effect.map_result if node.ntype.effect is not None else getattr(node.ntype, "map_result",
                                                                                             None)
        if mapper is not None:
            result = self.effect_result(node.id)
            if result is not MISSING:
                return mapper(result, pre if isinstance(pre, dict) else {}, self.for_node(node))
        return pre

    def _evaluate_pure(self, node: CompiledNode) -> Any:
        if node.id in self._evaluating:
            raise DataCycleError(f"Data edge cycle detected at '{node.id}'", code="data_cycle", flow_id=self.flow.id,
                                 node_id=node.id)
        self._evaluating.add(node.id)
        try:
            sub = self.for_node(node)
            inputs = sub.resolve({})
            return sub.call_handler(inputs)
        finally:
            self._evaluating.discard(node.id)

    def call_handler(self, inputs: Dict[str, Any]) -> Any:
        """Run the node type's pure handler (or ``evaluate``) on ``inputs``; effect/step kinds pass through."""
        ntype = self.node.ntype
        if self.node.unknown:
            return dict(inputs)
        if ntype.handler is not None:
            if "literalValue" in self.node.data:
                inputs.setdefault("_literalValue", self.node.data.get("literalValue"))
            inputs.setdefault("_pin_order", self.node.declared_inputs)
            return ntype.handler(inputs, self) if ntype.context else ntype.handler(inputs)
        evaluate = ntype.evaluate
        if evaluate is not None:
            return evaluate(inputs, self)
        return dict(inputs)

    # --- continuations ----------------------------------------------------------------------------------------
    def next_node(self, handle: str = "exec-out") -> Optional[str]:
        return self.node.exec_out.get(handle)

    def store_output(self, output: Any, *, last: bool = True) -> None:
        violation = None if codec._is_plain_json(output) else codec.find_json_violation(output, "output")
        if violation is not None:
            raise TypeError(f"node output is not plain JSON: {violation[0]}: {violation[1]}")
        self.node_outputs[self.node.id] = output
        if last:
            self.vars["_last_output"] = output
        self._memo[self.node.id] = output

    def plan(self, next_node: str) -> StepPlan:
        return StepPlan(node_id=self.node.id, next_node=next_node)

    def complete(self, output: Dict[str, Any]) -> StepPlan:
        return StepPlan(node_id=self.node.id, complete_output=output)

    def function_completion(self, output: Any) -> Dict[str, Any]:
        if isinstance(output, dict):
            out = dict(output)
            out.setdefault("success", True)
            return out
        return {"response": output, "success": True}

    def control_completion(self, **extra: Any) -> Dict[str, Any]:
        last = self.vars.get("_last_output")
        return {"success": True, "result": last, **extra}

    def chain_end(self, completion: Dict[str, Any]) -> StepPlan:
        """The chain ends here: back to the innermost active control node, else the run completes."""
        top = self.control_top()
        if top is not None:
            return self.plan(top)
        return self.complete(completion)

    def fail(self, error: Any) -> StepPlan:
        """An error of a function-style node: the run completes with ``{"success": false, ...}``."""
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        if not message:
            message = type(error).__name__ if isinstance(error, BaseException) else "error"
        self.vars["_flow_error"] = message
        self.vars["_flow_error_node"] = self.node.id
        log.debug("visualflow_node_error", flow_id=self.flow.id, node_id=self.node.id, error=message)
        return self.complete({"success": False, "error": message, "node": self.node.id})

    def continue_after(self, output: Any, completion: Optional[Dict[str, Any]] = None) -> StepPlan:
        """Follow the node's execution output (or the branch its output names)."""
        node = self.node
        done = completion if completion is not None else self.function_completion(output)
        if node.branching:
            branch = output.get("branch") if isinstance(output, dict) else None
            if not isinstance(branch, str):
                return self.fail(ValueError(
                    f"Node '{node.id}' has branch outputs ({', '.join(sorted(node.exec_out))}) but its output has "
                    f"no string 'branch'"))
            target = node.exec_out.get(branch)
            return self.plan(target) if target else self.chain_end(done)
        target = node.exec_out.get("exec-out")
        return self.plan(target) if target else self.chain_end(done)


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
