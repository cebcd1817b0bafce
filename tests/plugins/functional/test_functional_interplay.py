"""Durable functions with the rest of the runtime: graph children started by a functional workflow (awaited, also
when the child waits), a functional child started by a graph workflow, events from another run, LLM calls."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime.functional import ChildWorkflowError, workflow
from abstractruntime_pluginkit.registry import WorkflowRegistry

import fn_flows


def graph_child(workflow_id="g_child", ask=False):
    def first(run, ctx):
        if ask:
            return StepPlan(node_id="first", effect=Effect(EffectType.ASK_USER, {"prompt": "child?"}, "reply"),
                            next_node="done")
        return StepPlan(node_id="first", next_node="done")

    def done(run, ctx):
        if run.vars.get("fail"):
            raise RuntimeError("child gave up")
        return StepPlan(node_id="done", complete_output={"doubled": run.vars["x"] * 2, "reply": run.vars.get("reply")})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="first", nodes={"first": first, "done": done})


@pytest.fixture
def registry():
    return WorkflowRegistry()


@pytest.fixture
def rt(tmp_path, registry):
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, workflow_registry=registry) as runtime:
        yield runtime


def test_a_functional_workflow_awaits_graph_children(rt, registry):
    registry.register(graph_child())
    registry.register(graph_child("g_asking", ask=True))

    @workflow("parent")
    def parent(ctx):
        now = ctx.run_workflow("g_child", vars={"x": 21})
        later = ctx.run_workflow(registry.get("g_asking"), vars={"x": 1})
        return {"now": now["doubled"], "later": later}

    registry.register(parent)
    run_id = rt.start(workflow=parent)
    state = rt.tick(workflow=parent, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.SUBWORKFLOW
    child_id = state.waiting.details["sub_run_id"]
    child = rt.get_state(child_id)
    assert child.parent_run_id == run_id and child.waiting.prompt == "child?"
    rt.resume(workflow=registry.get("g_asking"), run_id=child_id, wait_key=child.waiting.wait_key,
              payload={"text": "ok"})
    state = rt.tick(workflow=parent, run_id=run_id)  # the parent finds its finished child
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"now": 42, "later": {"doubled": 2, "reply": {"text": "ok"}}}


def test_a_failed_child_raises_in_the_parents_body(rt, registry):
    registry.register(graph_child("g_asking", ask=True))

    @workflow("parent2")
    def parent(ctx):
        try:
            ctx.run_workflow("g_asking", vars={"x": 1, "fail": True})
        except ChildWorkflowError as exc:
            return {"child": exc.status, "error": str(exc)}
        return {"child": "ok"}

    run_id = rt.start(workflow=parent)
    state = rt.tick(workflow=parent, run_id=run_id)
    child = rt.get_state(state.waiting.details["sub_run_id"])
    rt.resume(workflow=registry.get("g_asking"), run_id=child.run_id, wait_key=child.waiting.wait_key,
              payload={"text": "ok"})
    state = rt.tick(workflow=parent, run_id=run_id)
    assert state.output["child"] == "failed" and "child gave up" in state.output["error"]


def test_a_graph_workflow_starts_a_functional_child(rt, registry, provider):
    @workflow("fn_child")
    def child(ctx, customer_id):
        return {"receipt": fn_flows.charge(customer_id, 300)}

    registry.register(child)

    def start(run, ctx):
        return StepPlan(node_id="start", effect=Effect(EffectType.START_SUBWORKFLOW, {
            "workflow_id": "fn_child", "vars": {"customer_id": "c9"}}, "child"), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"cents": run.vars["child"]["output"]["receipt"]["cents"]})

    graph = WorkflowSpec(workflow_id="graph_parent", entry_node="start", nodes={"start": start, "done": done})
    state = rt.tick(workflow=graph, run_id=rt.start(workflow=graph))
    assert state.output == {"cents": 300}


def test_an_event_emitted_by_another_run_resumes_a_functional_workflow(rt, registry):
    @workflow("listener")
    def listener(ctx):
        event = ctx.wait_event("kyc:c1")
        return {"kyc": event["payload"], "name": event["name"]}

    registry.register(listener)
    listener_id = rt.start(workflow=listener, session_id="s1")
    assert rt.tick(workflow=listener, run_id=listener_id).waiting.wait_key == "evt:session:s1:kyc:c1"

    def emit(run, ctx):
        return StepPlan(node_id="emit", effect=Effect(EffectType.EMIT_EVENT, {
            "name": "kyc:c1", "payload": {"approved": True}}), next_node="done")

    emitter = WorkflowSpec(workflow_id="emitter", entry_node="emit", nodes={
        "emit": emit, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    rt.tick(workflow=emitter, run_id=rt.start(workflow=emitter, session_id="s1"))
    state = rt.tick(workflow=listener, run_id=listener_id)
    assert state.output == {"kyc": {"approved": True}, "name": "kyc:c1"}


@pytest.mark.skipif(importlib.util.find_spec("abstractcore") is None, reason="abstractcore is not installed")
def test_an_llm_call_through_abstractcore(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "abstractcore"))
    from fake_llm_server import MODEL, FakeLLMServer
    from abstractruntime_abstractcore import create_local_runtime

    @workflow("mail")
    def mail(ctx, plan):
        reply = ctx.llm_call(prompt=f"Welcome mail for {plan}", params={"temperature": 0})
        return {"mail": reply["content"]}

    with FakeLLMServer(model=MODEL) as server:
        server.push({"content": "Welcome aboard!"})
        rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                                  llm_kwargs={"base_url": server.base_url, "timeout": 30},
                                  settings={"store": f"lmdb://{tmp_path}/db"})
        state = rt.tick(workflow=mail, run_id=rt.start(workflow=mail, vars={"plan": "pro"}))
        assert state.status is RunStatus.COMPLETED, state.error
        assert state.output == {"mail": "Welcome aboard!"}
        assert len(server.chat_requests) == 1
        row = [r for r in rt.get_ledger(state.run_id) if r["status"] == "completed" and r["effect"]][0]
        assert row["effect"]["type"] == "llm_call" and row["effect"]["payload"]["functional_call"]["number"] == 0


def test_a_scheduler_drives_a_functional_workflow_through_its_timer(tmp_path, provider):
    import time

    from abstractruntime import create_scheduled_runtime

    @workflow("scheduled")
    def scheduled(ctx, customer_id):
        plan = ctx.ask_user("Which plan?", choices=["basic", "pro"])
        ctx.sleep(seconds=0.3)
        return {"plan": plan, "receipt": fn_flows.charge(customer_id, 100)}

    sr = create_scheduled_runtime(workflows=[scheduled], store=f"lmdb://{tmp_path}/db", poll_interval_s=0.05)
    try:
        run_id = sr.start(workflow=scheduled, vars={"customer_id": "c3"})

        def until(predicate, timeout=20.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                state = sr.get_state(run_id)
                if predicate(state):
                    return state
                time.sleep(0.05)
            raise AssertionError(f"timed out; state: {sr.get_state(run_id)}")

        until(lambda s: s.status is RunStatus.WAITING and s.waiting.reason is WaitReason.USER)
        sr.respond(run_id, {"response": "pro"})
        state = until(lambda s: s.status is RunStatus.COMPLETED)
        assert state.output["plan"] == "pro" and state.output["receipt"]["cents"] == 100
    finally:
        sr.close()
