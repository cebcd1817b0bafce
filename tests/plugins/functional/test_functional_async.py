"""Async durable functions (``async def`` workflows and steps, awaited durable calls): a human-in-the-loop flow
under the AsyncRuntime resumed by a second AsyncRuntime on the same store (LMDB and PostgreSQL), async steps of two
runs overlapping on the host's loop, an awaited event wait, effect and child workflow, non-determinism, a raising
async step (its effect fails; per-step retries), the body's errors, and async code on the sync Runtime (a private
loop per step)."""

from __future__ import annotations

import asyncio
import threading
import time

from abstractruntime import AsyncRuntime, EffectOutcome, Runtime, RunStatus, WaitReason
from abstractruntime.functional import current_step, recorded_results, step, workflow
from abstractruntime_pluginkit.registry import WorkflowRegistry

import fn_async_flows
from fn_flows import lines

FLOW = fn_async_flows.async_onboarding


def test_an_async_hitl_flow_is_resumed_by_a_second_async_runtime(store_url, provider):
    async def first():
        async with AsyncRuntime.from_config({"store": store_url}) as rt:
            run_id = await rt.start(workflow=FLOW, vars={"customer_id": "c9"})
            state = await rt.tick(workflow=FLOW, run_id=run_id)
            return run_id, state

    async def second(run_id, wait_key):
        async with AsyncRuntime.from_config({"store": store_url}) as rt:
            state = await rt.resume(workflow=FLOW, run_id=run_id, wait_key=wait_key, payload={"response": "pro"})
            return state, await rt.get_ledger(run_id), await rt.call("verify_ledger", run_id)

    run_id, state = asyncio.run(first())
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.USER
    assert state.waiting.prompt == "Which plan?" and state.waiting.wait_key.endswith(":fn:1")  # call #0: ctx.now()
    assert lines(provider / "charges.log") == []

    state, rows, verified = asyncio.run(second(run_id, state.waiting.wait_key))  # another runtime, another loop
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output
    assert out["plan"] == "pro" and out["receipt"]["cents"] == 4900 and out["tag"] == "welcome:pro"
    assert out["receipt"]["thread"] == threading.main_thread().name  # the async step ran on the host's loop
    assert out["started"] == recorded_results(state.vars)["0"]  # ctx.now() of the first runtime, replayed
    assert len(lines(provider / "charges.log")) == 1 and lines(provider / "notes.log") == ["welcome:pro"]
    calls = [(r["status"], r["effect"]["type"], r["effect"]["payload"]["functional_call"]) for r in rows
             if r["status"] != "started" and "functional_call" in ((r["effect"] or {}).get("payload") or {})]
    assert calls == [("waiting", "ask_user", {"number": 1, "name": "ask_user"}),
                     ("completed", "function_step", {"number": 2, "name": "fn_async_flows:charge_async"}),
                     ("completed", "function_step", {"number": 3, "name": "fn_flows:note"}),
                     ("completed", "wait_until", {"number": 4, "name": "sleep"})]
    assert verified["ok"] is True


def test_async_steps_of_two_runs_overlap_on_the_hosts_loop(tmp_path):
    flow = fn_async_flows.async_pause

    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path}/db"}) as rt:
            ids = [await rt.start(workflow=flow, vars={"tag": tag, "seconds": 0.4}) for tag in ("a", "b")]
            t0 = time.perf_counter()
            states = await asyncio.gather(*(rt.tick(workflow=flow, run_id=i) for i in ids))
            return states, time.perf_counter() - t0

    states, elapsed = asyncio.run(main())
    assert [s.status for s in states] == [RunStatus.COMPLETED] * 2, [s.error for s in states]
    a, b = (s.output for s in states)
    assert {a["tag"], b["tag"]} == {"a", "b"}
    assert max(a["start"], b["start"]) < min(a["end"], b["end"])  # both were sleeping at the same time
    assert elapsed < 0.75  # one after the other would take 0.8 s or more


def test_non_determinism_in_an_async_workflow_parks_the_run(tmp_path):
    @step(name="async_nd:first")
    async def first() -> str:
        return "first"

    @step(name="async_nd:other")
    async def other() -> str:
        return "other"

    @workflow("async_nd")
    async def v1(ctx):
        await first()
        answer = await ctx.ask_user("go?")
        return {"answer": answer}

    @workflow("async_nd")
    async def v2(ctx):  # the changed code: call #0 is another step
        await other()
        answer = await ctx.ask_user("go?")
        return {"answer": answer}

    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path}/db"}) as rt:
            run_id = await rt.start(workflow=v1)
            waiting = await rt.tick(workflow=v1, run_id=run_id)
            parked = await rt.resume(workflow=v2, run_id=run_id, wait_key=waiting.waiting.wait_key,
                                     payload={"text": "yes"})
            again = await rt.resume(workflow=v1, run_id=run_id, wait_key=parked.waiting.wait_key, payload={})
            return waiting, parked, again

    waiting, parked, again = asyncio.run(main())
    assert waiting.status is RunStatus.WAITING and waiting.waiting.prompt == "go?"
    assert parked.status is RunStatus.WAITING  # not failed
    details = parked.waiting.details
    assert details["kind"] == "non_determinism" and details["call"] == 0
    assert "step 'async_nd:other'" in details["error"] and "instead of step 'async_nd:first'" in details["error"]
    # the old code again: the replay matches the record (the answer was recorded by the resume) and completes
    assert again.status is RunStatus.COMPLETED and again.output == {"answer": "yes"}, again.error


