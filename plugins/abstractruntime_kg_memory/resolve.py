"""MEMORY_KG_RESOLVE: which ``ex:`` entities a label names.

Exact matches of the label (lower-cased, whitespace collapsed) on ``schema:name``, ``skos:prefLabel``,
``skos:altLabel``, ``dcterms:title``, ``dcterms:identifier``; a semantic fallback by recall level (``urgent``: none,
at most 3; ``standard`` or none: only without an exact hit, at most 5; ``deep``: always, at most 10; a boolean
``include_semantic`` overrides: true = only without an exact hit, false = never); ``max_candidates`` 1..50; an
``expected_type`` keeps the entities with that ``rdf:type``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from abstractruntime import EffectOutcome
from abstractruntime.errors import ValidationError
from abstractruntime_active_memory.recall_levels import RecallLevel, parse_recall_level, policy_for

from .kg_call import KgCall
from .owners import SCOPES, normalize_scope
from .query import number_or_none, run_owner_queries
from .terms import slug_term, text_option

LABEL_PREDICATES = ("schema:name", "skos:preflabel", "skos:altlabel", "dcterms:title", "dcterms:identifier")
_MODES = {None: ("fallback", 5), RecallLevel.URGENT: ("none", 3), RecallLevel.STANDARD: ("fallback", 5),
          RecallLevel.DEEP: ("always", 10)}


def _collapse(text: Any) -> str:
    return " ".join(str(text or "").split()).lower()


def _evidence(item: Dict[str, Any]) -> Dict[str, Any]:
    return {k: item[k] for k in ("assertion_id", "subject", "predicate", "object", "observed_at") if k in item}


def _add(found: Dict[Tuple[str, str, str], Dict[str, Any]], item: Dict[str, Any], score: float) -> None:
    subject = str(item.get("subject") or "")
    if not subject.startswith("ex:"):
        return
    key = (subject, str(item.get("scope") or ""), str(item.get("owner_id") or ""))
    entry = found.setdefault(key, {"id": subject, "label": None, "types": [], "scope": key[1], "owner_id": key[2],
                                   "score": score, "evidence": []})
    if entry["label"] is None and str(item.get("predicate")) in LABEL_PREDICATES:
        entry["label"] = item.get("object")
    entry["score"] = max(entry["score"], score)
    entry["evidence"].append(_evidence(item))


def kg_resolve(kg: KgCall) -> EffectOutcome:
    payload = kg.payload
    label = text_option(payload, "label", "query", "query_text")
    if label is None:
        return EffectOutcome.completed({"ok": False, "count": 0, "candidates": [], "error": "label is required"})
    try:
        level = parse_recall_level(payload.get("recall_level"))
    except ValidationError as exc:
        return EffectOutcome.failed(f"MEMORY_KG_RESOLVE: {exc}")
    mode, default_max = _MODES[level]
    if isinstance(payload.get("include_semantic"), bool):
        mode = "fallback" if payload["include_semantic"] else "none"
    requested = number_or_none(payload.get("max_candidates"), int)
    max_candidates = min(max(requested if requested is not None else default_max, 1), 50)
    scope = normalize_scope(payload.get("scope"))
    if scope not in SCOPES + ("all",):
        return EffectOutcome.completed({"ok": False, "count": 0, "candidates": [],
                                        "error": f"Unknown memory scope: {scope}"})
    owner_given = text_option(payload, "owner_id")
    owners = [(s, kg.owner_id(s)) for s in SCOPES] if scope == "all" else [(scope, owner_given or kg.owner_id(scope))]
    wanted = _collapse(label)
    found: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    for predicate in LABEL_PREDICATES:
        items, errors = run_owner_queries(kg, owners, predicate=predicate, limit=0)
        for error in errors:
            kg.warn(error)
        for item in items:
            if _collapse(item.get("object")) == wanted:
                _add(found, item, 1.0)
    if mode == "always" or (mode == "fallback" and not found):
        min_score = number_or_none(payload.get("min_score"), float)
        if min_score is None and level is not None:
            min_score = policy_for(level).kg.min_score_default
        items, errors = run_owner_queries(kg, owners, query_text=label, min_score=min_score,
                                          limit=max_candidates * 4)
        for error in errors:
            kg.warn(f"semantic fallback: {error}")
        for item in items:
            score = ((item.get("attributes") or {}).get("_retrieval") or {}).get("score")
            _add(found, item, float(score) if isinstance(score, (int, float)) else 0.0)
    expected = text_option(payload, "expected_type")
    candidates: List[Dict[str, Any]] = []
    for (subject, c_scope, c_owner), entry in found.items():
        types, _errors = run_owner_queries(kg, [(c_scope, c_owner)], subject=subject, predicate="rdf:type", limit=0)
        entry["types"] = sorted({str(t.get("object")) for t in types})
        if expected is not None and slug_term(expected).lower() not in entry["types"]:
            continue
        candidates.append(entry)
    candidates.sort(key=lambda c: (-c["score"], c["id"]))
    candidates = candidates[:max_candidates]
    result = {"ok": True, "count": len(candidates), "candidates": candidates,
              "raw": {"label": label, "expected_type": expected}}
    return EffectOutcome.completed(kg.with_warnings(result, durability=False))


__all__ = ["kg_resolve", "LABEL_PREDICATES"]
