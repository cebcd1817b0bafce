"""The ``otel`` plugin's hook implementations. Imported only when ``opentelemetry-api`` is installed, and still
without importing it: :mod:`.spans` (and ``opentelemetry`` with it) is imported by the first hook call, and every
hook returns at once while no TracerProvider or MeterProvider is configured. The per-step hooks (:class:`StepHooks`)
are registered in a runtime only once telemetry is active."""

from __future__ import annotations

import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional

from abstractruntime import hookimpl, logs
from abstractruntime.descriptors import RuntimeMethodDescriptor

from . import state

_spans: Any = None  # the .spans module, once imported


def _active() -> Any:
    """The telemetry in use (see :func:`.telemetry.current`), or None. Until the host has imported
    ``opentelemetry`` (as configuring a provider does) or called ``configure``, nothing is imported."""
    global _spans
    if _spans is None:
        if state.tracer_provider is None and state.meter_provider is None \
                and "opentelemetry.trace" not in sys.modules and "opentelemetry.metrics" not in sys.modules:
            return None
        from . import spans

        _spans = spans
    return _spans.current()


@hookimpl
def abstractruntime_prepare_new_run(runtime: Any, run: Any) -> None:
    """Remember the run ``start`` creates: its API span writes its trace context into it before it is committed."""
    telemetry = _active()
    if telemetry is not None and telemetry.tracer is not None:
        state.local.pending = run


def _telemetry() -> Any:
    """The telemetry of the API call in progress (asked once per call), else :func:`_active`."""
    api = state.local.api
    return api[-1].telemetry if api else _active()


@hookimpl(wrapper=True)
def abstractruntime_api_call(runtime: Any, name: str, run_id: Optional[str]) -> Any:
    telemetry = _active()
    if telemetry is None:  # the hooks inside learn it from the frame: one check per call, not per step
        api = state.local.api
        api.append(state.OFF)
        try:
            return (yield)
        finally:
            api.pop()
    _with_step_hooks(runtime)
    frame = _spans.open_api(telemetry, name, run_id)
    try:
        result = yield
    except BaseException as exc:
        _spans.close_api(frame, None, exc)
        raise
    _spans.close_api(frame, result, None)
    return result


def _api_call_active(**_: Any) -> bool:
    """:func:`_active` is not None, asked at every API call (its first check inline: no call while idle)."""
    if _spans is None and state.tracer_provider is None and state.meter_provider is None \
            and "opentelemetry.trace" not in sys.modules and "opentelemetry.metrics" not in sys.modules:
        return False
    return _active() is not None


#: while no provider is configured the kernel calls the API directly, past this wrapper (docs/hooks.md, api_call)
abstractruntime_api_call.active = _api_call_active  # type: ignore[attr-defined]


class StepHooks:
    """The per-step, per-effect and status hooks, registered in a runtime's plugin manager (as ``otel.steps``) by
    its first API call made while telemetry is active (or when the runtime is built, if it is active then), with the
    commit timing: until then -- a host that installed opentelemetry-api but configured no provider -- its steps,
    effects, status changes and commits call nothing of this plugin. Once registered they stay (and return at once
    if the provider goes away). They look the call's telemetry up inline (what _telemetry does)."""

    NAME = "otel.steps"

    @hookimpl
    def abstractruntime_before_step(self, run: Any, node_id: str) -> None:
        api = state.local.api
        telemetry = api[-1].telemetry if api else _active()
        if telemetry is not None:
            _spans.open_step(telemetry, run, node_id)

    @hookimpl
    def abstractruntime_step_error(self, run: Any, error: BaseException) -> None:
        if _telemetry() is not None:
            _spans.fail_step(run, error)

    @hookimpl
    def abstractruntime_after_step(self, run: Any) -> None:
        api = state.local.api
        telemetry = api[-1].telemetry if api else _active()
        if telemetry is not None:
            _spans.close_step(telemetry, run)

    @hookimpl(wrapper=True)
    def abstractruntime_execute_effect(self, call: Any) -> Any:
        api = state.local.api
        telemetry = api[-1].telemetry if api else _active()
        if telemetry is None:
            return (yield)
        opened = _spans.open_effect(telemetry, call)
        try:
            outcome = yield
        except BaseException as exc:
            _spans.close_effect(telemetry, call, opened, None, exc)
            raise
        _spans.close_effect(telemetry, call, opened, outcome, None)
        return outcome

    @hookimpl
    def abstractruntime_run_status_changed(self, run: Any) -> None:
        telemetry = _telemetry()
        if telemetry is not None:
            _spans.status_changed(telemetry, run)


