"""``memact_compose`` (VAM §4.9): an execution node without an effect that refreshes the MemAct ``CURRENT CONTEXT``
module of the run (``vars._runtime.active_memory``) from a knowledge-graph query result -- typically
``memory_kg_query.raw`` -- and outputs the delta, a trace, the memory, its eight prompt blocks and the system prompt.

The composition is the active-memory library function ``compose_memact_current_context_from_kg_result``, imported
lazily through its reference path (``abstractruntime.memory.memact_composer``): a pure function of the run's
variables, it needs no plugin to be loaded.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import NodeDependencyError
from ..nodetypes import VisualNodeType

NO_KG_RESULT = "memact_compose requires a dict kg_result (connect memory_kg_query.raw or output)"


def _first_present(d: Dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


def _max_items(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        n = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return n if n > 0 else None


def memact_compose(d: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    """Replace the marker-prefixed ``current_context`` entries of the run's active memory with the KG result."""
    kg_result = _first_present(d, "kg_result", "raw", "result")
    if not isinstance(kg_result, dict):
        return {"ok": False, "error": NO_KG_RESULT, "delta": {}, "trace": {}, "active_memory": {},
                "memact_system_prompt": "", "memact_blocks": []}
    stimulus = _first_present(d, "stimulus", "query_text")
    stimulus = str(stimulus).strip() if stimulus is not None else ""
    marker = d.get("marker")
    marker = marker.strip() if isinstance(marker, str) and marker.strip() else "KG:"
    try:
        from abstractruntime.memory.memact_composer import compose_memact_current_context_from_kg_result
    except ImportError:
        raise NodeDependencyError("memact_compose needs the active-memory library (abstractruntime.memory."
                                  "memact_composer); install abstractruntime with its builtin plugins") from None
    return compose_memact_current_context_from_kg_result(ctx.vars, kg_result=kg_result, stimulus=stimulus,
                                                         marker=marker, max_items=_max_items(d.get("max_items")))


def memact_node_types() -> List[VisualNodeType]:
    X = "execution"
    return [
        VisualNodeType("memact_compose", handler=memact_compose, context=True,
                       inputs=[("exec-in", X), "kg_result", "stimulus", "marker", "max_items"],
                       outputs=[("exec-out", X), "ok", "delta", "trace", "active_memory", "memact_system_prompt",
                                "memact_blocks"],
                       description="Refresh the MemAct CURRENT CONTEXT of the run from a KG query result"),
    ]


__all__ = ["memact_node_types", "memact_compose", "NO_KG_RESULT"]
