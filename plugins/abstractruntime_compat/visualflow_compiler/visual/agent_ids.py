"""Reference import path ``abstractruntime.visualflow_compiler.visual.agent_ids``."""

from abstractruntime_visualflow.agent_ids import visual_react_workflow_id  # noqa: F401

__all__ = ["visual_react_workflow_id"]
