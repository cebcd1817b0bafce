"""The seam between the ``agent`` node and the LLM memory sources (VAM §2.3-§2.5 as they apply to the agent).

The agent's phase machine (:mod:`.agent_node`) calls, in its ``init`` phase:

* :func:`expand_memory_pins` -- while resolving its inputs: the memory keys given (the ``memory`` object pin
  expanded, individual pins win);
* :func:`pre_agent_recall` -- on every ``init`` pass: the ``StepPlan`` of the next recall effect (``MEMORY_QUERY``
  -> ``MEMORY_REHYDRATE`` -> ``MEMORY_KG_QUERY``, each re-entering the node, results at
  ``_temp.memory_sources.<node_id>.<slot>``), or None once recall is done or not asked for;
* :func:`recalled_messages` -- when it builds the child's ``context.messages``: the KG active-memory system message
  and the recalled span messages, merged as VAM §1.5 (d), independent of ``include_context``.

The recall machinery itself is shared with ``llm_call`` (:mod:`.memory_sources`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from abstractruntime.models import StepPlan

from .memory_sources import (
    MEMORY_KEYS,
    expand_memory_pin,
    kg_active_memory_text,
    memory_sources,
    recalled_span_messages,
    schedule_memory_recall,
)


def expand_memory_pins(raw: Dict[str, Any]) -> Dict[str, Any]:
    """The memory keys present in ``raw`` once its ``memory`` object pin is expanded."""
    expanded = expand_memory_pin(raw)
    return {key: expanded[key] for key in MEMORY_KEYS if key in expanded}


def _query(inputs: Dict[str, Any]) -> str:
    query = inputs.get("memory_query")
    return query if isinstance(query, str) and query.strip() else str(inputs.get("task") or "")


def pre_agent_recall(ctx: Any, inputs: Dict[str, Any], settings: Dict[str, Any]) -> Optional[StepPlan]:
    """The next pre-agent recall effect (VAM §2.4), or None."""
    sources = memory_sources(inputs, lower=True)
    if not sources.any_recall and sources.use_semantic_search is not True:
        return None
    return schedule_memory_recall(ctx.vars, ctx.node_id, sources, query=_query(inputs), model=settings.get("model"))


def recalled_messages(ctx: Any, inputs: Dict[str, Any]) -> List[Dict[str, Any]]:
    """KG active memory as a system message, then the recalled span messages (VAM §2.5, agent)."""
    sources = memory_sources(inputs, lower=True)
    if not sources.any_recall:
        return []
    out: List[Dict[str, Any]] = []
    text = kg_active_memory_text(ctx.vars, ctx.node_id, sources)
    if text:
        out.append({"role": "system", "content": text,
                    "metadata": {"kind": "kg_active_memory", "message_id": f"kg_active_memory:{ctx.node_id}"}})
    if sources.use_span_memory is True:
        out += recalled_span_messages(ctx.vars, ctx.node_id)
    return out


__all__ = ["expand_memory_pins", "pre_agent_recall", "recalled_messages"]
