"""Reference import path ``abstractruntime.visualflow_compiler.flow``."""

from abstractruntime_visualflow.flow import Flow, FlowEdge, FlowNode  # noqa: F401

__all__ = ["Flow", "FlowNode", "FlowEdge"]
