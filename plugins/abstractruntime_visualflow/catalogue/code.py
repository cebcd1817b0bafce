"""``code`` and ``function`` nodes: user code, validated at compile time and run only inside a sandbox.

Reference defect §17 #19: the reference falls back to plain ``exec`` when RestrictedPython is missing. Here a code
node runs with RestrictedPython when it is installed; without it the node refuses to run (the run completes with
``{"success": false, "error": ...}``) unless the host opts in explicitly with the environment variable
``ABSTRACTRUNTIME_VISUALFLOW_UNSANDBOXED_CODE=1`` (trusted flows only: the fallback is *not* a sandbox).

Either way the code runs in a child process under a time, memory and output limit (:mod:`..code_sandbox`), never
in the runtime's process; going over a limit fails the node with a message that names the limit and its option.
"""

from __future__ import annotations

import ast
import os
from typing import Any, Dict, List

from ..code_runner import INSPECT_ATTRIBUTES
from ..code_sandbox import CodeLimits, compile_code, run_in_child
from ..errors import CodeExecutionError, CodeRaisedError
from ..nodetypes import VisualNodeType

_FORBIDDEN_CALLS = frozenset({"exec", "eval", "compile", "__import__", "open", "globals", "locals",
                              "getattr", "setattr", "delattr", "breakpoint"})
#: attributes that read other attributes by name (``"{0.gi_frame}".format(g)``)
_FORMAT_ATTRIBUTES = frozenset({"format", "format_map"})
UNSANDBOXED_ENV = "ABSTRACTRUNTIME_VISUALFLOW_UNSANDBOXED_CODE"


def check_code(source: str, *, where: str = "code") -> ast.AST:
    """Parse and reject imports, exec/eval/compile/__import__ (and friends) and dunder names/attributes."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise CodeExecutionError(f"{where}: syntax error: {exc.msg} (line {exc.lineno})") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise CodeExecutionError(f"{where}: imports are not allowed")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise CodeExecutionError(f"{where}: access to private/dunder attribute '{node.attr}' is not allowed")
        if isinstance(node, ast.Attribute) and node.attr in INSPECT_ATTRIBUTES:
            raise CodeExecutionError(f"{where}: access to the frame/code attribute '{node.attr}' is not allowed")
        if isinstance(node, ast.Attribute) and node.attr in _FORMAT_ATTRIBUTES:
            raise CodeExecutionError(f"{where}: '.{node.attr}()' is not allowed (it can read attributes); use an "
                                     f"f-string")
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise CodeExecutionError(f"{where}: dunder name '{node.id}' is not allowed")
            if node.id in _FORBIDDEN_CALLS:
                raise CodeExecutionError(f"{where}: '{node.id}' is not allowed")
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            raise CodeExecutionError(f"{where}: global/nonlocal statements are not allowed")
    return tree


def _sandbox_available() -> bool:
    try:
        import RestrictedPython  # noqa: F401
    except ImportError:
        return False
    return True


def _unsandboxed_allowed() -> bool:
    return os.environ.get(UNSANDBOXED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _require_sandbox(where: str) -> str:
    if _sandbox_available():
        return "restricted"
    if _unsandboxed_allowed():
        return "unsandboxed"
    raise CodeExecutionError(
        f"{where}: code nodes need a sandbox: install RestrictedPython (pip install RestrictedPython), or set "
        f"{UNSANDBOXED_ENV}=1 to run trusted flows without one")


def run_code(source: str, function_name: str, value: Any, *, where: str,
             limits: CodeLimits = CodeLimits()) -> Any:
    """``function_name(value)`` of ``source``, run in a child process under ``limits``."""
    check_code(source, where=where)
    restricted = _require_sandbox(where) == "restricted"
    code = compile_code(source, "exec", restricted, f"<{where}>")
    return run_in_child(code=code, restricted=restricted, kind="function", function_name=function_name,
                        value=value, limits=limits, where=where)


def eval_expression(expression: str, names: Dict[str, Any], *, where: str,
                    limits: CodeLimits = CodeLimits()) -> Any:
    """``expression`` evaluated with ``names``, in a child process under ``limits``."""
    check_code(expression, where=where)
    restricted = _require_sandbox(where) == "restricted"
    code = compile_code(expression, "eval", restricted, f"<{where}>")
    return run_in_child(code=code, restricted=restricted, kind="expression", limits=limits, where=where,
                        names={k: v for k, v in names.items() if isinstance(k, str) and not k.startswith("_")})


def _clean(inputs: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in inputs.items() if not (isinstance(k, str) and k.startswith("_"))}


def _code_handler(limits: CodeLimits) -> Any:
    def handler(d: Dict[str, Any], ctx: Any) -> Any:
        data = ctx.data
        where = f"code node '{ctx.node_id}'"
        return run_code(str(data.get("code") or ""), str(data.get("functionName") or "transform"), _clean(d),
                        where=where, limits=limits.lowered_by(data, where=where))
    return handler


def _function_handler(limits: CodeLimits) -> Any:
    def handler(d: Dict[str, Any], ctx: Any) -> Any:
        data = ctx.data
        where = f"function node '{ctx.node_id}'"
        inputs = _clean(d)
        if isinstance(data.get("code"), str) and data["code"].strip():
            return run_code(data["code"], str(data.get("functionName") or "transform"), inputs, where=where,
                            limits=limits.lowered_by(data, where=where))
        expression = data.get("expression")
        if isinstance(expression, str) and expression.strip():
            names = {k: v for k, v in inputs.items() if isinstance(k, str) and k.isidentifier()}
            names.setdefault("x", inputs.get("x", inputs.get("value")))
            names.setdefault("input", inputs)
            try:
                return eval_expression(expression, names, where=where, limits=limits.lowered_by(data, where=where))
            except CodeRaisedError as exc:  # the expression raised: an error output (limits fail the node)
                return {"error": f"{exc.error_type}: {exc.error}"}
        return inputs
    return handler


def _validate(info: Any) -> None:
    data = info.data
    where = f"{info.node_type} node '{info.node_id}'"
    CodeLimits().lowered_by(data, where=where)
    if isinstance(data.get("code"), str) and data["code"].strip():
        check_code(data["code"], where=where)
    elif info.node_type == "function" and isinstance(data.get("expression"), str) and data["expression"].strip():
        check_code(data["expression"], where=where)


def code_node_types(limits: CodeLimits = CodeLimits()) -> List[VisualNodeType]:
    """The ``code`` and ``function`` node types, running code under ``limits`` (the host's: plugin options)."""
    return [
        VisualNodeType("code", handler=_code_handler(limits), context=True, validate=_validate,
                       description="User code `transform(input)`; needs RestrictedPython (or an explicit opt-in)"),
        VisualNodeType("function", handler=_function_handler(limits), context=True, validate=_validate,
                       description="`expression` or `code`; same sandbox rule as code nodes"),
    ]


__all__ = ["code_node_types", "check_code", "run_code", "eval_expression", "UNSANDBOXED_ENV", "CodeLimits"]
