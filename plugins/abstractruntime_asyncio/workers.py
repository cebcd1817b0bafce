"""The AsyncRuntime's worker threads: calls handed from the event loop to a thread and their outcomes back.

Why not ``loop.run_in_executor`` with a ``ThreadPoolExecutor``: each call there builds a ``concurrent.futures.Future``,
chains it to an asyncio future and wakes the loop with its own ``call_soon_threadsafe`` (a write to the loop's
self-pipe, which releases the GIL: a thread switch under load). Measured on a 2-core VM, a call of ~5 us of Python:
98 us of CPU per call from one task and 46-50 us from 16 concurrent tasks with the executor; 53-73 and 14-16 us
here. Outcomes are collected and handed to the loop in bursts, one wake-up for all the outcomes that are ready when
it runs.

Threads start on demand, up to ``max_threads`` (a call waits in the queue while all are busy). A thread that
finishes a call takes the next queued one without sleeping; with none queued it sleeps on a lock of its own, and
the idle threads form a stack: a call wakes the thread asleep the shortest time -- itself, for a caller making one
call after another, as it goes back on the stack before the outcome is handed back. An executor wakes its idle
threads in turn, and each call then runs on a thread whose stack and state the CPU no longer holds (human-in-the-
loop runs from one task without fsync: 824-915 -> 680-755 us of CPU a run, three alternating pairs; 16 tasks
unchanged, eight pairs). ``shutdown()`` lets the queued calls run, then stops the threads. They are daemon threads
(an idle one must not keep the process alive), and at interpreter exit the calls in flight and queued still finish,
as a ``ThreadPoolExecutor``'s do: a host that never closed its AsyncRuntime does not lose a call half-way.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextvars
import threading
import weakref
from typing import Any, Callable, Deque, Dict, List, Tuple

from abstractruntime.errors import InvalidStateError

Outcome = Tuple["asyncio.Future[Any]", bool, Any]
_LIVE: "weakref.WeakSet[Workers]" = weakref.WeakSet()


class Workers:
    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._lock = threading.Lock()
        self._calls: Deque[Tuple[Any, ...]] = collections.deque()  # submitted, not taken by a thread yet
        self._threads: List[threading.Thread] = []
        self._sleepers: List[threading.Lock] = []  # the idle threads' wake locks (held), the latest to sleep last
        self._ready: Dict[asyncio.AbstractEventLoop, List[Outcome]] = {}  # per loop: outcomes not handed back yet
        self._closed = False
        _LIVE.add(self)
        # dropped without shutdown() (a host that never closed its AsyncRuntime): the idle threads stop, as a
        # ThreadPoolExecutor's do -- they hold only a weak reference to this object between calls
        weakref.finalize(self, _wake_all, self._sleepers).atexit = False

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any],
               skip: Callable[[], bool]) -> "asyncio.Future[Any]":
        """Run ``fn()`` (in a copy of the caller's context) on a worker; its outcome is the returned future's. A
        call whose ``skip()`` is true when a worker takes it is not run (its future was cancelled)."""
        future = loop.create_future()
        item, wake = (loop, future, contextvars.copy_context(), fn, skip), None
        with self._lock:
            if self._closed:
                raise InvalidStateError("this AsyncRuntime is closed: its worker threads were stopped")
            self._calls.append(item)
            if self._sleepers:
                wake = self._sleepers.pop()  # the thread asleep the shortest time: the likeliest still in cache
            elif len(self._threads) < self._max:
                wake = threading.Lock()
                wake.acquire()
                thread = threading.Thread(target=_work, args=(weakref.ref(self), wake),
                                          name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
                wake = None  # a new thread looks for a call before it sleeps
        if wake is not None:
            wake.release()
        return future

    def _next(self, wake: threading.Lock) -> Any:
        """A thread's next call; ``_STOP`` (shut down, nothing left); None: none, and the thread goes to sleep on
        ``wake`` (released by the ``submit`` that picks it)."""
        with self._lock:
            if self._calls:
                return self._calls.popleft()
            if self._closed:
                return _STOP
            self._sleepers.append(wake)
            return None

    def _run(self, item: Tuple[Any, ...], wake: threading.Lock) -> Any:
        """Run one call, then hand its outcome back -- after this thread has taken its next call or gone on the
        sleepers' stack: a caller that makes its next call as soon as it has the outcome finds this thread first."""
        loop, future, context, fn, skip = item
        if skip():
            return self._next(wake)
        try:
            outcome: Outcome = (future, True, context.run(fn))
        except BaseException as exc:  # handed to the caller as it is, like an executor's future
            outcome = (future, False, exc)
        nxt = self._next(wake)
        self._hand_back(loop, outcome)
        return nxt

    def _hand_back(self, loop: asyncio.AbstractEventLoop, outcome: Outcome) -> None:
        with self._lock:
            ready = self._ready.get(loop)
            if ready:  # a hand-back is scheduled already: it takes this one too
                ready.append(outcome)
                return
            self._ready[loop] = [outcome]
        try:
            loop.call_soon_threadsafe(self._deliver, loop)
        except RuntimeError:  # the loop is closed: nobody awaits the outcome any more
            with self._lock:
                self._ready.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            ready = self._ready.pop(loop, ())
        for future, ok, value in ready:
            if future.done():  # cancelled meanwhile: the outcome is dropped
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def shutdown(self) -> None:
        """Let the queued calls run, then stop every thread and wait for it (blocks: call it off the loop)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            sleepers, self._sleepers[:] = list(self._sleepers), []
        _wake_all(sleepers)  # they find the calls left, if any, then stop
        for thread in threads:
            thread.join()


_STOP: Any = object()


def _work(ref: "weakref.ReferenceType[Workers]", wake: threading.Lock) -> None:
    workers = ref()
    item = workers._next(wake) if workers is not None else _STOP
    while item is not _STOP:
        if item is None:
            del workers  # nothing of the pool or the last call kept while asleep
            wake.acquire()
            workers = ref()
            if workers is None:
                return
            item = workers._next(wake)
            continue
        item = workers._run(item, wake)


def _wake_all(sleepers: List[threading.Lock]) -> None:
    for wake in list(sleepers):
        wake.release()


@atexit.register
def _finish_at_exit() -> None:
    for workers in list(_LIVE):
        workers.shutdown()


__all__ = ["Workers"]
