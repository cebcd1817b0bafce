"""Reference import path ``abstractruntime.visualflow_compiler.visual``."""

from abstractruntime_visualflow.executor import visual_to_flow  # noqa: F401
from abstractruntime_visualflow.models import VisualEdge, VisualFlow, VisualNode, load_visualflow_json  # noqa: F401

__all__ = ["VisualFlow", "VisualNode", "VisualEdge", "load_visualflow_json", "visual_to_flow"]
