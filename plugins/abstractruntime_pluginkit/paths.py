"""Paths into run variables, the one implementation every plugin uses: :func:`parse_path` and :func:`get_path`
(reading) here, :func:`set_path` and :func:`dict_at` (writing, which the kernel needs for ``result_key``) from
:mod:`abstractruntime.paths`.

A path is dotted (``a.b.0``), may index with brackets (``a.b[0]``, ``a["x.y"]``), or is a JSON pointer (``/a/b/0``).
Digit segments index lists; a mapping lookup takes them as string keys. Reading never changes the container.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Union

from abstractruntime.paths import PathError, dict_at, set_path

Segment = Union[str, int]
_MISSING: Any = object()


def parse_path(path: str) -> List[Segment]:
    """``a.b[0]``, ``a.0`` or ``/a/b/0`` -> ``["a", "b", 0]``; :class:`PathError` for a malformed path."""
    if not isinstance(path, str):
        raise PathError(f"path must be a string, got {type(path).__name__}")
    text = path.strip()
    if not text:
        return []
    if text.startswith("/"):
        return [_token(p.replace("~1", "/").replace("~0", "~")) for p in text[1:].split("/")]
    out: List[Segment] = []
    i, n, token = 0, len(text), ""
    while i < n:
        ch = text[i]
        if ch == ".":
            if token:
                out.append(_token(token))
                token = ""
            elif i == 0 or text[i - 1] != "]":
                raise PathError(f"Empty segment in path {path!r} at position {i}")
            i += 1
        elif ch == "[":
            if token:
                out.append(_token(token))
                token = ""
            end = text.find("]", i)
            if end < 0:
                raise PathError(f"Unclosed '[' in path {path!r}")
            inner = text[i + 1:end].strip()
            if inner.lstrip("-").isdigit():
                out.append(int(inner))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                out.append(inner[1:-1])
            else:
                raise PathError(f"Bad index [{inner}] in path {path!r}")
            i = end + 1
        else:
            token += ch
            i += 1
    if token:
        out.append(_token(token))
    return out


def _token(segment: str) -> Segment:
    return int(segment) if segment.isdigit() else segment


def format_path(segments: Sequence[Segment]) -> str:
    text = ""
    for seg in segments:
        text += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if text else str(seg))
    return text or "<root>"


def get_path(container: Any, path: Union[str, Sequence[Segment]], default: Any = _MISSING) -> Any:
    """The value at ``path``. A miss (or a malformed path) returns ``default`` if one is given, else raises
    :class:`PathError` with a message such as ``Missing key 'x' at scratchpad``."""
    try:
        segments = list(path) if isinstance(path, (list, tuple)) else parse_path(path)  # type: ignore[arg-type]
    except PathError:
        if default is not _MISSING:
            return default
        raise
    cur = container
    for i, seg in enumerate(segments):
        where = format_path(segments[:i])
        if isinstance(cur, Mapping):
            if str(seg) in cur:
                cur = cur[str(seg)]
                continue
            problem = f"Missing key '{seg}' at {where}"
        elif isinstance(cur, list):
            idx = seg if isinstance(seg, int) else (int(seg) if seg.lstrip("-").isdigit() else None)
            if idx is not None and -len(cur) <= idx < len(cur):
                cur = cur[idx]
                continue
            problem = (f"Index {idx} out of range at {where} (length {len(cur)})" if idx is not None
                       else f"Expected a list index at {where}, got '{seg}'")
        else:
            problem = f"Cannot look up '{seg}' in a {type(cur).__name__} at {where}"
        if default is not _MISSING:
            return default
        raise PathError(problem)
    return cur


__all__ = ["PathError", "Segment", "parse_path", "format_path", "get_path", "set_path", "dict_at"]
