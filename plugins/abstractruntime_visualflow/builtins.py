"""Pure builtin node handlers (math, string, logic, data, context helpers): ``fn(inputs, ctx=None) -> output``.

``get_builtin_handler(type)`` returns a one-argument callable (the reference API): a non-dict input is presented
as ``{"value": x, "a": x, "text": x}``.
"""

from __future__ import annotations

import ast
import json
import random
import re
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional

from abstractruntime_pluginkit.paths import set_path

from .builtins_context import CONTEXT_BUILTINS, new_message  # noqa: F401 - new_message: re-exported
from .context import get_path
from .errors import VisualNodeError

Handler = Callable[..., Any]


def _num(value: Any, default: float = 0.0) -> float:
    if value is None or value == "":
        return float(default)
    if isinstance(value, bool):
        return float(value)
    return float(value)


def _s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def _pins(d: Dict[str, Any], default: List[str]) -> List[str]:
    order = d.get("_pin_order")
    return list(order) if isinstance(order, list) and order else list(default)


# --- math ----------------------------------------------------------------------------------------------------------
def add(d, ctx=None):
    return _num(d.get("a")) + _num(d.get("b"))


def subtract(d, ctx=None):
    return _num(d.get("a")) - _num(d.get("b"))


def multiply(d, ctx=None):
    return _num(d.get("a")) * _num(d.get("b"))


def divide(d, ctx=None):
    b = _num(d.get("b"), 1)
    if b == 0:
        raise VisualNodeError("Division by zero")
    return _num(d.get("a")) / b


def modulo(d, ctx=None):
    b = _num(d.get("b"), 1)
    if b == 0:
        raise VisualNodeError("Modulo by zero")
    return _num(d.get("a")) % b


def power(d, ctx=None):
    return _num(d.get("base")) ** _num(d.get("exp"))


def abs_(d, ctx=None):
    return abs(_num(d.get("value")))


def round_(d, ctx=None):
    return round(_num(d.get("value")), int(_num(d.get("decimals"))))


def random_int(d, ctx=None):
    lo, hi = int(_num(d.get("min"), 0)), int(_num(d.get("max"), 100))
    if lo > hi:
        lo, hi = hi, lo
    return random.randint(lo, hi)


def random_float(d, ctx=None):
    lo, hi = _num(d.get("min"), 0), _num(d.get("max"), 1)
    if lo > hi:
        lo, hi = hi, lo
    return random.uniform(lo, hi)


# --- string --------------------------------------------------------------------------------------------------------
def concat(d, ctx=None):
    sep = " "
    node_data = getattr(ctx, "data", None) or {}
    cfg = node_data.get("concatConfig")
    if isinstance(cfg, dict) and isinstance(cfg.get("separator"), str):
        sep = _unescape(cfg["separator"])
    declared = ctx.declared_inputs if ctx is not None else []
    if declared:
        keys = list(declared)
    else:
        plain = [k for k in d if isinstance(k, str) and not k.startswith("_")]
        letters = sorted(k for k in plain if len(k) == 1 and "a" <= k <= "z")
        keys = letters + sorted(k for k in plain if k not in letters)
    return sep.join(_s(d.get(k)) for k in keys)


def split(d, ctx=None):
    text = _s(d.get("text"))
    delim = d.get("delimiter")
    delim = "," if delim is None else _unescape(str(delim))
    trim = d.get("trim", True) is not False
    drop_empty = d.get("drop_empty", True) is not False
    maxsplit = d.get("maxsplit")
    if delim == "":
        parts = [text]
    else:
        parts = text.split(delim, int(maxsplit)) if isinstance(maxsplit, (int, float)) and maxsplit >= 0 \
            else text.split(delim)
    if trim:
        parts = [p.strip() for p in parts]
    if drop_empty:
        parts = [p for p in parts if p != ""]
    return parts


def join(d, ctx=None):
    items = d.get("items")
    if not isinstance(items, list):
        items = [] if items is None else [items]
    delim = d.get("delimiter")
    delim = "," if delim is None else _unescape(str(delim))
    return delim.join(_s(i) for i in items)


def format_(d, ctx=None):
    template = _s(d.get("template"))
    values = d.get("values")
    if isinstance(values, dict):
        return template.format(**values)
    if isinstance(values, list):
        return template.format(*values)
    return template.format(values) if values is not None else template


_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def string_template(d, ctx=None):
    template = _s(d.get("template"))
    vars_ = d.get("vars") if isinstance(d.get("vars"), dict) else {k: v for k, v in d.items() if k != "template"}

    def render(match: "re.Match[str]") -> str:
        parts = [p.strip() for p in match.group(1).split("|")]
        value = get_path(vars_, parts[0]) if parts[0] else None
        for flt in parts[1:]:
            if flt == "json":
                value = json.dumps(value, ensure_ascii=False)
            elif flt.startswith("join"):
                m = re.match(r'join\((["\'])(.*)\1\)', flt)
                sep = m.group(2) if m else ", "
                value = sep.join(_s(v) for v in (value if isinstance(value, list) else [value]))
            elif flt == "trim":
                value = _s(value).strip()
            elif flt == "lower":
                value = _s(value).lower()
            elif flt == "upper":
                value = _s(value).upper()
        return "" if value is None else _s(value)

    return _TEMPLATE.sub(render, template)


