"""``AsyncRuntime.watch_ledger`` and ``AsyncRuntime.wait_for_run``: a run's ledger rows as they are committed, and its
state once it has ended (or reached any state asked for), for an asyncio host that streams a run's progress
(Server-Sent Events, a WebSocket) or awaits its outcome -- without blocking its loop.

The store is read on the AsyncRuntime's worker threads, never on the loop; ledger rows by pages where the store
pages its ledger (``Capability.LEDGER_PAGING``). A read happens when this process commits a row of the run (a ledger
subscription wakes the waiter: no delay) and every ``poll_interval`` seconds (rows another process commits: a
worker, a scheduler). ``watch_ledger`` yields each row once, in ledger order, numbered from 1 as ``get_ledger``
orders them and ``abstractruntime runs watch`` numbers them; ``after=N`` starts after the N-th (resuming a stream
whose client saw N rows: SSE's ``Last-Event-ID``; a paging store reads from there, not from the first row). With ``until_done`` (the default) the iteration ends once the run
has ended and every row is yielded: the rows of the commit that ended it are read after the run was seen ended, in
the same transaction as its status.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Dict, List, Tuple

from abstractruntime.errors import ValidationError
from abstractruntime.models import RunState
from abstractruntime_pluginkit.follow import LedgerFollower

if TYPE_CHECKING:
    from .runtime import AsyncRuntime


class _Reader:
    """The rows appended since the last read, and whether the run has ended (run on a worker thread)."""

    def __init__(self, runtime: Any, run_id: str, after: int) -> None:
        self._runtime, self._run_id = runtime, run_id
        self._rows = LedgerFollower(runtime, run_id, after=after)
        self._started = False

    def next_rows(self, with_state: bool) -> Tuple[List[Tuple[int, Dict[str, Any]]], bool]:
        """``(new numbered rows, ended)``. The state (whether the run has ended: asked ``with_state``, and at the
        first read, where an unknown run raises ``UnknownRunError``) is read *before* the rows, so the rows of the
        commit that ended the run are among them."""
        ended = False
        if with_state or not self._started:
            ended = self._runtime.get_state(self._run_id).status.is_terminal and with_state
            self._started = True
        return self._rows.poll(), ended


def check_seconds(method: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(f"{method}({name}=...) must be a number of seconds above 0, got {value!r}")


def check_watch(after: Any, poll_interval: Any) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValidationError(f"watch_ledger(after=...) is the number of rows already seen (0 or more), got {after!r}")
    check_seconds("watch_ledger", "poll_interval", poll_interval)


class _Commits:
    """Woken by the run's commits in this process (a ledger subscription: the callback runs on the committing thread
    and schedules one wake-up on the loop for a burst), or after ``poll_interval`` seconds (another process's)."""

    def __init__(self, rt: "AsyncRuntime", loop: asyncio.AbstractEventLoop, run_id: str, poll_interval: float) -> None:
        self._loop, self._poll = loop, poll_interval
        self._wake = asyncio.Event()
        self._pending = threading.Event()  # a wake-up is scheduled on the loop already
        self.close = rt.runtime.subscribe_ledger(self._committed, run_id=run_id)

    def _woken(self) -> None:
        self._pending.clear()
        self._wake.set()

    def _committed(self, _row: Dict[str, Any]) -> None:
        if not self._pending.is_set():
            self._pending.set()
            try:
                self._loop.call_soon_threadsafe(self._woken)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def arm(self) -> None:
        """Before a read: a commit during the read wakes the next :meth:`wait`."""
        self._wake.clear()

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self._poll)
        except asyncio.TimeoutError:
            pass


async def watch_ledger(rt: "AsyncRuntime", loop: asyncio.AbstractEventLoop, run_id: str, *, after: int,
                       poll_interval: float, until_done: bool) -> AsyncIterator[Tuple[int, Dict[str, Any]]]:
    """(Arguments checked by :func:`check_watch`; see ``AsyncRuntime.watch_ledger``.)"""
    reader, commits = _Reader(rt.runtime, run_id, after), _Commits(rt, loop, run_id, poll_interval)
    try:
        while True:
            commits.arm()
            rows, ended = await rt._call("watch_ledger", reader.next_rows, until_done)
            for number, row in rows:
                yield number, row
            if ended:
                return
            await commits.wait()
    finally:
        commits.close()


async def wait_for_run(rt: "AsyncRuntime", loop: asyncio.AbstractEventLoop, run_id: str, *,
                       until: Callable[[RunState], bool], poll_interval: float) -> RunState:
    """(See ``AsyncRuntime.wait_for_run``.)"""
    commits = _Commits(rt, loop, run_id, poll_interval)
    try:
        while True:
            commits.arm()
            state = await rt._call("wait_for_run", rt.runtime.get_state, run_id)
            if until(state):
                return state
            await commits.wait()
    finally:
        commits.close()


def ended(state: RunState) -> bool:
    """``wait_for_run``'s default: the run has ended (completed, failed or cancelled)."""
    return state.status.is_terminal


__all__ = ["check_seconds", "check_watch", "ended", "wait_for_run", "watch_ledger"]
