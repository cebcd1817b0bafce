"""AsyncRuntime: the API of the issue, async effect handlers and node functions, what runs where, and what a host
can do wrong (no loop, two loops, the sync runtime on the loop's thread). Real stores, real handlers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from async_flows import ASK, ASYNC_NODES, SLOW, SLOW_S, AsyncEffects, counter_flow

from abstractruntime import AsyncRuntime, Runtime, RunStatus
from abstractruntime.errors import InvalidStateError


def test_the_api_of_the_issue_on_lmdb(tmp_path):
    async def main():
        rt = AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"})
        async with rt:
            run_id = await rt.start(workflow=ASK, vars={"who": "test"})
            state = await rt.tick(workflow=ASK, run_id=run_id)
            assert state.status is RunStatus.WAITING and state.waiting.prompt == "Your name?"
            state = await rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key,
                                    payload={"text": "Ada"})
            assert state.status is RunStatus.COMPLETED and state.output == {"greeting": "Hello, Ada!"}
            assert (await rt.get_state(run_id)).revision == state.revision
            rows = await rt.get_ledger(run_id)
            assert rows[-1]["status"] == "completed" and (await rt.call("verify_ledger", run_id))["ok"]

            other = await rt.start(workflow=ASK)
            assert (await rt.pause_run(other, reason="later")).is_paused
            assert not (await rt.resume_run(other)).is_paused
            assert (await rt.cancel_run(other, reason="no")).status is RunStatus.CANCELLED
        return run_id

    run_id = asyncio.run(main())
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}) as rt:  # closed by `async with`: reopens
        assert rt.get_state(run_id).status is RunStatus.COMPLETED


def test_from_config_takes_plugins_and_async_handlers_run_on_the_hosts_loop():
    effects = AsyncEffects()

    async def main():
        loop = asyncio.get_running_loop()
        async with AsyncRuntime.from_config({"store": "memory://"}, plugins=[effects]) as rt:
            run_id = await rt.start(workflow=ASYNC_NODES)
            state = await rt.tick(workflow=ASYNC_NODES, run_id=run_id)
            return loop, state

    loop, state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED, state.error
    (_name, _key, thread, handler_loop), = effects.calls
    assert handler_loop is loop and thread == threading.main_thread().name  # awaited on the host's loop
    # async node functions are awaited on the loop too; the sync rest of the step ran on a worker thread
    assert state.output == {"thought_on": threading.main_thread().name, "handler_on": threading.main_thread().name}


def test_sync_nodes_and_store_io_run_off_the_loop():
    seen = []

    def probe(run, ctx):
        seen.append(threading.current_thread().name)
        return counter_flow(1).nodes["n0"](run, ctx)

    flow = counter_flow(1)
    flow.nodes["n0"] = probe

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}) as rt:
            run_id = await rt.start(workflow=flow)
            return await rt.tick(workflow=flow, run_id=run_id)

    assert asyncio.run(main()).status is RunStatus.COMPLETED
    assert seen and seen[0].startswith("abstractruntime") and seen[0] != threading.main_thread().name


def test_the_sync_runtime_runs_async_handlers_and_async_nodes():
    effects = AsyncEffects()
    with Runtime.from_config({"store": "memory://"}, plugins=[effects]) as rt:
        run_id = rt.start(workflow=ASYNC_NODES)
        state = rt.tick(workflow=ASYNC_NODES, run_id=run_id)
        assert state.status is RunStatus.COMPLETED, state.error
        run_id = rt.start(workflow=SLOW, vars={"delay": 0.01})
        assert rt.tick(workflow=SLOW, run_id=run_id).output["slow"]["slept"] is True


def test_async_handlers_of_many_runs_overlap_on_the_loop(tmp_path):
    """The issue's target: 16 runs that each await a 0.3 s async side effect finish in <= 1.5 s in total (durable
    LMDB: a reservation and a completion commit per run)."""
    effects = AsyncEffects()

    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}, plugins=[effects]) as rt:
            t0 = time.perf_counter()
            run_ids = await asyncio.gather(*[rt.start(workflow=SLOW, vars={"n": i}) for i in range(16)])
            states = await asyncio.gather(*[rt.tick(workflow=SLOW, run_id=r) for r in run_ids])
            return time.perf_counter() - t0, states

    elapsed, states = asyncio.run(main())
    assert [s.status for s in states] == [RunStatus.COMPLETED] * 16
    assert len(set(effects.keys("slow"))) == 16
    assert elapsed <= 1.5, f"16 runs x {SLOW_S} s async effect took {elapsed:.2f} s"


# --- what a host can do wrong ------------------------------------------------------------------------------------
def test_a_method_called_without_a_running_loop_says_so():
    rt = AsyncRuntime(settings={"store": "memory://"})
    coro = rt.start(workflow=ASK)
    with pytest.raises(InvalidStateError, match=r"AsyncRuntime.start\(\) must be awaited inside a running asyncio "
                                                r"event loop .*abstractruntime.Runtime"):
        coro.send(None)  # what awaiting it outside any loop amounts to
    coro.close()
    with pytest.raises(InvalidStateError, match="running asyncio event loop"):
        rt.get_state("x").send(None)


def test_one_async_runtime_is_bound_to_one_running_loop():
    """Awaited from a second loop (another thread) while the first one runs: a clear error, nothing done there."""
    effects = AsyncEffects()
    rt = AsyncRuntime(settings={"store": "memory://"}, plugins=[effects])
    errors = []

    async def first():
        run_id = await rt.start(workflow=SLOW, vars={"delay": 0.5})
        tick = asyncio.ensure_future(rt.tick(workflow=SLOW, run_id=run_id))
        await asyncio.get_running_loop().run_in_executor(None, threading.Thread.join, other)
        return await tick

    def second():
        effects.started.wait(5)

        async def use():
            await rt.start(workflow=ASK)
        try:
            asyncio.run(use())
        except InvalidStateError as exc:
            errors.append(str(exc))

    other = threading.Thread(target=second)
    other.start()
    state = asyncio.run(first())
    assert state.status is RunStatus.COMPLETED
    assert errors and "bound to another running event loop; create one AsyncRuntime per loop" in errors[0]
    assert len(rt.runtime.run_store.list_runs(limit=10)) == 1  # the second loop started nothing

    async def later():  # the first loop is gone: a new one may use it
        run_id = await rt.start(workflow=ASK)
        assert (await rt.tick(workflow=ASK, run_id=run_id)).status is RunStatus.WAITING
        await rt.aclose()
    asyncio.run(later())


def test_the_sync_runtime_called_on_the_loops_thread_still_completes_an_async_handler(caplog):
    """``rt.runtime.tick`` inside ``async def`` blocks the loop (the docs say: await the AsyncRuntime); an async
    handler reached that way runs on a private loop (the host's cannot wait for itself) and a warning says why."""
    import structlog

    effects = AsyncEffects()

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}, plugins=[effects]) as rt:
            run_id = await rt.start(workflow=SLOW, vars={"delay": 0.01})
            with structlog.testing.capture_logs() as logs:
                state = rt.runtime.tick(workflow=SLOW, run_id=run_id)  # the mistake
            return state, logs, asyncio.get_running_loop()

    state, logs, loop = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED, state.error
    assert effects.calls[0][3] is not loop
    assert [e for e in logs if e["event"] == "sync_runtime_on_event_loop"]