def uppercase(d, ctx=None):
    return _s(d.get("text", d.get("value"))).upper()


def lowercase(d, ctx=None):
    return _s(d.get("text", d.get("value"))).lower()


def trim(d, ctx=None):
    return _s(d.get("text", d.get("value"))).strip()


def length(d, ctx=None):
    value = d.get("text", d.get("value"))
    return len(value) if isinstance(value, (list, dict, str)) else len(_s(value))


def substring(d, ctx=None):
    text = _s(d.get("text"))
    start = int(_num(d.get("start"), 0))
    end = d.get("end")
    return text[start:] if end is None or end == "" else text[start:int(_num(end))]


def contains(d, ctx=None):
    pattern = d.get("pattern")
    if pattern is None or pattern == "":
        return False
    text = d.get("text")
    if isinstance(text, list):
        return pattern in text
    return _s(pattern) in _s(text)


def replace(d, ctx=None):
    text, pattern, repl = _s(d.get("text")), _s(d.get("pattern")), _s(d.get("replacement"))
    if pattern == "":
        return text
    mode = d.get("mode", "all")
    if mode == "first":
        return text.replace(pattern, repl, 1)
    if isinstance(mode, (int, float)) and not isinstance(mode, bool):
        return text.replace(pattern, repl, int(mode))
    if isinstance(mode, str) and mode.isdigit():
        return text.replace(pattern, repl, int(mode))
    return text.replace(pattern, repl)


# --- logic ---------------------------------------------------------------------------------------------------------
_OPS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def compare(d, ctx=None):
    op = d.get("op") or "=="
    fn = _OPS.get(op)
    if fn is None:
        raise VisualNodeError(f"compare: unknown operator {op!r} (expected one of {', '.join(_OPS)})")
    try:
        return bool(fn(d.get("a"), d.get("b")))
    except TypeError:
        return False


def not_(d, ctx=None):
    return not bool(d.get("value"))


def and_(d, ctx=None):
    return bool(d.get("a")) and bool(d.get("b"))


def or_(d, ctx=None):
    return bool(d.get("a")) or bool(d.get("b"))


def coalesce(d, ctx=None):
    for pin in _pins(d, ["a", "b"]):
        if d.get(pin) is not None:
            return d.get(pin)
    return None


# --- data ----------------------------------------------------------------------------------------------------------
def get(d, ctx=None):
    obj = d.get("object")
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except ValueError:
            pass
    missing = object()
    value = get_path(obj, _s(d.get("key")), missing)
    return {"value": d.get("default") if value is missing else value}


def set_(d, ctx=None):
    obj = d.get("object")
    out = json.loads(json.dumps(obj)) if isinstance(obj, dict) else {}
    key = _s(d.get("key"))
    if not key:
        raise VisualNodeError("set: 'key' is required")
    set_path(out, key, d.get("value"))
    return out


def merge(d, ctx=None):
    a, b = d.get("a"), d.get("b")
    out = dict(a) if isinstance(a, dict) else {}
    if isinstance(b, dict):
        out.update(b)
    return out


def make_object(d, ctx=None):
    return {k: v for k, v in d.items() if isinstance(k, str) and not k.startswith("_")}


def make_array(d, ctx=None):
    return [d.get(p) for p in _pins(d, ["a", "b"]) if d.get(p) is not None]


def array_concat(d, ctx=None):
    out: List[Any] = []
    for p in _pins(d, ["a", "b"]):
        v = d.get(p)
        if v is None:
            continue
        out.extend(v if isinstance(v, list) else [v])
    return out


def break_object(d, ctx=None):
    obj = d.get("object")
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except ValueError:
            obj = {}
    cfg = (getattr(ctx, "data", None) or {}).get("breakConfig")
    paths = cfg.get("selectedPaths") if isinstance(cfg, dict) else None
    return {p: get_path(obj, p) for p in (paths or []) if isinstance(p, str)}


def _array(d, key="array"):
    v = d.get(key)
    return v if isinstance(v, list) else ([] if v is None else [v])


def get_element(d, ctx=None):
    arr = _array(d)
    try:
        idx = int(_num(d.get("index"), 0))
    except (TypeError, ValueError):
        return {"result": d.get("default"), "found": False}
    if -len(arr) <= idx < len(arr):
        return {"result": arr[idx], "found": True}
    return {"result": d.get("default"), "found": False}


def get_random_element(d, ctx=None):
    arr = _array(d)
    if not arr:
        return {"result": d.get("default"), "found": False}
    return {"result": random.choice(arr), "found": True}


def array_map(d, ctx=None):
    key = _s(d.get("key"))
    return [get_path(i, key) if key else i for i in _array(d, "items")]


