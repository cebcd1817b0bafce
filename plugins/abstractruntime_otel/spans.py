"""The spans and measurements of the ``otel`` plugin's hooks (:mod:`.hooks` calls these once telemetry is on).

* ``abstractruntime.<api call>`` -- around ``start``, ``tick``, ``resume``, ``pause_run``, ``resume_run``,
  ``cancel_run``; a child of whatever span is current (the host's), current itself while the call runs.
* ``abstractruntime.step`` -- from ``before_step`` to ``after_step``, current in between, so
* ``abstractruntime.effect`` -- around each effect attempt -- is its child, and a handler's own spans (an HTTP
  client's) are children of the effect span.

A span that the kernel never closes (a step whose hook never came because the call raised) is ended when its API
call returns, so no context is left attached. The tracing SDK costs tens of microseconds per span: the hot path
(two spans and two histogram records per step) does nothing else that costs; counters are added up per API call.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Dict, Optional

from opentelemetry import context, metrics, trace
from opentelemetry.trace import Link, Status, StatusCode

from . import genai
from .state import ApiFrame, OpenStep, local
from .telemetry import (
    EFFECT_ATTEMPT,
    EFFECT_OUTCOME,
    EFFECT_TYPE,
    LINK_KIND,
    NODE_ID,
    RUN_ID,
    RUN_STATUS,
    STEP,
    WAIT_REASON,
    WORKFLOW_ID,
    Telemetry,
    current,
    mark_waiting,
    pop_waited,
    run_span_context,
    store_trace_context,
)

_TERMINAL = ("completed", "failed", "cancelled")
#: opentelemetry-api >= 1.23 links a span after it started: the API call's span links once to the run's trace;
#: with an older API each step's span carries the link instead
_ADD_LINK = hasattr(trace.NonRecordingSpan, "add_link")
# the per-step calls, looked up once
_attach, _detach, _in_context, _perf_counter = context.attach, context.detach, trace.set_span_in_context, \
    time.perf_counter


#: a status's string, per status object (an enum's ``.value`` costs a descriptor call each time)
_STATUS_VALUES: Dict[Any, str] = {}


def _status(run: Any) -> str:
    status = getattr(run, "status", None)
    try:
        return _STATUS_VALUES[status]
    except (KeyError, TypeError):  # first time, or unhashable
        value = getattr(status, "value", None)
        value = value if isinstance(value, str) else str(status)
        if len(_STATUS_VALUES) < 64:
            try:
                _STATUS_VALUES[status] = value
            except TypeError:
                pass
        return value


def _error(span: Any, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _count(telemetry: Telemetry, key: tuple) -> None:
    """Add 1 to a counter (``key``: its name and attribute values), at the end of the API call if in one."""
    api = local.api
    if api:
        counts = api[-1].counts
        counts[key] = counts.get(key, 0) + 1
    else:
        _flush(telemetry, {key: 1})


#: deferred histogram records an API call keeps at most before it makes them (bounds a long call's memory)
_MAX_RECORDS = 256
#: a record's context is an argument since opentelemetry-api 1.28 (before, the current one: no deferring then)
_RECORD_CONTEXT = "context" in inspect.signature(metrics.Histogram.record).parameters


def _record(histogram: Any, amount: float, attributes: Dict[str, str], ctx: Any) -> None:
    """A histogram record, made when the API call returns (or at once outside one) in ``ctx`` (the context it
    was measured in: the SDK's exemplars link to its span)."""
    api = local.api
    if not api or not _RECORD_CONTEXT:
        histogram.record(amount, attributes)
        return
    records = api[-1].records
    records.append((histogram.record, amount, attributes, ctx))
    if len(records) >= _MAX_RECORDS:
        _flush_records(records)


def _flush_records(records: list) -> None:
    for record, amount, attributes, ctx in records:
        record(amount, attributes, ctx)
    records.clear()


#: attribute dicts of the per-step measurements, made once per set of values (the SDK copies what it keeps)
_ATTRIBUTES: Dict[tuple, Dict[str, str]] = {}


def _attributes(key: tuple) -> Dict[str, str]:
    """``{name: value, ...}`` for ``key = (name, value, name, value, ...)``, the same dict for the same key."""
    found = _ATTRIBUTES.get(key)
    if found is None:
        if len(_ATTRIBUTES) > 4096:  # bounded: a workflow id or an effect type per entry
            _ATTRIBUTES.clear()
        found = _ATTRIBUTES[key] = dict(zip(key[::2], key[1::2]))
    return found


def _flush(telemetry: Telemetry, counts: Dict[tuple, int]) -> None:
    instruments = telemetry.metrics
    if instruments is None:
        return
    for (name, a, b), n in counts.items():
        if name == "steps":
            instruments.steps.add(n, _attributes((WORKFLOW_ID, a, RUN_STATUS, b)))
        else:
            instruments.effects.add(n, _attributes((EFFECT_TYPE, a, EFFECT_OUTCOME, b)))


# --- API calls ----------------------------------------------------------------------------------------------------
def open_api(telemetry: Optional[Telemetry], name: str, run_id: Optional[str]) -> ApiFrame:
    """Enter an API call: with tracing, its span, current until :func:`close_api`; for ``start``, the new run
    keeps this span's context."""
    frame = ApiFrame(telemetry, run_id, len(local.steps))
    local.api.append(frame)
    if telemetry is None or telemetry.tracer is None:
        return frame
    attributes: Dict[str, Any] = {RUN_ID: run_id} if run_id else {}
    pending, local.pending = local.pending, None
    if name == "start" and pending is not None and pending.run_id == run_id:
        attributes[WORKFLOW_ID] = pending.workflow_id
    else:
        pending = None
    frame.span = telemetry.tracer.start_span("abstractruntime." + name, attributes=attributes)
    frame.context = trace.set_span_in_context(frame.span)
    frame.token = context.attach(frame.context)
    if pending is not None:
        store_trace_context(pending)  # the run's trace: this span's (a child of the host's span, if any)
    return frame


def close_api(frame: ApiFrame, result: Any, error: Optional[BaseException]) -> None:
    local.api.pop()
    _close_steps(frame.depth, error)
    telemetry = frame.telemetry
    if frame.records:
        _flush_records(frame.records)
    if telemetry is not None and frame.counts:
        _flush(telemetry, frame.counts)
    span = frame.span
    if span is None:
        return
    try:
        if error is not None:
            _error(span, error)
        elif hasattr(result, "status") and hasattr(result, "run_id"):
            span.set_attributes({RUN_STATUS: _status(result), WORKFLOW_ID: result.workflow_id, STEP: result.step})
    finally:
        span.end()
        context.detach(frame.token)


def _link_api(frame: Optional[ApiFrame], run: Any) -> None:
    """Link the API call's span to the run's trace, once, when the run's trace is another one (only for the run
    the call is about: a child run's tick also reports its waiting parent's status change)."""
    if frame is None or frame.span is None or frame.linked or not _ADD_LINK or run.run_id != frame.run_id:
        return
    frame.linked = True
    kept = run_span_context(run)
    if kept is not None and kept.trace_id != frame.span.get_span_context().trace_id:
        frame.span.add_link(kept, {LINK_KIND: "run", RUN_ID: run.run_id})


# --- steps --------------------------------------------------------------------------------------------------------
def open_step(telemetry: Telemetry, run: Any, node_id: str) -> None:
    """Start the step's span with every attribute known now (the SDK cleans a dict of attributes once; a
    ``set_attribute`` call each) and make it current: a node function's own spans and log events are in it."""
    steps = local.steps
    run_id = run.run_id
    if steps and steps[-1].run_id == run_id:  # the last step of this run never reached after_step
        _close_steps(len(steps) - 1, None)
    instruments = telemetry.metrics
    if instruments is not None:
        waited = pop_waited(run)
        if waited is not None:  # a due timer continued the run
            instruments.wait_duration.record(waited, {WAIT_REASON: "until"})
    span = token = None
    tracer = telemetry.tracer
    if tracer is not None:
        api = local.api
        frame = api[-1] if api else None
        links = ()
        if _ADD_LINK and frame is not None and frame.span is not None and frame.run_id == run_id:
            if not frame.linked:
                _link_api(frame, run)
        else:
            kept = run_span_context(run)
            if kept is not None and kept.trace_id != trace.get_current_span().get_span_context().trace_id:
                links = (Link(kept, {LINK_KIND: "run", RUN_ID: run_id}),)
        span = tracer.start_span("abstractruntime.step", links=links, attributes={
            RUN_ID: run_id, WORKFLOW_ID: run.workflow_id, NODE_ID: node_id, STEP: run.step + 1})
        token = _attach(_in_context(span))
    steps.append(OpenStep(run_id, run.workflow_id, span, token, _perf_counter()))


def fail_step(run: Any, error: BaseException) -> None:
    step = _find(run.run_id)
    if step is None:
        return
    step.failed = True
    if step.span is not None:
        _error(step.span, error)


def close_step(telemetry: Telemetry, run: Any) -> None:
    steps = local.steps
    if steps and steps[-1].run_id == run.run_id:
        step = steps.pop()
    else:
        step = _find(run.run_id)
        if step is None:
            return
        _close_steps(steps.index(step) + 1, None)  # spans opened within it and left open (none, normally)
        steps.pop()
    status = _status(run)
    span = step.span
    if span is not None:
        span.set_attribute(RUN_STATUS, status)
        if status == "failed" and not step.failed:  # its effect failed for good
            span.set_status(Status(StatusCode.ERROR, str(getattr(run, "error", None) or "run failed")))
        span.end()
        _detach(step.token)
    instruments = telemetry.metrics
    if instruments is not None:
        api = local.api  # measured in the API call's context (the step's span has ended)
        _record(instruments.step_duration, _perf_counter() - step.started, _attributes((WORKFLOW_ID, step.workflow_id)),
                api[-1].context if api else None)
        _count(telemetry, ("steps", step.workflow_id, status))


def _find(run_id: str) -> Optional[OpenStep]:
    for step in reversed(local.steps):
        if step.run_id == run_id:
            return step
    return None


def _close_steps(depth: int, error: Optional[BaseException]) -> None:
    """End the steps opened above ``depth`` that the kernel never closed (innermost first)."""
    steps = local.steps
    while len(steps) > depth:
        step = steps.pop()
        if step.span is None:
            continue
        if error is not None and not step.failed:
            _error(step.span, error)
        step.span.end()
        context.detach(step.token)


# --- effects ------------------------------------------------------------------------------------------------------
def open_effect(telemetry: Telemetry, call: Any) -> Any:
    """Start the effect attempt's span and make it current (a handler's own spans nest in it); returns ``(span,
    token, started, effect type, the context with the span)``."""
    effect_type = call.effect.type_value
    tracer = telemetry.tracer
    if tracer is None:
        return None, None, _perf_counter(), effect_type, None
    run = call.run
    span = tracer.start_span("abstractruntime.effect", attributes={
        RUN_ID: run.run_id, NODE_ID: call.node_id, STEP: run.step + 1, EFFECT_TYPE: effect_type,
        EFFECT_ATTEMPT: call.attempt})
    ctx = _in_context(span)
    return span, _attach(ctx), _perf_counter(), effect_type, ctx


def close_effect(telemetry: Telemetry, call: Any, opened: Any, outcome: Any, error: Optional[BaseException]) -> None:
    span, token, started, effect_type, ctx = opened
    try:
        result = "failed" if error is not None or outcome is None else outcome.status
        if span is not None:
            span.set_attribute(EFFECT_OUTCOME, result)
            if error is not None:
                _error(span, error)
            elif result == "failed":
                span.set_status(Status(StatusCode.ERROR, str(getattr(outcome, "error", None) or "effect failed")))
            elif result == "waiting" and getattr(outcome, "wait", None) is not None:
                span.set_attribute(WAIT_REASON, getattr(outcome.wait.reason, "value", str(outcome.wait.reason)))
            if effect_type == genai.LLM_CALL:
                genai.annotate(span, call, outcome)
        instruments = telemetry.metrics
        if instruments is not None:
            _record(instruments.effect_duration, _perf_counter() - started,
                    _attributes((EFFECT_TYPE, effect_type, EFFECT_OUTCOME, result)), ctx)
            _count(telemetry, ("effects", effect_type, result))
            if result == "waiting":
                mark_waiting(call.run)
    finally:
        if span is not None:
            span.end()
            _detach(token)


# --- status changes and resumes -----------------------------------------------------------------------------------
def status_changed(telemetry: Telemetry, run: Any) -> None:
    api = local.api
    frame = api[-1] if api else None
    if frame is not None and frame.span is not None and frame.run_id == run.run_id:
        frame.span.set_attribute(RUN_STATUS, _status(run))
        _link_api(frame, run)
    status = _status(run)
    if telemetry.metrics is not None and status in _TERMINAL:
        telemetry.metrics.runs_finished.add(1, {WORKFLOW_ID: run.workflow_id, RUN_STATUS: status})


def resumed(telemetry: Telemetry, run: Any, wait: Any) -> None:
    api = local.api
    _link_api(api[-1] if api else None, run)
    if telemetry.metrics is not None:
        waited = pop_waited(run)
        if waited is not None:
            reason = getattr(getattr(wait, "reason", None), "value", None) or "unknown"
            telemetry.metrics.wait_duration.record(waited, {WAIT_REASON: reason})


__all__ = ["current", "open_api", "close_api", "open_step", "fail_step", "close_step", "open_effect",
           "close_effect", "status_changed", "resumed"]
