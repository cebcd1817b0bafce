"""The core node catalogue (§2.6): triggers and terminal, events and scheduling, human-in-the-loop, control flow,
variables, subflows, literals. Every type here is a :class:`VisualNodeType`, registered through the same hook a
third-party package uses.

The families live in their own modules (:mod:`.events`, :mod:`.control`, :mod:`.variables`, :mod:`.subflows`, with
shared helpers in :mod:`.common`); :func:`core_node_types` assembles them, and this module re-exports their public
names so ``abstractruntime_visualflow.catalogue.core.<name>`` keeps working.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ..analysis import LITERAL_TYPES
from ..context import NodeContext
from ..nodetypes import PURE_BASE, VisualNodeType
from .common import SCOPES, normalize_scope  # noqa: F401 - re-exported
from .control import (  # noqa: F401 - re-exported
    MAX_LOOP_ITERATIONS,
    control_node_types,
    for_step,
    loop_step,
    sequence_step,
    while_step,
)
from .events import (  # noqa: F401 - re-exported
    event_node_types,
    on_event_map,
    on_event_step,
    on_flow_end_step,
    on_schedule_map,
    on_schedule_step,
    parse_schedule,
)
from .subflows import CONTROL_PINS, merge_inherited_messages, subflow_map, subflow_node_types  # noqa: F401
from .variables import (  # noqa: F401 - re-exported
    add_message_step,
    set_var_property_step,
    set_var_step,
    set_vars_step,
    variable_node_types,
)


def _literal(d: Dict[str, Any], ctx: NodeContext) -> Dict[str, Any]:
    return {"value": ctx.data.get("literalValue")}


def literal_node_types() -> List[VisualNodeType]:
    """``literal_string``, ``literal_number``, ``literal_boolean``, ``literal_json``, ``literal_array``,
    ``json_schema``: pure nodes whose ``value`` is the node's ``literalValue``."""
    return [VisualNodeType(lit, handler=_literal, context=True, pure=True, base_input=PURE_BASE, outputs=["value"])
            for lit in sorted(LITERAL_TYPES)]


def core_node_types() -> List[VisualNodeType]:
    """Every core node type, family by family (triggers and events, control flow, variables, subflows, literals)."""
    return (event_node_types() + control_node_types() + variable_node_types() + subflow_node_types()
            + literal_node_types())


__all__ = ["core_node_types", "merge_inherited_messages", "parse_schedule", "normalize_scope"]
