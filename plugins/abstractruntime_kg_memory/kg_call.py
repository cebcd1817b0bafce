"""What the three KG handlers share: :class:`KgCall` (the run, the payload, the store, the clock and the step's
key) and the non-durability warning of an in-memory store."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from attrs import define, field

from .owners import resolve_scope_owner_id

IN_MEMORY_WARNING = (
    "The KG store is in memory (InMemoryTripleStore): assertions are lost when the process exits; configure a "
    "durable store ([abstractruntime.plugin_options.kg_memory] store = \"sqlite:///<path>\")")


def is_in_memory_store(store: Any) -> bool:
    return type(store).__name__ == "InMemoryTripleStore"


@define
class KgCall:
    """One KG effect execution. ``key`` is stable across a crash-and-retry of the same step (the step's
    idempotency key), so assertion ids derived from it make a re-run write nothing twice."""

    run: Any
    payload: Dict[str, Any]
    store: Any
    run_store: Any
    now_iso: Callable[[], str]
    key: str
    warnings: List[str] = field(factory=list)

    def owner_id(self, scope: str) -> str:
        return resolve_scope_owner_id(self.run, scope=scope, run_store=self.run_store)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def with_warnings(self, result: Dict[str, Any], *, durability: bool = True) -> Dict[str, Any]:
        if durability and is_in_memory_store(self.store):
            self.warn(IN_MEMORY_WARNING)
        if self.warnings:
            result["warnings"] = list(self.warnings)
        return result


def step_key(run: Any) -> str:
    """A key for a host-registered handler (no idempotency key is passed to those): the run, its step counter and
    node, which a crash-and-retry of the step repeats and the next step changes."""
    return f"{run.run_id}:{getattr(run, 'step', 0)}:{run.current_node}"


def payload_of(effect: Any) -> Dict[str, Any]:
    payload: Optional[Dict[str, Any]] = getattr(effect, "payload", None)
    return dict(payload) if isinstance(payload, dict) else {}


__all__ = ["KgCall", "IN_MEMORY_WARNING", "is_in_memory_store", "step_key", "payload_of"]
