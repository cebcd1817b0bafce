"""Memory sources of the ``llm_call`` and ``agent`` nodes (VAM §2.3 - §2.5): pins, recall scheduling, injection.

A node that accepts memory pins calls :func:`memory_sources` on its resolved inputs (the ``memory`` object pin is
expanded first, individual pins win), then :func:`schedule_memory_recall` on every pass: it returns the
``StepPlan`` of the next pre-call effect -- ``MEMORY_QUERY`` (span recall), ``MEMORY_REHYDRATE``, ``MEMORY_KG_QUERY``,
in that order, each re-entering the node -- or ``None`` once every enabled phase has a result. Results live at
``vars._temp.memory_sources.<node_id>.<slot>`` (``span_query``, ``span_rehydrate``, ``kg_query``) and bookkeeping at
``.._meta`` (``fingerprint``, ``span_ids``, ``warnings``), never at ``_temp.effects.<node_id>`` (the node's main
outcome). The recalled material is then read with :func:`recalled_span_messages` and :func:`kg_active_memory_text`.

The ``llm_call`` node keeps the bucket while its fingerprint (:func:`recall_fingerprint`) is unchanged, so a node
looping with identical inputs does not recall again; the agent node clears it (:func:`clear_memory_sources`) when it
re-enters after finishing.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Dict, List, Optional, Tuple

from attrs import asdict, frozen

from abstractruntime.logs import get_logger
from abstractruntime.models import Effect, StepPlan

log = get_logger("abstractruntime.visualflow")

BOOL_KEYS = ("use_span_memory", "use_kg_memory", "use_session_attachments", "use_semantic_search")
VALUE_KEYS = ("memory_query", "memory_scope", "recall_level", "max_span_messages", "kg_max_input_tokens", "kg_limit",
              "kg_min_score")
MEMORY_KEYS = BOOL_KEYS + VALUE_KEYS
SLOTS = ("span_query", "span_rehydrate", "kg_query")
DEFAULT_MAX_SPAN_MESSAGES = 80
DEFAULT_KG_MAX_INPUT_TOKENS = 1200
KG_HEADER = "## KG ACTIVE MEMORY"
WARN_SEMANTIC = "use_semantic_search is not implemented yet (planned: 464); ignoring."
WARN_SPAN_DEFAULT = ("use_span_memory enabled without recall_level/max_span_messages; "
                     "defaulting max_span_messages=80.")
WARN_KG_DEFAULT = ("use_kg_memory enabled without recall_level/kg_max_input_tokens; "
                   "defaulting kg_max_input_tokens=1200.")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


# --- coercions -----------------------------------------------------------------------------------------------------
def boolish(value: Any) -> Optional[bool]:
    """Tri-state: bools as they are, numbers ``!= 0``, ``true/1/yes/on`` / ``false/0/no/off``; None otherwise
    (null, blank or unrecognised strings, other types)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text and text in _FALSE:
            return False
    return None


def coerce_bool(value: Any) -> bool:
    """:func:`boolish`, with false for everything it leaves undecided."""
    return boolish(value) is True


