"""The child process of a ``code`` / ``function`` node: runs one piece of user code under resource limits.

Started by :mod:`.code_sandbox` as ``python -I -S code_runner.py`` (isolated, without site-packages: it needs the
standard library only, so it starts fast), with an empty environment. It reads one JSON request on stdin -- the
code object compiled by the (trusted) parent (marshal, base64), whether RestrictedPython compiled it, what to call
with which input, and the limits -- sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (time, a backstop to the
parent's wall-clock timeout), ``RLIMIT_FSIZE`` = 0 (no file writes), ``RLIMIT_NPROC`` = 0 (no new processes) and
``RLIMIT_CORE`` = 0, runs the code, and writes one JSON answer on stdout: ``{"ok": true, "result", "printed"}`` or
``{"ok": false, "error_type", "error"}`` or ``{"ok": false, "limit": "memory" | "output", ...}``.

For RestrictedPython code it provides the full set of guards the compiled code calls (``_getattr_``,
``_getitem_``, ``_getiter_``, ``_iter_unpack_sequence_``, ``_unpack_sequence_``, ``_write_``, ``_inplacevar_``,
``_apply_``, ``_print_``, ``__metaclass__``) and the safe builtins. The sandboxed code sees Python's own exception
types (``AttributeError`` for a refused attribute, ...), which is why they are raised through :func:`_deny`.
"""

from __future__ import annotations

import binascii
import builtins
import json
import marshal
import math
import operator
import sys

#: attributes that lead to frames, code objects or the interpreter (RestrictedPython's INSPECT_ATTRIBUTES and more)
INSPECT_ATTRIBUTES = frozenset({
    "tb_frame", "tb_next", "f_back", "f_builtins", "f_code", "f_generator", "f_globals", "f_locals", "f_trace",
    "co_code", "gi_frame", "gi_code", "gi_yieldfrom", "cr_await", "cr_frame", "cr_code", "cr_origin", "ag_await",
    "ag_frame", "ag_code", "mro",
})
SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex", "dict", "divmod",
    "enumerate", "filter", "float", "frozenset", "hash", "hex", "int", "isinstance", "issubclass", "iter", "len",
    "list", "map", "max", "min", "next", "oct", "ord", "pow", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "AttributeError", "BaseException", "Exception", "IndexError", "KeyError",
    "LookupError", "MemoryError", "NameError", "NotImplementedError", "OverflowError", "RecursionError",
    "RuntimeError", "StopIteration", "TypeError", "UnicodeError", "ValueError", "ZeroDivisionError",
)
#: characters of printed text kept (it is only logged); with the JSON escapes it fits the parent's envelope
PRINTED_CAP = 8192
_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "^=": operator.ixor, "|=": operator.ior, "@=": operator.imatmul,
}


def _deny(kind: type, message: str) -> None:
    raise kind(message)


class SandboxClass(type):
    """The metaclass of the classes sandboxed code defines (``__metaclass__``): their instances may be written."""


def _safe_builtins(restricted: bool) -> dict:
    out = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
    out.update({"None": None, "True": True, "False": False, "math": math})
    if restricted:
        out["__build_class__"] = builtins.__build_class__  # class statements (RestrictedPython adds the metaclass)
    return out


def guarded_getattr(obj: object, name: str, *default: object) -> object:
    if type(name) is not str:
        _deny(TypeError, "attribute name must be a string")
    if name.startswith("_"):
        _deny(AttributeError, f'"{name}" is an invalid attribute name because it starts with "_"')
    if name in INSPECT_ATTRIBUTES:
        _deny(AttributeError, f'"{name}" is a restricted name, that is forbidden to access in sandboxed code')
    if name in ("format", "format_map") and (isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        _deny(NotImplementedError, "str.format() can read attributes and is not allowed in sandboxed code; use an "
                                   "f-string")
    return getattr(obj, name, *default)


def guarded_getitem(obj: object, key: object) -> object:
    return obj[key]  # type: ignore[index]


def guarded_write(obj: object) -> object:
    """Item and attribute writes: lists, dicts and the sandbox's own classes and their instances only."""
    if type(obj) in (dict, list) or isinstance(obj, SandboxClass) or isinstance(type(obj), SandboxClass):
        return obj
    _deny(TypeError, f"sandboxed code cannot change {type(obj).__name__} objects")
    return None


def inplacevar(op: str, target: object, value: object) -> object:
    fn = _INPLACE.get(op)
    if fn is None:
        _deny(TypeError, f"unsupported augmented assignment {op!r}")
    return fn(target, value)  # type: ignore[misc]


def apply(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    return fn(*args, **kwargs)


def guarded_unpack_sequence(it: object, spec: dict, getiter) -> list:  # type: ignore[no-untyped-def]
    items = list(getiter(it))
    if len(items) < spec["min_len"]:
        return items
    for index, child in spec["childs"]:
        items[index] = guarded_unpack_sequence(items[index], child, getiter)
    return items


def guarded_iter_unpack_sequence(it: object, spec: dict, getiter):  # type: ignore[no-untyped-def]
    for item in getiter(it):
        yield guarded_unpack_sequence(item, spec, getiter)


class Printed:
    """Where ``print`` writes (kept up to ``cap`` characters); ``printed`` returns the text so far."""

    def __init__(self, cap: int) -> None:
        self.parts: list = []
        self.size = 0
        self.cap = cap
        self.truncated = False

    def write(self, text: str) -> None:
        room = self.cap - self.size
        if len(text) > room:
            text, self.truncated = text[:max(room, 0)], True
        self.parts.append(text)
        self.size += len(text)

    def __call__(self) -> str:
        return "".join(self.parts)

    def _call_print(self, *objects: object, **kwargs: object) -> None:
        kwargs["file"] = self
        print(*objects, **kwargs)  # type: ignore[call-overload]


def _globals(request: dict, printed: Printed) -> dict:
    restricted = bool(request.get("restricted"))
    env = {"__builtins__": _safe_builtins(restricted), "__name__": "sandbox"}
    if restricted:
        env.update({
            "_getattr_": guarded_getattr, "_getitem_": guarded_getitem, "_getiter_": iter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence, "_unpack_sequence_": guarded_unpack_sequence,
            "_write_": guarded_write, "_inplacevar_": inplacevar, "_apply_": apply,
            "_print_": lambda *_a: printed, "__metaclass__": SandboxClass,
        })
    return env


def _limit(limits: dict) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX: the parent's wall-clock timeout still applies
        return
    memory = int(limits["memory_mb"]) * 1024 * 1024
    cpu = int(math.ceil(float(limits["timeout_s"]))) + 1
    for name, value in (("RLIMIT_AS", (memory, memory)), ("RLIMIT_CPU", (cpu, cpu + 1)), ("RLIMIT_FSIZE", (0, 0)),
                        ("RLIMIT_NPROC", (0, 0)), ("RLIMIT_CORE", (0, 0))):
        if hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), value)
            except (ValueError, OSError):  # e.g. a hard limit already lower: keep it
                pass


