"""``AsyncRuntime.watch_ledger``: a run's ledger rows as they are committed, for an asyncio host that streams a run's
progress (Server-Sent Events, a WebSocket) without blocking its loop.

The rows are read from the store on the AsyncRuntime's worker threads, never on the loop, by pages where the store
pages its ledger (``Capability.LEDGER_PAGING``). A read happens when this process commits a row of the run (a ledger
subscription wakes the watcher: no delay) and every ``poll_interval`` seconds (rows another process commits: a
worker, a scheduler). Each row is yielded once, in ledger order, numbered from 1 as ``get_ledger`` orders them and
``abstractruntime runs watch`` numbers them; ``after=N`` starts after the N-th (resuming a stream whose client saw N
rows: SSE's ``Last-Event-ID``). With ``until_done`` (the default) the iteration ends once the run has ended and every
row is yielded: the rows of the commit that ended it are read after the run was seen ended, in the same
transaction as its status.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Tuple

from abstractruntime.errors import ValidationError
from abstractruntime_pluginkit.follow import LedgerFollower

if TYPE_CHECKING:
    from .runtime import AsyncRuntime


class _Reader:
    """The rows appended since the last read, and whether the run has ended (run on a worker thread)."""

    def __init__(self, runtime: Any, run_id: str) -> None:
        self._runtime, self._run_id = runtime, run_id
        self._rows = LedgerFollower(runtime, run_id)
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


def check_watch(after: Any, poll_interval: Any) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValidationError(f"watch_ledger(after=...) is the number of rows already seen (0 or more), got {after!r}")
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or not poll_interval > 0:
        raise ValidationError(f"watch_ledger(poll_interval=...) must be a number of seconds above 0, "
                              f"got {poll_interval!r}")


async def watch_ledger(rt: "AsyncRuntime", loop: asyncio.AbstractEventLoop, run_id: str, *, after: int,
                       poll_interval: float, until_done: bool) -> AsyncIterator[Tuple[int, Dict[str, Any]]]:
    """(Checked by :func:`check_watch`, on ``loop``: see ``AsyncRuntime.watch_ledger``.)"""
    wake = asyncio.Event()
    pending = threading.Event()  # a wake-up is scheduled on the loop already: commits in a burst schedule one

    def woken() -> None:
        pending.clear()
        wake.set()

    def committed(_row: Dict[str, Any]) -> None:  # on the committing thread
        if not pending.is_set():
            pending.set()
            try:
                loop.call_soon_threadsafe(woken)
            except RuntimeError:  # the loop is closed: nobody is watching any more
                pass

    reader = _Reader(rt.runtime, run_id)
    unsubscribe = rt.runtime.subscribe_ledger(committed, run_id=run_id)
    try:
        while True:
            wake.clear()  # before the read: a commit during it wakes the next wait
            rows, ended = await rt._call("watch_ledger", reader.next_rows, until_done)
            for number, row in rows:
                if number > after:
                    yield number, row
            if ended:
                return
            try:
                await asyncio.wait_for(wake.wait(), poll_interval)
            except asyncio.TimeoutError:
                pass
    finally:
        unsubscribe()


__all__ = ["check_watch", "watch_ledger"]
