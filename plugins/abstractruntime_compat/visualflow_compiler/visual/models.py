"""Reference import path ``abstractruntime.visualflow_compiler.visual.models``."""

from abstractruntime_visualflow.models import VisualEdge, VisualFlow, VisualNode, load_visualflow_json  # noqa: F401

__all__ = ["VisualFlow", "VisualNode", "VisualEdge", "load_visualflow_json"]
