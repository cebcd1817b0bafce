"""The otel plugin's overhead on S1e20 (benchmarks/run.py): steps/s of a 20-node linear workflow whose every node emits
an already-due WAIT_UNTIL, start + one tick per run, with OpenTelemetry

* ``blocked``  -- not importable (``sys.modules["opentelemetry"] = None``, as if not installed): the plugin
  implements no per-step hook;
* ``idle``     -- the API installed and imported, no provider configured: every hook returns at once;
* ``sdk``      -- the SDK configured: a TracerProvider with a BatchSpanProcessor exporting to a no-op exporter,
  and a MeterProvider with a periodic reader exporting to a no-op exporter (every span and measurement is made);
* ``sdk10``    -- the same with the sampler ``ParentBased(TraceIdRatioBased(0.1))``: one API call in ten traced.

Run: python benchmarks/otel.py [--runs 200] [--trials 5] [--stores lmdb,memory] [--json]

Each figure is the median of --trials fresh processes, the modes interleaved (this machine's disk latency drifts):
the wall-clock steps/s and the process's CPU time per step (user + system, the SDK's export thread included; it
hardly moves with the machine's load), and the SDK's floor: its calls per step in a loop without the runtime.
The targets: ``sdk`` within 10% of ``blocked`` on LMDB (the durable store
of S1e), ``idle`` within noise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Dict, List

WORKER = textwrap.dedent("""
    import sys, time
    mode, store, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "blocked":
        sys.modules["opentelemetry"] = None
    elif mode == "idle":
        import opentelemetry.trace, opentelemetry.metrics  # imported by the host, nothing configured
    else:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class NoSpans(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

        class NoMetrics(MetricExporter):
            def export(self, metrics_data, timeout_millis=10_000, **kwargs):
                return MetricExportResult.SUCCESS
            def force_flush(self, timeout_millis=10_000):
                return True
            def shutdown(self, timeout_millis=30_000, **kwargs):
                pass

        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1))) if mode == "sdk10" \
            else TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(NoSpans()))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(NoMetrics())]))

    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

    PAST = "2000-01-01T00:00:00+00:00"

    def node(i, n):
        node_id, nxt = f"n{i}", (f"n{i + 1}" if i + 1 < n else None)
        def run_node(run, ctx):
            if nxt is None:
                return StepPlan(node_id=node_id, complete_output={"done": True})
            return StepPlan(node_id=node_id, effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": PAST}),
                            next_node=nxt)
        return node_id, run_node

    flow = WorkflowSpec(workflow_id="s1e20", entry_node="n0", nodes=dict(node(i, 20) for i in range(20)))
    rt = Runtime.from_config({"store": store})
    status = rt.otel_status()
    assert status["active"] is mode.startswith("sdk"), status
    for _ in range(5):  # warm-up
        rt.tick(workflow=flow, run_id=rt.start(workflow=flow), max_steps=30)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(runs):
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow), max_steps=30)
        assert state.status is RunStatus.COMPLETED, state.error
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(20 * runs / wall, cpu / (20 * runs) * 1e6)
    rt.close()
