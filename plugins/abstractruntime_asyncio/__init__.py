"""``abstractruntime_asyncio``: :class:`AsyncRuntime` for asyncio hosts (``from abstractruntime import
AsyncRuntime``) and :class:`AsyncScheduler`, the scheduler that runs inside the host's event loop (docs/asyncio.md).
A library: it registers no hook -- async handlers and nodes are a kernel feature (``Runtime.awaiter``), which an
AsyncRuntime points at the host's loop."""

from abstractruntime_pluginkit.lazy import lazy_exports

from .runtime import DEFAULT_MAX_THREADS, AsyncRuntime

# the scheduler (and the thread-based scheduler it reuses) is imported on first use
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(["AsyncScheduler", "DEFAULT_CONCURRENCY"], ".scheduler"))

__all__ = ["AsyncRuntime", "AsyncScheduler", "DEFAULT_MAX_THREADS", "DEFAULT_CONCURRENCY"]
