"""Reference import path ``abstractruntime.visualflow_compiler.visual.executor``."""

from abstractruntime_visualflow.executor import visual_to_flow  # noqa: F401

__all__ = ["visual_to_flow"]
