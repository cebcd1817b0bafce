"""Reference import path ``abstractruntime.visualflow_compiler.compiler``."""

from abstractruntime_visualflow.compiler import (  # noqa: F401
    compile_flow,
    compile_visualflow,
    compile_visualflow_listeners,
    compile_visualflow_tree,
)

__all__ = ["compile_flow", "compile_visualflow", "compile_visualflow_tree", "compile_visualflow_listeners"]
