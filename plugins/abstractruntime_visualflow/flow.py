"""The intermediate ``Flow`` (reference ``visualflow_compiler.flow``): the analysed graph, before compilation.

``visual_to_flow`` builds it; ``compile_flow`` turns it into a ``WorkflowSpec``. ``flow.nodes[node_id].handler``
is the node's data-aware handler (``handler(base_input, vars=None) -> output dict``; effect nodes include
``_pending_effect``). A ``Flow`` is immutable analysis data: it holds no run state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional


@dataclass
class FlowNode:
    id: str
    type: str
    handler: Optional[Callable[..., Any]] = None
    data: Dict[str, Any] = field(default_factory=dict)
    is_exec: bool = True


@dataclass
class FlowEdge:
    source: str
    target: str
    source_handle: str = "exec-out"
    target_handle: str = "exec-in"
    kind: str = "exec"  # "exec" | "data"


@dataclass
class Flow:
    flow_id: str
    name: str = ""
    description: str = ""
    interfaces: List[str] = field(default_factory=list)
    nodes: Dict[str, FlowNode] = field(default_factory=dict)
    edges: List[FlowEdge] = field(default_factory=list)
    entry_node: Optional[str] = None
    _ignored_exec_nodes: List[str] = field(default_factory=list)
    #: the compiled graph (``abstractruntime_visualflow.executor.CompiledFlow``)
    compiled: Any = None

    @property
    def id(self) -> str:
        return self.flow_id


__all__ = ["Flow", "FlowNode", "FlowEdge"]
