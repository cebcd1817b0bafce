"""AsyncScheduler: drives due timers, events emitted by runs and finished children inside the host's event loop, and
shuts down gracefully when stopped or cancelled."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from async_flows import ASK, SLOW, TIMER, AsyncEffects

from abstractruntime import AsyncRuntime, Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import InvalidStateError
from abstractruntime_asyncio import AsyncScheduler
from abstractruntime_pluginkit import WorkflowRegistry


async def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return False


def _registry(*flows):
    registry = WorkflowRegistry()
    for flow in flows:
        registry.register(flow)
    return registry


def _in(seconds):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def test_due_timers_are_driven_inside_the_loop(tmp_path):
    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}) as rt:
            sched = AsyncScheduler(rt, _registry(TIMER), poll_interval_s=0.05)
            task = sched.start()
            assert isinstance(task, asyncio.Task) and sched.is_running
            run_id = await rt.start(workflow=TIMER, vars={"until": _in(0.3), "n": 1})
            state = await rt.tick(workflow=TIMER, run_id=run_id)
            assert state.status is RunStatus.WAITING
            assert await _until(lambda: _completed(rt, run_id), timeout=5)
            await sched.stop()
            assert not sched.is_running and task.done() and not task.cancelled()
            assert sched.stats.runs_resumed >= 1 and sched.stats.poll_cycles >= 1
            return await rt.get_state(run_id)

    assert asyncio.run(main()).output["n"] == 1


async def _completed(rt, run_id):
    return (await rt.get_state(run_id)).status is RunStatus.COMPLETED


def test_an_event_emitted_by_a_run_wakes_the_listener_the_scheduler_drives():
    listener = WorkflowSpec(workflow_id="listener", entry_node="wait", nodes={
        "wait": lambda run, ctx: StepPlan(node_id="wait", effect=Effect(
            EffectType.WAIT_EVENT, {"name": "ping", "scope": "global"}, "evt"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"got": run.vars["evt"]["payload"]}),
    })
    emitter = WorkflowSpec(workflow_id="emitter", entry_node="emit", nodes={
        "emit": lambda run, ctx: StepPlan(node_id="emit", effect=Effect(
            EffectType.EMIT_EVENT, {"name": "ping", "scope": "global", "payload": {"n": 7}}), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}) as rt:
            async with AsyncScheduler(rt, _registry(listener, emitter), poll_interval_s=30.0) as sched:  # wake-ups
                lid = await rt.start(workflow=listener)
                assert (await rt.tick(workflow=listener, run_id=lid)).status is RunStatus.WAITING
                eid = await rt.start(workflow=emitter)
                assert (await rt.tick(workflow=emitter, run_id=eid)).status is RunStatus.COMPLETED
                t0 = time.monotonic()
                assert await _until(lambda: _completed(rt, lid), timeout=5)
                woken_after = time.monotonic() - t0
                assert sched.stats.runs_resumed >= 1  # the listener, left RUNNING by the delivery
                return (await rt.get_state(lid)).output, woken_after

    output, woken_after = asyncio.run(main())
    assert output == {"got": {"n": 7}} and woken_after < 5  # not the 30 s poll: the commit woke the poller


def test_a_finished_child_wakes_its_parent_and_emit_event_from_the_host():
    child = WorkflowSpec(workflow_id="child", entry_node="ask", nodes={
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"),
                                         next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"answer": run.vars["a"]}),
    })
    parent = WorkflowSpec(workflow_id="parent", entry_node="spawn", nodes={
        "spawn": lambda run, ctx: StepPlan(node_id="spawn", effect=Effect(
            EffectType.START_SUBWORKFLOW, {"workflow_id": "child", "async": True, "wait": True}, "sub"),
            next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"sub": run.vars["sub"]}),
    })
    waiter = WorkflowSpec(workflow_id="waiter", entry_node="wait", nodes={
        "wait": lambda run, ctx: StepPlan(node_id="wait", effect=Effect(
            EffectType.WAIT_EVENT, {"name": "go", "scope": "global"}, "evt"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"evt": run.vars["evt"]["payload"]}),
    })

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}) as rt:
            sched = AsyncScheduler(rt, _registry(child, parent, waiter), poll_interval_s=0.05)
            async with sched:
                pid = await rt.start(workflow=parent)
                sched.wake()
                assert await _until(lambda: _waiting_child(rt, pid))
                child_id = (await rt.get_state(pid)).waiting.details["sub_run_id"]
                assert await _until(lambda: _status(rt, child_id, RunStatus.WAITING))
                state = await rt.get_state(child_id)
                await rt.resume(workflow=child, run_id=child_id, wait_key=state.waiting.wait_key,
                                payload={"text": "yes"})
                assert await _until(lambda: _completed(rt, pid))
                parent_out = (await rt.get_state(pid)).output

                wid = await rt.start(workflow=waiter)
                assert (await rt.tick(workflow=waiter, run_id=wid)).status is RunStatus.WAITING
                await sched.emit_event(name="go", scope="global", payload={"k": 1})
                assert await _until(lambda: _completed(rt, wid))
                assert await sched.find_waiting_runs() == []
                return parent_out, (await rt.get_state(wid)).output

    parent_out, waiter_out = asyncio.run(main())
    assert parent_out["sub"]["output"] == {"answer": {"text": "yes"}}
    assert waiter_out == {"evt": {"k": 1}}


async def _waiting_child(rt, pid):
    state = await rt.get_state(pid)
    return state.status is RunStatus.WAITING and bool((state.waiting.details or {}).get("sub_run_id"))


async def _status(rt, run_id, status):
    return (await rt.get_state(run_id)).status is status


def test_cancelling_the_scheduler_task_lets_the_step_in_flight_finish(tmp_path):
    """The host shuts down (its task group cancels the scheduler): polling stops, the run being driven finishes the
    async side effect it awaits (within grace_s) and nothing is left in doubt."""
    effects = AsyncEffects()

    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}, plugins=[effects]) as rt:
            sched = AsyncScheduler(rt, _registry(SLOW), poll_interval_s=0.05, grace_s=5.0)
            task = sched.start()
            run_id = await rt.start(workflow=SLOW, vars={"delay": 0.4})
            sched.wake()
            await asyncio.get_running_loop().run_in_executor(None, effects.started.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not sched.is_running
            return await rt.get_state(run_id), await rt.get_ledger(run_id)

    state, rows = asyncio.run(main())
    assert effects.cancelled == []
    assert [r["status"] for r in rows if r["node_id"] == "slow"] == ["started", "completed"]
    assert state.status is RunStatus.RUNNING and state.current_node == "done"  # stopped after that step


def test_after_grace_s_the_awaited_side_effect_is_cancelled_and_left_in_doubt(tmp_path):
    effects = AsyncEffects()
    url = f"lmdb://{tmp_path / 'runs'}"

    async def main():
        async with AsyncRuntime.from_config({"store": url}, plugins=[effects]) as rt:
            sched = AsyncScheduler(rt, _registry(SLOW), poll_interval_s=0.05, grace_s=0.1)
            sched.start()
            run_id = await rt.start(workflow=SLOW, vars={"delay": 1.0})
            sched.wake()
            await asyncio.get_running_loop().run_in_executor(None, effects.started.wait, 5)
            t0 = time.monotonic()
            await sched.stop()
            return run_id, time.monotonic() - t0

    run_id, stop_took = asyncio.run(main())
    assert stop_took < 0.8 and effects.cancelled == effects.keys("slow")
    with Runtime.from_config({"store": url}, plugins=[effects]) as rt:
        assert [r["status"] for r in rt.get_ledger(run_id)] == ["started"]  # in doubt
        assert rt.tick(workflow=SLOW, run_id=run_id).status is RunStatus.COMPLETED
        assert len(set(effects.keys("slow"))) == 1 and len(effects.keys("slow")) == 2  # re-run, same key


def test_poll_once_and_misuse():
    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}) as rt:
            sched = AsyncScheduler(rt, _registry(ASK, TIMER))
            run_ids = [await rt.start(workflow=ASK) for _ in range(3)]
            assert await sched.poll_once() == 3  # RUNNING runs: each driven to its wait
            assert all([(await rt.get_state(r)).status is RunStatus.WAITING for r in run_ids])
            assert await sched.poll_once() == 0
            sched.start()
            with pytest.raises(InvalidStateError, match="already running"):
                sched.start()
            await sched.stop()
            await sched.stop()  # idempotent

    asyncio.run(main())
    rt = AsyncRuntime(settings={"store": "memory://"})
    with pytest.raises(InvalidStateError, match="inside a running asyncio event loop"):
        AsyncScheduler(rt, _registry(ASK)).start()
    with pytest.raises(InvalidStateError, match="drives an AsyncRuntime"):
        AsyncScheduler(rt.runtime, _registry(ASK))  # type: ignore[arg-type]


def test_a_scheduler_cancelled_during_its_poll_drives_the_runs_when_started_again():
    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}) as rt:
            sched = AsyncScheduler(rt, _registry(ASK), poll_interval_s=0.05)
            run_ids = [await rt.start(workflow=ASK) for _ in range(5)]
            for _ in range(3):  # cancelled while its first poll runs on a worker thread
                task = sched.start()
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            await asyncio.sleep(0.1)  # the abandoned polls finish and give their runs back
            async with sched:
                assert await _until(lambda: _all_waiting(rt, run_ids), timeout=5)

    asyncio.run(main())


async def _all_waiting(rt, run_ids):
    return all([(await rt.get_state(r)).status is RunStatus.WAITING for r in run_ids])


def test_a_parent_whose_wake_up_was_missed_is_polled_in_turn_with_the_others():
    """As the thread-based Scheduler: with more parents waiting for children still running than one poll takes, the
    oldest parent -- its child finished while nothing drove the runtime -- is still reached."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))
    from sched_flows import QUICK as quick, parent_of

    ready_parent, waiting_parent = parent_of("quick"), parent_of(ASK.workflow_id)
    registry = _registry(quick, ASK, ready_parent, waiting_parent)

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}, workflow_registry=registry) as rt:
            sync = rt.runtime  # set up before any driver is attached: the quick child's completion wakes no one
            missed = sync.start(workflow=ready_parent)
            child = sync.tick(workflow=ready_parent, run_id=missed).waiting.details["sub_run_id"]
            assert sync.tick(workflow=quick, run_id=child).status is RunStatus.COMPLETED
            others = []
            for _ in range(6):
                time.sleep(0.002)
                run_id = sync.start(workflow=waiting_parent)
                state = sync.tick(workflow=waiting_parent, run_id=run_id)
                sync.tick(workflow=ASK, run_id=state.waiting.details["sub_run_id"])
                others.append(run_id)
            async with AsyncScheduler(rt, registry, poll_interval_s=0.02, concurrency=1):
                assert await _until(lambda: _completed(rt, missed))
            return [(await rt.get_state(r)).status for r in others]

    assert set(asyncio.run(main())) == {RunStatus.WAITING}
