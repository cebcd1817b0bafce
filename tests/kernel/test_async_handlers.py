"""A sync ``Runtime`` runs async effect handlers and async node functions (``Runtime.awaiter``): outside any event
loop, and when called from code running on one (a private loop on a helper thread then)."""

from __future__ import annotations

import asyncio

from abstractruntime import Effect, EffectOutcome, RunStatus, StepPlan
from kernel_support import HandlerPlugin, runtime_on, workflow


async def slow_echo(call):
    await asyncio.sleep(0.01)
    return EffectOutcome.completed({"echo": call.effect.payload["x"]})


async def async_node(run, ctx):
    await asyncio.sleep(0.01)
    return StepPlan(node_id="b", complete_output={"got": run.vars["r"]})


def _flow():
    return workflow({"a": lambda run, ctx: StepPlan(node_id="a", effect=Effect("echo", {"x": 7}, "r"), next_node="b"),
                     "b": async_node}, entry="a")


def test_async_handler_and_node_without_a_loop():
    rt = runtime_on(plugins=[HandlerPlugin("echo_plugin", "echo", slow_echo)])
    state = rt.tick(workflow=_flow(), run_id=rt.start(workflow=_flow()))
    assert state.status is RunStatus.COMPLETED and state.output == {"got": {"echo": 7}}


def test_async_handler_and_node_called_from_a_running_loop():
    rt = runtime_on(plugins=[HandlerPlugin("echo_plugin", "echo", slow_echo)])

    async def host():
        return rt.tick(workflow=_flow(), run_id=rt.start(workflow=_flow()))  # blocking, but must not fail the run

    state = asyncio.run(host())
    assert state.status is RunStatus.COMPLETED and state.output == {"got": {"echo": 7}}