STEP_HOOKS = StepHooks()
_stepped: "weakref.WeakSet[Any]" = weakref.WeakSet()  # runtimes whose plugin manager has STEP_HOOKS
_stepped_lock = threading.Lock()


def _with_step_hooks(runtime: Any) -> None:
    if runtime in _stepped:
        return
    with _stepped_lock:
        if runtime in _stepped:
            return
        pm = runtime.hooks.plugin_manager
        if not pm.is_registered(STEP_HOOKS):
            pm.register(STEP_HOOKS, name=StepHooks.NAME)
        time_commits(runtime)
        _stepped.add(runtime)


@hookimpl
def abstractruntime_prepare_resume_payload(run: Any, wait: Any) -> None:
    """Not a change of the payload (returns None): links the resume's span to the run's trace and measures how
    long the run waited."""
    telemetry = _telemetry()
    if telemetry is not None:
        _spans.resumed(telemetry, run, wait)


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """Count the runtime's store in the runs gauge, time its commits, add trace ids to the library's log events.
    Imports nothing from OpenTelemetry: no provider is needed yet."""
    with state.runtimes_lock:
        state.runtimes.add(runtime)
    instrument_backend(runtime)
    if trace_fields not in logs.CONTEXT_FIELDS:
        logs.CONTEXT_FIELDS.append(trace_fields)
    if _active() is not None:  # already configured: commits and status changes outside API calls count too
        _with_step_hooks(runtime)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    from . import otel_status

    return [RuntimeMethodDescriptor("otel_status", lambda runtime: otel_status(), "Is the otel plugin active, "
                                    "and why not")]


# --- log fields ---------------------------------------------------------------------------------------------------
def trace_fields() -> Dict[str, str]:
    """``trace_id`` / ``span_id`` of the current span for the library's log events (none without a valid span)."""
    telemetry = _telemetry()
    if telemetry is None or telemetry.tracer is None:
        return {}
    context = _spans.trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


# --- the store: commit timing, and leaving the runs gauge when closed ------------------------------------------
def instrument_backend(runtime: Any) -> None:
    """Stop counting the runtime's runs in ``abstractruntime.runs.current`` once it is closed: the backend's ``close``
    is wrapped once, on the instance. Commit timing: :func:`time_commits`."""
    backend = getattr(runtime, "backend", None)
    close = getattr(backend, "close", None)
    if close is None or getattr(close, "_abstractruntime_otel", False):
        return
    owner = weakref.ref(runtime)

    def closing() -> None:
        alive = owner()
        if alive is not None:
            with state.runtimes_lock:
                state.runtimes.discard(alive)
        close()

    closing._abstractruntime_otel = True  # type: ignore[attr-defined]
    try:
        backend.close = closing
    except (AttributeError, TypeError):  # a backend with __slots__: not instrumented
        return


def time_commits(runtime: Any) -> None:
    """Time the runtime's store commits (``abstractruntime.commit.duration``): the backend's ``commit_step`` is
    wrapped once, on the instance (the kernel has no hook around a commit), once telemetry is active (with the step
    hooks): an idle plugin adds no call to a commit, an active one without a MeterProvider one call."""
    backend = getattr(runtime, "backend", None)
    commit_step = getattr(backend, "commit_step", None)
    if commit_step is None or getattr(commit_step, "_abstractruntime_otel", False):
        return
    try:
        backend.commit_step = _timed_commit(commit_step, {"abstractruntime.store": state.store_name(runtime)})
    except (AttributeError, TypeError):  # a backend with __slots__: not instrumented
        return


def _timed_commit(commit_step: Callable[[Any], None], attributes: Dict[str, str]) -> Callable[[Any], None]:
    def commit(step_commit: Any) -> None:
        telemetry = _telemetry()
        if telemetry is None or telemetry.metrics is None:
            return commit_step(step_commit)
        started = time.perf_counter()
        try:
            return commit_step(step_commit)
        finally:
            telemetry.metrics.commit_duration.record(time.perf_counter() - started, attributes)

    commit._abstractruntime_otel = True  # type: ignore[attr-defined]
    return commit


__all__ = ["trace_fields", "instrument_backend", "time_commits"]