def _int_or_none(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _float_or_none(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _text(value: Any, lower: bool) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower() if lower else value.strip()


# --- the options -----------------------------------------------------------------------------------------------------
@frozen
class MemorySources:
    """The memory-source options of one node pass (VAM §2.3). Booleans are tri-state (None: not given)."""

    use_span_memory: Optional[bool] = None
    use_kg_memory: Optional[bool] = None
    use_session_attachments: Optional[bool] = None
    use_semantic_search: Optional[bool] = None
    memory_query: Optional[str] = None
    memory_scope: str = "run"
    recall_level: Any = None
    max_span_messages: Optional[int] = None
    kg_max_input_tokens: Optional[int] = None
    kg_limit: Optional[int] = None
    kg_min_score: Optional[float] = None

    @property
    def any_recall(self) -> bool:
        return self.use_span_memory is True or self.use_kg_memory is True


def expand_memory_pin(inputs: Dict[str, Any]) -> Dict[str, Any]:
    """``inputs`` with the keys of the ``memory`` object pin filled in where no individual pin gives them (non-null
    values only; booleans through :func:`coerce_bool`)."""
    out = dict(inputs)
    memory = inputs.get("memory")
    if isinstance(memory, dict):
        for key in MEMORY_KEYS:
            if memory.get(key) is not None and inputs.get(key) is None:
                out[key] = coerce_bool(memory[key]) if key in BOOL_KEYS else memory[key]
    return out


def memory_sources(inputs: Dict[str, Any], *, lower: bool = False) -> MemorySources:
    """The memory options of a node's resolved inputs. ``lower`` (the agent) lower-cases scope and recall level."""
    x = expand_memory_pin(inputs)
    level = x.get("recall_level")
    level = _text(level, lower) if isinstance(level, str) else level  # non-strings go on: the effect refuses them
    query = x.get("memory_query")
    return MemorySources(
        **{k: boolish(x.get(k)) for k in BOOL_KEYS},
        memory_query=query if isinstance(query, str) and query.strip() else None,
        memory_scope=_text(x.get("memory_scope"), lower) or "run", recall_level=level,
        max_span_messages=_int_or_none(x.get("max_span_messages")),
        kg_max_input_tokens=_int_or_none(x.get("kg_max_input_tokens")), kg_limit=_int_or_none(x.get("kg_limit")),
        kg_min_score=_float_or_none(x.get("kg_min_score")))


def recall_fingerprint(sources: MemorySources, *, query: str, prompt: Any = None, system_prompt: Any = None,
                       provider: Any = None, model: Any = None) -> str:
    """32 hex chars identifying an LLM node's recall inputs (VAM §2.4 cache rule)."""
    def s(v: Any) -> str:
        return v.strip() if isinstance(v, str) else ""

    data = asdict(sources)
    data.update(memory_query=query, prompt=s(prompt), system_prompt=s(system_prompt), provider=s(provider),
                model=s(model))
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --- the bucket ----------------------------------------------------------------------------------------------------
def memory_bucket(vars: Dict[str, Any], node_id: str) -> Dict[str, Any]:
    """``vars._temp.memory_sources.<node_id>`` (created), with its ``_meta`` dict."""
    temp = vars.get("_temp")
    if not isinstance(temp, dict):
        temp = vars["_temp"] = {}
    all_sources = temp.get("memory_sources")
    if not isinstance(all_sources, dict):
        all_sources = temp["memory_sources"] = {}
    bucket = all_sources.get(node_id)
    if not isinstance(bucket, dict):
        bucket = all_sources[node_id] = {}
    if not isinstance(bucket.get("_meta"), dict):
        bucket["_meta"] = {}
    return bucket


def clear_memory_sources(vars: Dict[str, Any], node_id: str) -> None:
    """Forget the node's recall results and warnings (the agent, when it re-enters after finishing)."""
    temp = vars.get("_temp")
    all_sources = temp.get("memory_sources") if isinstance(temp, dict) else None
    if isinstance(all_sources, dict):
        all_sources.pop(node_id, None)


def use_fingerprint(vars: Dict[str, Any], node_id: str, fingerprint: str) -> Dict[str, Any]:
    """The LLM node's bucket: kept when ``fingerprint`` is the stored one, else cleared; the fingerprint stored."""
    bucket = memory_bucket(vars, node_id)
    if bucket["_meta"].get("fingerprint") != fingerprint:
        bucket.clear()
        bucket["_meta"] = {}
    bucket["_meta"]["fingerprint"] = fingerprint
    return bucket


def _warn(bucket: Dict[str, Any], message: str) -> None:
    warnings = bucket["_meta"].setdefault("warnings", [])
    if message not in warnings:
        warnings.append(message)


def _span_ids(span_query: Any) -> List[str]:
    results = span_query.get("results") if isinstance(span_query, dict) else None
    first = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else {}
    meta = first.get("meta") if isinstance(first.get("meta"), dict) else {}
    ids = meta.get("span_ids") if isinstance(meta.get("span_ids"), list) else []
    return [str(x).strip() for x in ids if x is not None and str(x).strip()]


def schedule_memory_recall(vars: Dict[str, Any], node_id: str, sources: MemorySources, *, query: Any,
                           model: Any = None) -> Optional[StepPlan]:
    """The ``StepPlan`` of the next pre-call recall effect of node ``node_id`` (VAM §2.4), or None when none is left.

    Shared by the ``llm_call`` and ``agent`` nodes: ``query`` is the derived recall query (``memory_query``, else
    the prompt / last user message, or the agent's task), ``model`` the call's model (forwarded to the KG query).
    The plan re-enters the node (``next_node`` = the node); its result lands at
    ``_temp.memory_sources.<node_id>.<slot>``. :func:`next_recall_effect` gives the same as a tuple.
    """
    effect = next_recall_effect(vars, node_id, sources, query=query, model=model)
    if effect is None:
        return None
    effect_type, payload, slot = effect
    return StepPlan(node_id=node_id, effect=Effect(type=effect_type, payload=payload,
                                                   result_key=f"_temp.memory_sources.{node_id}.{slot}"),
                    next_node=node_id)


def _plan(node_id: str, effect_type: str, payload: Dict[str, Any], slot: str) -> Tuple[str, Dict[str, Any], str]:
    return effect_type, payload, slot


def next_recall_effect(vars: Dict[str, Any], node_id: str, sources: MemorySources, *, query: Any,
                       model: Any = None) -> Optional[Tuple[str, Dict[str, Any], str]]:
    """``(effect_type, payload, slot)`` of the next recall effect (see :func:`schedule_memory_recall`), or None."""
    bucket = memory_bucket(vars, node_id)
    if sources.use_semantic_search is True:
        _warn(bucket, WARN_SEMANTIC)
    text = query.strip() if isinstance(query, str) else ""
    level = sources.recall_level
    if sources.use_span_memory is True:
        if "span_query" not in bucket and text:
            payload: Dict[str, Any] = {"query": text, "scope": sources.memory_scope, "return": "meta"}
            if level is not None:
                payload["recall_level"] = level
            return _plan(node_id, "memory_query", payload, "span_query")
        if "span_rehydrate" not in bucket:
            span_ids = _span_ids(bucket.get("span_query"))
            bucket["_meta"]["span_ids"] = span_ids
            payload = {"span_ids": span_ids, "placement": "after_summary"}
            if level is not None:
                payload["recall_level"] = level
            if sources.max_span_messages is not None:
                payload["max_messages"] = sources.max_span_messages
            elif level is None:
                payload["max_messages"] = DEFAULT_MAX_SPAN_MESSAGES
                _warn(bucket, WARN_SPAN_DEFAULT)
            return _plan(node_id, "memory_rehydrate", payload, "span_rehydrate")
    if sources.use_kg_memory is True and "kg_query" not in bucket and text:
        payload = {"query_text": text, "scope": sources.memory_scope}
        if level is not None:
            payload["recall_level"] = level
        if sources.kg_min_score is not None:
            payload["min_score"] = sources.kg_min_score
        if sources.kg_limit is not None:
            payload["limit"] = sources.kg_limit
        if sources.kg_max_input_tokens is not None:
            payload["max_input_tokens"] = sources.kg_max_input_tokens
        elif level is None:
            payload["max_input_tokens"] = DEFAULT_KG_MAX_INPUT_TOKENS
            _warn(bucket, WARN_KG_DEFAULT)
        if isinstance(model, str) and model.strip():
            payload["model"] = model.strip()
        return _plan(node_id, "memory_kg_query", payload, "kg_query")
    return None


# --- reading the recalled material -----------------------------------------------------------------------------------
def kg_active_memory_text(vars: Dict[str, Any], node_id: str, sources: MemorySources) -> str:
    """The KG Active-Memory text recalled for the node (stripped; ``""`` when KG recall is off or found nothing)."""
    if sources.use_kg_memory is not True:
        return ""
    bucket = memory_bucket(vars, node_id)
    result = bucket.get("kg_query")
    text = result.get("active_memory_text") if isinstance(result, dict) else None
    return text.strip() if isinstance(text, str) else ""


def recalled_span_messages(vars: Dict[str, Any], node_id: str) -> List[Dict[str, Any]]:
    """Copies of the run's context messages that the node's span recall rehydrated (``metadata.rehydrated`` true
    and ``metadata.source_artifact_id`` among the recalled span ids), in context order."""
    span_ids = set(memory_bucket(vars, node_id)["_meta"].get("span_ids") or [])
    context = vars.get("context")
    messages = context.get("messages") if isinstance(context, dict) else None
    out = []
    for m in messages if isinstance(messages, list) else []:
        meta = m.get("metadata") if isinstance(m, dict) else None
        if isinstance(meta, dict) and meta.get("rehydrated") is True and meta.get("source_artifact_id") in span_ids:
            out.append(dict(m))
    return out


__all__ = ["MemorySources", "memory_sources", "expand_memory_pin", "schedule_memory_recall", "next_recall_effect",
           "recall_fingerprint",
           "memory_bucket", "use_fingerprint", "clear_memory_sources", "kg_active_memory_text",
           "recalled_span_messages", "boolish", "coerce_bool", "MEMORY_KEYS", "KG_HEADER"]
