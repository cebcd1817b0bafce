"""``AsyncScheduler``: the scheduler of an asyncio host, driven inside the host's event loop (docs/asyncio.md).

It drives what the thread-based :class:`~abstractruntime_scheduler.Scheduler` drives -- due timers, ``RUNNING``
runs (event listeners, woken parents, the schedules plugin's fires), parents whose child finished -- and finds them
the same way: the work is found by that scheduler's own poll (the store's timer and status indexes, the
``abstractruntime_driver_poll`` hook, the set of runs in flight, corrupt runs left out), run on a worker thread of
the :class:`AsyncRuntime`; a commit that makes a run ``RUNNING`` wakes the poller at once. Each run found is driven
by a task on the loop, step by step (``await rt.tick(max_steps=1)``), at most ``concurrency`` at a time; async
handlers of different runs overlap on the loop.

``start()`` returns the poller's task. ``await stop()`` -- or cancelling that task (the host shutting down) --
stops polling and lets every run in flight finish the step it is in (at most ``grace_s`` seconds; then the steps
still awaiting an async handler are cancelled, leaving their side effect in doubt for the next tick). Every run
stays resumable.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, List, Optional, Set

from abstractruntime import RunState, RunStatus, WaitReason
from abstractruntime.errors import InvalidStateError
from abstractruntime.logs import get_logger
from abstractruntime_pluginkit import WorkflowRegistry, spec_for_run
from abstractruntime_scheduler.scheduler import Scheduler, SchedulerStats

from .runtime import AsyncRuntime

log = get_logger(__name__)

#: runs driven at once by default (each holds a worker thread of the AsyncRuntime while a kernel call runs)
DEFAULT_CONCURRENCY = 16


class _Finder(Scheduler):
    """The thread-based scheduler's way of finding work, without its threads: ``_poll(submit=False)`` hands each run
    it claims (marked in flight) to ``_drive``, which here only collects it; woken through the host's loop."""

    def __init__(self, *, wake: Callable[[], None], **kwargs: Any) -> None:
        self._wake_host = wake
        self._claims = threading.local()  # the runs the poll on this thread claimed
        super().__init__(**kwargs)

    def _wake(self) -> None:  # a commit made a run RUNNING (a worker thread): wake the poller on the loop
        self._wake_host()

    def _drive(self, run: RunState) -> None:
        self._claims.found.append(run)

    def claim(self, limit: int) -> List[RunState]:
        self._claims.found = found = []
        self._poll(submit=False, limit=limit)
        return found

    def release_claimed(self, claim: "asyncio.Future[List[RunState]]") -> None:
        """A claim whose poller was cancelled: its runs are no longer in flight (a later poll finds them)."""
        if not claim.cancelled() and claim.exception() is None:
            for run in claim.result():
                self._release(run.run_id)


