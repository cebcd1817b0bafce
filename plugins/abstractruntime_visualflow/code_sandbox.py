"""Running a ``code`` / ``function`` node's code: compiled here, executed in a child process under limits.

The parent (this module) compiles the code -- with RestrictedPython when it is installed (its policy, plus a rewrite
of augmented assignments to attributes and items, which RestrictedPython refuses, into guarded plain statements),
else, when the host opted in, with plain ``compile`` -- and sends the code object to a fresh
``python -I -S code_runner.py`` process (:mod:`.code_runner`) with the input as JSON. The child sets its memory
and CPU limits before it runs anything of the user's, and answers with JSON. The parent enforces a wall-clock
timeout (it kills the child) and caps what it reads. Nothing of the user's code ever runs in the runtime's process.

Limits (:class:`CodeLimits`) come from ``[abstractruntime.plugin_options.visualflow]`` (``code_timeout_s``,
``code_memory_mb``, ``code_max_output_bytes``); a node may lower them (``data.timeoutS``, ``data.memoryMb``,
``data.maxOutputBytes``), never raise them. Each call costs one ``fork`` of a pooled fork server
(:mod:`.code_zygote`, about a millisecond); where there is none (not POSIX), one process start (20-25 ms).
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import marshal
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import attrs
from attrs import field, frozen

from abstractruntime.logs import get_logger

from . import code_zygote
from .errors import CodeExecutionError, CodeLimitError, CodeRaisedError

log = get_logger("abstractruntime.visualflow")

RUNNER = Path(__file__).resolve().with_name("code_runner.py")
OPTIONS = "[abstractruntime.plugin_options.visualflow]"
_STDERR_CAP = 16 * 1024
_ENVELOPE = 128 * 1024  # room for the answer's other fields around the result (printed text: at most ~100 KB)
_NODE_KEYS = {"timeoutS": "timeout_s", "memoryMb": "memory_mb", "maxOutputBytes": "max_output_bytes"}


@frozen
class CodeLimits:
    """What one run of a code node may use: wall-clock seconds, address-space megabytes, answer bytes."""

    timeout_s: float = field(default=5.0, validator=attrs.validators.gt(0))
    memory_mb: int = field(default=256, validator=attrs.validators.ge(32))
    max_output_bytes: int = field(default=1_000_000, validator=attrs.validators.ge(1))

    def lowered_by(self, data: Any, *, where: str) -> "CodeLimits":
        """These limits, lowered by a node's ``timeoutS`` / ``memoryMb`` / ``maxOutputBytes`` (a node can only lower
        them: the host's limits bound every flow). Raises :class:`CodeExecutionError` for a bad value."""
        changes: Dict[str, Any] = {}
        for key, name in _NODE_KEYS.items():
            value = data.get(key) if isinstance(data, dict) else None
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise CodeExecutionError(f"{where}: {key} must be a positive number, got {value!r}")
            current = getattr(self, name)
            changes[name] = min(current, type(current)(value))
        try:
            return attrs.evolve(self, **changes)
        except ValueError as exc:
            raise CodeExecutionError(f"{where}: {exc}") from None


