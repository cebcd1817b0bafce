"""Events and scheduling: on_event listeners (driven by our scheduler), emit_event, on_schedule, wait_until,
wait_event."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import RunStatus, WaitReason, create_scheduled_runtime
from abstractruntime.timeutil import parse_instant
from abstractruntime_visualflow import (
    compile_visualflow,
    compile_visualflow_listeners,
    listener_workflow_id,
    start_listeners,
)

from vf_support import E, N, chain, flow, memory_runtime, run


def counter(node_id="inc", var="count"):
    return [N(f"{node_id}_cur", "get_var", pinDefaults={"name": var}), N(f"{node_id}_add", "add", ins="a b",
                                                                          pinDefaults={"b": 1}),
            N(node_id, "set_var", ins="exec-in name value/number", outs="exec-out", pinDefaults={"name": var})], \
        [E(f"{node_id}_cur.value", f"{node_id}_add.a"), E(f"{node_id}_add.result", f"{node_id}.value")]


def listener_flow():
    cn, ce = counter()
    nodes = [N("start", "on_flow_start", outs="exec-out"), N("end", "on_flow_end", ins="exec-in"),
             N("ping", "on_event", outs="exec-out event payload name", eventConfig={"name": "ping", "scope": "session"}),
             N("keep", "set_var", ins="exec-in name value", outs="exec-out", pinDefaults={"name": "last"})] + cn
    edges = chain("start", "end") + [E("ping.exec-out", "keep.exec-in"), E("ping.payload", "keep.value"),
                                     E("keep.exec-out", "inc.exec-in")] + ce
    return flow("inbox", nodes, edges, entry="start")


def emitter_flow():
    return flow("emitter", [N("s", "on_flow_start", outs="exec-out"),
                            N("x", "emit_event", ins="exec-in name payload", outs="exec-out",
                              pinDefaults={"name": "ping", "payload": 7}),
                            N("e", "on_flow_end", ins="exec-in delivered event")],
                chain("s", "x", "e") + [E("x.delivered", "e.delivered")])


def _wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_listener_specs_are_separate_from_the_main_spec():
    main = compile_visualflow(listener_flow())
    assert main.entry_node == "start" and "ping" not in main.nodes  # not reachable from the entry
    listeners = compile_visualflow_listeners(listener_flow())
    wid = listener_workflow_id("inbox", "ping")
    assert list(listeners) == [wid] == ["inbox::ping"]
    assert listeners[wid].entry_node == "ping" and {"ping", "keep", "inc"} <= set(listeners[wid].nodes)


def test_on_event_listener_driven_by_the_scheduler_waits_again_after_each_event():
    sr = create_scheduled_runtime(poll_interval_s=0.05)
    try:
        [(wid, listener)] = start_listeners(sr.runtime, listener_flow(), registry=sr.registry, session_id="S")
        state = sr.get_state(listener)
        assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.EVENT
        assert state.waiting.wait_key == "evt:session:S:ping" and state.waiting.resume_to_node == "keep"
        emitter = compile_visualflow(emitter_flow())
        sr.registry.register(emitter)
        for n in (1, 2):
            run_id = sr.runtime.start(workflow=emitter, session_id="S")
            done = sr.runtime.tick(workflow=emitter, run_id=run_id)
            assert done.output == {"delivered": 1, "event": None, "success": True}
            assert _wait_for(lambda: sr.get_state(listener).vars.get("count") == n
                             and sr.get_state(listener).status is RunStatus.WAITING), sr.get_state(listener)
        state = sr.get_state(listener)
        assert state.vars["last"] == {"value": 7}
        emits = [r for r in sr.get_ledger(run_id) if (r.get("effect") or {}).get("type") == "emit_event"
                 and r["status"] == "completed" and r.get("idempotency_key", "").find("system:") < 0]
        assert emits[0]["effect"]["payload"]["event_id"] == f"{run_id}:x:1"
        assert emits[0]["effect"]["payload"]["max_steps"] == 0
        sr.scheduler.emit_event(name="ping", payload={"from": "outside"}, session_id="S")  # host-side emit
        assert _wait_for(lambda: sr.get_state(listener).vars.get("count") == 3)
        assert sr.get_state(listener).vars["last"] == {"from": "outside"}
    finally:
        sr.stop()


def test_on_event_wildcard_name_and_scope_normalisation():
    nodes = [N("ev", "on_event", outs="exec-out", eventConfig={"scope": "Planet"}), N("e", "on_flow_end", ins="exec-in")]
    rt = memory_runtime()
    state = run(rt, compile_visualflow(flow("w", nodes, chain("ev", "e"))), session_id="S")
    assert state.waiting.wait_key == "evt:session:S:*"


def _schedule_flow(schedule, **cfg):
    cn, ce = counter()
    nodes = [N("t", "on_schedule", outs="exec-out timestamp recurrent", eventConfig={"schedule": schedule, **cfg}),
             N("e", "on_flow_end", ins="exec-in ts")] + cn
    return flow("sched", nodes, [E("t.exec-out", "inc.exec-in")] + ce if cfg.get("recurrent", True) and
                schedule.endswith(("s", "m", "h", "d")) else [E("t.exec-out", "e.exec-in"),
                                                              E("t.timestamp", "e.ts")] + ce)


def test_on_schedule_interval_waits_and_recurs():
    rt = memory_runtime()
    spec = compile_visualflow(_schedule_flow("0.2s"))
    state = run(rt, spec)
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.UNTIL
    assert parse_instant(state.waiting.until) > datetime.now(timezone.utc)
    for n in (1, 2):
        time.sleep(0.25)
        state = rt.tick(workflow=spec, run_id=state.run_id)
        assert state.vars["count"] == n and state.status is RunStatus.WAITING  # body ran, then waits again


def test_on_schedule_timestamp_in_the_past_and_invalid_schedule():
    rt = memory_runtime()
    state = run(rt, compile_visualflow(_schedule_flow("2000-01-01T00:00:00Z")))
    assert state.status is RunStatus.COMPLETED
    assert parse_instant(state.output["ts"]) == datetime(2000, 1, 1, tzinfo=timezone.utc)
    bad = run(rt, compile_visualflow(_schedule_flow("whenever")))
    assert bad.status is RunStatus.FAILED and "invalid schedule" in bad.error


@pytest.mark.parametrize("duration,kind,waits", [(0, "seconds", False), (2, "hours", True), ("x", "seconds", False)])
def test_wait_until(duration, kind, waits):
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("w", "wait_until", ins="exec-in duration", outs="exec-out", pinDefaults={"duration": duration},
               effectConfig={"durationType": kind}),
             N("e", "on_flow_end", ins="exec-in until")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "w", "e") + [E("w.until", "e.until")])))
    if waits:
        assert state.status is RunStatus.WAITING
        delta = parse_instant(state.waiting.until) - datetime.now(timezone.utc)
        assert timedelta(hours=1, minutes=59) < delta <= timedelta(hours=2)
    else:
        assert state.status is RunStatus.COMPLETED and state.output["until"]


def test_wait_event_with_prompt_and_choices():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("w", "wait_event", ins="exec-in event_key prompt choices", outs="exec-out event_data event_key",
               pinDefaults={"event_key": "approval:42", "prompt": "Approve?", "choices": ["yes", "no", 3]}),
             N("e", "on_flow_end", ins="exec-in event_data event_key")]
    edges = chain("s", "w", "e") + [E("w.event_data", "e.event_data"), E("w.event_key", "e.event_key")]
    rt = memory_runtime()
    spec = compile_visualflow(flow("f", nodes, edges))
    state = run(rt, spec)
    w = state.waiting
    assert (w.reason, w.wait_key, w.prompt, w.choices) == (WaitReason.EVENT, "approval:42", "Approve?", ["yes", "no"])
    state = rt.resume(workflow=spec, run_id=state.run_id, wait_key="approval:42", payload={"ok": True})
    assert state.output == {"event_data": {"ok": True}, "event_key": "approval:42", "success": True}
