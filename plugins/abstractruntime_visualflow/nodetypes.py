"""``VisualNodeType``: the descriptor through which node types are contributed.

Node types are a hook (``abstractruntime_register_visual_node_types``). The builtin catalogue of this plugin
registers its node types through that hook exactly as a third-party package does; the compiler collects them from
a plugin manager built like the kernel's (or from a ``Runtime``'s).

A node type is one of three kinds:

* ``handler`` -- a pure function of the node's resolved inputs (``handler(inputs)`` or, with
  ``context=True``, ``handler(inputs, ctx)``) returning the node's output (a dict of output pins, or a scalar read
  through the ``result``/``output`` pin). Used as an execution node (one kernel step) or, when the node declares no
  execution pin, evaluated lazily as a pure data node.
* ``effect`` -- an :class:`EffectMapping`: the inputs become the payload of one kernel ``Effect`` (executed by
  whichever plugin handles that effect type), and the effect's result is mapped back onto the output pins.
* ``step`` -- advanced: ``step(ctx) -> StepPlan`` with full access to the step (control-flow nodes, triggers,
  variables). Control state must live in ``ctx.vars`` (run variables), never in the process.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import attrs
from attrs import field, frozen

from .errors import NodeTypeDefinitionError, VisualFlowTypeError

PURE_BASE = "none"
LAST_OUTPUT_BASE = "last_output"
FUNCTION_BASE = "function"


def _norm_type(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NodeTypeDefinitionError(f"VisualNodeType.type must be a non-empty string, got {value!r}")
    return value.strip()


@frozen
class Pin:
    """A pin of a node type: ``id``, ``type`` (``"execution"`` for exec pins; else a data type) and a label."""

    id: str
    type: str = "any"
    label: Optional[str] = None

    @property
    def is_exec(self) -> bool:
        return self.type == "execution"

    @classmethod
    def of(cls, value: Any) -> "Pin":
        if isinstance(value, Pin):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            return cls(str(value.get("id")), str(value.get("type") or "any"), value.get("label"))
        if isinstance(value, tuple) and value:
            return cls(*value)
        raise VisualFlowTypeError(f"Cannot make a Pin from {value!r}")


def _pins(values: Any) -> Tuple[Pin, ...]:
    return tuple(Pin.of(v) for v in (values or ()))


def _default_map_result(result: Any, pre_output: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    out = dict(pre_output or {})
    if isinstance(result, dict):
        out.update(result)
    elif result is not None:
        out["result"] = result
    return out


@frozen
class EffectMapping:
    """How an effect node becomes one kernel ``Effect`` and how its result becomes the node's outputs.

    * ``effect_type`` -- the kernel effect type (``"ask_user"``, ``"llm_call"``, ``"my_plugin.effect"`` ...);
    * ``build_payload(inputs, ctx) -> dict`` -- the payload from the resolved inputs (may raise: effect nodes are
      "raise" nodes, the run fails with the error);
    * ``pre_output(inputs, ctx) -> dict`` -- outputs known before the effect runs (persisted; default ``{}``);
    * ``map_result(result, pre_output, ctx) -> dict`` -- outputs once the result is stored (default: the
      pre-output updated with a dict result, or ``{"result": value}``);
    * ``main_output`` -- the output pin written to the node's ``outputKey`` (default ``"result"``);
    * ``resume_to_node`` -- add ``resume_to_node`` (the next execution node) to the payload (waiting effects);
    * ``include_type`` -- keep the node's own ``type`` key in the payload (the reference's pending-effect dict).
    """

    effect_type: str
    build_payload: Callable[[Dict[str, Any], Any], Dict[str, Any]]
    pre_output: Optional[Callable[[Dict[str, Any], Any], Dict[str, Any]]] = None
    map_result: Callable[[Any, Dict[str, Any], Any], Dict[str, Any]] = _default_map_result
    main_output: str = "result"
    resume_to_node: bool = True
    include_type: bool = True


@frozen
class VisualNodeType:
    """A VisualFlow node type (see the module docstring and ``docs/visualflow.md``).

    ``inputs`` / ``outputs`` are the type's default pins (documentation and UIs; a node's own ``data.inputs`` /
    ``data.outputs`` decide what it declares). ``defaults`` fill input pins that are neither connected, nor given by
    the node's ``pinDefaults``, nor present in the base input. ``pure=True`` makes a node of this type declared
    without any pin a pure (data) node. ``base_input`` is the base of the node's input: ``"function"`` (the previous
    output, else the run's public variables), ``"last_output"`` (the previous output or ``{}``) or ``"none"``.
    ``error_mode`` ``"complete"`` turns a handler exception into a run that completes with
    ``{"success": false, "error", "node"}``; ``"raise"`` lets it fail the run.
    """

    type: str = field(converter=_norm_type)
    handler: Optional[Callable[..., Any]] = None
    effect: Optional[EffectMapping] = None
    step: Optional[Callable[[Any], Any]] = None
    inputs: Tuple[Pin, ...] = field(default=(), converter=_pins)
    outputs: Tuple[Pin, ...] = field(default=(), converter=_pins)
    defaults: Dict[str, Any] = field(factory=dict)
    context: bool = False
    pure: bool = False
    base_input: str = ""
    error_mode: str = ""
    description: str = ""
    #: step kinds: how the node computes its output when evaluated as a pure node / by ``Flow`` dry handlers
    evaluate: Optional[Callable[[Dict[str, Any], Any], Any]] = None
    #: step kinds that request an effect with ``result_key = "_temp.effects.<node_id>"``: result -> outputs
    map_result: Optional[Callable[[Any, Dict[str, Any], Any], Dict[str, Any]]] = None
    #: step kinds with ``map_result``: the output pin written to the node's ``outputKey``
    main_output: Optional[str] = None
    #: called at compile time with a read-only view of each node of this type (``.node_id``, ``.data``);
    #: raise to refuse the flow (e.g. code nodes reject unsafe code)
    validate: Optional[Callable[[Any], None]] = None

    def __attrs_post_init__(self) -> None:
        given = [x for x in (self.handler, self.effect, self.step) if x is not None]
        if len(given) != 1:
            raise NodeTypeDefinitionError(
                f"VisualNodeType {self.type!r} needs exactly one of handler=, effect= or step= (got {len(given)})"
            )
        if self.effect is not None and not isinstance(self.effect, EffectMapping):
            raise VisualFlowTypeError(f"VisualNodeType {self.type!r}: effect= must be an EffectMapping")
        if not self.base_input:
            object.__setattr__(self, "base_input", LAST_OUTPUT_BASE if self.effect is not None else FUNCTION_BASE)
        if self.base_input not in (PURE_BASE, LAST_OUTPUT_BASE, FUNCTION_BASE):
            raise NodeTypeDefinitionError(f"VisualNodeType {self.type!r}: unknown base_input {self.base_input!r}")
        if not self.error_mode:
            object.__setattr__(self, "error_mode", "raise" if self.effect is not None else "complete")
        if self.error_mode not in ("complete", "raise"):
            raise NodeTypeDefinitionError(f"VisualNodeType {self.type!r}: error_mode must be 'complete' or 'raise'")

    @property
    def kind(self) -> str:
        return "handler" if self.handler is not None else ("effect" if self.effect is not None else "step")

    def with_type(self, type_name: str) -> "VisualNodeType":
        return attrs.evolve(self, type=type_name)


__all__ = ["Pin", "EffectMapping", "VisualNodeType"]