def test_the_underlying_runtime_from_another_thread_awaits_on_the_hosts_loop():
    effects = AsyncEffects()

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}, plugins=[effects]) as rt:
            run_id = await rt.start(workflow=SLOW, vars={"delay": 0.01})
            loop = asyncio.get_running_loop()
            state = await loop.run_in_executor(None, lambda: rt.runtime.tick(workflow=SLOW, run_id=run_id))
            return state, loop

    state, loop = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED and effects.calls[0][3] is loop


def test_closed_runtime_refuses_calls_and_bad_arguments_are_refused():
    async def main():
        rt = AsyncRuntime(settings={"store": "memory://"})
        await rt.aclose()
        await rt.aclose()  # idempotent
        with pytest.raises(InvalidStateError, match="this AsyncRuntime is closed"):
            await rt.start(workflow=ASK)

    asyncio.run(main())
    with pytest.raises(InvalidStateError, match="max_threads must be at least 1"):
        AsyncRuntime(max_threads=0, settings={"store": "memory://"})


def test_errors_of_the_sync_api_are_raised_by_the_awaited_method():
    from abstractruntime.errors import UnknownRunError, WaitKeyMismatchError

    async def main():
        async with AsyncRuntime(settings={"store": "memory://"}) as rt:
            with pytest.raises(UnknownRunError):
                await rt.get_state("no-such-run")
            run_id = await rt.start(workflow=ASK)
            await rt.tick(workflow=ASK, run_id=run_id)
            with pytest.raises(WaitKeyMismatchError):
                await rt.resume(workflow=ASK, run_id=run_id, wait_key="wrong", payload={"text": "x"})
            assert (await rt.get_state(run_id)).status is RunStatus.WAITING  # unchanged

    asyncio.run(main())


def test_the_readme_asyncio_example_runs_as_written(tmp_path, capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.M | re.S)
    flow = next(b for b in blocks if "flow = WorkflowSpec(" in b).split("runtime = Runtime.from_config")[0]
    example = next(b for b in blocks if "AsyncRuntime.from_config(" in b)
    code = flow + example.replace("lmdb:///tmp/greeter", f"lmdb://{tmp_path}/greeter")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert "{'greeting': 'Hello, Ada!'}" in capsys.readouterr().out


def test_a_loop_that_stopped_without_closing_is_not_awaited_on():
    """A host loop driven with run_until_complete is bound but not running between calls: an async handler reached
    through the underlying runtime then runs on a private loop (awaiting on the stopped loop would hang)."""
    effects = AsyncEffects()
    rt = AsyncRuntime(settings={"store": "memory://"}, plugins=[effects])
    loop = asyncio.new_event_loop()
    try:
        run_id = loop.run_until_complete(rt.start(workflow=SLOW, vars={"delay": 0.01}))
        result = []
        worker = threading.Thread(target=lambda: result.append(rt.runtime.tick(workflow=SLOW, run_id=run_id)),
                                  daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the tick hung awaiting on a loop that is not running"
        assert result[0].status is RunStatus.COMPLETED and effects.calls[0][3] is not loop
        loop.run_until_complete(rt.aclose())
    finally:
        loop.close()
