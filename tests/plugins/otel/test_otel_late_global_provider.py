"""A host may set the global providers after its runtime is built -- before importing OpenTelemetry at all, or after
calls made with the API imported but no provider set (the plugin then answers "off" from a cached check). The
very next API call has its spans and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

LATE_PROVIDERS = """
import json, sys
from abstractruntime import Runtime, StepPlan, WorkflowSpec

flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
    "a": lambda run, ctx: StepPlan(node_id="a", next_node="b"),
    "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"ok": True})})

def drive(rt):
    return rt.tick(workflow=flow, run_id=rt.start(workflow=flow)).status.value

rt = Runtime.from_config({"store": "memory://"})
out = {"before_import": [drive(rt), "opentelemetry.trace" in sys.modules]}

from opentelemetry import metrics, trace  # imported, no provider yet: idle
out["imported_no_provider"] = [drive(rt), drive(rt), rt.otel_status()["active"]]

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
drive(rt)
out["spans"] = sorted(s.name for s in exporter.get_finished_spans())

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
drive(rt)
data = reader.get_metrics_data()
out["metrics"] = sorted({m.name for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
                         for m in sm.metrics})
print(json.dumps(out))
"""


def test_global_providers_set_after_the_runtime_was_built_take_effect_at_the_next_call():
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(LATE_PROVIDERS)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["before_import"] == ["completed", False]
    assert out["imported_no_provider"] == ["completed", "completed", False]
    assert out["spans"] == ["abstractruntime.start", "abstractruntime.step", "abstractruntime.step",
                            "abstractruntime.tick"]
    assert {"abstractruntime.steps", "abstractruntime.commit.duration", "abstractruntime.step.duration"} <= \
        set(out["metrics"])
