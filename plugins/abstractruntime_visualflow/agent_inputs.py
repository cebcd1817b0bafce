"""Inputs of the ``agent`` node (VAM §1.2, §1.3): the resolved pins reduced to ``resolved_inputs``, the node
configuration fallbacks (``data.agentConfig``) and the coercions; the response schema is normalised by
:mod:`.schema_refs` (VAM §2.2).

Pure functions of plain values: the phase machine (:mod:`.agent_node`) calls them; nothing here touches a run.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from .agent_ids import visual_react_workflow_id
from .agent_recall import expand_memory_pins
from .schema_refs import response_schema

DEFAULT_TEMPERATURE = 0.7
DEFAULT_SEED = -1
_TRUE = frozenset({"true", "1", "yes", "on"})


def coerce_bool(value: Any) -> bool:
    """null -> false; bool as is; number -> ``!= 0``; ``true/1/yes/on`` (trimmed, any case) -> true; else false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return False


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def normalize_tool_names(value: Any) -> List[str]:
    """A list/tuple -> its non-blank strings (stripped); a non-blank string -> ``[it]``; de-duplicated in order."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out: List[str] = []
    for item in items:
        if _is_text(item) and item.strip() not in out:
            out.append(item.strip())
    return out


def positive_int(value: Any) -> Optional[int]:
    """bool/null -> None; a number or numeric string -> ``int(float(x))``, kept only if > 0."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number > 0 else None


def coerce_temperature(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return DEFAULT_TEMPERATURE
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DEFAULT_TEMPERATURE
    return DEFAULT_TEMPERATURE if math.isnan(number) else number


def coerce_seed(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return DEFAULT_SEED
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return DEFAULT_SEED


# --- the input handler (VAM §1.2) --------------------------------------------------------------------------------
def _first_present(raw: Dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in raw:
            return key, raw[key]
    return None, None


def resolve_agent_inputs(raw: Any, config: Dict[str, Any]) -> Dict[str, Any]:
    """``resolved_inputs`` of VAM §1.2 from the node's resolved input ``raw``.

    An unresolvable ``$ref`` schema raises :class:`~.schema_refs.SchemaRefError` (the reference swallowed it and
    ran the agent with empty inputs, VAM §1.12)."""
    if not isinstance(raw, dict):
        return {"task": "" if raw is None else str(raw), "context": {}, "provider": None, "model": None,
                "system": "", "tools": normalize_tool_names(config.get("tools")) if "tools" in config else []}
    prompt = raw.get("prompt")
    system = raw.get("system")
    out: Dict[str, Any] = {
        "task": "" if prompt is None else str(prompt),
        "context": raw.get("context") if isinstance(raw.get("context"), dict) else {},
        "provider": raw.get("provider") if isinstance(raw.get("provider"), str) else None,
        "model": raw.get("model") if isinstance(raw.get("model"), str) else None,
        "system": system if isinstance(system, str) else str(system or ""),
        "tools": normalize_tool_names(raw["tools"] if "tools" in raw else config.get("tools")),
    }
    for key in ("max_iterations", "temperature", "seed"):
        if key in raw:
            out[key] = raw[key]
    key, value = _first_present(raw, "max_in_tokens", "max_input_tokens", "maxInputTokens")
    if key is not None:
        out["max_input_tokens"] = value
    key, value = _first_present(raw, "max_out_tokens", "max_output_tokens", "maxOutputTokens")
    if key is not None:
        out["max_output_tokens"] = value
    key, value = _first_present(raw, "resp_schema", "response_schema")
    if key is not None:
        schema = response_schema(value)  # an unresolvable $ref raises (not swallowed)
        if schema:
            out["response_schema"] = schema
    key, value = _first_present(raw, "include_context", "use_context")
    if key is not None:
        out["include_context"] = coerce_bool(value)
    out.update(expand_memory_pins(raw))
    return out


# --- configuration fallbacks (VAM §1.3) --------------------------------------------------------------------------
def agent_settings(inputs: Dict[str, Any], config: Dict[str, Any], *, flow_id: str, node_id: str) -> Dict[str, Any]:
    """The effective settings of one agent invocation: pins over ``agentConfig``, coerced."""
    def pick_text(key: str) -> Optional[str]:
        value = inputs.get(key)
        if not _is_text(value):
            value = config.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    provider = pick_text("provider")
    schema_cfg = config.get("outputSchema") if isinstance(config.get("outputSchema"), dict) else {}
    schema = schema_cfg.get("jsonSchema") if isinstance(schema_cfg.get("jsonSchema"), dict) else None
    enabled = bool(schema_cfg.get("enabled")) and bool(schema)
    if isinstance(inputs.get("response_schema"), dict) and inputs["response_schema"]:
        schema, enabled = inputs["response_schema"], True
    limits = {}
    for key in ("max_iterations", "max_input_tokens", "max_output_tokens"):
        value = positive_int(inputs.get(key)) if key in inputs else None
        limits[key] = value if value is not None else positive_int(config.get(key))
    return {
        "provider": provider.lower() if provider else None,
        "model": pick_text("model"),
        "include_context": inputs["include_context"] if "include_context" in inputs
        else bool(config.get("include_context", False)),
        "temperature": coerce_temperature(inputs["temperature"] if "temperature" in inputs
                                          else config.get("temperature")),
        "seed": coerce_seed(inputs["seed"] if "seed" in inputs else config.get("seed")),
        "schema": schema if enabled else None,
        "workflow_id": agent_workflow_id(config, flow_id=flow_id, node_id=node_id),
        **limits,
    }


def agent_workflow_id(config: Any, *, flow_id: str, node_id: str) -> str:
    """The ReAct subworkflow id of an agent node: a non-blank ``agentConfig._react_workflow_id``, else computed."""
    react_id = config.get("_react_workflow_id") if isinstance(config, dict) else None
    return react_id.strip() if _is_text(react_id) else visual_react_workflow_id(flow_id=flow_id, node_id=node_id)


__all__ = ["coerce_bool", "normalize_tool_names", "positive_int", "coerce_temperature", "coerce_seed",
           "resolve_agent_inputs", "agent_settings", "agent_workflow_id"]
