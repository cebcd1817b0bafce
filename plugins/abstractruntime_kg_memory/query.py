"""MEMORY_KG_QUERY: filter (or semantically search) the assertions of one scope owner, or of all three, and
optionally pack them into the "KG ACTIVE MEMORY" text for a token budget.

Payload: ``subject``, ``predicate``, ``object``, ``since``, ``until``, ``active_at``, ``query_text`` (semantic; needs
an embedder on the store), ``scope`` (``run`` default, ``session``, ``global``, ``all``), ``owner_id``, ``order``
(``desc`` default / ``asc``), ``limit``, ``min_score``, ``max_input_tokens``, ``model``, ``recall_level``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime import EffectOutcome
from abstractruntime.errors import ValidationError
from abstractruntime_active_memory.kg_packets import (
    KG_MEMORY_PACKETS_VERSION,
    pack_active_memory_text,
    packetize_assertions,
)
from abstractruntime_active_memory.recall_levels import parse_recall_level, policy_for

from .kg_call import KgCall
from .owners import SCOPES, normalize_scope
from .terms import abstractmemory_types, canonical_predicate, slug_term, text_option

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


def number_or_none(value: Any, kind: type) -> Optional[Any]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    return int(number) if kind is int else number


def _clamp(kg: KgCall, level: str, name: str, value: Any, low: Any, high: Any) -> Any:
    clamped = min(max(value, low), high)
    if clamped != value:
        kg.warn(f"recall_level={level}: clamped {name} from {value} to {clamped}")
    return clamped


def _budget(kg: KgCall, semantic: bool) -> Tuple[int, Optional[float], int, Optional[Dict[str, Any]]]:
    """``(limit, min_score, max_input_tokens, effort)`` from the payload and the recall level (if any)."""
    payload = kg.payload
    level = parse_recall_level(payload.get("recall_level"))  # ValueError fails the effect
    limit = number_or_none(payload.get("limit"), int)
    min_score = number_or_none(payload.get("min_score"), float)
    budget = number_or_none(payload.get("max_input_tokens"), int)
    if level is None:
        limit = DEFAULT_LIMIT if limit is None else min(max(limit, 1), MAX_LIMIT)
        return limit, min_score, budget if budget is not None and budget > 0 else 0, None
    policy = policy_for(level).kg
    name = level.value
    limit = policy.limit_default if limit is None else _clamp(kg, name, "limit", limit, 1, policy.limit_max)
    if semantic:
        min_score = policy.min_score_default if min_score is None else _clamp(
            kg, name, "min_score", min_score, policy.min_score_floor, 1.0)
    else:
        min_score = None
    if budget is None:
        budget = policy.max_input_tokens_default
    elif budget > 0:
        budget = _clamp(kg, name, "max_input_tokens", budget, 1, policy.max_input_tokens_max)
    budget = max(budget, 0)
    effort = {"recall_level": name, "limit": limit, "min_score": min_score, "max_input_tokens": budget}
    return limit, min_score, budget, effort


def _term(payload: Dict[str, Any], key: str) -> Optional[str]:
    text = text_option(payload, key)
    if text is None:
        return None
    if key == "predicate":
        return canonical_predicate(text, allow_custom=True) or text
    return slug_term(text)


def _score(item: Dict[str, Any]) -> float:
    retrieval = (item.get("attributes") or {}).get("_retrieval") if isinstance(item.get("attributes"), dict) else None
    score = retrieval.get("score") if isinstance(retrieval, dict) else None
    return float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else float("-inf")


def run_owner_queries(kg: KgCall, owners: List[Tuple[str, str]], **filters: Any) -> Tuple[List[Dict[str, Any]],
                                                                                          List[str]]:
    """Query each ``(scope, owner)``; ``(items as dicts, errors)``."""
    _, TripleQuery = abstractmemory_types("MEMORY_KG_QUERY")
    items: List[Dict[str, Any]] = []
    errors: List[str] = []
    for scope, owner in owners:
        try:
            rows = kg.store.query(TripleQuery(scope=scope, owner_id=owner, **filters))
        except Exception as exc:  # one owner's failure (no embedder, a locked file) must not hide the others
            errors.append(f"{scope}: {exc}")
            continue
        items.extend(row.to_dict() for row in rows)
    return items, errors


def kg_query(kg: KgCall) -> EffectOutcome:
    payload = kg.payload
    scope = normalize_scope(payload.get("scope"))
    if scope not in SCOPES + ("all",):
        return EffectOutcome.completed({"ok": False, "count": 0, "items": [],
                                        "error": f"Unknown memory scope: {scope}"})
    query_text = text_option(payload, "query_text")
    semantic = query_text is not None
    try:
        limit, min_score, budget, effort = _budget(kg, semantic)
    except ValidationError as exc:  # an unknown recall_level
        return EffectOutcome.failed(f"MEMORY_KG_QUERY: {exc}")
    owner_given = text_option(payload, "owner_id")
    if scope == "all":
        owners = [(s, kg.owner_id(s)) for s in SCOPES]
    else:
        owners = [(scope, owner_given or kg.owner_id(scope))]
    order = "asc" if (text_option(payload, "order") or "desc").lower() == "asc" else "desc"
    filters = {k: _term(payload, k) for k in ("subject", "predicate", "object")}
    filters.update({k: text_option(payload, k) for k in ("since", "until", "active_at")})
    items, errors = run_owner_queries(kg, owners, query_text=query_text, min_score=min_score, limit=limit,
                                      order=order, **filters)
    if not items and errors:
        return EffectOutcome.completed({"ok": False, "count": 0, "items": [], "error": " | ".join(errors)})
    for error in errors:
        kg.warn(error)
    if semantic:
        items.sort(key=_score, reverse=True)
    else:
        items.sort(key=lambda i: str(i.get("observed_at") or ""), reverse=order == "desc")
    items = items[:limit]
    result: Dict[str, Any] = {"ok": True, "count": len(items), "items": items}
    if effort is not None:
        result["effort"] = effort
    if budget > 0:
        text, kept, tokens, dropped = pack_active_memory_text(
            packetize_assertions(items), scope=scope, max_input_tokens=budget,
            model=text_option(payload, "model"), include_scores=semantic)
        result.update({"packets_version": KG_MEMORY_PACKETS_VERSION, "packets": kept, "packed_count": len(kept),
                       "active_memory_text": text, "estimated_tokens": tokens, "dropped": dropped})
    return EffectOutcome.completed(kg.with_warnings(result))


__all__ = ["kg_query", "run_owner_queries", "DEFAULT_LIMIT", "MAX_LIMIT"]
