"""OpenTelemetry traces of a run that waits for a person (the ``otel`` plugin; docs/observability.md).

Run: pip install opentelemetry-sdk && python examples/05_opentelemetry.py

An order request (a host span, as a web framework's instrumentation makes) starts a run that asks for approval;
later -- in production hours later, in another process -- the approval resumes it and a payment handler runs.
The SDK here keeps the spans in memory and prints each trace as a tree; a real host exports them with OTLP to
Jaeger, Tempo or a collector (see the docs).
"""

from __future__ import annotations

import tempfile

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, StepPlan, WorkflowSpec

# --- the host's OpenTelemetry set-up (once per process) -------------------------------------------------------------
exporter = InMemorySpanExporter()  # a real host: BatchSpanProcessor(OTLPSpanExporter()) -- see docs/observability.md
provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("orders")


# --- the workflow -------------------------------------------------------------------------------------------------
def charge_card(run, effect):
    with tracer.start_as_current_span("payments.charge") as span:  # the handler's own span (an HTTP call, say)
        span.set_attribute("payments.amount", effect.payload["amount"])
        return EffectOutcome.completed({"charged": effect.payload["amount"]})


def approve(run, ctx):
    return StepPlan(node_id="approve", effect=Effect(type=EffectType.ASK_USER, result_key="approval",
                                                     payload={"prompt": f"Approve order {run.vars['order']}?"}),
                    next_node="charge")


def charge(run, ctx):
    return StepPlan(node_id="charge", effect=Effect(type="charge_card", payload={"amount": 42}, result_key="payment"),
                    next_node="done")


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={"order": run.vars["order"], "payment": run.vars["payment"]})


FLOW = WorkflowSpec(workflow_id="order", entry_node="approve", nodes={"approve": approve, "charge": charge,
                                                                       "done": done})


def print_traces(spans) -> None:
    """Each trace as a tree: name, duration, the abstractruntime.* attributes that say where it is, links."""
    by_parent = {}
    for span in spans:
        by_parent.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    shown = ("abstractruntime.node_id", "abstractruntime.effect.type", "abstractruntime.run.status",
             "abstractruntime.effect.outcome")

    def show(span, depth):
        attrs = " ".join(f"{k.rsplit('.', 1)[-1] if k != 'abstractruntime.effect.type' else 'effect'}="
                         f"{span.attributes[k]}" for k in shown if k in span.attributes)
        links = "".join(f"  link -> trace {link.context.trace_id:032x}" for link in span.links)
        ms = (span.end_time - span.start_time) / 1e6
        print(f"{'  ' * depth}{span.name:<{36 - 2 * depth}} {ms:7.2f} ms  {attrs}{links}")
        for child in sorted(by_parent.get(span.context.span_id, []), key=lambda s: s.start_time):
            show(child, depth + 1)

    for root in sorted(by_parent.get(None, []), key=lambda s: s.start_time):
        print(f"trace {root.context.trace_id:032x}")
        show(root, 1)


def main() -> None:
    store = f"lmdb://{tempfile.mkdtemp(prefix='otel_example_')}/store"
    with tracer.start_as_current_span("POST /orders"), Runtime.from_config({"store": store}) as rt:
        run_id = rt.start(workflow=FLOW, vars={"order": "A-1001"})
        state = rt.tick(workflow=FLOW, run_id=run_id)
        print(f"run {run_id}: {state.status.value} ({state.waiting.prompt})")

    # Later, another process: a fresh Runtime on the same store resumes the run.
    with Runtime.from_config({"store": store}, effect_handlers={"charge_card": charge_card}) as rt:
        state = rt.resume(workflow=FLOW, run_id=run_id, wait_key=rt.get_state(run_id).waiting.wait_key,
                          payload={"text": "approved"})
        print(f"run {run_id}: {state.status.value} {state.output}")
        print(f"the run keeps its trace: {state.vars['_runtime']['trace']['traceparent']}\n")
    print_traces(exporter.get_finished_spans())


if __name__ == "__main__":
    main()
