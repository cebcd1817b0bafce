"""The OpenTelemetry side of the ``otel`` plugin: which providers are in use, the tracer and the instruments made
from them, and the run's trace context (W3C ``traceparent``) kept in ``vars._runtime.trace``.

Imported at the first hook call that needs it (never while a runtime is built: ``opentelemetry`` costs tens of
milliseconds to import). Nothing here configures OpenTelemetry: the host sets the global providers (or passes its
own to :func:`abstractruntime_otel.configure`); until one is set, :func:`current` returns None and every hook
returns at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterable, Optional, Tuple

from opentelemetry import metrics, trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import state

INSTRUMENTATION_NAME = "abstractruntime"

# --- attribute names (docs/observability.md) ----------------------------------------------------------------------
RUN_ID = "abstractruntime.run_id"
WORKFLOW_ID = "abstractruntime.workflow_id"
NODE_ID = "abstractruntime.node_id"
STEP = "abstractruntime.step"
EFFECT_TYPE = "abstractruntime.effect.type"
EFFECT_OUTCOME = "abstractruntime.effect.outcome"
EFFECT_ATTEMPT = "abstractruntime.effect.attempt"
RUN_STATUS = "abstractruntime.run.status"
WAIT_REASON = "abstractruntime.wait.reason"
STORE = "abstractruntime.store"
LINK_KIND = "abstractruntime.link"

#: where a run keeps its trace context (and, while it waits, since when): ``vars._runtime.trace``
TRACE_KEY = "trace"
#: seconds: from a millisecond commit to a run that waited days for a person
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 3600.0, 86400.0)

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_TRACING = (ProxyTracerProvider, NoOpTracerProvider)
_NO_METRICS = tuple(t for t in (getattr(metrics, "NoOpMeterProvider", None),
                                getattr(getattr(metrics, "_internal", None), "_ProxyMeterProvider", None)) if t)


class Telemetry:
    """The tracer (None: no TracerProvider is configured) and the instruments (None: no MeterProvider) of one pair
    of providers."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from . import __version__

        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__) \
            if tracer_provider is not None else None
        self.metrics: Optional[Instruments] = Instruments(meter_provider.get_meter(INSTRUMENTATION_NAME, __version__)) \
            if meter_provider is not None else None


class Instruments:
    """The plugin's metrics (their names, units and attributes are listed in docs/observability.md)."""

    def __init__(self, meter: Any) -> None:
        self.steps = meter.create_counter("abstractruntime.steps", unit="{step}",
                                          description="Steps executed, by workflow and the run status they left")
        self.effects = meter.create_counter("abstractruntime.effects", unit="{effect}",
                                            description="Effect executions (attempts), by effect type and outcome")
        self.runs_finished = meter.create_counter("abstractruntime.runs.finished", unit="{run}",
                                                  description="Runs that reached a terminal status, by status")
        self.step_duration = _histogram(meter, "abstractruntime.step.duration", "Duration of a step (node and effect)")
        self.effect_duration = _histogram(meter, "abstractruntime.effect.duration", "Duration of one effect attempt")
        self.commit_duration = _histogram(meter, "abstractruntime.commit.duration",
                                          "Duration of a store commit (the write and its fsync)")
        self.wait_duration = _histogram(meter, "abstractruntime.wait.duration",
                                        "Time a run waited until it was resumed (or its timer continued it)")
        meter.create_observable_gauge("abstractruntime.runs.current", callbacks=[observe_runs], unit="{run}",
                                      description="Runs in the store by status, read from the store's index")


