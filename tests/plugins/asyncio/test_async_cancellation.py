"""A cancelled ``await rt.tick(...)`` (the HTTP client went away) on durable LMDB: the run is consistent -- its
steps committed whole or not at all -- and a side effect cancelled mid-flight is re-run in doubt by the next tick
under the same idempotency key (docs/asyncio.md, "Cancellation")."""

from __future__ import annotations

import asyncio
import time

import pytest
from async_flows import BUMP_PONDER, SLOW, AsyncEffects, counter_flow

from abstractruntime import AsyncRuntime, Runtime, RunStatus


def _url(tmp_path):
    return f"lmdb://{tmp_path / 'runs'}"


def _ledger_consistent(rt, run_id):
    rows = rt.get_ledger(run_id)
    assert rt.verify_ledger(run_id)["ok"], rt.verify_ledger(run_id)
    assert len({r["step_id"] + r["status"] for r in rows}) == len(rows)  # no duplicate row
    return rows


@pytest.mark.parametrize("durability", ["barrier", "step"])
def test_cancelled_during_a_sync_step_the_call_finishes_off_the_loop(tmp_path, durability):
    flow = counter_flow(3, block_s=0.2)

    async def main():
        rt = AsyncRuntime.from_config({"store": _url(tmp_path), "durability": durability})
        run_id = await rt.start(workflow=flow)
        tick = asyncio.ensure_future(rt.tick(workflow=flow, run_id=run_id))
        await asyncio.sleep(0.1)  # inside the first node (a blocking 0.2 s)
        tick.cancel()
        t0 = time.perf_counter()
        with pytest.raises(asyncio.CancelledError):
            await tick
        returned_after = time.perf_counter() - t0
        await rt.aclose()  # waits for the worker thread, which finishes the call
        return run_id, returned_after

    run_id, returned_after = asyncio.run(main())
    assert returned_after < 0.1  # the awaiting task did not wait for the step
    with Runtime.from_config({"store": _url(tmp_path)}) as rt:
        state = rt.get_state(run_id)
        assert state.status is RunStatus.COMPLETED and state.output["n"] == 3  # each step once
        rows = _ledger_consistent(rt, run_id)
        assert [r["status"] for r in rows][-1] == "completed"


def test_cancelled_in_an_async_node_nothing_of_the_call_is_written(tmp_path):
    """The sync step before the async node is staged, not yet at a barrier: the cancelled call writes none of it;
    the next tick recomputes it from the last durable checkpoint (n is incremented once, not twice)."""
    async def main():
        async with AsyncRuntime.from_config({"store": _url(tmp_path)}) as rt:
            run_id = await rt.start(workflow=BUMP_PONDER, vars={"ponder_s": 0.6})
            tick = asyncio.ensure_future(rt.tick(workflow=BUMP_PONDER, run_id=run_id))
            await asyncio.sleep(0.3)  # "bump" is done (staged), "ponder" is being awaited
            tick.cancel()
            with pytest.raises(asyncio.CancelledError):
                await tick
            await asyncio.sleep(0.1)  # the worker unwinds: the awaited node was cancelled at once
            after = await rt.get_state(run_id)
            assert (after.revision, after.current_node, after.vars.get("n")) == (1, "bump", None)
            assert await rt.get_ledger(run_id) == []
            return run_id, await rt.tick(workflow=BUMP_PONDER, run_id=run_id)

    run_id, state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED and state.output["n"] == 1
    with Runtime.from_config({"store": _url(tmp_path)}) as rt:
        _ledger_consistent(rt, run_id)


def test_cancelled_during_an_async_side_effect_the_next_tick_reruns_it_in_doubt_under_the_same_key(tmp_path):
    effects = AsyncEffects()

    async def main():
        async with AsyncRuntime.from_config({"store": _url(tmp_path)}, plugins=[effects]) as rt:
            run_id = await rt.start(workflow=SLOW, vars={"delay": 0.5})
            tick = asyncio.ensure_future(rt.tick(workflow=SLOW, run_id=run_id))
            await asyncio.get_running_loop().run_in_executor(None, effects.started.wait, 5)
            tick.cancel()
            with pytest.raises(asyncio.CancelledError):
                await tick
            await asyncio.sleep(0.1)
            assert effects.cancelled == effects.keys("slow")  # the handler's coroutine was cancelled
            rows = await rt.get_ledger(run_id)
            assert [(r["node_id"], r["status"]) for r in rows] == [("slow", "started")]  # the reservation
            state = await rt.get_state(run_id)
            assert state.status is RunStatus.RUNNING and state.current_node == "slow"
            return run_id

    run_id = asyncio.run(main())
    with Runtime.from_config({"store": _url(tmp_path)}, plugins=[effects]) as rt:  # e.g. after a restart
        state = rt.tick(workflow=SLOW, run_id=run_id)
        assert state.status is RunStatus.COMPLETED, state.error
        first, second = effects.keys("slow")
        assert first == second  # the same idempotency key: the provider de-duplicates by it
        assert state.output["slow"] == {"slept": True, "key": first}
        rows = _ledger_consistent(rt, run_id)
        assert [r["status"] for r in rows if r["node_id"] == "slow"] == ["started", "completed"]  # one start
