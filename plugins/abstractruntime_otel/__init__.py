"""Builtin plugin ``otel``: OpenTelemetry traces and metrics of what the runtime does (docs/observability.md).

* Spans ``abstractruntime.start`` / ``.tick`` / ``.resume`` / ``.pause_run`` / ``.resume_run`` / ``.cancel_run``
  around the API calls, a child ``abstractruntime.step`` per executed step and ``abstractruntime.effect`` per effect
  attempt (a handler's own spans nest inside), with ``abstractruntime.*`` attributes and, on LLM calls, the GenAI
  semantic conventions' ``gen_ai.*``.
* A run keeps the W3C trace context of its ``start`` (``vars._runtime.trace``): spans of a later ``tick`` or
  ``resume``, in any process, link to the run's trace.
* Counters, histograms and a gauge (``abstractruntime.steps``, ``.effects``, ``.runs.finished``,
  ``.step.duration``, ``.effect.duration``, ``.commit.duration``, ``.wait.duration``, ``.runs.current``).
* The library's log events carry ``trace_id`` / ``span_id`` while a span is current.

It depends on ``opentelemetry-api`` only (``pip install 'abstractruntime[otel]'``); the host configures the SDK and
its exporters. Without the API the plugin implements no per-step hook at all (it costs nothing) and
:func:`otel_status` says why it is inactive; with the API but no configured provider every hook returns at once.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Optional

from abstractruntime import __version__  # the instrumentation scope's version: the runtime's

from . import state


def _api_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["opentelemetry"] = None
        return False


API_INSTALLED = _api_installed()
INSTALL_HINT = "pip install 'abstractruntime[otel]' (the opentelemetry-api package)"

if API_INSTALLED:
    from .hooks import (  # noqa: F401  (hook implementations: pluggy finds them on this module; the per-step and
        abstractruntime_api_call,  # status ones are registered by the first API call made with telemetry active)
        abstractruntime_prepare_new_run,
        abstractruntime_prepare_resume_payload,
        abstractruntime_register_runtime_methods,
        abstractruntime_runtime_created,
    )
else:
    from abstractruntime import hookimpl
    from abstractruntime.descriptors import RuntimeMethodDescriptor

    @hookimpl
    def abstractruntime_register_runtime_methods() -> Any:  # the one hook: ``runtime.otel_status()``
        return [RuntimeMethodDescriptor("otel_status", lambda runtime: otel_status(),
                                        "Is the otel plugin active, and why not")]


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Use these providers instead of the global ones (``opentelemetry.trace.set_tracer_provider`` /
    ``opentelemetry.metrics.set_meter_provider``); None goes back to the global provider. For hosts that keep
    several providers, and for tests."""
    state.tracer_provider, state.meter_provider = tracer_provider, meter_provider


def add_trace_ids(logger: Any, method: str, event_dict: Dict[str, Any]) -> Dict[str, Any]:
    """A structlog processor for hosts that configure structlog themselves: ``trace_id`` / ``span_id`` of the
    current span (the library adds them to its stdlib log records on its own)."""
    if API_INSTALLED:
        from .hooks import trace_fields

        for key, value in trace_fields().items():
            event_dict.setdefault(key, value)
    return event_dict


def otel_status() -> Dict[str, Any]:
    """``{"active", "tracing", "metrics", "api_version", "reason"}``: whether spans and metrics are being made,
    and if not, why (the API is not installed, or no provider is configured)."""
    if not API_INSTALLED:
        return {"active": False, "tracing": False, "metrics": False, "api_version": None,
                "reason": f"opentelemetry-api is not installed: {INSTALL_HINT}"}
    from importlib import metadata

    from . import telemetry

    version: Optional[str]
    try:
        version = metadata.version("opentelemetry-api")
    except metadata.PackageNotFoundError:  # pragma: no cover - the module without its distribution metadata
        version = None
    current = telemetry.current()
    tracing = current is not None and current.tracer is not None
    measuring = current is not None and current.metrics is not None
    reason = None if tracing or measuring else (
        "no TracerProvider or MeterProvider is configured: the host sets them up with the OpenTelemetry SDK "
        "(docs/observability.md)")
    return {"active": tracing or measuring, "tracing": tracing, "metrics": measuring, "api_version": version,
            "reason": reason}


__all__ = ["configure", "otel_status", "add_trace_ids", "API_INSTALLED", "INSTALL_HINT"]
