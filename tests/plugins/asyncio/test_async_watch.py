"""AsyncRuntime.watch_ledger: a run's ledger rows as they are committed, for a host streaming a run's progress.
Real stores; the cross-process case commits from a child process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
import time
from pathlib import Path

import pytest
from async_flows import ASK

from abstractruntime import AsyncRuntime, RunStatus
from abstractruntime.errors import InvalidStateError, UnknownRunError, ValidationError
from abstractruntime.storage.in_memory import InMemoryLedgerStore, InMemoryRunStore

#: long enough that a test passing in a few seconds shows the watcher was woken by the commit, not by its poll
NEVER = 60.0


async def _collect(rt: AsyncRuntime, run_id: str, **kwargs) -> list:
    return [(n, row) async for n, row in rt.watch_ledger(run_id, **kwargs)]


async def _hitl_while_watching(rt: AsyncRuntime, **watch) -> tuple:
    run_id = await rt.start(workflow=ASK)
    watcher = asyncio.ensure_future(_collect(rt, run_id, poll_interval=NEVER, **watch))
    state = await rt.tick(workflow=ASK, run_id=run_id)
    await asyncio.sleep(0.05)
    assert not watcher.done(), "the watch ended while the run was waiting"
    await rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "Ada"})
    got = await asyncio.wait_for(watcher, 10)  # woken by the commits: its poll would take a minute
    return run_id, got


@pytest.mark.parametrize("store", ["lmdb", "sqlite", "jsonfiles", "memory", "0.4.2-style stores"])
def test_a_watch_yields_every_row_once_in_order_as_committed_and_ends_with_the_run(tmp_path, store):
    async def main():
        if store == "0.4.2-style stores":  # a run store and a ledger store without a shared backend: no paging
            rt = AsyncRuntime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
        else:
            url = "memory://" if store == "memory" else f"{store}://{tmp_path / 'runs'}"
            rt = AsyncRuntime.from_config({"store": url})
        async with rt:
            run_id, got = await _hitl_while_watching(rt)
            return got, await rt.get_ledger(run_id), await rt.get_state(run_id)

    got, ledger, state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED
    assert [n for n, _row in got] == list(range(1, len(ledger) + 1))
    assert [row for _n, row in got] == ledger and len(ledger) >= 3


@pytest.mark.parametrize("store", ["lmdb", "0.4.2-style stores"])
def test_after_skips_the_rows_a_client_has_seen(tmp_path, store):
    """A paging store is read from the row after them (its cursor is the row number), the others skip them."""
    async def main():
        rt = (AsyncRuntime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore()) if store != "lmdb"
              else AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}))
        async with rt:
            run_id, everything = await _hitl_while_watching(rt)
            tail = await _collect(rt, run_id, after=2)
            none = await _collect(rt, run_id, after=len(everything))
            return everything, tail, none

    everything, tail, none = asyncio.run(main())
    assert tail == everything[2:] and tail[0][0] == 3
    assert none == []


CHILD = textwrap.dedent(
    """
    import sys
    from abstractruntime import Runtime
    sys.path.insert(0, sys.argv[3])
    from async_flows import ASK
    with Runtime.from_config({"store": f"lmdb://{sys.argv[1]}"}) as rt:
        run_id = sys.argv[2]
        state = rt.tick(workflow=ASK, run_id=run_id)
        rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "Bo"})
    """
)


def test_rows_another_process_commits_are_read_at_the_poll_interval(tmp_path):
    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}) as rt:
            run_id = await rt.start(workflow=ASK)
            watcher = asyncio.ensure_future(_collect(rt, run_id, poll_interval=0.05))
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, str(tmp_path / "runs"), run_id, str(Path(__file__).parent),
                stderr=asyncio.subprocess.PIPE)
            _out, err = await child.communicate()
            assert child.returncode == 0, err.decode()[-3000:]
            got = await asyncio.wait_for(watcher, 10)
            return got, await rt.get_ledger(run_id), await rt.get_state(run_id)

    got, ledger, state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED and state.output == {"greeting": "Hello, Bo!"}
    assert [row for _n, row in got] == ledger


def test_until_done_false_keeps_watching_an_ended_run_and_leaving_unsubscribes(tmp_path):
    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}) as rt:
            run_id, rows = await _hitl_while_watching(rt)
            subscribers = rt.runtime._subscriptions._subscribers
            seen = []
            stream = rt.watch_ledger(run_id, until_done=False, poll_interval=0.05)
            async with contextlib.aclosing(stream):
                async for n, _row in stream:
                    seen.append(n)
                    if n == len(rows):
                        assert len(rt.runtime._subscriptions._subscribers) == len(subscribers) + 1
                        break
            after_break = len(rt.runtime._subscriptions._subscribers)

            more = asyncio.ensure_future(_collect(rt, run_id, until_done=False, poll_interval=0.05))
            await asyncio.sleep(0.3)
            assert not more.done(), "until_done=False ended with the run"
            more.cancel()
            with pytest.raises(asyncio.CancelledError):
                await more
            return seen, len(rows), len(subscribers), after_break, len(rt.runtime._subscriptions._subscribers)

    seen, count, before, after_break, after_cancel = asyncio.run(main())
    assert seen == list(range(1, count + 1))
    assert after_break == before and after_cancel == before  # the ledger subscription went with the watch


def test_mistakes_are_clear_errors(tmp_path):
    rt = AsyncRuntime.from_config({"store": "memory://"})
    with pytest.raises(InvalidStateError, match="running asyncio event loop"):
        rt.watch_ledger("some-run")

    async def main():
        async with rt:
            for bad in ({"after": -1}, {"after": "3"}, {"after": True}, {"poll_interval": 0},
                        {"poll_interval": "1"}):
                with pytest.raises(ValidationError, match="watch_ledger"):
                    rt.watch_ledger("some-run", **bad)
            with pytest.raises(UnknownRunError):
                await _collect(rt, "no-such-run")
            with pytest.raises(UnknownRunError):
                await _collect(rt, "no-such-run", until_done=False)

    asyncio.run(main())


# --- wait_for_run -------------------------------------------------------------------------------------------------
def test_wait_for_run_returns_the_state_once_the_run_has_ended_woken_by_its_commits(tmp_path):
    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}) as rt:
            run_id = await rt.start(workflow=ASK)
            done = asyncio.ensure_future(rt.wait_for_run(run_id, poll_interval=NEVER))
            asking = asyncio.ensure_future(rt.wait_for_run(
                run_id, until=lambda s: s.status is RunStatus.WAITING, poll_interval=NEVER))
            state = await rt.tick(workflow=ASK, run_id=run_id)
            waiting = await asyncio.wait_for(asking, 10)
            await asyncio.sleep(0.05)
            assert not done.done(), "wait_for_run returned before the run ended"
            await rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "Cy"})
            final = await asyncio.wait_for(done, 10)  # woken by the commit: its poll would take a minute
            again = await rt.wait_for_run(run_id, poll_interval=NEVER)  # ended already: at once
            return waiting, final, again, len(rt.runtime._subscriptions._subscribers)

    waiting, final, again, subscribers = asyncio.run(main())
    assert waiting.status is RunStatus.WAITING and waiting.waiting.prompt == "Your name?"
    assert final.status is RunStatus.COMPLETED and final.output == {"greeting": "Hello, Cy!"}
    assert again.revision == final.revision
    assert subscribers == 0


def test_wait_for_run_sees_another_process_end_the_run(tmp_path):
    async def main():
        async with AsyncRuntime.from_config({"store": f"lmdb://{tmp_path / 'runs'}"}) as rt:
            run_id = await rt.start(workflow=ASK)
            done = asyncio.ensure_future(rt.wait_for_run(run_id, poll_interval=0.05, timeout=30))
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, str(tmp_path / "runs"), run_id, str(Path(__file__).parent),
                stderr=asyncio.subprocess.PIPE)
            _out, err = await child.communicate()
            assert child.returncode == 0, err.decode()[-3000:]
            return await asyncio.wait_for(done, 10)

    state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED and state.output == {"greeting": "Hello, Bo!"}


def test_wait_for_run_times_out_and_leaves_nothing_behind():
    async def main():
        async with AsyncRuntime.from_config({"store": "memory://"}) as rt:
            run_id = await rt.start(workflow=ASK)
            await rt.tick(workflow=ASK, run_id=run_id)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await rt.wait_for_run(run_id, timeout=0.2, poll_interval=0.05)
            return time.monotonic() - started, len(rt.runtime._subscriptions._subscribers), \
                (await rt.get_state(run_id)).status

    took, subscribers, status = asyncio.run(main())
    assert 0.2 <= took < 5 and subscribers == 0 and status is RunStatus.WAITING


def test_wait_for_run_mistakes_are_clear_errors():
    async def main():
        async with AsyncRuntime.from_config({"store": "memory://"}) as rt:
            run_id = await rt.start(workflow=ASK)
            for bad in ({"poll_interval": 0}, {"poll_interval": "1"}, {"timeout": -1}, {"timeout": True},
                        {"until": "completed"}):
                with pytest.raises(ValidationError, match="wait_for_run"):
                    await rt.wait_for_run(run_id, **bad)
            with pytest.raises(UnknownRunError):
                await rt.wait_for_run("no-such-run")

    asyncio.run(main())
