"""Knowledge-graph assertions as compact packets and as an "Active Memory" text block that fits a token budget
(reference path ``abstractruntime.memory.kg_packets``)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .token_budget import estimate_tokens

KG_MEMORY_PACKETS_VERSION = 0


def _clean(value: Any) -> str:
    """Whitespace collapsed; non-strings give ``""``."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def statement_of(subject: str, predicate: str, obj: str) -> str:
    return f"{subject} —{predicate}→ {obj}"


def packetize_assertions(items: Any) -> List[Dict[str, Any]]:
    """One packet per assertion dict with a non-blank subject, predicate and object, de-duplicated by case-folded
    ``(subject, predicate, object)`` and ``observed_at``, in the given order."""
    packets: List[Dict[str, Any]] = []
    seen = set()
    for item in items if isinstance(items, (list, tuple)) else []:
        if not isinstance(item, Mapping):
            continue
        s, p, o = _clean(item.get("subject")), _clean(item.get("predicate")), _clean(item.get("object"))
        if not (s and p and o):
            continue
        observed_at = _clean(item.get("observed_at"))
        key = (s.casefold(), p.casefold(), o.casefold(), observed_at)
        if key in seen:
            continue
        seen.add(key)
        packet: Dict[str, Any] = {"version": KG_MEMORY_PACKETS_VERSION, "statement": statement_of(s, p, o),
                                  "subject": s, "predicate": p, "object": o}
        provenance = item.get("provenance") if isinstance(item.get("provenance"), Mapping) else {}
        optional = {"observed_at": observed_at, "scope": _clean(item.get("scope")),
                    "owner_id": _clean(item.get("owner_id")), "span_id": _clean(provenance.get("span_id")),
                    "writer_run_id": _clean(provenance.get("writer_run_id")),
                    "writer_workflow_id": _clean(provenance.get("writer_workflow_id"))}
        packet.update({k: v for k, v in optional.items() if v})
        attributes = item.get("attributes") if isinstance(item.get("attributes"), Mapping) else {}
        retrieval = attributes.get("_retrieval") if isinstance(attributes.get("_retrieval"), Mapping) else {}
        score = retrieval.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            packet["retrieval_score"] = float(score)
        packets.append(packet)
    return packets


def _line(packet: Mapping[str, Any], include_scores: bool) -> str:
    statement = _clean(packet.get("statement")) or statement_of(
        _clean(packet.get("subject")), _clean(packet.get("predicate")), _clean(packet.get("object")))
    when = _clean(packet.get("observed_at"))
    suffix = []
    if _clean(packet.get("span_id")):
        suffix.append(f"span:{_clean(packet.get('span_id'))}")
    score = packet.get("retrieval_score")
    if include_scores and isinstance(score, (int, float)) and not isinstance(score, bool):
        suffix.append(f"score:{score:.3f}")
    return "- " + (f"[{when}] " if when else "") + statement + (f" ({'; '.join(suffix)})" if suffix else "")


def pack_active_memory_text(packets: Sequence[Mapping[str, Any]], *, scope: str, max_input_tokens: int,
                            model: Optional[str] = None, title: str = "KG ACTIVE MEMORY",
                            include_scores: bool = True) -> Tuple[str, List[Dict[str, Any]], int, int]:
    """``(text, kept packets, estimated tokens, dropped count)``: the packets, in the order given, as long as the
    text fits ``max_input_tokens``. A budget that is not positive gives ``("", [], 0, 0)``."""
    if isinstance(max_input_tokens, bool) or not isinstance(max_input_tokens, int) or max_input_tokens <= 0:
        return "", [], 0, 0
    packets = [p for p in packets or [] if isinstance(p, Mapping)]
    scope = _clean(scope) or "session"
    order = "similarity-desc" if include_scores else "observed_at-desc"
    header = f"## {title}\n(scope={scope}; order={order}; budget={max_input_tokens} max_input_tokens)\n"
    text, used = header, estimate_tokens(header, model=model)
    kept: List[Dict[str, Any]] = []
    for packet in packets:
        line = "\n" + _line(packet, include_scores)
        cost = estimate_tokens(line, model=model)
        if used + cost > max_input_tokens:
            break
        text, used = text + line, used + cost
        kept.append(dict(packet))
    if not kept:
        return "", [], 0, len(packets)
    return text, kept, used, len(packets) - len(kept)


__all__ = ["KG_MEMORY_PACKETS_VERSION", "packetize_assertions", "pack_active_memory_text"]
