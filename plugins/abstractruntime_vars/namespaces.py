"""Run-variable namespaces and limits helpers (the reference's ``core.vars``), plus the VARS_QUERY path language
under its reference names (the one path implementation is :mod:`abstractruntime_pluginkit.paths`)."""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

from abstractruntime.models import DEFAULT_MAX_TOKENS, RuntimeConfig
from abstractruntime_pluginkit.paths import PathError, get_path, parse_path

CONTEXT = "context"
SCRATCHPAD = "scratchpad"
RUNTIME = "_runtime"
TEMP = "_temp"
LIMITS = "_limits"
NODE_TRACES = "node_traces"

_NAMESPACES = (CONTEXT, SCRATCHPAD, RUNTIME, TEMP)

#: reference names of the path language
parse_vars_path = parse_path
resolve_vars_path = get_path
VarsPathError = PathError


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


__all__ = [
    "CONTEXT", "SCRATCHPAD", "RUNTIME", "TEMP", "LIMITS", "NODE_TRACES", "DEFAULT_MAX_TOKENS",
    "ensure_namespaces", "get_namespace", "get_context", "get_scratchpad", "get_runtime", "get_temp",
    "clear_temp", "get_limits", "ensure_limits", "get_node_traces", "get_node_trace", "parse_vars_path",
    "resolve_vars_path", "VarsPathError",
]
