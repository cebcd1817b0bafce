"""What the ``otel`` plugin keeps per process, without importing ``opentelemetry``: the providers a host passed to
:func:`abstractruntime_otel.configure` (None: the global ones), the runtimes whose stores the runs gauge reads, and
the per-thread spans that are open (a step's span stays current from ``before_step`` to ``after_step``)."""

from __future__ import annotations

import threading
import weakref
from typing import Any, List, Optional

#: set by :func:`abstractruntime_otel.configure`; None: the global provider (``opentelemetry.trace`` / ``metrics``)
tracer_provider: Any = None
meter_provider: Any = None

#: the runtimes whose stores ``abstractruntime.runs.current`` counts (alive and open ones; the SDK reads it from its
#: collection thread, so it is changed and copied under the lock)
runtimes: "weakref.WeakSet[Any]" = weakref.WeakSet()
runtimes_lock = threading.Lock()


class OpenStep:
    """A step in progress on this thread: its span (None without tracing), the context token that made it
    current, when it started, and whether it failed."""

    __slots__ = ("run_id", "workflow_id", "span", "token", "started", "failed")

    def __init__(self, run_id: str, workflow_id: str, span: Any, token: Any, started: float) -> None:
        self.run_id, self.workflow_id, self.span, self.token, self.started = run_id, workflow_id, span, token, started
        self.failed = False


class ApiFrame:
    """An API call in progress on this thread: the telemetry it runs with (None: off; the hooks inside use it
    instead of asking again), the run it is about, its span and context token (None without tracing), whether the span already links
    to the run's trace, how many steps were open when it began, and the counter increments and histogram records
    it defers (made when it returns: the SDK's calls cost microseconds each, and about half as much made one after
    the other as spread between the kernel's work; a record keeps the context it was made in, for exemplars)."""

    __slots__ = ("telemetry", "run_id", "span", "token", "context", "linked", "depth", "counts", "records")

    def __init__(self, telemetry: Any, run_id: Optional[str], depth: int) -> None:
        self.telemetry, self.run_id, self.depth = telemetry, run_id, depth
        self.span = self.token = self.context = None  # context: the one with the call's span (None without)
        self.linked = False
        self.counts: dict = {}
        self.records: list = []  # (histogram.record, amount, attributes, context)


#: the frame of every API call made while telemetry is off (the hooks inside only read its ``telemetry``, None; an
#: off frame is never written to, so one shared frame is pushed instead of a new one per call)
OFF = ApiFrame(None, None, 0)


class _Local(threading.local):
    def __init__(self) -> None:
        self.steps: List[OpenStep] = []
        self.api: List[ApiFrame] = []
        self.pending: Any = None  # the run ``start`` is creating (prepare_new_run -> api_call("start"))


local = _Local()


def store_name(runtime: Any) -> str:
    """A store's name for the ``abstractruntime.store`` attribute: the URL's scheme, host and path (no
    credentials, no query), or the backend's class name for stores the host passed in."""
    settings = getattr(runtime, "settings", None)
    url: Optional[str] = getattr(settings, "store", None)
    if isinstance(url, str) and url:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}" if parts.scheme else url.split("?")[0]
    return type(getattr(runtime, "backend", runtime)).__name__


__all__ = ["tracer_provider", "meter_provider", "runtimes", "runtimes_lock", "local", "OpenStep", "ApiFrame", "OFF",
           "store_name"]
