"""A workflow body kept suspended between the steps of one tick (plugins/abstractruntime_functional/suspended.py): a
plain body on a greenlet, an ``async def`` body as a coroutine driven on the AsyncRuntime's loop. It continues instead
of replaying while the run stays in memory in the same thread (on the same loop), and replays from the top whenever
that is not so (a new tick, another runtime, another thread or loop, a wait). Real LMDB stores in temp dirs."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from abstractruntime import AsyncRuntime, Runtime, RunStatus
from abstractruntime.functional import recorded_results, step, workflow
from abstractruntime_functional import suspended


PASSES = []  # one entry each time a body below starts from the top
UNWOUND = []  # bodies whose finally ran
COLOUR = contextvars.ContextVar("test_functional_colour", default="none")


@step(name="test_suspended:double")
def double(i: int) -> dict:
    return {"i": i, "twice": 2 * i}


def _counting(workflow_id, n, ask_at=None):
    @workflow(workflow_id)
    def body(ctx, n: int = n):
        PASSES.append(workflow_id)
        try:
            total = 0
            for i in range(n):
                if i == ask_at:
                    total += int(ctx.ask_user("How much?"))
                total += double(i)["twice"]
            return {"total": total, "at": ctx.now().isoformat()}
        finally:
            UNWOUND.append(workflow_id)

    return body


@pytest.fixture(autouse=True)
def _reset():
    PASSES.clear()
    UNWOUND.clear()


@pytest.fixture
def rt(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}) as runtime:
        yield runtime


def _replaying(flow):
    """The same workflow with continuation off: every step replays from the top (the reference behaviour)."""
    flow.nodes["fn"]._bodies = None
    return flow


needs_greenlet = pytest.mark.skipif(not suspended.AVAILABLE, reason="greenlet is not installed")


@needs_greenlet
def test_a_body_runs_once_per_tick_and_records_what_a_replay_records(rt):
    kept, replayed = _counting("fn_kept", 30), _replaying(_counting("fn_replayed", 30))
    states = {}
    for flow in (kept, replayed):
        run_id = rt.start(workflow=flow)
        states[flow.workflow_id] = rt.tick(workflow=flow, run_id=run_id, max_steps=1000)
    a, b = states["fn_kept"], states["fn_replayed"]
    assert a.status is b.status is RunStatus.COMPLETED
    assert a.output["total"] == b.output["total"] == 2 * sum(range(30))
    assert PASSES.count("fn_kept") == 1  # started once, continued at each of the 30 steps after the first
    assert PASSES.count("fn_replayed") == 31  # from the top at every step (30 calls, then the return)
    assert sorted(recorded_results(a.vars)) == sorted(recorded_results(b.vars))
    assert [r["value"] for k, r in sorted(recorded_results(a.vars).items(), key=lambda kv: int(kv[0]))
            if isinstance(r, dict)] == [{"i": i, "twice": 2 * i} for i in range(30)]
    assert len(rt.get_ledger(a.run_id)) == len(rt.get_ledger(b.run_id))
    assert len(kept.nodes["fn"]._bodies) == 0  # finished: nothing kept


@needs_greenlet
def test_a_wait_unwinds_the_body_and_the_resume_replays_it(rt):
    flow = _counting("fn_waits", 6, ask_at=3)
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id, max_steps=100)
    assert state.status is RunStatus.WAITING
    assert PASSES == ["fn_waits"] and UNWOUND == ["fn_waits"]  # the ask_user frontier unwound it: no greenlet kept
    assert len(flow.nodes["fn"]._bodies) == 0
    state = rt.resume(workflow=flow, run_id=run_id, wait_key=state.waiting.wait_key, payload={"response": "100"})
    assert state.status is RunStatus.COMPLETED and state.output["total"] == 100 + 2 * sum(range(6))
    assert PASSES == ["fn_waits", "fn_waits"]  # the resume replayed once, then continued


@needs_greenlet
def test_a_run_picked_up_by_another_runtime_replays_and_the_old_body_is_dropped(tmp_path):
    flow = _counting("fn_moves", 10)
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}) as first:
        run_id = first.start(workflow=flow)
        state = first.tick(workflow=flow, run_id=run_id, max_steps=4)
        assert state.status is RunStatus.RUNNING
        assert len(flow.nodes["fn"]._bodies) == 1 and UNWOUND == []  # suspended at its next call
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}) as second:
        state = second.tick(workflow=flow, run_id=run_id, max_steps=100)
    assert state.status is RunStatus.COMPLETED and state.output["total"] == 2 * sum(range(10))
    assert PASSES == ["fn_moves", "fn_moves"]  # the state was loaded again: a replay, not a continuation
    assert UNWOUND == ["fn_moves", "fn_moves"]  # the stale body was unwound, then the new one finished


@needs_greenlet
def test_a_tick_in_another_thread_replays(rt):
    flow = _counting("fn_threads", 8)
    run_id = rt.start(workflow=flow)
    assert rt.tick(workflow=flow, run_id=run_id, max_steps=3).status is RunStatus.RUNNING
    out = []
    worker = threading.Thread(target=lambda: out.append(rt.tick(workflow=flow, run_id=run_id, max_steps=100)))
    worker.start()
    worker.join()
    assert out[0].status is RunStatus.COMPLETED and out[0].output["total"] == 2 * sum(range(8))
    assert PASSES == ["fn_threads", "fn_threads"]


@needs_greenlet
def test_a_body_is_continued_only_in_its_own_thread(rt):
    # The kernel hands the node the same state at each step of a tick; here the node is called as the kernel would,
    # the second time from another thread (a greenlet cannot be switched to from another thread): it replays.
    flow = _counting("fn_direct", 3)
    run_id = rt.start(workflow=flow)
    state, node = rt.get_state(run_id), flow.nodes["fn"]
    plan = node(state, None)
    assert plan.effect.payload["functional_call"]["number"] == 0 and len(node._bodies) == 1
    state.vars["_fn"]["results"]["0"] = {"value": {"i": 0, "twice": 0}}  # what the kernel writes
    out = []
    worker = threading.Thread(target=lambda: out.append(node(state, None)))
    worker.start()
    worker.join()
    assert out and out[0].effect.payload["functional_call"]["number"] == 1
    assert PASSES == ["fn_direct", "fn_direct"]
    state.vars["_fn"]["results"]["1"] = {"value": {"i": 1, "twice": 2}}
    plan = node(state, None)  # back in this thread: the body kept is the worker's, so it replays again
    assert plan.effect.payload["functional_call"]["number"] == 2
    assert PASSES == ["fn_direct"] * 3
    state.vars["_fn"]["results"]["2"] = {"value": {"i": 2, "twice": 4}}
    plan = node(state, None)  # same state, the body's own thread: continued to its return
    assert plan.complete_output["total"] == 6 and PASSES == ["fn_direct"] * 3


@needs_greenlet
def test_context_variables_set_by_the_body_stay_set_and_never_reach_the_caller(rt):
    @workflow("fn_colour")
    def colour(ctx):
        seen = [COLOUR.get()]
        COLOUR.set("blue")
        double(1)
        seen.append(COLOUR.get())
        double(2)
        seen.append(COLOUR.get())
        return {"seen": seen}

    token = COLOUR.set("caller")
    try:
        run_id = rt.start(workflow=colour)
        state = rt.tick(workflow=colour, run_id=run_id, max_steps=100)
        assert state.output == {"seen": ["caller", "blue", "blue"]}
        assert COLOUR.get() == "caller"
    finally:
        COLOUR.reset(token)


@needs_greenlet
def test_at_most_max_suspended_bodies_are_kept_and_the_dropped_ones_unwind(rt, monkeypatch):
    monkeypatch.setattr(suspended, "MAX_SUSPENDED", 3)
    flow = _counting("fn_many", 5)
    runs = [rt.start(workflow=flow) for _ in range(5)]
    states = [rt.tick(workflow=flow, run_id=run_id, max_steps=2) for run_id in runs]  # held: see the next test
    assert all(state.status is RunStatus.RUNNING for state in states)
    assert len(flow.nodes["fn"]._bodies) == 3
    assert UNWOUND == ["fn_many", "fn_many"]  # the two oldest were dropped and unwound
    for run_id in runs:  # every run still completes: a dropped body is replayed
        state = rt.tick(workflow=flow, run_id=run_id, max_steps=100)
        assert state.status is RunStatus.COMPLETED and state.output["total"] == 2 * sum(range(5))


@needs_greenlet
def test_a_body_is_let_go_with_the_state_it_was_kept_for(rt):
    # A tick that ends at a frontier that does not wait (here: its step budget) leaves the body suspended, for a next
    # step on the same in-memory state; once nobody holds that state, no step can continue it: the body goes too.
    import gc

    flow = _counting("fn_let_go", 6)
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id, max_steps=2)
    assert state.status is RunStatus.RUNNING and len(flow.nodes["fn"]._bodies) == 1
    del state
    gc.collect()
    assert len(flow.nodes["fn"]._bodies) == 0 and UNWOUND == ["fn_let_go"]  # unwound when collected
    state = rt.tick(workflow=flow, run_id=run_id, max_steps=100)  # replayed from the record
    assert state.status is RunStatus.COMPLETED and state.output["total"] == 2 * sum(range(6))


@needs_greenlet
def test_a_body_that_fails_after_continuing_fails_the_run_with_its_traceback(rt):
    @workflow("fn_breaks")
    def breaks(ctx):
        double(1)
        double(2)
        raise RuntimeError("broken after two steps")

    run_id = rt.start(workflow=breaks)
    state = rt.tick(workflow=breaks, run_id=run_id, max_steps=100)
    assert state.status is RunStatus.FAILED
    assert "broken after two steps" in state.error and "test_functional_suspended.py" in state.error


# --- async def bodies: a coroutine driven on the host's loop --------------------------------------------------------

@step(name="test_suspended:triple")
async def triple(i: int) -> dict:
    await asyncio.sleep(0)
    return {"i": i, "thrice": 3 * i}


def _async_counting(workflow_id, n, ask_at=None):
    @workflow(workflow_id)
    async def body(ctx, n: int = n):
        PASSES.append(workflow_id)
        try:
            total = 0
            for i in range(n):
                if i == ask_at:
                    total += int(await ctx.ask_user("How much?"))
                total += (await triple(i))["thrice"]
                total += (await double(i))["twice"]  # a plain step, awaited
                await asyncio.sleep(0)  # the body's own awaits go to the loop
            return {"total": total}
        finally:
            UNWOUND.append(workflow_id)

    return body


def _async_drive(url, flow, answer=None, **vars):
    async def main():
        async with AsyncRuntime.from_config({"store": url}) as art:
            run_id = await art.start(workflow=flow, vars=vars)
            state = await art.tick(workflow=flow, run_id=run_id, max_steps=1000)
            if answer is not None:
                state = await art.resume(workflow=flow, run_id=run_id, wait_key=state.waiting.wait_key,
                                         payload={"response": answer})
            return state

    return asyncio.run(main())


def test_an_async_body_is_driven_once_per_tick_on_the_asyncruntime(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    kept = _async_drive(url, _async_counting("fn_async_kept", 12))
    replayed = _async_drive(url, _replaying(_async_counting("fn_async_replayed", 12)))
    assert kept.status is replayed.status is RunStatus.COMPLETED, (kept.error, replayed.error)
    assert kept.output == replayed.output == {"total": 5 * sum(range(12))}
    assert PASSES.count("fn_async_kept") == 1 and PASSES.count("fn_async_replayed") == 25
    assert recorded_results(kept.vars) == recorded_results(replayed.vars)


@needs_greenlet
def test_a_plain_body_on_the_asyncruntime_is_continued_too(tmp_path):
    # The AsyncRuntime runs each tick in one worker thread: a plain body is continued there as on the sync Runtime.
    state = _async_drive(f"lmdb://{tmp_path}/db", _counting("fn_plain_on_async", 10))
    assert state.status is RunStatus.COMPLETED and state.output["total"] == 2 * sum(range(10))
    assert PASSES == ["fn_plain_on_async"]


def test_an_async_wait_unwinds_and_the_resume_replays(tmp_path):
    flow = _async_counting("fn_async_waits", 4, ask_at=2)
    state = _async_drive(f"lmdb://{tmp_path}/db", flow, answer="7")
    assert state.status is RunStatus.COMPLETED and state.output == {"total": 7 + 5 * sum(range(4))}
    assert PASSES == ["fn_async_waits"] * 2 and UNWOUND == ["fn_async_waits"] * 2
    assert len(flow.nodes["fn"]._bodies) == 0


def test_an_async_body_on_the_sync_runtime_replays_at_each_step(rt):
    # The sync Runtime awaits each step on a private loop: a coroutine is continued only on the loop it ran on.
    flow = _async_counting("fn_async_sync_rt", 3)
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id, max_steps=100)
    assert state.status is RunStatus.COMPLETED and state.output == {"total": 5 * sum(range(3))}
    assert PASSES.count("fn_async_sync_rt") == 7  # 6 steps and the return, each from the top


def test_gathered_durable_calls_unwind_the_async_body_as_a_replay(tmp_path):
    @workflow("fn_async_gather")
    async def gathered(ctx):
        PASSES.append("fn_async_gather")
        a, b = await asyncio.gather(triple(1), triple(2))  # awaited by tasks of the body's own, not by the body
        return {"sum": a["thrice"] + b["thrice"]}

    state = _async_drive(f"lmdb://{tmp_path}/db", gathered)
    assert state.status is RunStatus.COMPLETED and state.output == {"sum": 9}, state.error
    assert PASSES == ["fn_async_gather"] * 3  # call 0, call 1, the return: each a replay


def test_an_async_body_keeps_its_context_variables(tmp_path):
    @workflow("fn_async_colour")
    async def colour(ctx):
        seen = [COLOUR.get()]
        COLOUR.set("green")
        await triple(1)
        seen.append(COLOUR.get())
        await triple(2)
        seen.append(COLOUR.get())
        return {"seen": seen}

    state = _async_drive(f"lmdb://{tmp_path}/db", colour)
    assert state.output == {"seen": ["none", "green", "green"]}, state.error
