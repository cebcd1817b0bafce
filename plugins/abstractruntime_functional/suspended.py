"""A workflow body kept suspended at its frontier between the steps of one tick: on a greenlet, or as a coroutine.

Replaying the function from the top at every step makes a run of N calls cost O(N) per step (docs/functional.md#cost).
But within one ``tick`` the kernel hands the node the same ``RunState`` at every step, and the only change it makes
to the record between two steps is the frontier call's result, written in place to ``_fn.results.<n>``. So the body
runs on a greenlet, and a frontier *switches* back to the node instead of unwinding: the node returns the step's
plan, and at the next step of the tick the body continues where it stopped, the call reading its result from the
record as a replay would. A body is continued only when all of these hold (else it is dropped, and the function is
replayed from the top as before):

- the node is called in the thread that started the body (a greenlet belongs to its thread);
- ``run.vars["_fn"]`` is the very dict the body recorded into (the same in-memory state: not reloaded by another
  tick, another process or a restore);
- its ``calls`` have the length they had at the suspension, and no result is left unpacked.

A continued body makes the calls a replay would make, in the same state, so what it records is the same; what it
does not do is run the code before its frontier again, so a non-deterministic body is detected when the run is
replayed (its next tick, another process), not between the steps of one tick. The body runs in a copy of the
context variables of the step that started it (a replay ran in the caller's), and keeps its own from then on: what
it sets stays set across its durable calls, and never leaks into the kernel's context. The frontiers that usually
end a tick (``ask_user``, ``wait_event``, ``sleep``) unwind as in a replay instead of keeping the body: a run
waiting for days holds no greenlet. At most :data:`MAX_SUSPENDED` bodies per workflow are kept (the oldest is
dropped first), and none outlives the in-memory run state it was kept for (a weak reference: once the tick is over
and the host let go of its result, the body is let go too).

An ``async def`` body needs no greenlet: it is a coroutine, driven by :func:`drive`, which passes on to the event
loop what the body awaits and stops at a frontier's :data:`SUSPENDED` (yielded by the awaitable the frontier call
returns). It continues under the same conditions, with "on the same event loop" for "in the same thread" (a sync
``Runtime`` awaits each step on a private loop: there it replays). It keeps a context of its own as a plain body
does. A frontier awaited by a task of the body's own (``asyncio.gather`` of durable calls) unwinds it as a replay.

Without the ``greenlet`` package (:data:`AVAILABLE` false) every step of a plain body replays.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import types
import weakref
from typing import Any, Dict, Optional, Tuple

try:
    from greenlet import GreenletExit, getcurrent, greenlet
except ImportError:  # pragma: no cover - greenlet is a dependency; without it, every step replays
    greenlet = None  # type: ignore[assignment,misc]

from .context import _ACTIVE, DRIVER, SUSPENDED, FunctionalContext

AVAILABLE = greenlet is not None
#: bodies kept per workflow; a suspended body holds its stack and the run's state until continued or dropped
MAX_SUSPENDED = 64


class Suspended:
    """A body on its greenlet, with its context and the state it records into."""

    __slots__ = ("body", "ctx", "state", "calls", "thread", "watched")

    def __init__(self, ctx: FunctionalContext, state: Dict[str, Any]) -> None:
        self.body = greenlet(run_body)
        self.ctx = ctx
        self.state = state
        self.calls = -1
        self.thread = threading.get_ident()
        self.watched = False

    def continues(self, state: Dict[str, Any]) -> bool:
        """May this body continue with ``state`` (see the module doc)?"""
        return (state is self.state and self.thread == threading.get_ident() and not self.body.dead
                and len(state["calls"]) == self.calls and not state["results"])

    def switch(self, *args: Any) -> Any:
        """Run the body until its next frontier (:data:`SUSPENDED`) or its end (``(value, failure)``); the first
        switch passes :func:`run_body`'s arguments."""
        here = getcurrent()
        self.body.parent = here  # the node's caller may differ between steps (same thread)
        self.ctx.suspend_to(here)
        if args:  # started: the body runs in a copy of the caller's context variables, its own from then on
            context = contextvars.copy_context()
            context.run(_ACTIVE.set, self.ctx)
            self.body.gr_context = context
        outcome = self.body.switch(*args)
        if outcome is SUSPENDED:
            self.calls = len(self.state["calls"])
        return outcome

    def close(self) -> None:
        """Drop the body: unwound in its thread (its ``finally`` blocks run), else left to the garbage collector."""
        if self.thread == threading.get_ident() and not self.body.dead:
            self.ctx.suspend_to(None)
            try:
                self.body.throw(GreenletExit)
            except BaseException:  # noqa: BLE001 - whatever the body raises while unwinding, it is gone
                pass


