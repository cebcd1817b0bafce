"""Reference import path ``abstractruntime.visualflow_compiler.visual.code_executor``."""

from abstractruntime_visualflow.catalogue.code import check_code, eval_expression, run_code  # noqa: F401
from abstractruntime_visualflow.errors import CodeExecutionError  # noqa: F401

__all__ = ["CodeExecutionError", "check_code", "run_code", "eval_expression"]
