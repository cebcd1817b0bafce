"""A run's trace survives waits and processes: a resume in another process (its own SDK and exporter) links to the
trace of the run's start; a second Runtime on the same store does the same and measures the wait. Without a
configured provider nothing is written to the run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

from otel_support import points

FLOW_SOURCE = """
from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

def ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Ship it?"},
                                                 result_key="answer"), next_node="ship")

def ship(run, ctx):
    return StepPlan(node_id="ship", complete_output={"answer": run.vars["answer"]})

FLOW = WorkflowSpec(workflow_id="approval", entry_node="ask", nodes={"ask": ask, "ship": ship})
"""
namespace: dict = {}
exec(FLOW_SOURCE, namespace)
FLOW = namespace["FLOW"]

RESUME_IN_ANOTHER_PROCESS = FLOW_SOURCE + """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from abstractruntime import Runtime

class FileExporter(SpanExporter):
    def __init__(self, path):
        self.path = path
    def export(self, spans):
        with open(self.path, "a") as f:
            for s in spans:
                f.write(json.dumps({"name": s.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
                                    "parent": s.parent.span_id if s.parent else None,
                                    "links": [[l.context.trace_id, l.context.span_id] for l in s.links],
                                    "attributes": dict(s.attributes)}) + "\\n")
        return SpanExportResult.SUCCESS

store, run_id, out = sys.argv[1:4]
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(out)))
trace.set_tracer_provider(provider)  # a host's global configuration, in its own process
with Runtime.from_config({"store": store}) as rt:
    state = rt.resume(workflow=FLOW, run_id=run_id, wait_key=rt.get_state(run_id).waiting.wait_key,
                      payload={"text": "yes"})
print(state.status.value)
"""


def _start_and_wait(store, otel):
    with Runtime.from_config({"store": store}) as rt:
        run_id = rt.start(workflow=FLOW)
        state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.WAITING
    (start,) = otel.spans("abstractruntime.start")
    return run_id, start


def test_a_resume_in_another_process_links_to_the_runs_trace(tmp_path, otel):
    store = f"lmdb://{tmp_path}/db?sync=false"
    run_id, start = _start_and_wait(store, otel)
    out = tmp_path / "spans.jsonl"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(RESUME_IN_ANOTHER_PROCESS), store, run_id, str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "completed"
    spans = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    (resume,) = by_name["abstractruntime.resume"]
    (step,) = by_name["abstractruntime.step"]
    assert resume["attributes"]["abstractruntime.run_id"] == run_id
    assert resume["attributes"]["abstractruntime.run.status"] == "completed"
    assert step["parent"] == resume["span_id"] and step["attributes"]["abstractruntime.node_id"] == "ship"
    assert resume["trace_id"] != start.context.trace_id  # a new trace in the new process ...
    origin = [start.context.trace_id, start.context.span_id]
    assert resume["links"] == [origin] and step["links"] == []  # ... linked to the run's


def test_a_second_runtime_on_the_store_links_and_measures_the_wait(tmp_path, otel):
    store = f"lmdb://{tmp_path}/db?sync=false"
    run_id, start = _start_and_wait(store, otel)
    stored = Runtime.from_config({"store": store})
    try:
        waiting = stored.get_state(run_id)
        assert isinstance(waiting.vars["_runtime"]["trace"]["waiting_since"], float)
        state = stored.resume(workflow=FLOW, run_id=run_id, wait_key=waiting.waiting.wait_key,
                              payload={"text": "yes"})
    finally:
        stored.close()
    assert state.status is RunStatus.COMPLETED
    assert "waiting_since" not in state.vars["_runtime"]["trace"]  # measured once
    (resume,) = otel.spans("abstractruntime.resume")
    assert [(link.context.trace_id, link.context.span_id) for link in resume.links] == \
        [(start.context.trace_id, start.context.span_id)]
    waits = points(otel.metrics(), "abstractruntime.wait.duration")
    assert waits == {(("abstractruntime.wait.reason", "user"),): 1}


def test_a_due_timer_continued_by_tick_measures_the_wait(tmp_path, otel):
    import time
    from datetime import datetime, timedelta, timezone

    soon = (datetime.now(timezone.utc) + timedelta(seconds=0.3)).isoformat()
    flow = WorkflowSpec(workflow_id="timer", entry_node="wait", nodes={
        "wait": lambda run, ctx: StepPlan(node_id="wait", effect=Effect(type=EffectType.WAIT_UNTIL,
                                                                        payload={"until": soon}), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })
    with Runtime.from_config({"store": "memory://"}) as rt:
        run_id = rt.start(workflow=flow)
        assert rt.tick(workflow=flow, run_id=run_id).status is RunStatus.WAITING
        time.sleep(0.4)
        assert rt.tick(workflow=flow, run_id=run_id).status is RunStatus.COMPLETED
    (point,) = otel.metrics()["abstractruntime.wait.duration"]
    assert dict(point.attributes) == {"abstractruntime.wait.reason": "until"}
    assert point.count == 1 and 0.3 <= point.sum < 5


def test_without_a_configured_provider_runs_are_left_untouched():
    """The API is installed here; no provider is configured: no spans, nothing in the run's variables."""
    import abstractruntime_otel

    with Runtime.from_config({"store": "memory://"}) as rt:
        assert rt.otel_status()["active"] is False
        assert "no TracerProvider" in rt.otel_status()["reason"]
        run_id = rt.start(workflow=FLOW)
        state = rt.tick(workflow=FLOW, run_id=run_id)
        assert state.status is RunStatus.WAITING
        assert "_runtime" not in state.vars or "trace" not in state.vars["_runtime"]
    assert abstractruntime_otel.API_INSTALLED
