"""Reference import path ``abstractruntime.visualflow_compiler`` (the code lives in the ``visualflow`` plugin)."""

from abstractruntime_visualflow import (  # noqa: F401
    Flow,
    FlowEdge,
    FlowNode,
    VisualEdge,
    VisualFlow,
    VisualNode,
    compile_flow,
    compile_visualflow,
    compile_visualflow_listeners,
    compile_visualflow_tree,
    load_visualflow_json,
    visual_to_flow,
)

__all__ = [
    "Flow", "FlowNode", "FlowEdge", "VisualFlow", "VisualNode", "VisualEdge", "load_visualflow_json",
    "visual_to_flow", "compile_flow", "compile_visualflow", "compile_visualflow_tree",
]
