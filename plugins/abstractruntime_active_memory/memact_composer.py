"""Refresh the MemAct ``CURRENT CONTEXT`` module from a knowledge-graph query result (reference path
``abstractruntime.memory.memact_composer``)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from .kg_packets import packetize_assertions, statement_of
from .memact import apply_memact_envelope, ensure_memact_memory, render_memact_blocks, render_memact_system_prompt


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _statement(packet: Mapping[str, Any]) -> Optional[str]:
    statement = _text(packet.get("statement"))
    if statement:
        return statement
    s, p, o = (_text(packet.get(k)) for k in ("subject", "predicate", "object"))
    return statement_of(s, p, o) if s and p and o else None


def compose_memact_current_context_from_kg_result(vars: Any, *, kg_result: Any, stimulus: str, marker: str = "KG:",
                                                  max_items: Optional[int] = None) -> Dict[str, Any]:
    """Replace the ``<marker>`` lines of ``current_context`` with the KG result's packets (or its packetised
    ``items``): returns ``{ok, delta, trace, active_memory, memact_system_prompt, memact_blocks}``."""
    if not isinstance(vars, dict):
        return {"ok": False, "error": "vars must be a dict"}
    if not isinstance(kg_result, dict):
        return {"ok": False, "error": "kg_result must be a dict"}
    marker = _text(marker) or "KG:"
    memory = ensure_memact_memory(vars)
    removed = [str(r.get("text")) for r in memory["current_context"]
               if str(r.get("text") or "").lower().startswith(marker.lower())]
    packets: List[Any] = []
    source = "none"
    if isinstance(kg_result.get("packets"), list) and kg_result["packets"]:
        packets, source = list(kg_result["packets"]), "kg_result.packets"
    elif isinstance(kg_result.get("items"), list) and kg_result["items"]:
        try:
            packets, source = packetize_assertions(kg_result["items"]), "packetize_assertions(items)"
        except Exception:  # a malformed item must not lose the rest of the composition
            packets, source = [], "packetize_failed"
    if isinstance(max_items, int) and not isinstance(max_items, bool) and max_items > 0:
        packets = packets[:max_items]
    added: List[str] = []
    selected: List[Dict[str, Any]] = []
    for packet in packets:
        if not isinstance(packet, Mapping):
            continue
        statement = _statement(packet)
        if statement is None:
            continue
        suffix = [f"{label}:{_text(packet.get(key))}" for label, key in (("span", "span_id"),
                                                                         ("wf", "writer_workflow_id"))
                  if _text(packet.get(key))]
        added.append(f"{marker} {statement}" + (f" ({'; '.join(suffix)})" if suffix else ""))
        if len(selected) < 50:
            selected.append({"statement": statement, "span_id": packet.get("span_id"),
                             "observed_at": packet.get("observed_at"),
                             "retrieval_score": packet.get("retrieval_score")})
    delta = {"current_context": {"added": added, "removed": removed}}
    applied = apply_memact_envelope(vars, envelope=delta)
    trace = {
        "stimulus": _text(stimulus), "marker": marker, "packet_source": source,
        "kg": {"ok": kg_result.get("ok"), **{k: kg_result.get(k) for k in (
            "count", "packed_count", "estimated_tokens", "dropped", "effort", "warnings")}},
        "delta_preview": {"removed": len(removed), "added": len(added)},
        "selected": selected, "applied": applied,
    }
    return {"ok": bool(applied.get("ok")), "delta": delta, "trace": trace, "active_memory": memory,
            "memact_system_prompt": render_memact_system_prompt(vars), "memact_blocks": render_memact_blocks(vars)}


__all__ = ["compose_memact_current_context_from_kg_result"]
