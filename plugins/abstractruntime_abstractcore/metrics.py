"""Call metrics of the reference's ``metrics_many`` (SQLite and PostgreSQL ledgers): what an LLM or tool call adds.

Dependency-free (it does not import ``abstractcore``): the store plugins import it to answer ``metrics_many``.
"""

from __future__ import annotations

from typing import Any, Dict


def add_call_metrics(metrics: Dict[str, int], effect_type: str, row: Dict[str, Any]) -> None:
    """Add one completed ``llm_call`` / ``tool_calls`` ledger row to a ``metrics_many`` entry (reference §10.1:
    ``llm_calls``, ``tool_calls`` = calls in the payload, ``tokens_total`` = LLM ``usage.total_tokens``)."""
    if effect_type == "llm_call":
        metrics["llm_calls"] += 1
        result = row.get("result")
        usage = result.get("usage") if isinstance(result, dict) else None
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, (int, float)) and not isinstance(total, bool):
            metrics["tokens_total"] += int(total)
    elif effect_type == "tool_calls":
        effect = row.get("effect")
        payload = effect.get("payload") if isinstance(effect, dict) else None
        calls = payload.get("tool_calls") if isinstance(payload, dict) else None
        if isinstance(calls, list):
            metrics["tool_calls"] += len(calls)


__all__ = ["add_call_metrics"]
