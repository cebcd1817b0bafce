"""Workflows and an effect-handler plugin for the asyncio tests (real handlers: they record what they did)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List, Tuple

from abstractruntime import (Effect, EffectHandlerDescriptor, EffectOutcome, EffectType, StepPlan, WorkflowSpec,
                             hookimpl)

#: how long the ``slow`` async side effect takes (the issue's target: 16 of them overlap in <= 1.5 s)
SLOW_S = 0.3


class AsyncEffects:
    """Registers ``slow`` (async, side-effecting: sleeps ``delay`` s on the loop) and ``where`` (async, records the
    thread and loop it ran on). Every call is recorded as ``(effect, idempotency_key, thread, loop)``."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, str, str, Any]] = []
        self.cancelled: List[str] = []  # idempotency keys of slow effects whose coroutine was cancelled
        self.started = threading.Event()
        self._lock = threading.Lock()

    def _record(self, name: str, call: Any) -> None:
        with self._lock:
            self.calls.append((name, call.idempotency_key, threading.current_thread().name,
                               asyncio.get_running_loop()))

    async def slow(self, call: Any) -> EffectOutcome:
        self._record("slow", call)
        self.started.set()
        try:
            await asyncio.sleep(float(call.effect.payload.get("delay", SLOW_S)))
        except asyncio.CancelledError:
            self.cancelled.append(call.idempotency_key)
            raise
        return EffectOutcome.completed({"slept": True, "key": call.idempotency_key})

    async def where(self, call: Any) -> EffectOutcome:
        self._record("where", call)
        return EffectOutcome.completed({"thread": threading.current_thread().name})

    def keys(self, name: str) -> List[str]:
        return [key for effect, key, _t, _l in self.calls if effect == name]

    @hookimpl
    def abstractruntime_register_effect_handlers(self) -> List[EffectHandlerDescriptor]:
        return [EffectHandlerDescriptor("slow", self.slow, "an async side effect", side_effects=True),
                EffectHandlerDescriptor("where", self.where, "where an async handler runs")]


def _slow(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="slow", effect=Effect(type="slow", payload={"delay": run.vars.get("delay", SLOW_S)},
                                                  result_key="slow"), next_node="done")


def _done(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="done", complete_output={"slow": run.vars.get("slow"), "n": run.vars.get("n")})


SLOW = WorkflowSpec(workflow_id="slow", entry_node="slow", nodes={"slow": _slow, "done": _done})


def _ask(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Your name?"},
                                                 result_key="answer"), next_node="greet")


def _greet(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="greet", complete_output={"greeting": f"Hello, {run.vars['answer']['text']}!"})


ASK = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={"ask": _ask, "greet": _greet})


async def _think(run: Any, ctx: Any) -> StepPlan:
    await asyncio.sleep(0.01)
    run.vars["thought_on"] = threading.current_thread().name
    return StepPlan(node_id="think", effect=Effect(type="where", payload={}, result_key="where"), next_node="end")


async def _end(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="end", complete_output={"thought_on": run.vars["thought_on"],
                                                    "handler_on": run.vars["where"]["thread"]})


ASYNC_NODES = WorkflowSpec(workflow_id="async_nodes", entry_node="think", nodes={"think": _think, "end": _end})


def counter_flow(steps: int, *, block_s: float = 0.0, workflow_id: str = "counter") -> WorkflowSpec:
    """``steps`` sync nodes that each add 1 to ``vars.n`` (each blocking ``block_s`` seconds), then complete."""
    nodes: Dict[str, Any] = {}
    for i in range(steps):
        nxt = f"n{i + 1}" if i + 1 < steps else "done"

        def node(run: Any, ctx: Any, nid: str = f"n{i}", nxt: str = nxt) -> StepPlan:
            if block_s:
                time.sleep(block_s)
            run.vars["n"] = run.vars.get("n", 0) + 1
            return StepPlan(node_id=nid, next_node=nxt)
        nodes[f"n{i}"] = node
    nodes["done"] = _done
    return WorkflowSpec(workflow_id=workflow_id, entry_node="n0", nodes=nodes)


def _wait_then_done(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="wait", effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": run.vars["until"]}),
                    next_node="done")


def _bump(run: Any, ctx: Any) -> StepPlan:
    run.vars["n"] = run.vars.get("n", 0) + 1
    return StepPlan(node_id="bump", next_node="ponder")


async def _ponder(run: Any, ctx: Any) -> StepPlan:
    await asyncio.sleep(float(run.vars.get("ponder_s", 1.0)))
    return StepPlan(node_id="ponder", next_node="done")


#: a sync step (n += 1), then an async node that takes ``ponder_s`` seconds
BUMP_PONDER = WorkflowSpec(workflow_id="bump_ponder", entry_node="bump",
                           nodes={"bump": _bump, "ponder": _ponder, "done": _done})

TIMER = WorkflowSpec(workflow_id="timer", entry_node="wait", nodes={"wait": _wait_then_done, "done": _done})
