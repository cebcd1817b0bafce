"""Helpers shared by the kernel tests (imported as ``kernel_support``; tests/kernel is on sys.path)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from abstractruntime import (
    Effect,
    EffectCall,
    EffectHandlerDescriptor,
    EffectOutcome,
    Runtime,
    StepPlan,
    WorkflowSpec,
    codec,
    hookimpl,
)
from abstractruntime_inmemory.store import MemoryBackend


def workflow(nodes: Dict[str, Callable], entry: Optional[str] = None, workflow_id: str = "wf") -> WorkflowSpec:
    return WorkflowSpec(workflow_id=workflow_id, entry_node=entry or next(iter(nodes)), nodes=nodes)


def goto(node_id: str, next_node: str) -> Callable:
    def node(run, ctx):
        return StepPlan(node_id=node_id, next_node=next_node)

    return node


def finish(node_id: str, output: Optional[Dict[str, Any]] = None) -> Callable:
    def node(run, ctx):
        return StepPlan(node_id=node_id, complete_output=output if output is not None else {"done": True})

    return node


def effect_node(node_id: str, effect: Effect, next_node: Optional[str] = None) -> Callable:
    def node(run, ctx):
        return StepPlan(node_id=node_id, effect=effect, next_node=next_node)

    return node


def runtime_on(backend: Optional[MemoryBackend] = None, **kwargs: Any) -> Runtime:
    b = backend if backend is not None else MemoryBackend()
    return Runtime(run_store=b.run_store, ledger_store=b.ledger_store, **kwargs)


def snapshot(runtime: Runtime, run_id: str):
    """Everything persisted for a run: the checkpoint as JSON-safe data and the ledger rows."""
    return codec.run_to_dict(runtime.get_state(run_id)), runtime.get_ledger(run_id)


def status_rows(ledger: List[dict]) -> List[dict]:
    return [r for r in ledger if (r.get("idempotency_key") or "").startswith("system:terminal_status:")]


class HandlerPlugin:
    """A plugin object contributing one effect handler through ``abstractruntime_register_effect_handlers``."""

    def __init__(self, name: str, effect_type: str, fn: Callable[[EffectCall], EffectOutcome], *,
                 side_effects: bool = True) -> None:
        self.__name__ = name
        self.effect_type = effect_type
        self.fn = fn
        self.side_effects = side_effects
        self.registrations = 0

    @hookimpl
    def abstractruntime_register_effect_handlers(self):
        self.registrations += 1
        return [EffectHandlerDescriptor(self.effect_type, self.fn, side_effects=self.side_effects)]


class Counter:
    """A callable effect handler (EffectCall form) that counts its calls and returns a fixed result."""

    def __init__(self, result: Optional[Dict[str, Any]] = None) -> None:
        self.calls: List[EffectCall] = []
        self.result = result if result is not None else {"ok": True}

    def __call__(self, call: EffectCall) -> EffectOutcome:
        self.calls.append(call)
        return EffectOutcome.completed(dict(self.result, n=len(self.calls)))
