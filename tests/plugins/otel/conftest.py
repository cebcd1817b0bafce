"""Fixtures of the otel plugin's tests: the real OpenTelemetry SDK (see otel_support.py), handed to the plugin with
``abstractruntime_otel.configure`` -- the process's global providers are left alone, so the rest of the suite runs
without telemetry."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import abstractruntime_otel

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

if importlib.util.find_spec("opentelemetry.sdk") is None:  # the SDK is in the test extra
    collect_ignore_glob = ["test_*.py"]
else:
    from otel_support import Otel


@pytest.fixture
def otel():
    telemetry = Otel()
    abstractruntime_otel.configure(tracer_provider=telemetry.tracer_provider,
                                   meter_provider=telemetry.meter_provider)
    try:
        yield telemetry
    finally:
        abstractruntime_otel.configure()
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()
