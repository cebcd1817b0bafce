"""Parsing JSON that comes from outside (flows, bundles, resume payloads, history files, MCP requests) with a bound
on its nesting depth.

The stdlib parser recurses once per nesting level: ``"[" * 100_000`` raises ``RecursionError`` (and can take a
process down). :func:`loads_bounded` measures the depth first with a cheap scan that does not recurse (brackets
outside strings) and refuses too-deep text with :class:`JsonTooDeepError` before any parser sees it.
:func:`check_value_depth` does the same for a Python value (a dict given instead of text).

Limits: :data:`DEFAULT_MAX_DEPTH` (200) is far beyond real flows and payloads, and below what the stores can keep:
the store encoder (orjson) refuses values nested more than 254 levels deep in a whole run or ledger record.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any, Union

from abstractruntime.errors import ValidationError

DEFAULT_MAX_DEPTH = 200
#: the deepest limit a caller may ask for (the stdlib parser needs one Python frame per level)
HARD_MAX_DEPTH = 900

#: every byte but brackets and quotes (deleted to get the "skeleton" of a text)
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = {91: 1, 123: 1, 93: -1, 125: -1}  # [ { ] }


class JsonTooDeepError(ValidationError):
    """JSON (or a JSON-like value) is nested deeper than the limit; it was refused before being parsed or used.
    A ``ValueError``, like a parse error."""

    def __init__(self, *, what: str, depth: int, max_depth: int, at_least: bool = False) -> None:
        super().__init__(f"{what} is nested {depth}{'+' if at_least else ''} levels deep; the limit is {max_depth} "
                         f"levels (flatten the data, or keep deep documents as a string or an artifact)")
        self.what = what
        self.depth = depth
        self.max_depth = max_depth


def _limit(max_depth: Any) -> int:
    if type(max_depth) is not int or not 1 <= max_depth <= HARD_MAX_DEPTH:
        raise ValidationError(f"max_depth must be an integer from 1 to {HARD_MAX_DEPTH}, got {max_depth!r}")
    return max_depth


def json_text_depth(text: Union[str, bytes, bytearray]) -> int:
    """The nesting depth of JSON text (0 for a scalar), measured without parsing or recursing.

    Brackets inside strings do not count; the text need not be valid JSON (then the result is an estimate)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    # escaped backslashes, then escaped quotes, go first: every quote left opens or closes a string
    data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # keep brackets and quotes only; dropping adjacent quote pairs keeps every bracket inside or outside a string
    skeleton = data.translate(None, _NOT_SKELETON).replace(b'""', b"")
    outside = b"".join(skeleton.split(b'"')[::2]) if b'"' in skeleton else skeleton
    return max(accumulate(map(_STEP.__getitem__, outside)), default=0)


def check_text_depth(text: Union[str, bytes, bytearray], *, max_depth: int = DEFAULT_MAX_DEPTH,
                     what: str = "JSON") -> None:
    """Raise :class:`JsonTooDeepError` if ``text`` nests deeper than ``max_depth``."""
    limit = _limit(max_depth)
    if isinstance(text, str):
        opening = text.count("[") + text.count("{")
    else:
        opening = text.count(b"[") + text.count(b"{")
    if opening <= limit:  # cannot be deeper: no need to scan
        return
    depth = json_text_depth(text)
    if depth > limit:
        raise JsonTooDeepError(what=what, depth=depth, max_depth=limit)


def loads_bounded(text: Union[str, bytes, bytearray], *, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "JSON",
                  **kwargs: Any) -> Any:
    """``json.loads(text, **kwargs)`` for text from outside: :class:`JsonTooDeepError` (a ``ValueError``) if it
    nests deeper than ``max_depth``, checked before parsing; parse errors are ``json.JSONDecodeError`` as usual
    (bytes that are not UTF-8 raise ``UnicodeDecodeError``, also a ``ValueError``)."""
    check_text_depth(text, max_depth=max_depth, what=what)
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # only if the caller's own stack is already deep: still a refusal, not a crash
        raise ValidationError(f"{what} is too deeply nested to parse here ({json_text_depth(text)} levels); "
                              f"call from a shallower stack or lower max_depth") from None


def value_depth(value: Any, *, stop_after: int) -> int:
    """The nesting depth of a Python value (dicts, lists and tuples count; 0 for a scalar), walked without
    recursion. The walk stops as soon as the depth exceeds ``stop_after`` (and returns that depth); a container
    that contains itself counts as deeper than ``stop_after``."""
    deepest = 0
    stack = [(value, 1)]
    on_path: set = set()
    exits: list = []
    while stack:
        item, depth = stack.pop()
        while exits and exits[-1][1] >= depth:  # leaving containers no longer on the path
            on_path.discard(exits.pop()[0])
        t = type(item)
        if not (t is dict or t is list or t is tuple or isinstance(item, (dict, list, tuple))):
            continue
        if id(item) in on_path:
            return stop_after + 1
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        on_path.add(id(item))
        exits.append((id(item), depth))
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return deepest


_PLAIN = (dict, list, tuple)


def _within(value: Any, room: int) -> bool:
    """Fast path: True if plain dicts/lists/tuples nest at most ``room`` levels below ``value`` (recursion bounded
    by ``room``); False means "let :func:`value_depth` decide" (too deep, a cycle, or a container subclass)."""
    values = value.values() if type(value) is dict else value
    if room <= 0:
        return False
    for v in values:
        t = type(v)
        if t is dict or t is list or t is tuple:
            if not _within(v, room - 1):
                return False
        elif isinstance(v, _PLAIN) and not isinstance(v, (str, bytes)):
            return False
    return True


def check_value_depth(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "the value") -> None:
    """Raise :class:`JsonTooDeepError` if ``value`` nests dicts/lists deeper than ``max_depth``."""
    limit = _limit(max_depth)
    if type(value) not in _PLAIN:
        if not isinstance(value, _PLAIN):
            return
    elif _within(value, limit - 1):
        return
    depth = value_depth(value, stop_after=limit)
    if depth > limit:
        raise JsonTooDeepError(what=what, depth=depth, max_depth=limit, at_least=True)


__all__ = ["DEFAULT_MAX_DEPTH", "HARD_MAX_DEPTH", "JsonTooDeepError", "json_text_depth", "check_text_depth",
           "loads_bounded", "value_depth", "check_value_depth"]
