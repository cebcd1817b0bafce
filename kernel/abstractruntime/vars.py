"""Run-variable namespaces, limits helpers and the VARS_QUERY path language (reference ``core.vars``)."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional, Union

from .models import DEFAULT_MAX_TOKENS, RuntimeConfig

CONTEXT = "context"
SCRATCHPAD = "scratchpad"
RUNTIME = "_runtime"
TEMP = "_temp"
LIMITS = "_limits"
NODE_TRACES = "node_traces"

_NAMESPACES = (CONTEXT, SCRATCHPAD, RUNTIME, TEMP)


def ensure_namespaces(vars: Dict[str, Any]) -> Dict[str, Any]:
    """Replace a missing or non-dict ``context``/``scratchpad``/``_runtime``/``_temp`` with ``{}``."""
    for name in _NAMESPACES:
        if not isinstance(vars.get(name), dict):
            vars[name] = {}
    return vars


def get_namespace(vars: Dict[str, Any], name: str) -> Dict[str, Any]:
    ns = vars.get(name)
    if not isinstance(ns, dict):
        ns = {}
        vars[name] = ns
    return ns


def get_context(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, CONTEXT)


def get_scratchpad(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, SCRATCHPAD)


def get_runtime(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, RUNTIME)


def get_temp(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, TEMP)


def clear_temp(vars: Dict[str, Any]) -> None:
    vars[TEMP] = {}


def ensure_limits(vars: Dict[str, Any], config: Optional[RuntimeConfig] = None) -> Dict[str, Any]:
    """``vars["_limits"]``, created with the defaults (or ``config``'s) when missing; missing keys filled in."""
    limits = vars.get(LIMITS)
    defaults = (config or RuntimeConfig()).to_limits_dict()
    if not isinstance(limits, dict):
        limits = defaults
        vars[LIMITS] = limits
    else:
        for key, value in defaults.items():
            limits.setdefault(key, value)
    return limits


get_limits = ensure_limits


def get_node_traces(vars: Dict[str, Any]) -> Dict[str, Any]:
    """Traces stored in vars by reference runs (``_runtime.node_traces``); ``Runtime.get_node_traces`` derives
    them from the ledger instead."""
    runtime_ns = vars.get(RUNTIME)
    traces = runtime_ns.get(NODE_TRACES) if isinstance(runtime_ns, dict) else None
    return copy.deepcopy(traces) if isinstance(traces, dict) else {}


def get_node_trace(vars: Dict[str, Any], node_id: str) -> Dict[str, Any]:
    return get_node_traces(vars).get(node_id) or {"node_id": node_id, "steps": []}


# --- the VARS_QUERY path language ---------------------------------------------------------------------------

Segment = Union[str, int]


def parse_vars_path(path: str) -> List[Segment]:
    """``a.b[0]``, ``a.0`` or a JSON pointer ``/a/b/0`` -> ``["a", "b", 0]`` (digit segments become ints; a dict
    lookup accepts them as keys). Raises ``ValueError`` for a malformed path."""
    if not isinstance(path, str):
        raise ValueError(f"path must be a string, got {type(path).__name__}")
    text = path.strip()
    if not text:
        return []
    if text.startswith("/"):
        return [_token(p.replace("~1", "/").replace("~0", "~")) for p in text[1:].split("/")]
    out: List[Segment] = []
    i, n = 0, len(text)
    token = ""
    while i < n:
        ch = text[i]
        if ch == ".":
            if token:
                out.append(_token(token))
                token = ""
            elif i == 0 or text[i - 1] != "]":
                raise ValueError(f"Empty segment in path {path!r} at position {i}")
            i += 1
        elif ch == "[":
            if token:
                out.append(_token(token))
                token = ""
            end = text.find("]", i)
            if end < 0:
                raise ValueError(f"Unclosed '[' in path {path!r}")
            inner = text[i + 1:end].strip()
            if inner.lstrip("-").isdigit():
                out.append(int(inner))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                out.append(inner[1:-1])
            else:
                raise ValueError(f"Bad index [{inner}] in path {path!r}")
            i = end + 1
        else:
            token += ch
            i += 1
    if token:
        out.append(_token(token))
    return out


def _token(segment: str) -> Segment:
    return int(segment) if segment.isdigit() else segment


def _fmt(segments: List[Segment]) -> str:
    text = ""
    for seg in segments:
        text += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if text else str(seg))
    return text or "<root>"


class VarsPathError(KeyError, ValueError):
    """A path does not resolve (missing key, index out of range, ...)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def resolve_vars_path(vars: Mapping[str, Any], path: Union[str, List[Segment]]) -> Any:
    """The value at ``path`` (a string, or tokens from :func:`parse_vars_path`); :class:`VarsPathError` (a
    ``KeyError`` and a ``ValueError``) with a message such as ``Missing key 'x' at scratchpad``."""
    segments = list(path) if isinstance(path, (list, tuple)) else parse_vars_path(path)
    cur: Any = vars
    for i, seg in enumerate(segments):
        where = _fmt(segments[:i])
        if isinstance(cur, Mapping):
            key = str(seg)
            if key not in cur:
                raise VarsPathError(f"Missing key '{key}' at {where}")
            cur = cur[key]
        elif isinstance(cur, list):
            try:
                idx = int(seg)
            except (TypeError, ValueError):
                raise VarsPathError(f"Expected a list index at {where}, got '{seg}'") from None
            if not -len(cur) <= idx < len(cur):
                raise VarsPathError(f"Index {idx} out of range at {where} (length {len(cur)})")
            cur = cur[idx]
        else:
            raise VarsPathError(f"Cannot look up '{seg}' in a {type(cur).__name__} at {where}")
    return cur


__all__ = [
    "CONTEXT", "SCRATCHPAD", "RUNTIME", "TEMP", "LIMITS", "NODE_TRACES", "DEFAULT_MAX_TOKENS",
    "ensure_namespaces", "get_namespace", "get_context", "get_scratchpad", "get_runtime", "get_temp",
    "clear_temp", "get_limits", "ensure_limits", "get_node_traces", "get_node_trace", "parse_vars_path",
    "resolve_vars_path", "VarsPathError",
]
