"""MEMORY_KG_ASSERT: validate every assertion first, then write the new ones in one batch.

Payload: ``assertions`` (else ``triples``, else ``items``): a list of ``{subject, predicate, object, ...}``;
``scope`` (default ``run``), ``owner_id``, ``span_id``, ``attributes_defaults``, ``allow_custom_predicates`` (or
``allow_custom``), ``dedupe`` / ``deduplicate`` (default true).

Nothing is written unless every assertion is valid (a non-object item, a missing term, an unknown predicate or
scope fails the effect and leaves the store untouched). Ids derive from the step's key: a step re-run after a crash
finds its own rows and writes nothing twice (the store ignores a known id).
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime import EffectOutcome

from .errors import UnknownMemoryScopeError
from .kg_call import KgCall
from .owners import SCOPES, normalize_scope
from .terms import MAX_LISTED_UNKNOWN, abstractmemory_types, canonical_predicate, slug_term, text_term

REQUIRED = "MEMORY_KG_ASSERT requires payload.assertions (list[object])"


def _items(payload: Dict[str, Any]) -> Optional[List[Any]]:
    for key in ("assertions", "triples", "items"):
        if payload.get(key) is not None:
            value = payload[key]
            return list(value) if isinstance(value, (list, tuple)) else None
    return None


def _flag(payload: Dict[str, Any], *keys: str, default: bool) -> bool:
    for key in keys:
        if isinstance(payload.get(key), bool):
            return payload[key]
    return default


def _assertion_id(key: str, index: int) -> str:
    return "kga_" + hashlib.sha256(f"{key}#{index}".encode("utf-8")).hexdigest()[:32]


def _prepare(kg: KgCall, items: List[Any]) -> Tuple[List[Any], List[str]]:
    """The TripleAssertions to write (in order), or the problems that refuse the whole batch."""
    TripleAssertion, _ = abstractmemory_types("MEMORY_KG_ASSERT")
    payload = kg.payload
    allow_custom = _flag(payload, "allow_custom_predicates", "allow_custom", default=False)
    default_scope = normalize_scope(payload.get("scope"))
    payload_owner = payload.get("owner_id") if isinstance(payload.get("owner_id"), str) else None
    span_id = payload.get("span_id") if isinstance(payload.get("span_id"), str) and payload["span_id"].strip() \
        else None
    defaults = payload.get("attributes_defaults") if isinstance(payload.get("attributes_defaults"), dict) else {}
    problems: List[str] = []
    unknown: List[str] = []
    out: List[Any] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"assertions[{i}] must be an object, got {type(item).__name__}")
            continue
        s, p, o = (text_term(item.get(k)) for k in ("subject", "predicate", "object"))
        if s is None or p is None or o is None:
            problems.append(f"assertions[{i}] needs a non-empty subject, predicate and object")
            continue
        predicate = canonical_predicate(p, allow_custom=allow_custom)
        if predicate is None:
            if p.strip() not in unknown:
                unknown.append(p.strip())
            continue
        scope = normalize_scope(item.get("scope"), default=default_scope)
        if scope not in SCOPES:
            problems.append(f"assertions[{i}]: {UnknownMemoryScopeError(scope)} (use run, session or global)")
            continue
        owner = item.get("owner_id") if isinstance(item.get("owner_id"), str) and item["owner_id"].strip() \
            else (payload_owner.strip() if payload_owner and payload_owner.strip() else kg.owner_id(scope))
        provenance = dict(item.get("provenance") or {}) if isinstance(item.get("provenance"), dict) else {}
        if span_id:
            provenance.setdefault("span_id", span_id.strip())
        provenance.setdefault("writer_run_id", kg.run.run_id)
        provenance.setdefault("writer_workflow_id", kg.run.workflow_id)
        attributes = {**defaults, **(item.get("attributes") if isinstance(item.get("attributes"), dict) else {})}
        confidence = item.get("confidence")
        given_id = item.get("assertion_id") if isinstance(item.get("assertion_id"), str) else None
        out.append(TripleAssertion(
            subject=slug_term(s), predicate=predicate, object=slug_term(o), scope=scope, owner_id=owner,
            observed_at=item.get("observed_at") if isinstance(item.get("observed_at"), str) and
            item["observed_at"].strip() else kg.now_iso(),
            valid_from=item.get("valid_from") if isinstance(item.get("valid_from"), str) else None,
            valid_until=item.get("valid_until") if isinstance(item.get("valid_until"), str) else None,
            confidence=float(confidence) if isinstance(confidence, (int, float)) and not isinstance(
                confidence, bool) else None,
            provenance=provenance, attributes=attributes,
            assertion_id=given_id or _assertion_id(kg.key, i)))
    if unknown:
        listed = ", ".join(unknown[:MAX_LISTED_UNKNOWN]) + (", ..." if len(unknown) > MAX_LISTED_UNKNOWN else "")
        problems.append(f"Unknown KG predicate(s): {listed}. Use predicates of the abstractsemantics registry "
                        f"(e.g. schema:name, rdf:type, dcterms:description), or ex:* predicates with "
                        f"allow_custom_predicates=true")
    return out, problems


def _is_duplicate(kg: KgCall, assertion: Any, own_ids: set) -> bool:
    _, TripleQuery = abstractmemory_types("MEMORY_KG_ASSERT")
    rows = kg.store.query(TripleQuery(subject=assertion.subject, predicate=assertion.predicate,
                                      object=assertion.object, scope=assertion.scope, owner_id=assertion.owner_id,
                                      limit=len(own_ids) + 1))
    return any(getattr(r, "assertion_id", None) not in own_ids and r.object == assertion.object
               and (r.owner_id or None) == (assertion.owner_id or None) for r in rows)


def kg_assert(kg: KgCall) -> EffectOutcome:
    items = _items(kg.payload)
    if items is None:
        return EffectOutcome.failed(REQUIRED)
    if not items:
        return EffectOutcome.completed({"ok": True, "count": 0, "assertion_ids": [], "skipped": True})
    prepared, problems = _prepare(kg, items)
    if problems:
        return EffectOutcome.failed("MEMORY_KG_ASSERT refused (nothing was written): " + "; ".join(problems))
    _, TripleQuery = abstractmemory_types("MEMORY_KG_ASSERT")
    ids = [a.assertion_id for a in prepared]
    own = {r.assertion_id for r in kg.store.query(TripleQuery(assertion_ids=tuple(ids), limit=0))}
    dedupe = _flag(kg.payload, "dedupe", "deduplicate", default=True)
    to_write: List[Any] = []
    seen = set()
    skipped = 0
    for assertion in prepared:
        key = (assertion.subject, assertion.predicate, assertion.object, assertion.scope, assertion.owner_id)
        if assertion.assertion_id in own:  # written by an earlier attempt of this step
            to_write.append(assertion)
            seen.add(key)
            continue
        if dedupe and (key in seen or _is_duplicate(kg, assertion, own)):
            skipped += 1
            continue
        seen.add(key)
        to_write.append(assertion)
    written = [str(i) for i in kg.store.add(to_write)] if to_write else []
    result = {"ok": True, "count": len(written), "assertion_ids": written, "count_attempted": len(items),
              "skipped_duplicates": skipped}
    return EffectOutcome.completed(kg.with_warnings(result))


__all__ = ["kg_assert", "REQUIRED"]
