"""The default toolsets with the reference's signatures (integration-surface §1.7, §3.4): what
``abstractruntime.integrations.abstractcore.default_tools`` serves. The plugin's own functions
(:mod:`.default_tools`) take a toolset selection and an environment; these take nothing, as in 0.4.2.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Iterable, List

from .default_tools import (
    COMMS_ENV,
    FAMILY_ENV,
    OPEN_ATTACHMENT_SPEC,
    TOOLSETS,
    _lookup,
    _truthy,
    comms_tool_names,
)

ToolCallable = Callable[..., Any]
_LABELS = {"files": "Files", "web": "Web", "system": "System", "comms": "Comms"}


def _enabled(family: str) -> bool:
    import os

    return _truthy(os.environ.get(COMMS_ENV)) or _truthy(os.environ.get(FAMILY_ENV[family]))


def email_tools_enabled() -> bool:
    return _enabled("email")


def whatsapp_tools_enabled() -> bool:
    return _enabled("whatsapp")


def telegram_tools_enabled() -> bool:
    return _enabled("telegram")


def comms_tools_enabled() -> bool:
    return email_tools_enabled() or whatsapp_tools_enabled() or telegram_tools_enabled()


def get_default_toolsets() -> Dict[str, Dict[str, Any]]:
    """``{id: {"id", "label", "tools": [callables]}}``: files, web, system, and comms when a family is enabled."""
    out: Dict[str, Dict[str, Any]] = {
        name: {"id": name, "label": _LABELS[name], "tools": [_lookup(t) for t in tools]}
        for name, tools in TOOLSETS.items()}
    comms = comms_tool_names()
    if comms:
        out["comms"] = {"id": "comms", "label": "Comms", "tools": [_lookup(t) for t in comms]}
    return out


def _name(tool: Any) -> str:
    definition = getattr(tool, "_tool_definition", None)
    return str(getattr(definition, "name", None) or getattr(tool, "__name__", ""))


def get_default_tools() -> List[ToolCallable]:
    """Every default tool, flattened; the first occurrence of a name wins."""
    seen: Dict[str, ToolCallable] = {}
    for toolset in get_default_toolsets().values():
        for tool in toolset["tools"]:
            seen.setdefault(_name(tool), tool)
    return list(seen.values())


def build_default_tool_map() -> Dict[str, ToolCallable]:
    return {_name(tool): tool for tool in get_default_tools()}


def _spec(tool: Any, toolset: str) -> Dict[str, Any]:
    definition = getattr(tool, "_tool_definition", None)
    if definition is not None and callable(getattr(definition, "to_dict", None)):
        spec = dict(definition.to_dict())
    else:
        from .llm_client import tool_spec

        spec = dict(tool_spec(tool))
    if spec.get("name") in ("skim_files", "skim_folders"):
        params = dict(spec.get("parameters") or {})
        if isinstance(params.get("paths"), dict):
            paths = {"type": "array", "items": {"type": "string"}}
            if params["paths"].get("description"):
                paths["description"] = params["paths"]["description"]
            params["paths"] = paths
            spec["parameters"] = params
    spec["toolset"] = toolset
    return spec


def list_default_tool_specs() -> List[Dict[str, Any]]:
    """The ToolSpecs of the default tools plus ``open_attachment``, sorted by ``(toolset, name)``."""
    specs: List[Dict[str, Any]] = []
    seen = set()
    for toolset_id, toolset in get_default_toolsets().items():
        for tool in toolset["tools"]:
            name = _name(tool)
            if name not in seen:
                seen.add(name)
                specs.append(_spec(tool, toolset_id))
    specs.append(copy.deepcopy(OPEN_ATTACHMENT_SPEC))
    return sorted(specs, key=lambda s: (str(s.get("toolset") or "other"), str(s.get("name") or "")))


def filter_tool_specs(tool_names: Iterable[str]) -> List[Dict[str, Any]]:
    """The specs of ``tool_names``, in that order; unknown names are skipped."""
    by_name = {s.get("name"): s for s in list_default_tool_specs()}
    return [by_name[n] for n in tool_names if n in by_name]


__all__ = ["ToolCallable", "comms_tools_enabled", "email_tools_enabled", "whatsapp_tools_enabled",
           "telegram_tools_enabled", "get_default_toolsets", "get_default_tools", "list_default_tool_specs",
           "build_default_tool_map", "filter_tool_specs"]
