"""How the otel plugin keeps its own cost per step small (docs/observability.md, Overhead): the per-step histogram
records are made when the API call returns (one after the other: the SDK's calls cost about half as much as spread
between the kernel's work), in the context they were measured in, so the SDK's exemplars still point at the effect's
span (effect durations) and at the API call's span (step durations); a long call makes them every 256 records."""

from __future__ import annotations

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

from otel_support import points

PAST = "2000-01-01T00:00:00+00:00"


def _chain(n, probe_at, seen, otel):
    """n steps; the first n-1 emit an already-due WAIT_UNTIL; the node of step ``probe_at`` reads the metrics."""
    def node(i):
        def run_node(run, ctx):
            if i + 1 == probe_at:
                seen.append(sum(p.count for p in otel.metrics().get("abstractruntime.step.duration", [])))
            if i + 1 == n:
                return StepPlan(node_id=f"n{i}", complete_output={})
            return StepPlan(node_id=f"n{i}", effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": PAST}),
                            next_node=f"n{i + 1}")
        return run_node

    return WorkflowSpec(workflow_id="chain", entry_node="n0", nodes={f"n{i}": node(i) for i in range(n)})


def test_step_histograms_are_recorded_when_the_call_returns_with_exemplars_of_their_spans(otel):
    seen = []
    flow = _chain(4, 3, seen, otel)
    with Runtime.from_config({"store": "memory://"}) as rt:
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow), max_steps=10)
    assert state.status is RunStatus.COMPLETED
    assert seen == [0]  # two steps were done when the third node ran: nothing recorded during the call
    metrics = otel.metrics()
    assert points(metrics, "abstractruntime.step.duration") == {(("abstractruntime.workflow_id", "chain"),): 4}
    assert points(metrics, "abstractruntime.effect.duration") == {
        (("abstractruntime.effect.outcome", "completed"), ("abstractruntime.effect.type", "wait_until")): 3}
    (tick,) = otel.spans("abstractruntime.tick")
    effect_spans = {s.context.span_id for s in otel.spans("abstractruntime.effect")}
    (step_point,) = metrics["abstractruntime.step.duration"]
    (effect_point,) = metrics["abstractruntime.effect.duration"]
    assert step_point.exemplars and {e.span_id for e in step_point.exemplars} == {tick.context.span_id}
    assert effect_point.exemplars and {e.span_id for e in effect_point.exemplars} <= effect_spans
    assert {e.trace_id for e in effect_point.exemplars} == {tick.context.trace_id}


def test_a_long_call_records_its_histograms_every_256_records(otel):
    seen = []
    flow = _chain(150, 140, seen, otel)
    with Runtime.from_config({"store": "memory://"}) as rt:
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow), max_steps=200)
    assert state.status is RunStatus.COMPLETED
    assert seen == [128]  # 139 steps done, 2 records each (effect, step): the first 256 records were made
    assert points(otel.metrics(), "abstractruntime.step.duration") == {(("abstractruntime.workflow_id", "chain"),): 150}
