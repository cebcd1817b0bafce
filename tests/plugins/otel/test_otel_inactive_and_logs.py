"""Without opentelemetry-api the plugin is loaded but inactive and implements no per-step hook; with a span
current, the library's log events carry its trace_id and span_id as LogRecord attributes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec

WITHOUT_THE_API = """
import json, sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec

flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
    "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "hi"}),
                                   next_node="b"),
    "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"ok": True})})
rt = Runtime.from_config({"store": "memory://", "plugins": {"strict": True}})
otel = rt.hooks.plugin_manager.get_plugin("otel")
implemented = sorted(h.name for h in rt.hooks.plugin_manager.get_hookcallers(otel))
state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
print(json.dumps({"plugin": [p.status for p in rt.plugins() if p.name == "otel"], "hooks": implemented,
                  "status": rt.otel_status(), "run": state.status.value, "vars": state.vars,
                  "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])}))
"""


def test_without_the_api_the_plugin_is_inactive_and_costs_nothing():
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(WITHOUT_THE_API)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["plugin"] == ["loaded"]
    assert out["hooks"] == ["abstractruntime_register_runtime_methods"]  # no step, effect or API-call hook
    assert out["status"]["active"] is False
    assert out["status"]["reason"].startswith("opentelemetry-api is not installed: pip install 'abstractruntime[otel]'")
    assert out["run"] == "completed" and "trace" not in out["vars"].get("_runtime", {})
    assert out["imported"] == []


def test_log_records_carry_the_events_fields_and_the_current_trace(otel, caplog):
    flow = WorkflowSpec(workflow_id="logged", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "x"}),
                                       next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={})})
    host = otel.tracer_provider.get_tracer("host")
    with caplog.at_level(logging.DEBUG, logger="abstractruntime"), Runtime.from_config({"store": "memory://"}) as rt, \
            host.start_as_current_span("job"):
        run_id = rt.start(workflow=flow)
        rt.tick(workflow=flow, run_id=run_id)
    steps = [r for r in caplog.records if getattr(r, "event", None) == "step"]
    assert [r.node for r in steps] == ["a", "b"]
    (tick,) = otel.spans("abstractruntime.tick")
    for record in steps:
        assert record.run_id == run_id and record.name == "abstractruntime"
        assert record.getMessage().startswith("event='step' run_id=")  # still a readable message
        # "step" is logged once the step's span has ended: the tick's span is current
        assert (record.trace_id, record.span_id) == (f"{tick.context.trace_id:032x}", f"{tick.context.span_id:016x}")
    started = next(r for r in caplog.records if getattr(r, "event", None) == "run_started")
    (start_span,) = otel.spans("abstractruntime.start")
    assert started.span_id == f"{start_span.context.span_id:016x}"


def test_no_trace_fields_without_a_span(otel, caplog):
    flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", complete_output={})})
    abstractruntime_otel = sys.modules["abstractruntime_otel"]
    abstractruntime_otel.configure()  # no provider: no span
    with caplog.at_level(logging.DEBUG, logger="abstractruntime"), Runtime.from_config({"store": "memory://"}) as rt:
        rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    steps = [r for r in caplog.records if getattr(r, "event", None) == "step"]
    assert steps and not any(hasattr(r, "trace_id") for r in steps)


def test_a_host_that_configures_structlog_adds_the_trace_ids_with_the_plugins_processor(otel):
    import structlog

    import abstractruntime_otel

    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[abstractruntime_otel.add_trace_ids, capture])  # reset by tests/conftest.py
    flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", complete_output={})})
    with Runtime.from_config({"store": "memory://"}) as rt:
        run_id = rt.start(workflow=flow)
        rt.tick(workflow=flow, run_id=run_id)
    (step,) = [e for e in capture.entries if e["event"] == "step"]
    (tick,) = otel.spans("abstractruntime.tick")
    assert step["run_id"] == run_id
    assert (step["trace_id"], step["span_id"]) == (f"{tick.context.trace_id:032x}", f"{tick.context.span_id:016x}")


def _observers(rt, hook):
    return [impl.plugin_name for impl in getattr(rt.hooks.plugin_manager.hook, hook).get_hookimpls()]


def test_with_the_api_but_no_provider_no_step_hook_is_registered_until_telemetry_is_active(otel):
    """Idle (no provider): steps and effects call nothing of the plugin. The first API call made once a provider is
    configured registers the per-step hooks, and that very call's steps and effects get their spans."""
    import abstractruntime_otel

    flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(type=EffectType.ANSWER_USER,
                                                                  payload={"message": "hi"}), next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"ok": True})})
    abstractruntime_otel.configure()  # no provider: idle
    with Runtime.from_config({"store": "memory://"}) as rt:
        rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
        hooks = ("abstractruntime_before_step", "abstractruntime_after_step", "abstractruntime_step_error",
                 "abstractruntime_execute_effect", "abstractruntime_run_status_changed")
        assert not any("otel" in name for hook in hooks for name in _observers(rt, hook))
        assert not hasattr(rt.backend.commit_step, "_abstractruntime_otel")  # commits not wrapped while idle
        assert otel.spans("abstractruntime.step") == []
        abstractruntime_otel.configure(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
        assert state.status.value == "completed"
        assert all(_observers(rt, hook).count("otel.steps") == 1 for hook in hooks)
        assert rt.backend.commit_step._abstractruntime_otel
        metrics = otel.metrics()
        assert metrics["abstractruntime.commit.duration"]  # timed from that call on
        assert metrics["abstractruntime.runs.finished"]  # the status hook, registered by that call
        assert [s.attributes["abstractruntime.node_id"] for s in otel.spans("abstractruntime.step")] == ["a", "b"]
        assert len(otel.spans("abstractruntime.effect")) == 1
        rt.tick(workflow=flow, run_id=rt.start(workflow=flow))  # registered once per runtime
        assert _observers(rt, "abstractruntime_before_step").count("otel.steps") == 1


def test_a_runtime_built_while_telemetry_is_active_times_commits_and_status_changes_outside_api_calls(otel):
    """Configured before the runtime is built: the step and status hooks and the commit timing are there at once,
    so a plugin's commit made outside any API call (``Runtime.commit``) is timed and its status change counted."""
    import abstractruntime_otel

    abstractruntime_otel.configure(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", complete_output={"ok": True})})
    with Runtime.from_config({"store": "memory://"}) as rt:
        assert _observers(rt, "abstractruntime_run_status_changed").count("otel.steps") == 1
        assert rt.backend.commit_step._abstractruntime_otel
        run = rt.get_state(rt.start(workflow=flow))
        commits = sum(p.count for p in otel.metrics()["abstractruntime.commit.duration"])
        run.status = type(run.status).CANCELLED
        rt.commit(run, expected_revision=run.revision)  # a plugin's commit: no API call around it
        metrics = otel.metrics()
        assert sum(p.count for p in metrics["abstractruntime.commit.duration"]) == commits + 1
        (finished,) = metrics["abstractruntime.runs.finished"]
        assert finished.attributes["abstractruntime.run.status"] == "cancelled" and finished.value == 1
