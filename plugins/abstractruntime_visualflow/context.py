"""Run-time state of one step: :class:`NodeContext`, what a node type sees while a step executes one node.

A context reads and writes only ``run.vars`` (node outputs, effect results, control-flow frames, ``_last_output``;
see :mod:`.executor` for the layout), resolves a node's inputs (base input, connected pins evaluated on demand,
``pinDefaults``, type defaults) with a memo local to the step, and builds the step's ``StepPlan`` (next node,
completion, failure). Also the dotted-path helpers node types use on variables (:func:`get_path`,
:func:`set_path`: :mod:`abstractruntime_pluginkit.paths`).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Set

from abstractruntime import codec
from abstractruntime_pluginkit import paths
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, StepPlan, utc_now_iso

from .analysis import CompiledFlow, CompiledNode
from .errors import DataCycleError, NodeOutputError, VisualNodeError
from .nodetypes import LAST_OUTPUT_BASE, PURE_BASE

log = get_logger("abstractruntime.visualflow")

MISSING: Any = type("MISSING", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()

#: write ``value`` at a dotted path; missing or non-dict intermediates become dicts (the kernel's writer)
set_path = paths.set_path


def get_path(container: Any, path: Any, default: Any = None) -> Any:
    """Read ``path`` (``a.b.0``, ``a.b[0]``, ``a["x.y"]`` or a JSON pointer ``/a/b/0``) with the kernel's reader
    (:func:`abstractruntime_pluginkit.paths.get_path`). A miss, a malformed path, or a path that is empty or not a string gives
    ``default`` (``None``): node types read optional values with it."""
    if not isinstance(path, str) or not path.strip():
        return default
    return paths.get_path(container, path, default)


def public_vars(vars: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in vars.items() if not (isinstance(k, str) and k.startswith("_"))}


def as_input_dict(value: Any) -> Dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if value is None:
        return {}
    return {"value": value, "a": value, "text": value}


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
        if "." in node_id:  # the kernel writes result keys as dotted paths (``paths.set_path``): read them back alike
            return paths.get_path(effects, [p for p in node_id.split(".") if p], MISSING)
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
        violation = None if codec.plain_json(output) is not None else codec.find_json_violation(output, "output")
        if violation is not None:
            raise NodeOutputError(f"node output is not plain JSON: {violation[0]}: {violation[1]}",
                                  node_id=self.node.id)
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
                return self.fail(VisualNodeError(
                    f"Node '{node.id}' has branch outputs ({', '.join(sorted(node.exec_out))}) but its output has "
                    f"no string 'branch'", node_id=node.id))
            target = node.exec_out.get(branch)
            return self.plan(target) if target else self.chain_end(done)
        target = node.exec_out.get("exec-out")
        return self.plan(target) if target else self.chain_end(done)


__all__ = ["MISSING", "NodeContext", "get_path", "set_path", "public_vars", "as_input_dict"]
