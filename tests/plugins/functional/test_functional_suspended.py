"""A plain workflow body kept suspended between the steps of one tick (plugins/abstractruntime_functional/suspended.py):
it continues instead of replaying while the run stays in memory in the same thread, and replays from the top
whenever that is not so (a new tick, another runtime, another thread). Real LMDB stores in temp dirs."""

from __future__ import annotations

import contextvars
import threading

import pytest

from abstractruntime import Runtime, RunStatus
from abstractruntime.functional import recorded_results, step, workflow
from abstractruntime_functional import suspended

pytestmark = pytest.mark.skipif(not suspended.AVAILABLE, reason="greenlet is not installed")

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

    COLOUR.set("caller")
    run_id = rt.start(workflow=colour)
    state = rt.tick(workflow=colour, run_id=run_id, max_steps=100)
    assert state.output == {"seen": ["caller", "blue", "blue"]}
    assert COLOUR.get() == "caller"


def test_at_most_max_suspended_bodies_are_kept_and_the_dropped_ones_unwind(rt, monkeypatch):
    monkeypatch.setattr(suspended, "MAX_SUSPENDED", 3)
    flow = _counting("fn_many", 5)
    runs = [rt.start(workflow=flow) for _ in range(5)]
    for run_id in runs:
        assert rt.tick(workflow=flow, run_id=run_id, max_steps=2).status is RunStatus.RUNNING
    assert len(flow.nodes["fn"]._bodies) == 3
    assert UNWOUND == ["fn_many", "fn_many"]  # the two oldest were dropped and unwound
    for run_id in runs:  # every run still completes: a dropped body is replayed
        state = rt.tick(workflow=flow, run_id=run_id, max_steps=100)
        assert state.status is RunStatus.COMPLETED and state.output["total"] == 2 * sum(range(5))


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
