"""Reference import path ``abstractruntime.visualflow_compiler.visual.builtins``."""

from abstractruntime_visualflow.builtins import BUILTINS, get_builtin_handler  # noqa: F401

__all__ = ["get_builtin_handler", "BUILTINS"]