""")

MODES = ("blocked", "idle", "sdk", "sdk10")

#: the SDK's floor: per S1e step, the SDK calls the plugin makes (a step span and an effect span with their
#: attributes, the effect's current, their two set_attribute calls, two histogram records), in a loop without the
#: runtime -- what no plugin code can avoid (in the runtime it costs more: the kernel's work between evicts caches)
FLOOR = textwrap.dedent("""
    import time
    from opentelemetry import context, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoSpans(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    class NoMetrics(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return MetricExportResult.SUCCESS
        def force_flush(self, timeout_millis=10_000):
            return True
        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(NoSpans()))
    tracer = tp.get_tracer("floor")
    meter = MeterProvider(metric_readers=[PeriodicExportingMetricReader(NoMetrics())]).get_meter("floor")
    step_h, effect_h = meter.create_histogram("step", unit="s"), meter.create_histogram("effect", unit="s")
    run_id, n = "4f0c6a1e-85c4-4b7e-9f59-0d5b2f1c3a77", 4000
    def steps():
        for i in range(n):
            step = tracer.start_span("abstractruntime.step", attributes={"abstractruntime.run_id": run_id,
                "abstractruntime.workflow_id": "s1e20", "abstractruntime.node_id": "n1", "abstractruntime.step": i})
            step_token = context.attach(trace.set_span_in_context(step))
            effect = tracer.start_span("abstractruntime.effect", attributes={"abstractruntime.run_id": run_id,
                "abstractruntime.node_id": "n1", "abstractruntime.step": i, "abstractruntime.effect.type": "wait_until",
                "abstractruntime.effect.attempt": 1})
            effect_token = context.attach(trace.set_span_in_context(effect))
            effect.set_attribute("abstractruntime.effect.outcome", "completed")
            effect_h.record(0.0001, {"abstractruntime.effect.type": "wait_until",
                                     "abstractruntime.effect.outcome": "completed"})
            effect.end()
            context.detach(effect_token)
            step.set_attribute("abstractruntime.run.status", "running")
            step.end()
            context.detach(step_token)
            step_h.record(0.0002, {"abstractruntime.workflow_id": "s1e20"})
    steps()  # warm-up
    c0 = time.process_time()
    steps()
    print((time.process_time() - c0) / n * 1e6)
""")


def store_url(store: str, workdir: str, trial: int, mode: str) -> str:
    if store == "memory":
        return "memory://"
    return f"lmdb://{workdir}/{mode}{trial}?sync=true"  # durable, as S1e in benchmarks/run.py


def sdk_floor(trials: int) -> List[float]:
    """CPU us per step of :data:`FLOOR`, one fresh process per trial."""
    return [float(subprocess.run([sys.executable, "-c", FLOOR], capture_output=True, text=True, check=True,
                                 timeout=600).stdout.split()[-1]) for _ in range(trials)]


def measure(stores: List[str], runs: int, trials: int) -> Dict[str, Dict[str, Dict[str, float]]]:
    """store -> mode -> {"steps_per_s": median wall figure, "cpu_us_per_step": median CPU time of the process}."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    workdir = tempfile.mkdtemp(prefix="arbench_otel_")
    try:
        for store in stores:
            samples: Dict[str, List[List[float]]] = {mode: [] for mode in MODES}
            for trial in range(trials):
                for mode in MODES:  # interleaved
                    done = subprocess.run([sys.executable, "-c", WORKER, mode, store_url(store, workdir, trial, mode),
                                           str(runs)], capture_output=True, text=True, timeout=600)
                    if done.returncode != 0:
                        raise SystemExit(f"{store}/{mode} failed:\n{done.stderr}")
                    samples[mode].append([float(x) for x in done.stdout.split()[-2:]])
            out[store] = {mode: {"steps_per_s": statistics.median(v[0] for v in values),
                                 "cpu_us_per_step": statistics.median(v[1] for v in values)}
                          for mode, values in samples.items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--stores", default="lmdb,memory")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = measure(args.stores.split(","), args.runs, args.trials)
    floor = sdk_floor(args.trials)
    if args.json:
        print(json.dumps({**figures, "sdk_floor_cpu_us_per_step": floor}, indent=2))
        return 0
    print(f"{'store':<8} {'mode':<8} {'steps/s':>8} {'vs blocked':>11} {'CPU us/step':>12} {'+CPU us/step':>13}")
    for store, by_mode in figures.items():
        base = by_mode["blocked"]
        for mode, figure in by_mode.items():
            print(f"{store:<8} {mode:<8} {figure['steps_per_s']:>8.0f} "
                  f"{figure['steps_per_s'] / base['steps_per_s']:>11.3f} {figure['cpu_us_per_step']:>12.1f} "
                  f"{figure['cpu_us_per_step'] - base['cpu_us_per_step']:>13.1f}")
    print(f"the SDK's floor (its calls per step alone, no runtime): CPU us/step min {min(floor):.1f}, "
          f"median {statistics.median(floor):.1f}, max {max(floor):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
