"""How :class:`~.tool_executor.MappingToolExecutor` fits a model's loosely written arguments to a Python tool, and
how it reads a tool's output as success or failure (integration-surface §3.2).

Arguments: ``{"arguments": {...}}`` wrappers are unwrapped (up to 4 levels, outer keys kept where the inner dict
lacks them), keys are matched to parameter names ignoring case and separators (``filePath``, ``file-path``,
``File Path`` -> ``file_path``), then common synonyms (``path``, ``query``, ``start``...) are mapped, and keys the
function cannot take are dropped (unless it takes ``**kwargs``).

Outputs: a dict with ``success is False`` or ``ok is False`` is a failure (output kept); a string starting with
``Error:`` or one of ❌ 🚫 ⏰ is a failure whose error is the text after the prefix. A string starting with
``Traceback`` is *not* a failure (as in the reference: tools print tracebacks as data).
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .llm_client import parse_arguments

#: reference synonyms: normalised key -> candidate parameter names (first one the tool has and is not given wins)
SYNONYMS: Dict[str, Tuple[str, ...]] = {
    "path": ("file_path", "directory_path", "path"),
    "filename": ("file_path",),
    "filepath": ("file_path",),
    "dir": ("directory_path", "path"),
    "directory": ("directory_path", "path"),
    "folder": ("directory_path", "path"),
    "query": ("pattern", "query"),
    "regex": ("pattern", "regex"),
    "start": ("start_line", "start"),
    "end": ("end_line", "end"),
    "startlineoneindexed": ("start_line",),
    "endlineoneindexedinclusive": ("end_line",),
    # ours, on top of the reference's
    "file": ("file_path", "path"),
    "q": ("query", "pattern"),
    "search": ("query", "pattern"),
    "uri": ("url",),
    "link": ("url",),
    "cmd": ("command",),
}
_WRAPPER_KEYS = ("name", "arguments", "call_id", "id")
_ERROR_MARKS = ("❌", "🚫", "⏰")


def split_path_argument(value: Any) -> Any:
    """A ``paths`` argument given as one string, split the way the skim tools split it (a JSON list, else on ``|``
    and newlines, else on commas), so that each path is checked, not the string as one path; anything else as
    given. The workspace check, the workspace helpers and the attachment stand-ins all split with this."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "|" not in text and "\n" not in text and "," in text:
        return [p.strip() for p in text.split(",") if p.strip()]
    return [p.strip() for chunk in text.split("\n") for p in chunk.split("|") if p.strip()]


def norm_key(name: Any) -> str:
    """Lower-cased, without whitespace, ``_`` and ``-`` (``File Path`` -> ``filepath``)."""
    return re.sub(r"[\s_\-]", "", str(name).lower())


def _parameters(fn: Callable[..., Any]) -> Optional[Tuple[List[str], bool]]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params.values())


def unwrap(args: Dict[str, Any], accepted: List[str]) -> Dict[str, Any]:
    """``{"name": t, "arguments": {...}}`` -> the inner dict (up to 4 levels), keeping other outer keys the inner
    dict lacks. A tool that has a parameter named ``arguments`` gets it as is."""
    if "arguments" in accepted:
        return args
    for _ in range(4):
        raw = args.get("arguments")
        if not isinstance(raw, (dict, str)):
            break
        inner = parse_arguments(raw)
        if not inner and not (isinstance(raw, dict) or raw.strip().startswith("{")):
            break
        for key, value in args.items():
            if key not in _WRAPPER_KEYS and key not in inner:
                inner[key] = value
        args = inner
    return args


def canonicalize_arguments(fn: Callable[..., Any], arguments: Any, tool_name: str = "") -> Dict[str, Any]:
    """``arguments`` (a dict or a JSON-object string) fitted to ``fn``'s parameters (see the module doc)."""
    args = parse_arguments(arguments)
    sig = _parameters(fn)
    if sig is None:
        return args
    accepted, takes_kwargs = sig
    # parameters starting with "_" are the host's (e.g. abstractcore's hidden `_sandbox` of execute_command): a
    # model never sets them, neither by their name nor through an alias ("sandbox" normalises to the same key)
    accepted = [n for n in accepted if not n.startswith("_")]
    args = {k: v for k, v in unwrap(args, accepted).items() if not str(k).startswith("_")}
    by_norm = {norm_key(n): n for n in accepted}
    renamed: Dict[str, Any] = {}
    unknown: List[Tuple[str, Any]] = []
    for key, value in args.items():  # exact names and case/separator aliases first
        if key in accepted:
            renamed[key] = value
        else:
            unknown.append((key, value))
    still: List[Tuple[str, Any]] = []
    for key, value in unknown:
        target = by_norm.get(norm_key(key))
        if target is not None and target not in renamed:
            renamed[target] = value
        else:
            still.append((key, value))
    for key, value in still:  # then synonyms
        target = next((c for c in SYNONYMS.get(norm_key(key), ()) if c in accepted and c not in renamed), None)
        if target is not None:
            renamed[target] = value
        elif takes_kwargs:
            renamed[key] = value
    return renamed


def missing_required(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> List[str]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    return [n for n, p in params.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in kwargs]


def string_error(text: str) -> Optional[str]:
    """The error a string output reports (``Error: x`` / ``❌ Error: x`` -> ``x``), else None."""
    body = text.strip()
    if body.startswith("Error:"):
        return body[len("Error:"):].strip() or body
    for mark in _ERROR_MARKS:
        if body.startswith(mark):
            rest = body[len(mark):].strip()
            if rest.startswith("Error:"):
                rest = rest[len("Error:"):].strip()
            return rest or body
    return None


def output_error(output: Any) -> Tuple[bool, Optional[str]]:
    """``(failed, error)`` of a tool's raw output (see the module doc)."""
    if isinstance(output, Mapping) and (output.get("success") is False or output.get("ok") is False):
        error = output.get("error") or output.get("message") or "Tool reported failure"
        return True, str(error)
    if isinstance(output, str):
        error = string_error(output)
        return error is not None, error
    return False, None


__all__ = ["canonicalize_arguments", "missing_required", "output_error", "string_error", "norm_key", "SYNONYMS"]