class AsyncScheduler:
    """Drives the runs of an :class:`AsyncRuntime` that can make progress, on the host's event loop.

    ``AsyncScheduler(rt, registry=None, *, poll_interval_s=None, concurrency=16, grace_s=5.0, on_run_resumed=None,
    on_run_failed=None, batch_size=500)``: ``registry`` defaults to the runtime's workflow registry (a new
    :class:`WorkflowRegistry` if it has none); ``poll_interval_s`` to the ``scheduler`` plugin option. The callbacks
    may be plain functions or coroutine functions."""

    def __init__(self, rt: AsyncRuntime, registry: Any = None, *, poll_interval_s: Optional[float] = None,
                 concurrency: int = DEFAULT_CONCURRENCY, grace_s: float = 5.0,
                 on_run_resumed: Optional[Callable[[RunState], Any]] = None,
                 on_run_failed: Optional[Callable[[str, BaseException], Any]] = None, batch_size: int = 500) -> None:
        if not isinstance(rt, AsyncRuntime):
            raise InvalidStateError(f"AsyncScheduler drives an AsyncRuntime, got {type(rt).__name__}; a sync Runtime "
                                    f"has the thread-based Scheduler (abstractruntime.scheduler.Scheduler)")
        if concurrency < 1:
            raise InvalidStateError(f"concurrency must be at least 1, got {concurrency!r}")
        runtime = rt.runtime
        if registry is None:
            registry = runtime.workflow_registry if runtime.workflow_registry is not None else WorkflowRegistry()
        self.rt = rt
        self.registry = registry
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.on_run_resumed = on_run_resumed
        self.on_run_failed = on_run_failed
        self.batch_size = batch_size
        self._finder = _Finder(wake=self.wake, runtime=runtime, registry=registry, poll_interval_s=poll_interval_s,
                               workers=concurrency)
        self.poll_interval_s = self._finder.poll_interval_s
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake_event: Optional[asyncio.Event] = None
        self._slots: Optional[asyncio.Semaphore] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._drives: Set["asyncio.Task[None]"] = set()
        self._stopping = False
        self._claiming: Optional[asyncio.Lock] = None

    # --- lifecycle --------------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def stats(self) -> SchedulerStats:
        """Runs resumed and failed, poll cycles, the last errors (those of the thread-based Scheduler)."""
        return self._finder.stats

    def _bind(self, method: str) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidStateError(f"AsyncScheduler.{method}() must be called inside a running asyncio event loop "
                                    f"(e.g. your ASGI app's lifespan)") from None
        if self._loop is not loop:
            if self.is_running:
                raise InvalidStateError(f"AsyncScheduler.{method}(): the scheduler runs on another event loop")
            self._loop, self._wake_event = loop, asyncio.Event()
            self._slots, self._claiming = asyncio.Semaphore(self.concurrency), asyncio.Lock()
        return loop

    def start(self) -> "asyncio.Task[None]":
        """Start polling in a task of the running loop and return it (``await stop()``, or cancel it, to stop)."""
        loop = self._bind("start")
        if self.is_running:
            raise InvalidStateError("AsyncScheduler is already running")
        self._stopping = False
        self._task = loop.create_task(self._run(), name="abstractruntime-async-scheduler")
        return self._task

    async def stop(self) -> None:
        """Stop polling; wait for every run in flight to finish its step (``grace_s``, then cancel). Idempotent."""
        task = self._task
        if task is None or task.done():
            return
        self._stopping = True
        self.wake()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():  # stop() itself was cancelled
                raise

    async def __aenter__(self) -> "AsyncScheduler":
        self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def wake(self) -> None:
        """Look for work now (thread-safe): e.g. after starting a run the scheduler should drive."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                event.set()
                return
        except RuntimeError:
            pass
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop closed in between
            pass

    # --- polling ----------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake_event is not None
        try:
            while not self._stopping:
                self._wake_event.clear()
                free = self.concurrency * 2 - len(self._drives)
                if free > 0:  # fetch only what can be driven soon; a finished drive wakes the poller
                    await self._poll(free)
                if self._stopping:
                    break
                try:
                    await asyncio.wait_for(self._wake_event.wait(), self.poll_interval_s)
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            self._stopping = True
            await self._drain()
            raise
        await self._drain()

    async def _poll(self, limit: int) -> List["asyncio.Task[None]"]:
        assert self._claiming is not None
        try:
            async with self._claiming:
                claim = asyncio.ensure_future(self.rt._call("poll", self._finder.claim, limit))
                try:
                    runs = await asyncio.shield(claim)
                except asyncio.CancelledError:
                    claim.add_done_callback(self._finder.release_claimed)
                    raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop survives a bad poll (a store hiccup, ...)
            self._finder._record_error(f"poll failed: {type(exc).__name__}: {exc}")
            return []
        started = []
        for run in runs:
            task = asyncio.get_running_loop().create_task(self._drive(run), name=f"abstractruntime-drive-{run.run_id}")
            self._drives.add(task)
            task.add_done_callback(self._drive_done)
            started.append(task)
        return started

    def _drive_done(self, task: "asyncio.Task[None]") -> None:
        self._drives.discard(task)
        if self._wake_event is not None:
            self._wake_event.set()  # a slot is free: let the poller refill it

    async def _drain(self) -> None:
        """Let the runs in flight finish their step (they stop after it), at most ``grace_s``; then cancel them."""
        if not self._drives:
            return
        _done, pending = await asyncio.wait(set(self._drives), timeout=self.grace_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("async_scheduler_cancelled_steps", runs=len(pending),
                        hint="steps still running after grace_s were cancelled; their side effects are in doubt "
                             "and re-run by the next tick under the same idempotency key")
            await asyncio.wait(pending)

    async def poll_once(self) -> int:
        """One cycle now: drive every runnable run to its next wait or end; returns how many were driven."""
        self._bind("poll_once")
        tasks = await self._poll(self.batch_size)
        if tasks:
            await asyncio.gather(*tasks)
        return len(tasks)

    # --- driving one run --------------------------------------------------------------------------------------------
    async def _drive(self, run: RunState) -> None:
        """Tick ``run`` step by step until it stops being RUNNING (or the scheduler stops)."""
        finder = self._finder
        assert self._slots is not None
        try:
            async with self._slots:
                if self._stopping:
                    return
                spec = spec_for_run(self.registry, run)
                state = run
                while True:
                    before = state.revision
                    state = await self.rt.tick(workflow=spec, run_id=run.run_id, max_steps=1)
                    if state.status is not RunStatus.RUNNING or self._stopping or state.revision == before:
                        break  # done for now, stopping, or another process drives it (no step was taken)
            if state.revision == run.revision:  # a pollable wait that was not ready: nothing happened
                finder._note_not_ready(run)
                return
            with finder._stats_lock:
                finder._stats.runs_resumed += 1
            finder._failed_at.pop(run.run_id, None)
            await _callback(self.on_run_resumed, state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            finder._failed_at[run.run_id] = run.revision  # skipped until the run changes
            with finder._stats_lock:
                finder._stats.runs_failed += 1
            finder._record_error(f"Run {run.run_id}: {exc}")
            await _callback(self.on_run_failed, run.run_id, exc)
        finally:
            finder._release(run.run_id)

    # --- host API (the thread-based scheduler's, awaited on a worker thread) ----------------------------------------
    async def emit_event(self, *, name: str, payload: Optional[Dict[str, Any]] = None, scope: str = "session",
                         **kwargs: Any) -> List[RunState]:
        """Deliver an event from outside any run (``Scheduler.emit_event``); the listeners are driven."""
        states = await self.rt._call("emit_event", self._finder.emit_event, name=name, payload=payload, scope=scope,
                                     **kwargs)
        self.wake()
        return states

    async def resume_event(self, *, run_id: str, wait_key: Optional[str], payload: Dict[str, Any]) -> RunState:
        return await self.rt._call("resume_event", self._finder.resume_event, run_id=run_id, wait_key=wait_key,
                                   payload=payload)

    async def find_waiting_runs(self, *, wait_reason: Optional[WaitReason] = None,
                                workflow_id: Optional[str] = None, limit: int = 100) -> List[RunState]:
        return await self.rt._call("find_waiting_runs", self._finder.find_waiting_runs, wait_reason=wait_reason,
                                   workflow_id=workflow_id, limit=limit)

    async def cancel_with_children(self, run_id: str, *, reason: Optional[str] = None) -> List[RunState]:
        return await self.rt._call("cancel_with_children", self._finder.cancel_with_children, run_id,
                                   reason=reason)


async def _callback(fn: Optional[Callable[..., Any]], *args: Any) -> None:
    if fn is None:
        return
    try:
        result = fn(*args)
        if asyncio.iscoroutine(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a host callback never stops the scheduler
        log.warning("async_scheduler_callback_failed", error=f"{type(exc).__name__}: {exc}")


__all__ = ["AsyncScheduler", "DEFAULT_CONCURRENCY"]
