"""Default toolsets (spec §15.5): AbstractCore's builtin tools grouped as ``files``, ``web``, ``system``, ``comms``.

Comms tools (email, WhatsApp, Telegram) are **off by default**. ``ABSTRACT_ENABLE_COMMS_TOOLS`` enables all of
them; ``ABSTRACT_ENABLE_EMAIL_TOOLS``, ``ABSTRACT_ENABLE_WHATSAPP_TOOLS`` and ``ABSTRACT_ENABLE_TELEGRAM_TOOLS``
enable one family. Truthy values: ``1``, ``true``, ``yes``, ``y``, ``on`` (any case). The environment is read at
every call.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from ._isolation import import_abstractcore
from .errors import ToolNotFoundError, UnknownToolsetError
from .llm_client import json_schema_parameters, tool_spec

TOOLSETS: Dict[str, Sequence[str]] = {
    "files": ("list_files", "skim_folders", "search_files", "analyze_code", "skim_files", "read_file",
              "write_file", "edit_file"),
    "web": ("web_search", "fetch_url"),
    "system": ("execute_command",),
}
COMMS_FAMILIES: Dict[str, Sequence[str]] = {
    "email": ("list_email_accounts", "send_email", "list_emails", "read_email"),
    "whatsapp": ("send_whatsapp_message", "list_whatsapp_messages", "read_whatsapp_message"),
    "telegram": ("send_telegram_message", "send_telegram_artifact"),
}
COMMS_ENV = "ABSTRACT_ENABLE_COMMS_TOOLS"
FAMILY_ENV = {"email": "ABSTRACT_ENABLE_EMAIL_TOOLS", "whatsapp": "ABSTRACT_ENABLE_WHATSAPP_TOOLS",
              "telegram": "ABSTRACT_ENABLE_TELEGRAM_TOOLS"}
_TRUTHY = {"1", "true", "yes", "y", "on"}
_MODULES = ("abstractcore.tools.common_tools", "abstractcore.tools.comms_tools", "abstractcore.tools.telegram_tools")

OPEN_ATTACHMENT_SPEC: Dict[str, Any] = {
    "name": "open_attachment",
    "description": "Open a file attached to this session (a session attachment): a bounded, line-numbered excerpt "
                   "of its text, or -- for images and other media -- attach it to the next model call.",
    "parameters": {"type": "object", "properties": {
        "artifact_id": {"type": "string", "description": "The attachment's artifact id", "default": None},
        "handle": {"type": "string", "description": "The attachment's path/handle (when no artifact_id is given)",
                   "default": None},
        "expected_sha256": {"type": "string", "description": "The attachment's sha256, to pick one of several "
                                                             "with the same handle", "default": None},
        "start_line": {"type": "integer", "description": "First line to show (1-based)", "default": 1},
        "end_line": {"type": "integer", "description": "Last line to show (inclusive)", "default": None},
        "max_chars": {"type": "integer", "description": "Return at most this many characters", "default": 8000}},
        "required": []},
    "required_args": [],
    "when_to_use": "To read a file the user attached or a file read earlier in this session (see the stored "
                   "session attachments list).",
    "examples": [
        {"description": "Open the first 200 lines", "arguments": {"artifact_id": "<id>", "start_line": 1,
                                                                  "end_line": 200}},
        {"description": "Open by handle", "arguments": {"handle": "docs/notes.md"}},
        {"description": "Attach an image to the next call", "arguments": {"artifact_id": "<id>"}},
    ],
    "toolset": "files",  # answered by the TOOL_CALLS handler itself (see .attachments), not by an executor
}


def _truthy(value: Optional[str]) -> bool:
    return isinstance(value, str) and value.strip().lower() in _TRUTHY


def enabled_comms_families(environ: Optional[Mapping[str, str]] = None) -> List[str]:
    env = os.environ if environ is None else environ
    if _truthy(env.get(COMMS_ENV)):
        return list(COMMS_FAMILIES)
    return [family for family, var in FAMILY_ENV.items() if _truthy(env.get(var))]


def comms_tool_names(environ: Optional[Mapping[str, str]] = None) -> List[str]:
    return [name for family in enabled_comms_families(environ) for name in COMMS_FAMILIES[family]]


def _lookup(name: str) -> Callable[..., Any]:
    for module_name in _MODULES:
        module = import_abstractcore(module_name)
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    raise ToolNotFoundError(f"AbstractCore has no tool named {name!r}")


def get_default_toolsets(environ: Optional[Mapping[str, str]] = None) -> Dict[str, List[Callable[..., Any]]]:
    """``{toolset: [tool functions]}``; ``comms`` only when enabled (and then only the enabled families)."""
    out: Dict[str, List[Callable[..., Any]]] = {name: [_lookup(t) for t in tools] for name, tools in TOOLSETS.items()}
    comms = comms_tool_names(environ)
    if comms:
        out["comms"] = [_lookup(t) for t in comms]
    return out


def _select(toolsets: Optional[Iterable[str]], available: Mapping[str, Any]) -> List[str]:
    if toolsets is None:
        return list(available)
    names = [str(t).strip().lower() for t in toolsets if str(t).strip()]
    unknown = [t for t in names if t not in TOOLSETS and t != "comms"]
    if unknown:
        raise UnknownToolsetError(f"Unknown toolset(s) {unknown}; known: {[*TOOLSETS, 'comms']}")
    return [t for t in names if t in available]


def get_default_tools(toolsets: Optional[Iterable[str]] = None,
                      environ: Optional[Mapping[str, str]] = None) -> List[Callable[..., Any]]:
    """The tool functions of ``toolsets`` (default: every available toolset). ``comms`` yields nothing unless
    enabled by the environment."""
    available = get_default_toolsets(environ)
    return [fn for name in _select(toolsets, available) for fn in available[name]]


def build_default_tool_map(toolsets: Optional[Iterable[str]] = None,
                           environ: Optional[Mapping[str, str]] = None) -> Dict[str, Callable[..., Any]]:
    from .tool_executor import _tool_name

    return {(_tool_name(fn) or fn.__name__): fn for fn in get_default_tools(toolsets, environ)}


def list_default_tool_specs(toolsets: Optional[Iterable[str]] = None,
                            environ: Optional[Mapping[str, str]] = None) -> List[Dict[str, Any]]:
    """JSON tool specs (``name``, ``description``, ``parameters`` as JSON Schema, ``toolset``) plus the
    runtime-owned ``open_attachment``."""
    available = get_default_toolsets(environ)
    specs: List[Dict[str, Any]] = []
    for toolset in _select(toolsets, available):
        for fn in available[toolset]:
            raw = tool_spec(fn)
            specs.append({"name": raw.get("name"), "description": raw.get("description", ""),
                          "parameters": json_schema_parameters(raw), "toolset": toolset})
    specs.append(copy.deepcopy(OPEN_ATTACHMENT_SPEC))
    return specs


def filter_tool_specs(specs: Iterable[Mapping[str, Any]], allowed: Optional[Iterable[str]]) -> List[Dict[str, Any]]:
    """The specs whose name is in ``allowed`` (None: all), order kept."""
    specs = [dict(s) for s in specs]
    if allowed is None:
        return specs
    names = {str(a).strip() for a in allowed if str(a).strip()}
    return [s for s in specs if s.get("name") in names]


__all__ = ["get_default_toolsets", "get_default_tools", "list_default_tool_specs", "build_default_tool_map",
           "filter_tool_specs", "TOOLSETS", "COMMS_FAMILIES", "enabled_comms_families"]