def _histogram(meter: Any, name: str, description: str) -> Any:
    try:
        return meter.create_histogram(name, unit="s", description=description,
                                      explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
    except TypeError:  # opentelemetry-api < 1.23: no advisory; the SDK's default buckets (or the host's View)
        return meter.create_histogram(name, unit="s", description=description)


# --- which providers ----------------------------------------------------------------------------------------------
_cache: Tuple[Any, Any, Optional[Telemetry]] = (None, None, None)
_cache_lock = threading.Lock()


#: The API's globals behind ``get_tracer_provider`` / ``get_meter_provider`` (None until a provider is set). While
#: neither they nor the providers given to ``configure`` change, ``current`` returns its last answer without calling
#: the getters: each looks its environment variable up in ``os.environ`` while no provider is set, the bulk of an
#: idle plugin's cost. (A getter loads the provider named by ``OTEL_PYTHON_TRACER_PROVIDER`` /
#: ``OTEL_PYTHON_METER_PROVIDER`` on its first call; only a variable set after that first call goes unnoticed until
#: a provider changes -- the API itself reads them once.) An API without these globals: the getters, every call.
_trace_api = trace
_metrics_api = getattr(metrics, "_internal", None)
_GLOBALS = hasattr(_trace_api, "_TRACER_PROVIDER") and hasattr(_metrics_api, "_METER_PROVIDER")
_UNSET = object()
#: (configured tracer provider, configured meter provider, global tracer provider, global meter provider, answer)
_last: Tuple[Any, Any, Any, Any, Optional[Telemetry]] = (_UNSET, _UNSET, _UNSET, _UNSET, None)


def current() -> Optional[Telemetry]:
    """The telemetry of the providers in use now (those given to ``configure``, else the global ones), or None
    while neither a TracerProvider nor a MeterProvider is configured (every hook then returns at once)."""
    global _last
    if _GLOBALS:
        st_tp, st_mp, g_tp, g_mp, telemetry = _last
        if state.tracer_provider is st_tp and state.meter_provider is st_mp \
                and _trace_api._TRACER_PROVIDER is g_tp and _metrics_api._METER_PROVIDER is g_mp:
            return telemetry
        # read before the getters: a provider set meanwhile by another thread is seen at the next call
        key = (state.tracer_provider, state.meter_provider, _trace_api._TRACER_PROVIDER, _metrics_api._METER_PROVIDER)
        telemetry = _current()
        _last = key + (telemetry,)
        return telemetry
    return _current()


def _current() -> Optional[Telemetry]:
    global _cache
    tp = state.tracer_provider if state.tracer_provider is not None else trace.get_tracer_provider()
    mp = state.meter_provider if state.meter_provider is not None else metrics.get_meter_provider()
    cached_tp, cached_mp, telemetry = _cache
    if tp is cached_tp and mp is cached_mp:
        return telemetry
    with _cache_lock:
        tracing = not isinstance(tp, _NO_TRACING)
        measuring = not isinstance(mp, _NO_METRICS)
        telemetry = Telemetry(tp if tracing else None, mp if measuring else None) if tracing or measuring else None
        _cache = (tp, mp, telemetry)
    return telemetry


# --- the run's trace context --------------------------------------------------------------------------------------
def store_trace_context(run: Any) -> None:
    """Keep the current span's context (W3C ``traceparent``/``tracestate``) in ``run.vars._runtime.trace``: later
    spans of the run -- a resume days later, in another process -- link to it."""
    carrier: Dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if "traceparent" not in carrier:  # no valid span (tracing is off for this context)
        return
    runtime_ns = run.vars.get("_runtime")
    if not isinstance(runtime_ns, dict):
        runtime_ns = run.vars["_runtime"] = {}
    runtime_ns[TRACE_KEY] = carrier


_parsed: Dict[Tuple[str, str], Optional[SpanContext]] = {}


def run_span_context(run: Any) -> Optional[SpanContext]:
    """The span context a run keeps (see :func:`store_trace_context`), or None."""
    trace_ns = _trace_ns(run)
    if trace_ns is None:
        return None
    traceparent = trace_ns.get("traceparent")
    if not isinstance(traceparent, str):
        return None
    tracestate = trace_ns.get("tracestate")
    key = (traceparent, tracestate if isinstance(tracestate, str) else "")
    found = _parsed.get(key, False)
    if found is False:
        carrier = {"traceparent": traceparent}
        if key[1]:
            carrier["tracestate"] = key[1]
        found = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
        found = found if found.is_valid else None
        if len(_parsed) > 4096:  # a bounded cache: a worker sees many runs, each parsed once while it is hot
            _parsed.clear()
        _parsed[key] = found
    return found


def _trace_ns(run: Any) -> Optional[Dict[str, Any]]:
    runtime_ns = run.vars.get("_runtime") if isinstance(run.vars, dict) else None
    trace_ns = runtime_ns.get(TRACE_KEY) if isinstance(runtime_ns, dict) else None
    return trace_ns if isinstance(trace_ns, dict) else None


def mark_waiting(run: Any) -> None:
    """Note since when the run waits (``vars._runtime.trace.waiting_since``, epoch seconds) for the wait-duration
    histogram (only while metrics are on)."""
    runtime_ns = run.vars.get("_runtime") if isinstance(run.vars, dict) else None
    if not isinstance(runtime_ns, dict):
        runtime_ns = run.vars["_runtime"] = {}
    trace_ns = runtime_ns.get(TRACE_KEY)
    if not isinstance(trace_ns, dict):
        trace_ns = runtime_ns[TRACE_KEY] = {}
    trace_ns["waiting_since"] = round(time.time(), 3)


def pop_waited(run: Any) -> Optional[float]:
    """Seconds since :func:`mark_waiting`, forgetting the mark (None: no mark)."""
    trace_ns = _trace_ns(run)
    since = trace_ns.pop("waiting_since", None) if trace_ns is not None else None
    if not isinstance(since, (int, float)) or isinstance(since, bool):
        return None
    return max(0.0, time.time() - since)


# --- runs by status (the observable gauge) ------------------------------------------------------------------------
def observe_runs(options: Any = None) -> Iterable[Any]:
    """The gauge's callback: runs per status of every watched runtime's store, from the store's index keys
    (``count_by_status``; a store that cannot count from an index is left out: no scans)."""
    from abstractruntime_pluginkit.queries import count_by_status

    with state.runtimes_lock:
        runtimes = list(state.runtimes)
    seen = set()
    for runtime in runtimes:
        try:
            run_store = runtime.run_store
            if id(run_store) in seen:
                continue
            seen.add(id(run_store))
            counts = count_by_status(run_store)
        except Exception:  # a closed runtime, a store gone away: nothing to report for it
            continue
        if not counts:
            continue
        store = state.store_name(runtime)
        for status, count in sorted(counts.items()):
            yield metrics.Observation(count, {RUN_STATUS: status, STORE: store})


__all__ = ["Telemetry", "Instruments", "current", "store_trace_context", "run_span_context",
           "mark_waiting", "pop_waited", "observe_runs"]