def array_filter(d, ctx=None):
    key, value = _s(d.get("key")), d.get("value")
    return [i for i in _array(d, "items") if (get_path(i, key) if key else i) == value]


def array_length(d, ctx=None):
    v = d.get("array", d.get("items"))
    return len(v) if isinstance(v, (list, dict, str)) else 0


def has_tools(d, ctx=None):
    return bool(_array(d))


def array_append(d, ctx=None):
    return list(_array(d)) + [d.get("item")]


def array_dedup(d, ctx=None):
    key = _s(d.get("key"))
    seen, out = set(), []
    for item in _array(d):
        marker = json.dumps(get_path(item, key) if key else item, sort_keys=True, default=str)
        if marker not in seen:
            seen.add(marker)
            out.append(item)
    return out


_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.S)


def _parse_json_text(text: str) -> Any:
    stripped = text.strip()
    m = _FENCE.match(stripped)
    if m:
        stripped = m.group(1).strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if start != -1 and end > start:
            chunk = stripped[start:end + 1]
            try:
                return json.loads(chunk)
            except ValueError:
                try:
                    return ast.literal_eval(chunk)
                except (ValueError, SyntaxError):
                    pass
    return ast.literal_eval(stripped)


def parse_json(d, ctx=None):
    text = d.get("text")
    if isinstance(text, (dict, list)):
        return text
    if text is None or _s(text).strip() == "":
        raise VisualNodeError("parse_json: empty text")
    try:
        value = _parse_json_text(_s(text))
    except (ValueError, SyntaxError):
        raise VisualNodeError(f"parse_json: not JSON: {_s(text)[:80]!r}") from None
    if not isinstance(value, (dict, list)) and d.get("wrap_scalar", True) is not False:
        return {"value": value}
    return value


def stringify_json(d, ctx=None):
    """The rendering library's ``stringify_json`` (integration-surface §7.1): ``mode`` none/beautify/minified
    (unknown: beautify); without a mode the legacy ``indent`` pin picks beautify with that indent (``0``: none)."""
    from abstractruntime_rendering import stringify_json as render

    mode, indent = d.get("mode"), d.get("indent")
    if mode is None and isinstance(indent, int) and not isinstance(indent, bool):
        mode = "beautify" if indent > 0 else "none"
    return render(d.get("value"), mode=mode if mode is not None else "beautify",
                  beautify_indent=indent if isinstance(indent, int) and indent > 0 else 2,
                  sort_keys=bool(d.get("sort_keys")))


def system_datetime(d, ctx=None):
    now = datetime.now().astimezone()
    offset = now.utcoffset()
    return {"iso": now.isoformat(), "timezone": now.tzname() or "UTC",
            "utc_offset_minutes": int(offset.total_seconds() // 60) if offset else 0, "locale": "en_US"}


def tools_allowlist(d, ctx=None):
    lit = d.get("_literalValue")
    return {"tools": [t.strip() for t in lit if isinstance(t, str) and t.strip()] if isinstance(lit, list) else []}


# --- context helpers (VAM §4.2-§4.7): in .builtins_context ------------------------------------------------


BUILTINS: Dict[str, Handler] = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "modulo": modulo, "power": power,
    "abs": abs_, "round": round_, "random_int": random_int, "random_float": random_float,
    "concat": concat, "split": split, "join": join, "format": format_, "string_template": string_template,
    "uppercase": uppercase, "lowercase": lowercase, "trim": trim, "length": length, "substring": substring,
    "contains": contains, "replace": replace,
    "compare": compare, "not": not_, "and": and_, "or": or_, "coalesce": coalesce,
    "get": get, "set": set_, "merge": merge, "make_object": make_object, "make_array": make_array,
    "array_concat": array_concat, "break_object": break_object, "get_element": get_element,
    "get_random_element": get_random_element, "array_map": array_map, "array_filter": array_filter,
    "array_length": array_length, "has_tools": has_tools, "array_append": array_append,
    "array_dedup": array_dedup, "parse_json": parse_json, "stringify_json": stringify_json,
    "system_datetime": system_datetime, "tools_allowlist": tools_allowlist,
    **CONTEXT_BUILTINS,
}

#: builtins that a pin-less node treats as an execution node (§2.6: not "pure builtins")
NOT_PURE_WHEN_PINLESS = frozenset({"make_array", "array_concat"})


def get_builtin_handler(node_type: str) -> Optional[Callable[[Any], Any]]:
    """The reference API: a one-argument handler for a builtin type, or None."""
    fn = BUILTINS.get(node_type)
    if fn is None:
        return None

    def handler(value: Any) -> Any:
        d = dict(value) if isinstance(value, dict) else {"value": value, "a": value, "text": value}
        return fn(d, None)

    handler.__name__ = f"builtin_{node_type}"
    return handler


__all__ = ["BUILTINS", "get_builtin_handler", "NOT_PURE_WHEN_PINLESS"]
