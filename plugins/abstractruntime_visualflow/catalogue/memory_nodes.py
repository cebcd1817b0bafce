"""The memory nodes (VAM §3): ``memory_note``, ``memory_query``, ``memory_tag``, ``memory_compact``,
``memory_rehydrate`` (effects handled by the active_memory plugin) and ``memory_kg_assert``, ``memory_kg_query``,
``memory_kg_resolve`` (handled by the kg_memory plugin).

Each node maps its pins onto its effect's payload exactly as specified (the payload keeps its ``type`` and gets
``resume_to_node``; the result lands at ``_temp.effects.<node_id>``), shows a placeholder output until the outcome
exists, and maps the outcome onto its output pins; the node's ``outputKey`` receives the main value.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..memory_sources import coerce_bool
from ..nodetypes import EffectMapping, VisualNodeType

PLACEMENTS = ("after_summary", "after_system", "end")


# --- pin helpers ---------------------------------------------------------------------------------------------------
def _strings(payload: Dict[str, Any], inputs: Dict[str, Any], names: Tuple[str, ...]) -> None:
    """String pins: forwarded only when non-blank strings, stripped."""
    for name in names:
        value = inputs.get(name)
        if isinstance(value, str) and value.strip():
            payload[name] = value.strip()


def _first_key(inputs: Dict[str, Any], *names: str) -> Any:
    for name in names:
        if inputs.get(name) is not None:
            return inputs[name]
    return None


def _num(value: Any, convert: Callable[[Any], Any]) -> Any:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = convert(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if isinstance(out, float) and math.isnan(out) else out


def _int_float(value: Any) -> int:
    return int(float(value))


def _string_list(value: Any) -> Optional[List[str]]:
    if not isinstance(value, list):
        return None
    return [x.strip() for x in value if isinstance(x, str) and x.strip()]


# --- result helpers ------------------------------------------------------------------------------------------------
def _first_result(raw: Any) -> Dict[str, Any]:
    results = raw.get("results") if isinstance(raw, dict) else None
    return results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else {}


def _first_meta(raw: Any) -> Dict[str, Any]:
    meta = _first_result(raw).get("meta")
    return meta if isinstance(meta, dict) else {}


def _span_id(raw: Any) -> Optional[str]:
    span_id = _first_meta(raw).get("span_id")
    return span_id if isinstance(span_id, str) and span_id.strip() else None


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


# --- memory_note ---------------------------------------------------------------------------------------------------
def _note_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    note = inputs.get("content")
    payload: Dict[str, Any] = {"note": "" if note is None else note,
                               "tags": inputs["tags"] if isinstance(inputs.get("tags"), dict) else {}}
    if isinstance(inputs.get("sources"), dict):
        payload["sources"] = inputs["sources"]
    _strings(payload, inputs, ("location", "scope"))
    cfg = ctx.config if isinstance(ctx.config, dict) else {}
    if "keep_in_context" in inputs or "keepInContext" in inputs:
        keep = inputs["keep_in_context"] if "keep_in_context" in inputs else inputs["keepInContext"]
    else:
        keep = cfg["keep_in_context"] if "keep_in_context" in cfg else cfg.get("keepInContext")
    if coerce_bool(keep):
        payload["keep_in_context"] = True
    return payload


def _note_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    return {"note_id": _span_id(raw), "raw": raw}


# --- memory_query --------------------------------------------------------------------------------------------------
def _query_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    query = inputs.get("query")
    limit = _num(inputs.get("limit"), int) if not isinstance(inputs.get("limit"), bool) else None
    payload: Dict[str, Any] = {"query": "" if query is None else query,
                               "limit_spans": 10 if limit is None else limit, "return": "both"}
    _strings(payload, inputs, ("recall_level", "tags_mode", "scope"))
    if isinstance(inputs.get("tags"), dict):
        payload["tags"] = inputs["tags"]
    for key in ("usernames", "locations"):
        items = _string_list(inputs.get(key))
        if items is not None:
            payload[key] = items
    for key in ("since", "until"):
        if inputs.get(key) is not None:
            payload[key] = inputs[key]
    return payload


def _query_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    output = _first_result(raw).get("output")
    if isinstance(output, dict):  # the active_memory plugin's ``return: "both"`` output: {rendered, **meta}
        output = output.get("rendered")
    meta = _first_meta(raw)
    return {"rendered": output if isinstance(output, str) else "", "results": _list(meta.get("matches")),
            "span_ids": _list(meta.get("span_ids")), "raw": raw}


# --- memory_tag ----------------------------------------------------------------------------------------------------
def _tag_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"span_id": inputs["span_id"] if "span_id" in inputs else inputs.get("spanId"),
                               "tags": inputs["tags"] if isinstance(inputs.get("tags"), dict) else {}}
    if "merge" in inputs:
        payload["merge"] = coerce_bool(inputs["merge"])
    _strings(payload, inputs, ("scope",))
    return payload


def _tag_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    first = _first_result(raw)
    output = first.get("output")
    results = raw.get("results") if isinstance(raw, dict) else None
    return {"rendered": output if isinstance(output, str) else "", "success": first.get("success") is True,
            "results": _list(results), "raw": raw}


# --- memory_compact ------------------------------------------------------------------------------------------------
def _compact_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    payload: Dict[str, Any] = {}
    if inputs.get("preserve_recent") is not None:
        payload["preserve_recent"] = inputs["preserve_recent"]
    _strings(payload, inputs, ("compression_mode", "focus"))
    return payload


def _compact_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    return {"span_id": _first_meta(raw).get("span_id"), "raw": raw}


# --- memory_rehydrate ----------------------------------------------------------------------------------------------
def _rehydrate_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    ids = inputs.get("span_ids") if inputs.get("span_ids") is not None else inputs.get("span_id")
    placement = inputs.get("placement")
    placement = placement.strip() if isinstance(placement, str) else ""
    payload: Dict[str, Any] = {"span_ids": list(ids) if isinstance(ids, list) else [] if ids is None else [ids],
                               "placement": placement if placement in PLACEMENTS else "after_summary"}
    if inputs.get("max_messages") is not None:
        payload["max_messages"] = inputs["max_messages"]
    _strings(payload, inputs, ("recall_level",))
    return payload


def _rehydrate_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = raw if isinstance(raw, dict) else {}
    return {"inserted": r.get("inserted", 0), "skipped": r.get("skipped", 0), "artifacts": r.get("artifacts", []),
            "raw": raw} if isinstance(raw, dict) else {"inserted": 0, "skipped": 0, "artifacts": [], "raw": raw}


# --- memory_kg_assert ----------------------------------------------------------------------------------------------
def _kg_assert_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    items = _first_key(inputs, "assertions", "triples", "items")
    assertions = [items] if isinstance(items, dict) else [x for x in items if isinstance(x, dict)] \
        if isinstance(items, list) else []
    payload: Dict[str, Any] = {"assertions": assertions}
    _strings(payload, inputs, ("scope", "owner_id", "span_id"))
    defaults = inputs.get("attributes_defaults")
    if isinstance(defaults, dict) and defaults:
        payload["attributes_defaults"] = defaults
    if isinstance(inputs.get("allow_custom_predicates"), bool):
        payload["allow_custom_predicates"] = inputs["allow_custom_predicates"]
    return payload


def _kg_assert_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    if not isinstance(raw, dict):
        return {"assertion_ids": [], "count": 0, "ok": False, "raw": raw}
    return {"assertion_ids": _list(raw.get("assertion_ids")), "count": raw.get("count"), "ok": raw.get("ok"),
            "raw": raw}


# --- memory_kg_query -----------------------------------------------------------------------------------------------
KG_QUERY_STRINGS = ("subject", "predicate", "object", "recall_level", "scope", "owner_id", "since", "until",
                    "active_at", "query_text", "order", "model")
KG_PACKING = {"packets_version": None, "packets": [], "packed_count": 0, "active_memory_text": "",
              "estimated_tokens": 0, "dropped": 0, "warnings": None}


def _kg_query_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    payload: Dict[str, Any] = {}
    _strings(payload, inputs, KG_QUERY_STRINGS)
    budget = _num(_first_key(inputs, "max_input_tokens", "max_in_tokens"), _int_float)
    if budget is not None:
        payload["max_input_tokens"] = budget
    min_score = _num(inputs.get("min_score"), float)
    if min_score is not None:
        payload["min_score"] = min_score
    limit = _num(inputs.get("limit"), int)
    if limit is not None:
        payload["limit"] = limit
    return payload


def _kg_query_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    if not isinstance(raw, dict):
        out = {"items": [], "count": 0, "ok": False}
        out.update({k: v for k, v in KG_PACKING.items() if v is not None})
        out["raw"] = raw
        return out
    out = {"items": _list(raw.get("items")), "count": raw.get("count"), "ok": raw.get("ok")}
    out.update({k: raw[k] for k in KG_PACKING if k in raw})
    out["raw"] = raw
    return out


# --- memory_kg_resolve ---------------------------------------------------------------------------------------------
def _kg_resolve_payload(inputs: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    payload: Dict[str, Any] = {}
    _strings(payload, inputs, ("label", "expected_type", "recall_level", "scope", "owner_id"))
    semantic = _first_key(inputs, "include_semantic", "includeSemantic")
    if isinstance(semantic, bool):
        payload["include_semantic"] = semantic
    min_score = _num(_first_key(inputs, "min_score", "minScore"), float)
    if min_score is not None:
        payload["min_score"] = min_score
    cap = _num(_first_key(inputs, "max_candidates", "maxCandidates", "limit"), _int_float)
    if cap is not None:
        payload["max_candidates"] = cap
    return payload


def _kg_resolve_map(raw: Any, pre: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
    r = raw if isinstance(raw, dict) else {}
    out = {"candidates": _list(r.get("candidates")), "count": r.get("count", 0), "ok": r.get("ok", False)}
    if "warnings" in r:
        out["warnings"] = r["warnings"]
    out["raw"] = raw
    return out


# --- the node types ------------------------------------------------------------------------------------------------
def _placeholder(value: Dict[str, Any]) -> Callable[[Dict[str, Any], Any], Dict[str, Any]]:
    return lambda inputs, ctx: dict(value)


#: type -> (payload builder, placeholder, result mapper, main output, input pins, output pins)
MEMORY_NODES: Dict[str, Tuple[Any, Dict[str, Any], Any, str, str, str]] = {
    "memory_note": (_note_payload, {"note_id": None}, _note_map, "note_id",
                    "content tags sources location scope keep_in_context", "note_id raw"),
    "memory_query": (_query_payload, {"results": [], "rendered": ""}, _query_map, "results",
                     "query limit recall_level tags tags_mode usernames locations since until scope",
                     "results span_ids rendered raw"),
    "memory_tag": (_tag_payload, {"rendered": "", "success": False}, _tag_map, "rendered",
                   "span_id tags merge scope", "rendered success results raw"),
    "memory_compact": (_compact_payload, {"span_id": None}, _compact_map, "span_id",
                       "preserve_recent compression_mode focus", "span_id raw"),
    "memory_rehydrate": (_rehydrate_payload, {"inserted": 0, "skipped": 0}, _rehydrate_map, "raw",
                         "span_ids placement max_messages recall_level", "inserted skipped artifacts raw"),
    "memory_kg_assert": (_kg_assert_payload, {"assertion_ids": [], "count": 0}, _kg_assert_map, "assertion_ids",
                         "assertions scope owner_id span_id attributes_defaults allow_custom_predicates",
                         "assertion_ids count ok raw"),
    "memory_kg_query": (_kg_query_payload, {"items": [], "count": 0}, _kg_query_map, "items",
                        " ".join(KG_QUERY_STRINGS) + " max_input_tokens min_score limit",
                        "items count ok packets active_memory_text raw"),
    "memory_kg_resolve": (_kg_resolve_payload, {"candidates": [], "count": 0}, _kg_resolve_map, "candidates",
                          "label expected_type recall_level scope owner_id include_semantic min_score "
                          "max_candidates", "candidates count ok warnings raw"),
}


def memory_node_types() -> List[VisualNodeType]:
    x = "execution"
    types = []
    for name, (build, placeholder, mapper, main, ins, outs) in MEMORY_NODES.items():
        types.append(VisualNodeType(
            name, effect=EffectMapping(name, build, pre_output=_placeholder(placeholder), map_result=mapper,
                                       main_output=main),
            inputs=[("exec-in", x)] + ins.split(), outputs=[("exec-out", x)] + outs.split(),
            description=f"{name} effect (VAM §3)"))
    return types


__all__ = ["memory_node_types", "MEMORY_NODES"]