def test_an_exception_in_an_async_step_fails_its_effect_and_retries_apply(tmp_path):
    tries = []

    @step(name="async_err:flaky", retries=2, backoff_s=0.01)
    async def flaky() -> int:
        info = current_step()
        tries.append((info.try_number, info.idempotency_key))
        await asyncio.sleep(0)
        if info.try_number < 3:
            raise ConnectionError(f"try {info.try_number} failed")
        return info.try_number

    @step(name="async_err:broken", retries=1)
    async def broken() -> int:
        await asyncio.sleep(0)
        raise ValueError("the provider refused")

    @workflow("async_err_flaky")
    async def uses_flaky(ctx):
        return {"tries": await flaky()}

    @workflow("async_err_broken")
    async def uses_broken(ctx):
        return {"never": await broken()}

    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path}/db"}) as rt:
            out = []
            for flow in (uses_flaky, uses_broken):
                run_id = await rt.start(workflow=flow)
                out.append((await rt.tick(workflow=flow, run_id=run_id), await rt.get_ledger(run_id)))
            return out

    (ok, ok_rows), (failed, failed_rows) = asyncio.run(main())
    assert ok.status is RunStatus.COMPLETED and ok.output == {"tries": 3}, ok.error
    assert [t for t, _ in tries] == [1, 2, 3] and len({k for _, k in tries}) == 1  # one reservation, one key
    assert failed.status is RunStatus.FAILED
    assert "@step 'async_err:broken' raised ValueError: the provider refused (after 2 tries)" in failed.error
    assert "Effect failed after 1 attempt" in failed.error and "in broken" in failed.error  # the step's traceback
    assert [r["status"] for r in failed_rows if (r["effect"] or {}).get("type") == "function_step"] == \
        ["started", "failed"]


def test_an_async_workflow_on_the_sync_runtime_and_its_body_errors(tmp_path, provider):
    @workflow("async_body_error")
    async def body_error(ctx):
        await fn_async_flows.pause("x", 0)
        raise KeyError("missing")

    @workflow("async_swallow")
    async def swallow(ctx):
        try:
            await fn_async_flows.pause("y", 0)
        except Exception:  # a broad except around a durable call: the suspension is not lost
            pass
        return {"done": True}

    @workflow("async_step_in_plain_workflow")
    def plain(ctx):
        return fn_async_flows.pause("z", 0)

    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}) as rt:  # each step's coroutine: a private loop
        run_id = rt.start(workflow=FLOW, vars={"customer_id": "c1"})
        state = rt.tick(workflow=FLOW, run_id=run_id)
        state = rt.resume(workflow=FLOW, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "basic"})
        assert state.status is RunStatus.COMPLETED and state.output["receipt"]["cents"] == 900

        run_id = rt.start(workflow=body_error)
        state = rt.tick(workflow=body_error, run_id=run_id)
        assert state.status is RunStatus.FAILED
        assert "WorkflowBodyError: workflow 'async_body_error' raised KeyError" in state.error
        assert 'raise KeyError("missing")' in state.error  # the body's traceback

        run_id = rt.start(workflow=swallow)
        state = rt.tick(workflow=swallow, run_id=run_id)
        assert state.status is RunStatus.COMPLETED and state.output == {"done": True}
        assert list(state.vars["_fn"]["calls"]) == ["0"]  # the step ran once; the return ended the run

        run_id = rt.start(workflow=plain)  # a plain workflow calls an async step without await: its value
        state = rt.tick(workflow=plain, run_id=run_id)
        assert state.status is RunStatus.COMPLETED and state.output["tag"] == "z", state.error


def test_awaited_event_wait_effect_and_async_child_workflow(tmp_path):
    def my_effect(run, effect):
        return EffectOutcome.completed({"echo": effect.payload["any"]})

    @workflow("async_child")
    async def child(ctx, x: int):
        await fn_async_flows.pause("child", 0)
        return {"doubled": x * 2}

    @workflow("async_parent")
    async def parent(ctx):
        event = await ctx.wait_event("go")
        echoed = await ctx.effect("my_async_effect", {"any": event["payload"]["n"]})
        kid = await ctx.run_workflow(child, vars={"x": 21})
        return {"echoed": echoed, "kid": kid}

    registry = WorkflowRegistry()
    registry.register(child)
    registry.register(parent)
    async def main():
        rt = AsyncRuntime.from_config({"store": f"lmdb://{tmp_path}/db"}, workflow_registry=registry,
                                      effect_handlers={"my_async_effect": my_effect})
        async with rt:
            run_id = await rt.start(workflow=parent, session_id="s1")
            state = await rt.tick(workflow=parent, run_id=run_id)
            assert state.waiting.reason is WaitReason.EVENT and state.waiting.wait_key == "evt:session:s1:go"
            return await rt.resume(workflow=parent, run_id=run_id, wait_key=state.waiting.wait_key,
                                   payload={"name": "go", "payload": {"n": 7}})

    state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"echoed": {"echo": 7}, "kid": {"doubled": 42}}
