"""Helpers of the otel plugin's tests: the real OpenTelemetry SDK with its in-memory span exporter and metric
reader."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: Optional[str] = None) -> List[Any]:
        found = self.exporter.get_finished_spans()
        return [s for s in found if name is None or s.name == name]

    def metrics(self) -> Dict[str, List[Any]]:
        """Metric name -> data points (read now)."""
        out: Dict[str, List[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


def points(metrics: Dict[str, List[Any]], name: str) -> Dict[tuple, Any]:
    """A metric's data points by their sorted attribute items: a counter's or gauge's value, a histogram's count."""
    return {tuple(sorted(p.attributes.items())): getattr(p, "count", None) if hasattr(p, "bucket_counts")
            else p.value for p in metrics.get(name, [])}
