"""``AsyncRuntime``: the runtime for asyncio hosts (FastAPI, Starlette, aiohttp, agent frameworks).

Every kernel call runs on a worker thread of the AsyncRuntime (store I/O, sync node functions and sync handlers never
block the event loop; waiting for a commit's fsync is an ``await``, and the LMDB store's group commit lets the
commits of concurrent calls share one fsync). What async handlers and async node functions return is awaited *on
the host's loop* (``Runtime.awaiter``), so the effects of many runs overlap there.

Cancellation: a cancelled ``await rt.tick(...)`` cancels the async handler or node it is awaiting (if any, and any
it reaches later) and returns at once; the worker thread finishes the call without waiting for anyone. Steps are
committed whole or not at all: the run is never half written. A side effect whose handler was cancelled leaves its
``started`` reservation, which the next tick re-runs *in doubt* under the same idempotency key (docs/asyncio.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, AsyncIterator, Callable, Dict, List, Mapping, Optional, Set, Tuple, Union

from abstractruntime import RunState, Runtime
from abstractruntime.errors import InvalidStateError, ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.settings import Settings
from abstractruntime_pluginkit.hostloop import set_host_loop

from .watch import check_seconds, check_watch, ended, wait_for_run, watch_ledger
from .workers import Workers

log = get_logger(__name__)

#: worker threads per AsyncRuntime: how many kernel calls run at once (each may wait for an fsync or a handler)
DEFAULT_MAX_THREADS = 32
_CALL = threading.local()  # the in-flight call a worker thread executes (its awaited handler futures)


class _Call:
    __slots__ = ("futures", "cancelled")

    def __init__(self) -> None:
        self.futures: Set[concurrent.futures.Future] = set()
        self.cancelled = False


def _no_loop(method: str) -> InvalidStateError:
    return InvalidStateError(
        f"AsyncRuntime.{method}() must be awaited inside a running asyncio event loop (e.g. in an `async def` run "
        f"by asyncio.run(...) or your ASGI server); from synchronous code use abstractruntime.Runtime")


class AsyncRuntime:
    """``AsyncRuntime(...)`` takes the arguments of :class:`~abstractruntime.Runtime` (``plugins=`` included) plus
    ``max_threads``; ``AsyncRuntime.from_config(...)`` those of ``Runtime.from_config``. The sync runtime underneath
    is :attr:`runtime` (thread-safe; do not call it on the loop's thread: it blocks)."""

    def __init__(self, *, max_threads: int = DEFAULT_MAX_THREADS, runtime: Optional[Runtime] = None,
                 **kwargs: Any) -> None:
        if max_threads < 1:
            raise InvalidStateError(f"max_threads must be at least 1, got {max_threads!r}")
        self._rt = runtime if runtime is not None else Runtime(**kwargs)
        self._workers = Workers(max_threads, "abstractruntime")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._rt.awaiter = self._await_on_host_loop
        set_host_loop(self._rt, self._serving_loop)  # handlers ask abstractruntime_pluginkit.on_host_loop(runtime)

    @classmethod
    def from_config(cls, config: Union[None, Settings, Mapping[str, Any], str, Any] = None, *,
                    store: Optional[str] = None, max_threads: int = DEFAULT_MAX_THREADS,
                    **kwargs: Any) -> "AsyncRuntime":
        return cls(max_threads=max_threads, runtime=Runtime.from_config(config, store=store, **kwargs))

    @property
    def runtime(self) -> Runtime:
        """The sync runtime underneath (its store, plugins, settings)."""
        return self._rt

    # --- the host's loop ------------------------------------------------------------------------------------------
    def _host_loop(self, method: str) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise _no_loop(method) from None
        if self._closed:
            raise InvalidStateError(f"AsyncRuntime.{method}(): this AsyncRuntime is closed")
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed() and self._loop.is_running():
                raise InvalidStateError(f"AsyncRuntime.{method}(): this AsyncRuntime is bound to another running "
                                        f"event loop; create one AsyncRuntime per loop")
            self._loop = loop
        return loop

    def _serving_loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The host's loop if an awaitable reached now, on this thread, is awaited there; None: on a private loop
        (no loop bound or it stopped; or this thread runs a loop -- the host's own cannot wait for itself)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return loop
        return None

    def _await_on_host_loop(self, awaitable: Any) -> Any:
        """``Runtime.awaiter``: await ``awaitable`` on the host's loop and wait for it on this (worker) thread; used
        through :attr:`runtime` where that is impossible, on a private loop as a sync ``Runtime`` does."""
        loop = self._serving_loop()
        if loop is None:
            return _await_privately(awaitable, host=self._loop)

        async def wait_on_loop() -> Any:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wait_on_loop(), loop)
        call: Optional[_Call] = getattr(_CALL, "call", None)
        if call is not None:
            call.futures.add(future)
            if call.cancelled:
                future.cancel()
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # not an Exception: the kernel does not record a failed attempt; the reservation stays in doubt
            raise asyncio.CancelledError("the awaiting AsyncRuntime call was cancelled") from None
        finally:
            if call is not None:
                call.futures.discard(future)

    async def _call(self, method: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = self._host_loop(method)
        call = _Call()

        def run() -> Any:
            _CALL.call = call
            try:
                return fn(*args, **kwargs)
            finally:
                _CALL.call = None

        try:  # cancelled: a call not started yet never starts; one that runs finishes, its outcome is dropped
            # the caller's context (its tracing span, contextvars) goes with the call to the worker thread
            return await self._workers.submit(loop, run, lambda: call.cancelled)
        except asyncio.CancelledError:
            call.cancelled = True
            for pending in list(call.futures):
                pending.cancel()
            raise

    # --- the API (the sync Runtime's, awaited) ---------------------------------------------------------------------
    async def start(self, **kwargs: Any) -> str:
        return await self._call("start", self._rt.start, **kwargs)

    async def tick(self, **kwargs: Any) -> RunState:
        return await self._call("tick", self._rt.tick, **kwargs)

    async def resume(self, **kwargs: Any) -> RunState:
        return await self._call("resume", self._rt.resume, **kwargs)

    async def get_state(self, run_id: str) -> RunState:
        return await self._call("get_state", self._rt.get_state, run_id)

    async def get_ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return await self._call("get_ledger", self._rt.get_ledger, run_id)

    async def pause_run(self, run_id: str, **kwargs: Any) -> RunState:
        return await self._call("pause_run", self._rt.pause_run, run_id, **kwargs)

    async def resume_run(self, run_id: str) -> RunState:
        return await self._call("resume_run", self._rt.resume_run, run_id)

    async def cancel_run(self, run_id: str, **kwargs: Any) -> RunState:
        return await self._call("cancel_run", self._rt.cancel_run, run_id, **kwargs)

    def watch_ledger(self, run_id: str, *, after: int = 0, poll_interval: float = 1.0,
                     until_done: bool = True) -> AsyncIterator[Tuple[int, Dict[str, Any]]]:
        """``async for number, row in rt.watch_ledger(run_id):`` the run's ledger rows as they are committed,
        numbered from 1, each once; ``after=N`` skips the first N. Commits of this process wake it at once, others'
        are read every ``poll_interval`` seconds; with ``until_done`` it ends once the run has ended and every row
        was yielded (watch.py). Reads run on worker threads."""
        check_watch(after, poll_interval)
        loop = self._host_loop("watch_ledger")
        return watch_ledger(self, loop, run_id, after=after, poll_interval=poll_interval, until_done=until_done)

    async def wait_for_run(self, run_id: str, *, until: Optional[Callable[[RunState], bool]] = None,
                           timeout: Optional[float] = None, poll_interval: float = 1.0) -> RunState:
        """Await the run reaching a state ``until(state)`` is true for -- by default, the run has ended (completed,
        failed or cancelled) -- and return that state. Woken by the run's commits in this process, else it reads
        the state every ``poll_interval`` seconds (another process drives the run). ``timeout`` (seconds):
        ``TimeoutError`` past it. ``until`` runs on the loop: keep it quick (watch.py)."""
        check_seconds("wait_for_run", "poll_interval", poll_interval)
        if timeout is not None:
            check_seconds("wait_for_run", "timeout", timeout)
        if until is not None and not callable(until):
            raise ValidationError(f"wait_for_run(until=...) must be a function of the run's state, got {until!r}")
        loop = self._host_loop("wait_for_run")
        waiting = wait_for_run(self, loop, run_id, until=until or ended, poll_interval=poll_interval)
        return await asyncio.wait_for(waiting, timeout)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Await any other method of the sync runtime, plugin methods included (``await rt.call("verify_ledger",
        run_id)``), on a worker thread."""
        return await self._call(name, getattr(self._rt, name), *args, **kwargs)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Wait for the calls in flight, then close the store this runtime opened (idempotent)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._workers.shutdown)
        await loop.run_in_executor(None, self._rt.close)

    async def __aenter__(self) -> "AsyncRuntime":
        self._host_loop("__aenter__")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _await_privately(awaitable: Any, *, host: Optional[asyncio.AbstractEventLoop]) -> Any:
    """A sync Runtime's way (``asyncio.run``); on a thread that runs a loop, on a helper thread (``asyncio.run``
    refuses to nest), blocking this one: the sync runtime was called on an event loop's thread."""
    async def wait() -> Any:
        return await awaitable

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    if running is host:
        log.warning("sync_runtime_on_event_loop",
                    hint="AsyncRuntime.runtime was called on the event loop's own thread and reached an async "
                         "handler or node: it blocks the loop until it is done; await the AsyncRuntime's methods")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="abstractruntime-private") as pool:
        return pool.submit(asyncio.run, wait()).result()


__all__ = ["AsyncRuntime", "DEFAULT_MAX_THREADS"]