# --- compiling ------------------------------------------------------------------------------------------------------
class _AugmentedTargets(ast.NodeTransformer):
    """``obj.attr += v`` and ``obj[key] += v`` as plain statements on temporaries (each part evaluated once, in
    Python's order); RestrictedPython then guards every read and write of them as usual."""

    def __init__(self) -> None:
        self.count = 0

    def _tmp(self) -> str:
        self.count += 1
        return f"augassign_tmp_{self.count}"

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        target = node.target
        if not isinstance(target, (ast.Attribute, ast.Subscript)):
            return node
        obj, val = self._tmp(), self._tmp()
        stmts: List[ast.stmt] = [ast.Assign(targets=[ast.Name(obj, ast.Store())], value=target.value)]
        if isinstance(target, ast.Attribute):
            def ref(ctx: ast.expr_context) -> ast.expr:
                return ast.Attribute(value=ast.Name(obj, ast.Load()), attr=target.attr, ctx=ctx)
        else:
            index = target.slice
            if isinstance(index, ast.Slice):
                parts = {}
                for part in ("lower", "upper", "step"):
                    expr = getattr(index, part)
                    if expr is not None:
                        parts[part] = self._tmp()
                        stmts.append(ast.Assign(targets=[ast.Name(parts[part], ast.Store())], value=expr))
                key: Any = lambda: ast.Slice(**{p: ast.Name(n, ast.Load()) for p, n in parts.items()})  # noqa: E731
            else:
                name = self._tmp()
                stmts.append(ast.Assign(targets=[ast.Name(name, ast.Store())], value=index))
                key = lambda: ast.Name(name, ast.Load())  # noqa: E731

            def ref(ctx: ast.expr_context) -> ast.expr:
                return ast.Subscript(value=ast.Name(obj, ast.Load()), slice=key(), ctx=ctx)
        stmts += [ast.Assign(targets=[ast.Name(val, ast.Store())], value=ref(ast.Load())),
                  ast.AugAssign(target=ast.Name(val, ast.Store()), op=node.op, value=node.value),
                  ast.Assign(targets=[ref(ast.Store())], value=ast.Name(val, ast.Load()))]
        for stmt in stmts:
            ast.copy_location(stmt, node)
        return stmts


@functools.lru_cache(maxsize=256)
def compile_code(source: str, mode: str, restricted: bool, filename: str) -> bytes:
    """The marshalled code object of ``source`` (``mode`` ``exec`` or ``eval``). Raises CodeExecutionError."""
    try:
        tree = ast.parse(source, filename, mode)
    except SyntaxError as exc:
        raise CodeExecutionError(f"{filename.strip('<>')}: syntax error: {exc.msg} (line {exc.lineno})") from None
    if not restricted:
        return marshal.dumps(compile(tree, filename, mode))
    from RestrictedPython import compile_restricted  # type: ignore

    tree = ast.fix_missing_locations(_AugmentedTargets().visit(tree))
    try:
        with warnings.catch_warnings():  # e.g. "Prints, but never reads 'printed' variable": prints are logged
            warnings.simplefilter("ignore", SyntaxWarning)
            code = compile_restricted(tree, filename=filename, mode=mode)
    except SyntaxError as exc:
        raise CodeExecutionError(f"{filename.strip('<>')}: refused by the sandbox: {exc}") from None
    return marshal.dumps(code)


# --- running ------------------------------------------------------------------------------------------------------
def _reader(stream: Any, cap: int, sink: List[bytes], overflow: Optional[threading.Event], proc: Any) -> None:
    """Read ``stream`` into ``sink`` up to ``cap`` bytes; past it, kill the child (``overflow`` given: stdout) or
    drop the rest (stderr)."""
    total = 0
    try:
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                return
            keep = chunk[: max(cap - total, 0)]
            sink.append(keep)
            total += len(keep)
            if len(keep) < len(chunk) and overflow is not None:
                overflow.set()
                _kill(proc)
                return
    except (OSError, ValueError):
        return


def _writer(stream: Any, data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except (OSError, ValueError):  # the child died before reading everything: its exit status says why
        pass


def _kill(proc: Any) -> None:
    if proc.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the child and anything it started
        else:  # pragma: no cover
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _child_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if k == "SYSTEMROOT"}  # Windows needs it to start Python