class DrivenBody:
    """An ``async def`` body's coroutine, with its context, the state it records into and its event loop."""

    __slots__ = ("coro", "ctx", "state", "calls", "loop", "context", "watched")

    def __init__(self, coro: Any, ctx: FunctionalContext, state: Dict[str, Any]) -> None:
        self.coro = coro
        self.ctx = ctx
        self.state = state
        self.calls = -1
        self.loop = asyncio.get_running_loop()
        self.context = contextvars.copy_context()
        self.context.run(_ACTIVE.set, ctx)
        self.watched = False

    def continues(self, state: Dict[str, Any]) -> bool:
        """May this body continue with ``state`` (see the module doc)? Called on the loop that awaits the step."""
        return (state is self.state and self.loop is asyncio.get_running_loop()
                and len(state["calls"]) == self.calls and not state["results"])

    def close(self) -> None:
        """Drop the body: ``close()`` its coroutine (its ``finally`` blocks run) unless its loop is another one."""
        try:
            if self.loop is asyncio.get_running_loop():
                self.coro.close()
        except BaseException:  # noqa: BLE001 - whatever the body raises while closing, it is gone
            pass


@types.coroutine
def drive(body: DrivenBody) -> Any:
    """Run an async body until its next frontier (:data:`SUSPENDED`) or its end (``(value, failure)``): what the
    body awaits goes to the loop, what the loop sends or throws (a cancellation) goes to the body."""
    ctx, coro, run = body.ctx, body.coro, body.context.run
    ctx.suspend_to(DRIVER)  # continued: a new pass over the record
    task = asyncio.current_task()
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        ctx.driven_by = task
        try:
            yielded = run(coro.throw, error) if error is not None else run(coro.send, value)
        except StopIteration as stop:
            return stop.value, None
        except Exception as exc:  # as a replay catches it (a cancellation is not caught: the step is cancelled)
            return None, exc
        finally:
            ctx.driven_by = None
        if yielded is SUSPENDED:
            body.calls = len(body.state["calls"])
            return SUSPENDED
        try:
            value, error = (yield yielded), None
        except BaseException as exc:  # noqa: BLE001 - thrown into this task: into the body
            value, error = None, exc


class SuspendedBodies:
    """The bodies of one workflow kept suspended, by run id (:class:`Suspended` or :class:`DrivenBody`)."""

    def __init__(self) -> None:
        self._by_run: Dict[str, Any] = {}
        self._lock = threading.Lock()

    def take(self, run_id: str) -> Any:
        with self._lock:
            return self._by_run.pop(run_id, None)

    def keep(self, run_id: str, body: Any, run: Any) -> None:
        """Keep ``body`` for the next step of ``run``; it is forgotten when ``run`` (the in-memory state the kernel
        ticks, which a continuation needs) is garbage: the tick is over and the host let go of its result."""
        with self._lock:
            self._by_run[run_id] = body
            dropped = [self._by_run.pop(next(iter(self._by_run))) for _ in range(len(self._by_run) - MAX_SUSPENDED)]
        if not body.watched:
            body.watched = True
            weakref.finalize(run, self._forget, run_id, body)
        for old in dropped:
            old.close()

    def _forget(self, run_id: str, body: Any) -> None:
        """(A finalizer, in whatever thread collected the run: the body is only let go, not unwound here.)"""
        with self._lock:
            if self._by_run.get(run_id) is body:
                del self._by_run[run_id]

    def __len__(self) -> int:
        return len(self._by_run)


def run_body(function: Any, ctx: FunctionalContext, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """A body's greenlet: ``(value, None)`` or ``(None, exception)`` (as a replay catches it)."""
    try:
        return function(ctx, *args, **kwargs), None
    except Exception as exc:  # a suspension at a waiting frontier, a divergence or the body's own error
        return None, exc


__all__ = ["AVAILABLE", "MAX_SUSPENDED", "SUSPENDED", "Suspended", "DrivenBody", "SuspendedBodies", "drive",
           "run_body"]
