"""The AsyncRuntime's worker threads on their own: outcomes, contexts, the thread cap, skipped calls, shutdown, and
outcomes handed to the loop in bursts."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from abstractruntime.errors import InvalidStateError
from abstractruntime_asyncio.workers import Workers

REQUEST = contextvars.ContextVar("request", default=None)


def test_results_exceptions_and_the_callers_context_reach_the_awaiting_task():
    workers = Workers(4, "t")

    async def main():
        loop = asyncio.get_running_loop()

        async def one(i):
            REQUEST.set(f"req-{i}")
            return await workers.submit(loop, lambda: (REQUEST.get(), threading.current_thread().name), lambda: False)

        results = await asyncio.gather(*[one(i) for i in range(20)])
        assert [r[0] for r in results] == [f"req-{i}" for i in range(20)]  # each call ran in its caller's context
        assert all(r[1].startswith("t_") for r in results)
        with pytest.raises(KeyError, match="missing"):
            await workers.submit(loop, lambda: {}["missing"], lambda: False)

    asyncio.run(main())
    assert 1 <= len(workers._threads) <= 4  # never more than max_threads
    workers.shutdown()
    assert not any(t.is_alive() for t in workers._threads)


def test_calls_beyond_the_cap_wait_their_turn_and_a_skipped_call_never_runs():
    workers = Workers(2, "t")
    gate = threading.Event()
    ran = []

    async def main():
        loop = asyncio.get_running_loop()
        busy = [workers.submit(loop, lambda i=i: (gate.wait(10), ran.append(i)), lambda: False) for i in range(2)]
        queued = workers.submit(loop, lambda: ran.append("queued"), lambda: False)
        skipped = workers.submit(loop, lambda: ran.append("skipped"), lambda: True)  # its caller went away
        await asyncio.sleep(0.05)
        assert ran == [] and len(workers._threads) == 2  # both threads busy, the rest queued
        gate.set()
        await asyncio.gather(*busy, queued)
        await asyncio.sleep(0.05)
        assert not skipped.done()  # never run, never answered: its awaiting side was cancelled
        skipped.cancel()

    asyncio.run(main())
    assert sorted(map(str, ran)) == ["0", "1", "queued"]
    workers.shutdown()
    with pytest.raises(InvalidStateError, match="closed"):
        workers.submit(asyncio.new_event_loop(), lambda: None, lambda: False)


def test_one_caller_at_a_time_is_served_by_the_thread_that_slept_last():
    """Idle threads sleep on a stack: calls made one after another all run on the thread idle the shortest time
    (its state the likeliest still in the CPU's cache), not in turn on every thread the pool has started."""
    workers = Workers(4, "t")
    gate = threading.Barrier(4)

    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[workers.submit(loop, lambda: gate.wait(10), lambda: False) for _ in range(4)])
        deadline = time.monotonic() + 10
        while len(workers._sleepers) < 4 and time.monotonic() < deadline:  # all four asleep
            await asyncio.sleep(0.01)
        names = [await workers.submit(loop, lambda: threading.current_thread().name, lambda: False)
                 for _ in range(20)]
        return names

    names = asyncio.run(main())
    workers.shutdown()
    assert len(workers._threads) == 4 and len(set(names)) == 1, names


def test_shutdown_lets_queued_calls_run_first():
    workers = Workers(1, "t")
    done = []
    loop = asyncio.new_event_loop()
    try:
        gate = threading.Event()
        workers.submit(loop, lambda: gate.wait(10), lambda: False)
        for i in range(3):
            workers.submit(loop, lambda i=i: done.append(i), lambda: False)
        gate.set()
        workers.shutdown()
        assert done == [0, 1, 2]
    finally:
        loop.close()


def test_outcomes_ready_together_reach_the_loop_in_one_wake_up():
    workers = Workers(8, "t")
    deliveries = []
    deliver = workers._deliver
    workers._deliver = lambda loop: (deliveries.append(len(workers._ready.get(loop, ()))), deliver(loop))
    gate = threading.Barrier(9)

    async def main():
        loop = asyncio.get_running_loop()
        calls = [workers.submit(loop, lambda: gate.wait(10), lambda: False) for _ in range(8)]
        gate.wait(10)  # the loop's own thread releases the eight calls and stays busy while they finish
        deadline = time.monotonic() + 10
        while len(workers._ready.get(loop, ())) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        await asyncio.gather(*calls)

    asyncio.run(main())
    workers.shutdown()
    assert deliveries == [8]  # one wake-up of the loop for the eight outcomes


def test_a_call_in_flight_finishes_when_the_interpreter_exits(tmp_path):
    """A host that never closed its AsyncRuntime: at exit, the call a worker runs still finishes (daemon threads,
    waited for at exit as a ThreadPoolExecutor's are)."""
    import subprocess
    import sys
    import textwrap

    marker = tmp_path / "finished"
    script = textwrap.dedent(f"""
        import asyncio, pathlib, time
        from abstractruntime_asyncio.workers import Workers
        workers = Workers(2, "t")
        async def main():
            slow = lambda: (time.sleep(0.3), pathlib.Path({str(marker)!r}).write_text("ok"))
            workers.submit(asyncio.get_running_loop(), slow, lambda: False)
            await asyncio.sleep(0.05)  # the call is running; main returns without awaiting it
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert marker.read_text() == "ok"


def test_a_pool_dropped_without_shutdown_stops_its_idle_threads():
    """A host that creates AsyncRuntimes and never closes them must not keep their threads forever (as a
    ThreadPoolExecutor's stop when it is collected)."""
    import gc

    workers = Workers(4, "dropped")

    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[workers.submit(loop, lambda: time.sleep(0.01), lambda: False) for _ in range(4)])

    asyncio.run(main())
    threads = list(workers._threads)
    assert threads and all(t.is_alive() for t in threads)
    del workers
    gc.collect()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