def execute(request: dict) -> tuple:
    """Run the request's code: ``(answer, result as JSON text or None)`` (everything but the process limits)."""
    limits = request["limits"]
    printed = Printed(min(int(limits["max_output_bytes"]), PRINTED_CAP))
    env = _globals(request, printed)
    code = marshal.loads(binascii.a2b_base64(request["code"]))
    try:
        if request["kind"] == "expression":
            env.update({k: v for k, v in (request.get("names") or {}).items() if not k.startswith("_")})
            result = eval(code, env)  # noqa: S307 - compiled by the parent under RestrictedPython (or opted in)
        else:
            exec(code, env)  # noqa: S102 - idem
            fn = env.get(request["function_name"])
            if not callable(fn):
                return {"ok": False, "error_type": "CodeExecutionError",
                        "error": f"the code defines no function '{request['function_name']}'"}, None
            result = fn(request.get("value"))
    except MemoryError:
        return {"ok": False, "limit": "memory"}, None
    except Exception as exc:  # the user's code raised: its error, as Python wrote it
        return {"ok": False, "error_type": type(exc).__name__, "error": str(exc)}, None
    try:
        text = json.dumps(result, ensure_ascii=True, allow_nan=False)
    except MemoryError:
        return {"ok": False, "limit": "memory"}, None
    except (TypeError, ValueError, RecursionError) as exc:
        return {"ok": False, "error_type": "NotJSON", "error": f"the result is not plain JSON: {exc}"}, None
    if len(text) > int(limits["max_output_bytes"]):
        return {"ok": False, "limit": "output", "size": len(text)}, None
    return {"ok": True, "printed": printed(), "printed_truncated": printed.truncated}, text


def _fallback(value: object) -> str:
    return f"<{type(value).__name__}>"


def answer_for(request: dict) -> str:
    """Set the limits, run the request, and return the JSON answer (in the process that runs the user's code)."""
    _limit(request["limits"])
    try:
        answer, result = execute(request)
        out = json.dumps(answer, ensure_ascii=True, default=_fallback)
        if result is not None:  # spliced in: the result is encoded once
            out = out[:-1] + ', "result": ' + result + "}"
    except MemoryError:
        out = '{"ok": false, "limit": "memory"}'
    return out


def main() -> None:
    out = answer_for(json.loads(sys.stdin.buffer.read()))
    sys.stdout.write(out)
    sys.stdout.flush()


# --- fork server ("zygote"): one forked child per request, no interpreter start-up per call --------------------------
def _read_exact(fd: int, n: int) -> "bytes | None":
    """``n`` bytes from ``fd``, or None at end of input (the parent closed the pipe: time to exit)."""
    import os

    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def zygote() -> None:
    """``code_runner.py --zygote``: serve requests from stdin until it closes. Per request (a 4-byte length and the
    JSON), fork a child -- in its own session, with the limits set before the user's code runs -- and frame on
    stdout: ``P`` + the child's pid (8 bytes, before the child may write), then the child's ``A`` + length + answer,
    then ``S`` + its wait status (8 bytes, signed). The zygote itself never runs user code: each child starts from
    its clean state. Only one request is served at a time."""
    import os
    import signal
    import struct

    try:  # imported once here, not in every child
        import resource  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        head = _read_exact(stdin, 4)
        request = _read_exact(stdin, struct.unpack(">I", head)[0]) if head is not None else None
        if request is None:
            return
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.close(go_write)
                os.close(stdin)
                while os.read(go_read, 1):  # until the zygote has announced this pid
                    pass
                os.setsid()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                out = answer_for(json.loads(request)).encode("ascii")
                _write_all(stdout, b"A" + struct.pack(">I", len(out)) + out)
            finally:
                os._exit(0)
        os.close(go_read)
        _write_all(stdout, b"P" + struct.pack(">q", pid))
        os.close(go_write)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        _write_all(stdout, b"S" + struct.pack(">q", code))


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        zygote()
    else:
        main()
