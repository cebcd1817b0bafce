"""``code`` and ``function`` nodes: user code, validated at compile time and run only inside a sandbox.

Reference defect §17 #19: the reference falls back to plain ``exec`` when RestrictedPython is missing. Here a code
node runs with RestrictedPython when it is installed; without it the node refuses to run (the run completes with
``{"success": false, "error": ...}``) unless the host opts in explicitly with the environment variable
``ABSTRACTRUNTIME_VISUALFLOW_UNSANDBOXED_CODE=1`` (trusted flows only: the fallback is *not* a sandbox).
"""

from __future__ import annotations

import ast
import os
from typing import Any, Dict, List

from ..errors import CodeExecutionError
from ..nodetypes import VisualNodeType

_FORBIDDEN_CALLS = frozenset({"exec", "eval", "compile", "__import__", "open", "globals", "locals",
                              "getattr", "setattr", "delattr", "breakpoint"})
_SAFE_BUILTINS = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
    for name in ("abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int", "isinstance", "len",
                 "list", "map", "max", "min", "range", "reversed", "round", "set", "sorted", "str", "sum", "tuple",
                 "zip", "ValueError", "TypeError", "KeyError", "Exception")
}
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


def _compile_restricted(source: str, mode: str, filename: str) -> Any:
    from RestrictedPython import compile_restricted, safe_globals  # type: ignore
    from RestrictedPython.Eval import default_guarded_getitem  # type: ignore
    from RestrictedPython.Guards import guarded_iter_unpack_sequence, safer_getattr  # type: ignore

    code = compile_restricted(source, filename=filename, mode=mode)
    env = dict(safe_globals)
    env["__builtins__"] = {**env.get("__builtins__", {}), **_SAFE_BUILTINS}
    env.update({"_getitem_": default_guarded_getitem, "_getattr_": safer_getattr,
                "_getiter_": iter, "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
                "_write_": lambda obj: obj})
    return code, env


def run_code(source: str, function_name: str, value: Any, *, where: str) -> Any:
    check_code(source, where=where)
    mode = _require_sandbox(where)
    if mode == "restricted":
        code, env = _compile_restricted(source, "exec", f"<{where}>")
    else:
        code, env = compile(source, f"<{where}>", "exec"), {"__builtins__": dict(_SAFE_BUILTINS)}
    exec(code, env)  # noqa: S102 - sandboxed (RestrictedPython) or explicitly opted in
    fn = env.get(function_name)
    if not callable(fn):
        raise CodeExecutionError(f"{where}: the code defines no function '{function_name}'")
    return fn(value)


def eval_expression(expression: str, names: Dict[str, Any], *, where: str) -> Any:
    check_code(expression, where=where)
    mode = _require_sandbox(where)
    if mode == "restricted":
        code, env = _compile_restricted(expression, "eval", f"<{where}>")
    else:
        code, env = compile(expression, f"<{where}>", "eval"), {"__builtins__": {}}
    env.update(names)
    return eval(code, env)  # noqa: S307 - sandboxed (RestrictedPython) or explicitly opted in


def _clean(inputs: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in inputs.items() if not (isinstance(k, str) and k.startswith("_"))}


def _code_handler(d: Dict[str, Any], ctx: Any) -> Any:
    data = ctx.data
    source = data.get("code")
    name = data.get("functionName") or "transform"
    return run_code(str(source or ""), str(name), _clean(d), where=f"code node '{ctx.node_id}'")


def _function_handler(d: Dict[str, Any], ctx: Any) -> Any:
    data = ctx.data
    inputs = _clean(d)
    if isinstance(data.get("code"), str) and data["code"].strip():
        return run_code(data["code"], str(data.get("functionName") or "transform"), inputs,
                        where=f"function node '{ctx.node_id}'")
    expression = data.get("expression")
    if isinstance(expression, str) and expression.strip():
        names = {k: v for k, v in inputs.items() if isinstance(k, str) and k.isidentifier()}
        names.setdefault("x", inputs.get("x", inputs.get("value")))
        names.setdefault("input", inputs)
        try:
            return eval_expression(expression, names, where=f"function node '{ctx.node_id}'")
        except CodeExecutionError:
            raise
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
    return inputs


def _validate(info: Any) -> None:
    data = info.data
    where = f"{info.node_type} node '{info.node_id}'"
    if isinstance(data.get("code"), str) and data["code"].strip():
        check_code(data["code"], where=where)
    elif info.node_type == "function" and isinstance(data.get("expression"), str) and data["expression"].strip():
        check_code(data["expression"], where=where)


def code_node_types() -> List[VisualNodeType]:
    return [
        VisualNodeType("code", handler=_code_handler, context=True, validate=_validate,
                       description="User code `transform(input)`; needs RestrictedPython (or an explicit opt-in)"),
        VisualNodeType("function", handler=_function_handler, context=True, validate=_validate,
                       description="`expression` or `code`; same sandbox rule as code nodes"),
    ]


__all__ = ["code_node_types", "check_code", "run_code", "eval_expression", "UNSANDBOXED_ENV"]
