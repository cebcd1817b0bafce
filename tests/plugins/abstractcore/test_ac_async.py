"""LLM_CALL under an AsyncRuntime uses AbstractCore's async generation (``provider.agenerate``) on the host's loop:
real openai-compatible provider, the scripted server on 127.0.0.1. Under a sync Runtime the sync path is kept."""

from __future__ import annotations

import asyncio
import threading
import time

from abstractruntime import AsyncRuntime, Effect, EffectType, RetryPolicy, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_abstractcore import create_local_runtime
from abstractruntime_abstractcore.plugin import integration_for

from fake_llm_server import MODEL

FLOW = WorkflowSpec(workflow_id="ask_llm", entry_node="call", nodes={
    "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(
        EffectType.LLM_CALL, {"prompt": run.vars["q"], "params": {"temperature": 0}}, "out"), next_node="done"),
    "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"out": run.vars["out"]}),
})


def _runtime(server, **kw):
    return create_local_runtime(provider="openai-compatible", model=MODEL,
                                llm_kwargs={"base_url": server.base_url, "timeout": 30}, **kw)


def _watch(runtime):
    """The provider instance, with a note of the thread each request's headers are built on."""
    provider = integration_for(runtime).llm._default.llm
    threads, original = [], provider._get_headers

    def get_headers():
        threads.append(threading.current_thread().name)
        return original()

    provider._get_headers = get_headers
    return provider, threads


def test_llm_calls_of_two_runs_overlap_on_the_hosts_loop(llm_server):
    starts = []

    def slow_reply(body):
        starts.append(time.monotonic())
        return {"content": f"answer to {body['messages'][-1]['content']}", "delay": 0.6}

    llm_server.push(slow_reply, slow_reply)
    sync_rt = _runtime(llm_server)
    provider, threads = _watch(sync_rt)

    async def main():
        async with AsyncRuntime(runtime=sync_rt) as rt:
            ids = [await rt.start(workflow=FLOW, vars={"q": q}) for q in ("one", "two")]
            t0 = time.monotonic()
            states = await asyncio.gather(*[rt.tick(workflow=FLOW, run_id=r) for r in ids])
            return states, time.monotonic() - t0, ids, rt

    states, elapsed, ids, rt = asyncio.run(main())
    assert [s.status for s in states] == [RunStatus.COMPLETED] * 2, [s.error for s in states]
    assert [s.output["out"]["content"].endswith(q) for s, q in zip(states, ("] one", "] two"))] == [True, True]
    assert threads == [threading.main_thread().name] * 2  # the requests were built on the loop: agenerate
    assert provider._async_client is not None
    assert abs(starts[0] - starts[1]) < 0.4 and elapsed < 1.1  # overlapping, not 2 x 0.6 s one after the other
    requests = llm_server.chat_requests
    keys = {r["headers"].get("idempotency-key") for r in requests}
    ledger_keys = {row["idempotency_key"] for r in ids for row in sync_rt.get_ledger(r) if row["node_id"] == "call"}
    assert keys == ledger_keys and len(keys) == 2  # the effect's identity travels with the async request too
    assert {r["headers"].get("x-abstractruntime-run-id") for r in requests} == set(ids)


def test_the_async_path_keeps_the_retry_and_result_contract(llm_server):
    """A server error fails the attempt (exception thrown into the pipeline); the runtime's retry succeeds; the
    result is the same shape as the sync path's."""
    llm_server.push({"error": 500, "message": "boom"}, {"content": "fine", "usage": {"prompt_tokens": 5,
                                                                                     "completion_tokens": 1}})
    llm_server.push({"content": "fine", "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    sync_rt = _runtime(llm_server, effect_policy=RetryPolicy(llm_max_attempts=2, backoff_base=0.0))

    async def main():
        async with AsyncRuntime(runtime=sync_rt) as rt:
            run_id = await rt.start(workflow=FLOW, vars={"q": "hi"})
            return await rt.tick(workflow=FLOW, run_id=run_id), await rt.get_ledger(run_id)

    state, rows = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED, state.error
    async_out = state.output["out"]
    assert async_out["content"] == "fine" and async_out["usage"]["prompt_tokens"] == 5
    assert [r["status"] for r in rows if r["node_id"] == "call"] == ["started", "failed", "started", "completed"]

    plain = _runtime(llm_server)  # the sync Runtime: generate(), no async client
    provider, threads = _watch(plain)
    run_id = plain.start(workflow=FLOW, vars={"q": "hi"})
    sync_out = plain.tick(workflow=FLOW, run_id=run_id).output["out"]
    assert provider._async_client is None and threads
    assert set(sync_out) == set(async_out)
    assert {k: v for k, v in sync_out.items() if k not in ("gen_time", "metadata", "trace_id", "raw_response")} \
        == {k: v for k, v in async_out.items() if k not in ("gen_time", "metadata", "trace_id", "raw_response")}
