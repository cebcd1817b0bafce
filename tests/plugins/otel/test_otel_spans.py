"""The otel plugin's spans, with the real SDK: names, nesting, attributes, errors, a host's span as parent."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import StatusCode

from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec


def _work_handler(tracer_provider):
    def work(run, effect):  # a host's handler (the reference's signature)
        # a handler's own span (an HTTP client's, say): it must be a child of the effect span
        with tracer_provider.get_tracer("handler").start_as_current_span("handler.work"):
            return EffectOutcome.completed({"n": effect.payload["n"] * 2})

    return work


def _flow():
    def a(run, ctx):
        return StepPlan(node_id="a", effect=Effect(type="work", payload={"n": 21}, result_key="r"), next_node="b")

    def b(run, ctx):
        return StepPlan(node_id="b", effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "hi"}),
                        next_node="c")

    def c(run, ctx):
        return StepPlan(node_id="c", complete_output={"r": run.vars["r"]})

    return WorkflowSpec(workflow_id="otel_flow", entry_node="a", nodes={"a": a, "b": b, "c": c})


def _runtime(tmp_path, otel):
    return Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false", "plugins": {"strict": True}},
                               effect_handlers={"work": _work_handler(otel.tracer_provider)})


def test_span_names_nesting_and_attributes(tmp_path, otel):
    flow = _flow()
    with _runtime(tmp_path, otel) as rt:
        run_id = rt.start(workflow=flow)
        state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.COMPLETED, state.error

    (start,) = otel.spans("abstractruntime.start")
    (tick,) = otel.spans("abstractruntime.tick")
    steps = otel.spans("abstractruntime.step")
    effects = otel.spans("abstractruntime.effect")
    assert start.parent is None and tick.parent is None  # no host span: each API call is a root
    assert dict(start.attributes) == {"abstractruntime.run_id": run_id, "abstractruntime.workflow_id": "otel_flow"}
    assert tick.attributes["abstractruntime.run.status"] == "completed"
    assert tick.attributes["abstractruntime.step"] == 3

    assert [s.attributes["abstractruntime.node_id"] for s in steps] == ["a", "b", "c"]
    assert [s.attributes["abstractruntime.step"] for s in steps] == [1, 2, 3]
    assert [s.attributes["abstractruntime.run.status"] for s in steps] == ["running", "running", "completed"]
    for s in steps:
        assert s.parent.span_id == tick.context.span_id
        assert s.attributes["abstractruntime.run_id"] == run_id
        assert s.attributes["abstractruntime.workflow_id"] == "otel_flow"
        assert s.status.status_code is StatusCode.UNSET

    assert [e.attributes["abstractruntime.effect.type"] for e in effects] == ["work", "answer_user"]
    for effect, step in zip(effects, steps):
        assert effect.parent.span_id == step.context.span_id
        assert effect.attributes["abstractruntime.node_id"] == step.attributes["abstractruntime.node_id"]
        assert effect.attributes["abstractruntime.effect.outcome"] == "completed"
    (handler_span,) = otel.spans("handler.work")
    assert handler_span.parent.span_id == effects[0].context.span_id
    assert handler_span.context.trace_id == tick.context.trace_id

    # the run keeps the trace of its start; the tick (another trace) links to it
    kept = state.vars["_runtime"]["trace"]["traceparent"]
    assert kept == f"00-{start.context.trace_id:032x}-{start.context.span_id:016x}-{start.context.trace_flags:02x}"
    assert tick.context.trace_id != start.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in tick.links] == \
        [(start.context.trace_id, start.context.span_id)]
    assert dict(tick.links[0].attributes) == {"abstractruntime.link": "run", "abstractruntime.run_id": run_id}
    assert all(not s.links for s in steps)  # in the tick's trace: its link covers them


def test_a_host_span_is_the_parent_of_the_runs_spans(tmp_path, otel):
    flow = _flow()
    host = otel.tracer_provider.get_tracer("host")
    with _runtime(tmp_path, otel) as rt, host.start_as_current_span("POST /orders") as request:
        run_id = rt.start(workflow=flow)
        state = rt.tick(workflow=flow, run_id=run_id)
    trace_id = request.get_span_context().trace_id
    own = [s for s in otel.spans() if s.name.startswith("abstractruntime.")]
    assert {s.name for s in own} == {"abstractruntime.start", "abstractruntime.tick", "abstractruntime.step",
                                     "abstractruntime.effect"}
    assert {s.context.trace_id for s in own} == {trace_id}
    for name in ("abstractruntime.start", "abstractruntime.tick"):
        (span,) = otel.spans(name)
        assert span.parent.span_id == request.get_span_context().span_id
    # one trace: nothing to link to
    assert all(not s.links for s in own)
    assert state.vars["_runtime"]["trace"]["traceparent"].split("-")[1] == f"{trace_id:032x}"


def test_a_failing_node_marks_its_step_span_error_with_the_exception(tmp_path, otel):
    def a(run, ctx):
        raise RuntimeError("inventory service is down")

    flow = WorkflowSpec(workflow_id="boom", entry_node="a", nodes={"a": a})
    with _runtime(tmp_path, otel) as rt:
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    assert state.status is RunStatus.FAILED
    (step,) = otel.spans("abstractruntime.step")
    assert step.status.status_code is StatusCode.ERROR
    assert "inventory service is down" in step.status.description
    (event,) = [e for e in step.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "inventory service is down"
    assert step.attributes["abstractruntime.run.status"] == "failed"
    (tick,) = otel.spans("abstractruntime.tick")  # the call itself succeeded: the run failed
    assert tick.status.status_code is StatusCode.UNSET and tick.attributes["abstractruntime.run.status"] == "failed"


def test_a_failed_effect_and_a_raising_handler_are_errors(tmp_path, otel):
    def refuse(run, effect):
        return EffectOutcome.failed("card declined")

    def explode(run, effect):
        raise ValueError("no such account")

    def node(effect_type):
        return lambda run, ctx: StepPlan(node_id="a", effect=Effect(type=effect_type, payload={}), next_node="b")

    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false"},
                             effect_handlers={"refuse": refuse, "explode": explode}) as rt:
        for effect_type in ("refuse", "explode"):
            flow = WorkflowSpec(workflow_id=effect_type, entry_node="a", nodes={"a": node(effect_type)})
            state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
            assert state.status is RunStatus.FAILED

    refused, exploded = otel.spans("abstractruntime.effect")
    assert refused.status.status_code is StatusCode.ERROR and refused.status.description == "card declined"
    assert refused.attributes["abstractruntime.effect.outcome"] == "failed"
    assert not [e for e in refused.events if e.name == "exception"]
    assert exploded.status.status_code is StatusCode.ERROR
    (event,) = [e for e in exploded.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    for step in otel.spans("abstractruntime.step"):  # the step that the failed effect failed is an error too
        assert step.status.status_code is StatusCode.ERROR
        assert step.attributes["abstractruntime.run.status"] == "failed"


def test_pause_resume_and_cancel_have_spans_with_the_new_status(tmp_path, otel):
    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "?"}),
                        next_node="done")

    flow = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={
        "ask": ask, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    with _runtime(tmp_path, otel) as rt:
        run_id = rt.start(workflow=flow)
        rt.tick(workflow=flow, run_id=run_id)
        rt.pause_run(run_id, reason="maintenance")
        rt.resume_run(run_id)
        rt.cancel_run(run_id, reason="customer left")
    for name, status in (("pause_run", "waiting"), ("resume_run", "waiting"), ("cancel_run", "cancelled")):
        (span,) = otel.spans(f"abstractruntime.{name}")
        assert span.attributes["abstractruntime.run_id"] == run_id
        assert span.attributes["abstractruntime.run.status"] == status, name


def test_a_call_that_raises_is_an_error_span_and_leaves_no_context_attached(tmp_path, otel):
    flow = _flow()
    with _runtime(tmp_path, otel) as rt:
        before = trace.get_current_span()
        try:
            rt.resume(workflow=flow, run_id="no-such-run", wait_key=None, payload={})
        except Exception as exc:
            error = exc
        else:  # pragma: no cover
            raise AssertionError("resume of an unknown run must raise")
        assert trace.get_current_span() is before
    (span,) = otel.spans("abstractruntime.resume")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in span.events if e.name == "exception"] == \
        [f"{type(error).__module__}.{type(error).__qualname__}"]


def test_a_child_run_started_by_an_effect_nests_in_the_parents_effect_span(tmp_path, otel):
    from abstractruntime_pluginkit.registry import WorkflowRegistry

    child = WorkflowSpec(workflow_id="child", entry_node="say", nodes={
        "say": lambda run, ctx: StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": "hi"}),
                                         next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"answer": 42})})
    parent = WorkflowSpec(workflow_id="parent", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW,
                                                                        {"workflow_id": "child"}, "sub"),
                                          next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"sub": run.vars.get("sub")})})
    registry = WorkflowRegistry()
    registry.register(child)
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false"}, workflow_registry=registry) as rt:
        parent_id = rt.start(workflow=parent)
        state = rt.tick(workflow=parent, run_id=parent_id)
    assert state.status is RunStatus.COMPLETED, state.error
    (call_effect,) = [s for s in otel.spans("abstractruntime.effect")
                      if s.attributes["abstractruntime.effect.type"] == "start_subworkflow"]
    child_start, child_tick = [s for s in otel.spans() if s.name in ("abstractruntime.start", "abstractruntime.tick")
                               and s.attributes["abstractruntime.run_id"] != parent_id]
    assert child_start.parent.span_id == call_effect.context.span_id
    assert child_tick.parent.span_id == call_effect.context.span_id
    child_steps = [s for s in otel.spans("abstractruntime.step") if s.parent.span_id == child_tick.context.span_id]
    assert [s.attributes["abstractruntime.workflow_id"] for s in child_steps] == ["child", "child"]
    assert {s.context.trace_id for s in [child_start, child_tick] + child_steps} == {call_effect.context.trace_id}