def _spawn(request: bytes, limits: CodeLimits, where: str) -> Dict[str, Any]:
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(RUNNER)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(),
                                cwd=tempfile.gettempdir(), close_fds=True, start_new_session=(os.name == "posix"))
    except OSError as exc:
        raise CodeExecutionError(f"{where}: cannot start the process that runs the code ({sys.executable!r} "
                                 f"{RUNNER}): {exc}") from None
    out: List[bytes] = []
    err: List[bytes] = []
    overflow = threading.Event()
    threads = [threading.Thread(target=_writer, args=(proc.stdin, request), daemon=True),
               threading.Thread(target=_reader, args=(proc.stdout, limits.max_output_bytes + _ENVELOPE, out,
                                                      overflow, proc), daemon=True),
               threading.Thread(target=_reader, args=(proc.stderr, _STDERR_CAP, err, None, proc), daemon=True)]
    deadline = time.monotonic() + limits.timeout_s
    for t in threads:
        t.start()
    try:
        threads[1].join(limits.timeout_s)  # the answer ends with the child's stdout (no polling of the process)
        timed_out = threads[1].is_alive()
        if not timed_out:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0) + 0.1)
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _kill(proc)
            proc.wait()
    finally:
        if proc.returncode is None:  # interrupted (KeyboardInterrupt): never leave the child behind
            _kill(proc)
            proc.wait()
    for t in threads:
        t.join(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    return {"stdout": b"".join(out), "stderr": b"".join(err)[-2000:].decode("utf-8", "replace"),
            "returncode": proc.returncode, "timed_out": timed_out, "overflow": overflow.is_set()}


def _limit_error(where: str, limit: str, limits: CodeLimits) -> CodeLimitError:
    text = {
        "time": f"exceeded its time limit of {limits.timeout_s:g} s: raise {OPTIONS} code_timeout_s (a node's "
                f"data.timeoutS can only lower it)",
        "memory": f"exceeded its memory limit of {limits.memory_mb} MB: raise {OPTIONS} code_memory_mb (a node's "
                  f"data.memoryMb can only lower it)",
        "output": f"returned more than its output limit of {limits.max_output_bytes} bytes: raise {OPTIONS} "
                  f"code_max_output_bytes (a node's data.maxOutputBytes can only lower it)",
    }[limit]
    return CodeLimitError(f"{where}: {text}", limit=limit)


def run_in_child(*, code: bytes, restricted: bool, kind: str, limits: CodeLimits, where: str,
                 function_name: str = "transform", value: Any = None,
                 names: Optional[Dict[str, Any]] = None) -> Any:
    """Run compiled ``code`` (``kind`` ``function``: call ``function_name(value)``; ``expression``: evaluate it
    with ``names``) in a child process under ``limits``; its JSON result, or a :class:`CodeExecutionError`."""
    try:
        request = json.dumps({
            "code": base64.b64encode(code).decode("ascii"), "restricted": restricted, "kind": kind,
            "function_name": function_name, "value": value, "names": names or {},
            "limits": attrs.asdict(limits)}, ensure_ascii=True, allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise CodeExecutionError(f"{where}: its input is not plain JSON: {exc}") from None
    # a forked child of a pooled zygote (about 1 ms), else a one-shot child (an interpreter start-up, ~20 ms)
    done = code_zygote.run(request, limits.timeout_s, limits.max_output_bytes + _ENVELOPE)
    if done is None:
        done = _spawn(request, limits, where)
    rc = done["returncode"]
    if done["timed_out"] or (os.name == "posix" and rc == -getattr(signal, "SIGXCPU", -999)):
        raise _limit_error(where, "time", limits)
    if done["overflow"]:
        raise _limit_error(where, "output", limits)
    try:
        answer = json.loads(done["stdout"]) if done["stdout"] else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if "MemoryError" in done["stderr"] or "Cannot allocate memory" in done["stderr"]:
            raise _limit_error(where, "memory", limits)
        raise CodeExecutionError(f"{where}: the code's process ended without an answer (exit status {rc}): "
                                 f"{done['stderr'].strip()[-500:] or 'no message'}")
    if answer.get("limit") in ("memory", "output"):
        raise _limit_error(where, answer["limit"], limits)
    if not answer.get("ok"):
        error_type, error = str(answer.get("error_type") or "Error"), str(answer.get("error") or "")
        raise CodeRaisedError(f"{where}: {error_type}: {error}", error_type=error_type, error=error)
    if answer.get("printed"):
        log.debug("visualflow_code_printed", where=where, printed=answer["printed"],
                  truncated=bool(answer.get("printed_truncated")))
    return answer.get("result")


__all__ = ["CodeLimits", "compile_code", "run_in_child", "RUNNER"]
