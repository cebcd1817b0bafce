"""``stringify_json``: any value as JSON text, beautified, minified or plain; a string that holds JSON (also inside a
Markdown code fence, or as a Python literal) is parsed first (reference path
``abstractruntime.rendering.json_stringify``)."""

from __future__ import annotations

import ast
import json
import re
from enum import Enum
from typing import Any, Union

#: how many ``{`` / ``[`` positions are tried when looking for JSON inside a text
MAX_EMBEDDED_STARTS = 64
_NOT_PARSED = object()


class JsonStringifyMode(str, Enum):
    NONE = "none"
    BEAUTIFY = "beautify"
    MINIFIED = "minified"


def _mode(mode: Any) -> JsonStringifyMode:
    if isinstance(mode, JsonStringifyMode):
        return mode
    try:
        return JsonStringifyMode(str(mode).strip().lower())
    except ValueError:
        return JsonStringifyMode.BEAUTIFY


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    if not stripped.startswith("```"):
        return stripped
    body = stripped.split("\n", 1)[1] if "\n" in stripped else ""
    end = body.rfind("```")
    return (body[:end] if end != -1 else body).strip()


def _parse_text(text: str) -> Any:
    """The value a text holds, or ``_NOT_PARSED``: strict JSON, then the first JSON object/array in it, then a
    Python literal."""
    text = _strip_fence(text)
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for n, match in enumerate(re.finditer(r"[\[{]", text)):
        if n >= MAX_EMBEDDED_STARTS:
            break
        try:
            return decoder.raw_decode(text, match.start())[0]
        except ValueError:
            continue
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOT_PARSED


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


def stringify_json(value: Any, *, mode: Union[JsonStringifyMode, str] = JsonStringifyMode.BEAUTIFY,
                   beautify_indent: int = 2, sort_keys: bool = False, parse_strings: bool = True) -> str:
    """``value`` as JSON text (``ensure_ascii=False``). ``mode``: ``beautify`` (indented by ``beautify_indent``),
    ``minified`` (no spaces), ``none`` (one line, default spacing); an unknown mode is ``beautify``."""
    chosen = _mode(mode)
    if parse_strings and isinstance(value, str) and value.strip():
        parsed = _parse_text(value)
        if parsed is not _NOT_PARSED:
            value = parsed
    safe = _json_safe(value)
    if chosen is JsonStringifyMode.MINIFIED:
        return json.dumps(safe, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"))
    if chosen is JsonStringifyMode.NONE:
        return json.dumps(safe, ensure_ascii=False, sort_keys=sort_keys)
    indent = beautify_indent if isinstance(beautify_indent, int) and not isinstance(beautify_indent, bool) \
        and beautify_indent >= 0 else 2
    return json.dumps(safe, ensure_ascii=False, sort_keys=sort_keys, indent=indent)


__all__ = ["JsonStringifyMode", "stringify_json"]
