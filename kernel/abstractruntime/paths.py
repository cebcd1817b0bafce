"""Writing into run variables at a dotted path (``result_key`` is one); reading paths is the plugin kit's."""

from __future__ import annotations

from typing import Any, Dict

from .errors import AbstractRuntimeError


class PathError(AbstractRuntimeError, KeyError, ValueError):
    """A path is malformed or does not resolve (missing key, index out of range, ...)."""


def dict_at(target: Dict[str, Any], dotted: str) -> Dict[str, Any]:
    """The dict at a dotted path of ``target``, created (with its missing or non-dict parents) if needed."""
    cur = target
    for part in [p for p in dotted.split(".") if p]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    return cur


def set_path(target: Dict[str, Any], dotted: str, value: Any) -> None:
    """Write ``value`` at a dotted path in ``target``; missing or non-dict intermediates become new dicts."""
    parts = [p for p in dotted.split(".") if p] if isinstance(dotted, str) else []
    if not parts:
        raise PathError(f"Cannot write at an empty path ({dotted!r})")
    dict_at(target, ".".join(parts[:-1]))[parts[-1]] = value


__all__ = ["PathError", "set_path", "dict_at"]
