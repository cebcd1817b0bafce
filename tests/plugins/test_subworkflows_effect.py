"""START_SUBWORKFLOW (builtin ``subworkflows`` plugin): reference §8, §3.5 (wrap_as_tool_result) and §17 #13
(parents are woken automatically when their child finishes -- under a driver, or with ``drive_parents``, as most
tests here configure; a bare runtime keeps 0.4.2's semantics: tests/plugins/test_own_runner.py). Real stores, real
registry, no mocks."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    Runtime,
    RunStatus,
    StepPlan,
    WaitReason,
    WorkflowSpec,
    hookimpl,
)
from abstractruntime_pluginkit.registry import WorkflowRegistry
from abstractruntime_inmemory.store import MemoryBackend


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)


# --- workflows ------------------------------------------------------------------------------------------------

def child_done_wf(workflow_id: str = "child") -> WorkflowSpec:
    """Says something (one effect step, so it has a node trace), then completes with an answer."""

    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": "hi"}), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"answer": "42", "x": run.vars.get("x")})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="say", nodes={"say": say, "done": done})


def child_fail_wf(workflow_id: str = "child_fail") -> WorkflowSpec:
    def boom(run, ctx):
        raise RuntimeError("kaboom")

    return WorkflowSpec(workflow_id=workflow_id, entry_node="boom", nodes={"boom": boom})


def child_ask_wf(workflow_id: str = "child_ask") -> WorkflowSpec:
    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "name?"}, "reply"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"answer": run.vars["reply"]["text"]})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="ask", nodes={"ask": ask, "done": done})


def parent_wf(sub_payload: Dict[str, Any], workflow_id: str = "parent") -> WorkflowSpec:
    def call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW, sub_payload, "sub"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"sub": run.vars.get("sub")})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="call", nodes={"call": call, "done": done})


CHILDREN = (child_done_wf(), child_fail_wf(), child_ask_wf())


#: automatic parent wake-up without a scheduler: asked for by configuration (a bare runtime does not do it)
DRIVE_PARENTS = {"plugin_options": {"subworkflows": {"drive_parents": True}}}


def make_runtime(*specs: WorkflowSpec, registry: bool = True, backend: Optional[MemoryBackend] = None,
                 plugins=(), drive_parents: bool = True) -> Runtime:
    b = backend if backend is not None else MemoryBackend()
    reg = None
    if registry:
        reg = WorkflowRegistry()
        for spec in specs + CHILDREN:
            if spec.workflow_id not in reg:
                reg.register(spec)
    return Runtime(run_store=b.run_store, ledger_store=b.ledger_store, workflow_registry=reg, plugins=plugins,
                   settings=DRIVE_PARENTS if drive_parents else None)


def run_parent(rt: Runtime, parent: WorkflowSpec, **start_kw: Any):
    pid = rt.start(workflow=parent, **start_kw)
    return pid, rt.tick(workflow=parent, run_id=pid)


def only_child(rt: Runtime, pid: str):
    children = rt.run_store.list_children(parent_run_id=pid)
    assert len(children) == 1, [c.run_id for c in children]
    return children[0]


# --- sync -----------------------------------------------------------------------------------------------------

def test_sync_child_completes_and_parent_gets_output():
    parent = parent_wf({"workflow_id": "child", "vars": {"x": 1}})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent, actor_id="actor-1")

    assert state.status is RunStatus.COMPLETED, state.error
    child = only_child(rt, pid)
    assert state.vars["sub"] == {"sub_run_id": child.run_id, "output": {"answer": "42", "x": 1}}
    assert state.output == {"sub": state.vars["sub"]}
    assert child.parent_run_id == pid
    assert child.workflow_id == "child"
    assert child.status is RunStatus.COMPLETED
    assert child.actor_id == "actor-1"
    assert child.vars["x"] == 1
    assert rt.get_state(child.run_id).parent_run_id == pid


def test_wait_without_async_is_sync():
    parent = parent_wf({"workflow_id": "child", "wait": True})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    assert state.status is RunStatus.COMPLETED
    assert state.vars["sub"]["output"]["answer"] == "42"


def test_sync_child_failure_fails_parent():
    parent = parent_wf({"workflow_id": "child_fail"})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    assert state.status is RunStatus.FAILED
    assert "Subworkflow 'child_fail' failed: " in state.error
    assert "kaboom" in state.error
    assert only_child(rt, pid).status is RunStatus.FAILED


def test_sync_waiting_child_makes_parent_wait_and_child_resume_wakes_parent():
    parent = parent_wf({"workflow_id": "child_ask"})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    child = only_child(rt, pid)
    assert child.status is RunStatus.WAITING and child.waiting.reason is WaitReason.USER
    assert state.status is RunStatus.WAITING
    wait = state.waiting
    assert wait.reason is WaitReason.SUBWORKFLOW
    assert wait.wait_key == f"subworkflow:{child.run_id}"
    assert wait.resume_to_node == "done"
    assert wait.result_key == "sub"
    assert wait.details["sub_run_id"] == child.run_id
    assert wait.details["sub_workflow_id"] == "child_ask"
    assert wait.details["include_traces"] is False
    assert wait.details["sub_waiting"] == {"reason": "user", "wait_key": child.waiting.wait_key}

    # The host only answers the child; nobody touches the parent.
    done_child = rt.resume(workflow=child_ask_wf(), run_id=child.run_id, wait_key=child.waiting.wait_key,
                           payload={"text": "Ada"})

    assert done_child.status is RunStatus.COMPLETED
    woken = rt.get_state(pid)
    assert woken.status is RunStatus.COMPLETED, (woken.status, woken.error, woken.waiting)
    assert woken.vars["sub"] == {"sub_run_id": child.run_id, "output": {"answer": "Ada"}}
    assert woken.output == {"sub": {"sub_run_id": child.run_id, "output": {"answer": "Ada"}}}
    resume_rows = [r for r in rt.get_ledger(pid) if (r.get("effect") or {}).get("type") == "resume"]
    assert len(resume_rows) == 1
    assert resume_rows[0]["effect"]["payload"]["wait_key"] == f"subworkflow:{child.run_id}"


def test_include_traces_adds_child_node_traces():
    parent = parent_wf({"workflow_id": "child", "include_traces": True})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    sub = state.vars["sub"]
    child_id = only_child(rt, pid).run_id
    assert set(sub) == {"sub_run_id", "output", "node_traces"}
    assert sub["node_traces"] == rt.get_node_traces(child_id)
    say = sub["node_traces"]["say"]
    assert say["node_id"] == "say"
    assert [s["effect"]["type"] for s in say["steps"]] == ["answer_user"]


def test_nested_waiting_chain_wakes_every_ancestor():
    # parent -> mid (sync) -> child_ask (sync, waits): answering the grandchild wakes mid, whose completion
    # in turn wakes the parent.
    mid = parent_wf({"workflow_id": "child_ask"}, workflow_id="mid")
    parent = parent_wf({"workflow_id": "mid"})
    rt = make_runtime(parent, mid)

    pid, state = run_parent(rt, parent)

    assert state.status is RunStatus.WAITING
    mid_run = only_child(rt, pid)
    leaf = only_child(rt, mid_run.run_id)
    assert mid_run.status is RunStatus.WAITING and leaf.status is RunStatus.WAITING
    assert state.waiting.details["sub_waiting"] == {"reason": "subworkflow",
                                                    "wait_key": f"subworkflow:{leaf.run_id}"}

    rt.resume(workflow=child_ask_wf(), run_id=leaf.run_id, wait_key=leaf.waiting.wait_key, payload={"text": "Bo"})

    assert rt.get_state(mid_run.run_id).status is RunStatus.COMPLETED
    woken = rt.get_state(pid)
    assert woken.status is RunStatus.COMPLETED, (woken.status, woken.error)
    assert woken.output == {"sub": {"sub_run_id": mid_run.run_id, "output": {
        "sub": {"sub_run_id": leaf.run_id, "output": {"answer": "Bo"}}}}}


def test_parent_paused_while_child_finishes_is_woken_after_resume_run():
    # A paused parent is skipped by the automatic wake-up (reference §3.6). The child's completion must not be
    # lost: once the parent is un-paused, driving it (resume_run, then a tick) delivers the child's result.
    parent = parent_wf({"workflow_id": "child_ask"})
    rt = make_runtime(parent)
    pid, _ = run_parent(rt, parent)
    child = only_child(rt, pid)
    rt.pause_run(pid)

    rt.resume(workflow=child_ask_wf(), run_id=child.run_id, wait_key=child.waiting.wait_key, payload={"text": "Ada"})

    paused = rt.get_state(pid)
    assert paused.status is RunStatus.WAITING and paused.is_paused  # not woken while paused
    rt.resume_run(pid)
    rt.tick(workflow=parent, run_id=pid)
    woken = rt.get_state(pid)
    assert woken.status is RunStatus.COMPLETED, (woken.status, woken.waiting)
    assert woken.output == {"sub": {"sub_run_id": child.run_id, "output": {"answer": "Ada"}}}


# --- async ----------------------------------------------------------------------------------------------------

def test_async_fire_and_forget_leaves_child_untouched():
    parent = parent_wf({"workflow_id": "child", "async": True})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    child = only_child(rt, pid)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["sub"] == {"sub_run_id": child.run_id, "async": True}
    assert child.status is RunStatus.RUNNING
    assert child.current_node == "say"
    assert rt.get_ledger(child.run_id) == []
    # Driving the child later does not disturb the (finished) parent.
    assert rt.tick(workflow=child_done_wf(), run_id=child.run_id).status is RunStatus.COMPLETED
    assert rt.get_state(pid).output == state.output


def test_async_wait_parent_is_woken_when_child_is_ticked_to_completion():
    parent = parent_wf({"workflow_id": "child", "async": True, "wait": True})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    child = only_child(rt, pid)
    assert child.status is RunStatus.RUNNING
    assert state.status is RunStatus.WAITING
    assert state.waiting.reason is WaitReason.SUBWORKFLOW
    assert state.waiting.wait_key == f"subworkflow:{child.run_id}"
    assert state.waiting.details == {"sub_run_id": child.run_id, "sub_workflow_id": "child", "async": True,
                                     "include_traces": False}

    rt.tick(workflow=child_done_wf(), run_id=child.run_id)

    woken = rt.get_state(pid)
    assert woken.status is RunStatus.COMPLETED, (woken.status, woken.error)
    assert woken.vars["sub"] == {"sub_run_id": child.run_id, "output": {"answer": "42", "x": None}}


def test_async_wait_resume_to_node_from_payload():
    def call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(
            EffectType.START_SUBWORKFLOW,
            {"workflow_id": "child", "async": True, "wait": True, "resume_to_node": "alt"}, "sub"), next_node="done")

    parent = WorkflowSpec(workflow_id="parent_alt", entry_node="call", nodes={
        "call": call,
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"via": "done"}),
        "alt": lambda run, ctx: StepPlan(node_id="alt", complete_output={"via": "alt"}),
    })
    rt = make_runtime(parent)
    pid, state = run_parent(rt, parent)
    assert state.waiting.resume_to_node == "alt"
    rt.tick(workflow=child_done_wf(), run_id=only_child(rt, pid).run_id)
    assert rt.get_state(pid).output == {"via": "alt"}


# --- wrap_as_tool_result ----------------------------------------------------------------------------------------

def test_wrap_as_tool_result_sync():
    parent = parent_wf({"workflow_id": "child", "wrap_as_tool_result": True, "tool_name": "delegate",
                        "call_id": "c1"})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    child_id = only_child(rt, pid).run_id
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["sub"] == {"mode": "executed", "results": [{
        "call_id": "c1", "name": "delegate", "success": True,
        "output": {"rendered": "42", "answer": "42", "sub_run_id": child_id}, "error": None,
    }]}


def test_wrap_as_tool_result_defaults_and_camel_case_aliases():
    rt = make_runtime()
    parent = parent_wf({"workflow_id": "child", "wrap_as_tool_result": True})
    _, state = run_parent(rt, parent)
    result = state.vars["sub"]["results"][0]
    assert (result["call_id"], result["name"]) == ("subworkflow", "start_subworkflow")

    parent2 = parent_wf({"workflow_id": "child", "wrap_as_tool_result": True, "toolName": "t", "callId": "k"},
                        workflow_id="parent2")
    _, state2 = run_parent(rt, parent2)
    result2 = state2.vars["sub"]["results"][0]
    assert (result2["call_id"], result2["name"]) == ("k", "t")


def test_wrap_as_tool_result_for_waiting_child_after_automatic_wake_up():
    parent = parent_wf({"workflow_id": "child_ask", "wrap_as_tool_result": True, "tool_name": "ask_human",
                        "call_id": "c7"})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    child = only_child(rt, pid)
    assert state.status is RunStatus.WAITING
    details = state.waiting.details
    assert details["wrap_as_tool_result"] is True
    assert details["tool_name"] == "ask_human"
    assert details["call_id"] == "c7"

    rt.resume(workflow=child_ask_wf(), run_id=child.run_id, wait_key=child.waiting.wait_key,
              payload={"text": "Ada"})

    woken = rt.get_state(pid)
    assert woken.status is RunStatus.COMPLETED, (woken.status, woken.error)
    assert woken.vars["sub"] == {"mode": "executed", "results": [{
        "call_id": "c7", "name": "ask_human", "success": True,
        "output": {"rendered": "Ada", "answer": "Ada", "sub_run_id": child.run_id}, "error": None,
    }]}


def test_wrap_as_tool_result_failed_child_is_an_unsuccessful_result():
    parent = parent_wf({"workflow_id": "child_fail", "wrap_as_tool_result": True})
    rt = make_runtime(parent)

    _, state = run_parent(rt, parent)

    assert state.status is RunStatus.COMPLETED, state.error
    [result] = state.vars["sub"]["results"]
    assert result["success"] is False
    assert result["output"] is None
    assert "Subworkflow 'child_fail' failed: " in result["error"]


def test_wrap_as_tool_result_async_fire_and_forget():
    parent = parent_wf({"workflow_id": "child", "async": True, "wrap_as_tool_result": True})
    rt = make_runtime(parent)

    pid, state = run_parent(rt, parent)

    child_id = only_child(rt, pid).run_id
    assert state.vars["sub"] == {"mode": "executed", "results": [{
        "call_id": "subworkflow", "name": "start_subworkflow", "success": True, "error": None,
        "output": {"rendered": "Started subworkflow child", "sub_run_id": child_id, "async": True},
    }]}


# --- validation errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, registry, message", [
    ({}, True, "start_subworkflow requires payload.workflow_id"),
    ({"workflow_id": "  "}, True, "start_subworkflow requires payload.workflow_id"),
    ({}, False, "start_subworkflow requires payload.workflow_id"),  # checked before the registry
    ({"workflow_id": "child"}, False, "start_subworkflow requires a workflow_registry."),
    ({"workflow_id": "nope"}, True, "Workflow 'nope' not found in registry"),
])
def test_validation_errors_fail_the_parent(payload, registry, message):
    parent = parent_wf(payload)
    rt = make_runtime(parent, registry=registry)

    pid, state = run_parent(rt, parent)

    assert state.status is RunStatus.FAILED
    assert message in state.error
    assert rt.run_store.list_children(parent_run_id=pid) == []


def test_validation_error_with_wrap_is_an_unsuccessful_result():
    parent = parent_wf({"workflow_id": "nope", "wrap_as_tool_result": True, "call_id": "c1"})
    rt = make_runtime(parent)

    _, state = run_parent(rt, parent)

    assert state.status is RunStatus.COMPLETED
    assert state.vars["sub"] == {"mode": "executed", "results": [{
        "call_id": "c1", "name": "start_subworkflow", "success": False, "output": None,
        "error": "Workflow 'nope' not found in registry"}]}


# --- inheritance ------------------------------------------------------------------------------------------------

def test_workspace_keys_inherited_unless_set_in_payload_vars():
    parent = parent_wf({"workflow_id": "child", "vars": {"workspace_access_mode": "all_except_ignored"}})
    rt = make_runtime(parent)
    parent_vars = {"workspace_root": "/ws", "workspace_access_mode": "workspace_only",
                   "workspace_allowed_paths": ["/a"], "workspace_ignored_paths": "   "}

    pid, state = run_parent(rt, parent, vars=parent_vars)

    child = rt.get_state(only_child(rt, pid).run_id)
    assert child.vars["workspace_root"] == "/ws"
    assert child.vars["workspace_access_mode"] == "all_except_ignored"
    assert child.vars["workspace_allowed_paths"] == ["/a"]
    assert "workspace_ignored_paths" not in child.vars  # blank parent values are not copied


def test_workspace_root_in_payload_vars_wins():
    parent = parent_wf({"workflow_id": "child", "vars": {"workspace_root": "/other"}})
    rt = make_runtime(parent)

    pid, _ = run_parent(rt, parent, vars={"workspace_root": "/ws"})

    assert rt.get_state(only_child(rt, pid).run_id).vars["workspace_root"] == "/other"


@pytest.mark.parametrize("payload_extra, expected", [
    ({}, "ps"),
    ({"session_id": "cs"}, "cs"),
    ({"sessionId": "cs2"}, "cs2"),
    ({"session_id": "   "}, "ps"),
])
def test_child_session_from_payload_or_parent(payload_extra, expected):
    parent = parent_wf({"workflow_id": "child", **payload_extra})
    rt = make_runtime(parent)

    pid, _ = run_parent(rt, parent, session_id="ps")

    assert only_child(rt, pid).session_id == expected


# --- idempotency across a crash ---------------------------------------------------------------------------------

class SimulatedCrash(BaseException):
    """Stands for the process dying: a BaseException is not turned into an effect failure by the kernel."""


class CrashAfterSubworkflowStarted:
    """A real plugin (public hook API) that lets START_SUBWORKFLOW run -- the child is created and driven --
    and then kills the step before the parent's checkpoint is written."""

    __name__ = "crash_after_subworkflow_started"

    @hookimpl(wrapper=True)
    def abstractruntime_execute_effect(self, call):
        outcome = yield
        if call.effect.type_value == "start_subworkflow":
            raise SimulatedCrash()
        return outcome


@pytest.mark.parametrize("child_id, final_status", [("child", RunStatus.COMPLETED), ("child_ask", RunStatus.WAITING)])
def test_retry_after_crash_reuses_the_child_started_by_the_same_step(child_id, final_status):
    # Scenario (deterministic and real): attempt 1 runs in a runtime whose crash plugin aborts the parent's
    # step right after the handler started (and drove) the child. What is left on disk is exactly a crash's
    # leftovers: the parent's STARTED reservation row with the step's idempotency key, the parent checkpoint
    # still at "call", and a child marked `_runtime.started_by_step = <key>`. Attempt 2 (a fresh runtime on the
    # same store, as after a restart) ticks the parent again: it must adopt that child, not start a second one.
    backend = MemoryBackend()
    parent = parent_wf({"workflow_id": child_id})
    crashing = make_runtime(parent, backend=backend, plugins=[CrashAfterSubworkflowStarted()])
    pid = crashing.start(workflow=parent)
    before = crashing.get_state(pid)
    key = crashing.effect_policy.idempotency_key(
        run=before, node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": child_id}, "sub"))

    with pytest.raises(SimulatedCrash):
        crashing.tick(workflow=parent, run_id=pid)

    after_crash = crashing.get_state(pid)
    assert after_crash.status is RunStatus.RUNNING and after_crash.current_node == "call"
    rows = crashing.get_ledger(pid)
    assert [(r["status"], r["idempotency_key"]) for r in rows] == [("started", key)]
    first_child = only_child(crashing, pid)
    assert first_child.vars["_runtime"]["started_by_step"] == key

    restarted = make_runtime(parent, backend=backend)
    state = restarted.tick(workflow=parent, run_id=pid)

    assert only_child(restarted, pid).run_id == first_child.run_id  # no second child
    assert state.status is final_status, state.error
    if final_status is RunStatus.COMPLETED:
        assert state.vars["sub"]["sub_run_id"] == first_child.run_id
    else:
        assert state.waiting.wait_key == f"subworkflow:{first_child.run_id}"
    keyed = [r for r in restarted.get_ledger(pid) if r["idempotency_key"] == key]
    assert [r["status"] for r in keyed].count("started") == 1  # the reservation is reused, not duplicated
    assert len({r["step_id"] for r in keyed}) == 1


# --- LMDB ---------------------------------------------------------------------------------------------------------

def test_waiting_child_wakes_parent_on_lmdb(tmp_path):
    parent = parent_wf({"workflow_id": "child_ask", "vars": {"x": 1}})
    reg = WorkflowRegistry()
    for spec in (parent,) + CHILDREN:
        reg.register(spec)
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db", **DRIVE_PARENTS}, workflow_registry=reg)
    try:
        pid, state = run_parent(rt, parent, session_id="s1")
        assert state.status is RunStatus.WAITING
        child = only_child(rt, pid)
        assert child.parent_run_id == pid and child.session_id == "s1"
        rt.resume(workflow=child_ask_wf(), run_id=child.run_id, wait_key=child.waiting.wait_key,
                  payload={"text": "Lin"})
        woken = rt.get_state(pid)
        assert woken.status is RunStatus.COMPLETED, (woken.status, woken.error)
        assert woken.output == {"sub": {"sub_run_id": child.run_id, "output": {"answer": "Lin"}}}
    finally:
        rt.close()


def test_a_retried_step_waits_for_a_running_child_instead_of_driving_it_a_second_time():
    """After a crash or a takeover, the parent's START_SUBWORKFLOW step is re-run; its child already exists and is
    RUNNING (another worker may be driving it right now). The retry must not tick the child inline: it waits, and
    the child's completion (by whoever drives it) wakes the parent."""
    from abstractruntime import EffectHandlerDescriptor, EffectOutcome, hookimpl

    calls = []

    class Work:
        __name__ = "work_plugin"

        @hookimpl
        def abstractruntime_register_effect_handlers(self):
            return [EffectHandlerDescriptor("work", lambda call: (calls.append(call.run.run_id),
                                                                  EffectOutcome.completed({"ok": True}))[1])]

    child = WorkflowSpec(workflow_id="worker_child", entry_node="w", nodes={
        "w": lambda run, ctx: StepPlan(node_id="w", effect=Effect("work", {}, "r"), next_node="d"),
        "d": lambda run, ctx: StepPlan(node_id="d", complete_output={"answer": 42}),
    })
    parent = parent_wf({"workflow_id": "worker_child"})
    backend = MemoryBackend()
    reg = WorkflowRegistry()
    reg.register(child)
    reg.register(parent)
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, workflow_registry=reg,
                 plugins=[Work()], settings=DRIVE_PARENTS)
    pid = rt.start(workflow=parent)
    state = rt.get_state(pid)
    step_effect = parent.nodes[state.current_node](state, rt.context).effect
    key = rt.effect_policy.idempotency_key(run=state, node_id=state.current_node, effect=step_effect)
    # what the first attempt left before it died: the child (RUNNING, marked with the step's key) and the
    # parent's reservation
    cid = rt.start(workflow=child, parent_run_id=pid, vars={"_runtime": {"started_by_step": key}})
    from abstractruntime import StepRecord

    rt.commit(None, [StepRecord.start(run=state, node_id=state.current_node, effect=step_effect,
                                      idempotency_key=key)], run_id=pid)

    waiting = rt.tick(workflow=parent, run_id=pid)
    assert waiting.status is RunStatus.WAITING and waiting.waiting.wait_key == f"subworkflow:{cid}"
    assert calls == [] and rt.get_state(cid).status is RunStatus.RUNNING  # the retry did not drive the child
    assert [r.run_id for r in backend.run_store.list_children(parent_run_id=pid)] == [cid]  # no second child

    assert rt.tick(workflow=child, run_id=cid).status is RunStatus.COMPLETED  # "the other worker" finishes it
    assert calls == [cid]
    done = rt.get_state(pid)
    assert done.status is RunStatus.COMPLETED
    assert done.output["sub"] == {"sub_run_id": cid, "output": {"answer": 42}}


def test_sync_child_still_running_after_100_steps_fails_the_parent_as_in_0_4_2():
    def spin(run, ctx):
        run.vars["n"] = run.vars.get("n", 0) + 1
        return StepPlan(node_id="spin", next_node="spin")

    spinner = WorkflowSpec(workflow_id="spinner", entry_node="spin", nodes={"spin": spin})
    parent = parent_wf({"workflow_id": "spinner"}, workflow_id="parent_spin")
    rt = make_runtime(parent, spinner)
    _pid, state = run_parent(rt, parent)
    assert state.status is RunStatus.FAILED
    assert state.error == "Effect failed after 1 attempt: Unexpected subworkflow status: running"


def test_sync_child_driven_elsewhere_mid_tick_makes_the_parent_wait_for_it_instead_of_failing():
    """The inline tick of a sync child stops early when someone else changes the child (another host, another
    worker holding it): the child is RUNNING after fewer than 100 steps. The parent waits for it (as for a retried
    step) and is woken when it finishes; it used to fail with "Unexpected subworkflow status: running"."""
    backend = MemoryBackend()
    other = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store)  # another host on the store

    def first(run, ctx):
        if not other.get_state(run.run_id).vars.get("touched"):  # the other host commits while this tick runs
            other.update_run(run.run_id, lambda stored: stored.vars.update(touched=True) or [])
        return StepPlan(node_id="first", next_node="last")

    def last(run, ctx):
        return StepPlan(node_id="last", complete_output={"done": True})

    child = WorkflowSpec(workflow_id="contested", entry_node="first", nodes={"first": first, "last": last})
    parent = parent_wf({"workflow_id": "contested"}, workflow_id="parent_contested")
    rt = make_runtime(parent, child, backend=backend)
    pid, state = run_parent(rt, parent)
    assert state.status is RunStatus.WAITING, state.error
    assert state.waiting.reason is WaitReason.SUBWORKFLOW
    child_id = state.waiting.details["sub_run_id"]
    assert rt.get_state(child_id).status is RunStatus.RUNNING  # left to whoever drives it
    assert rt.tick(workflow=child, run_id=child_id).status is RunStatus.COMPLETED
    final = rt.get_state(pid)  # woken by the child's end (drive_parents)
    assert final.status is RunStatus.COMPLETED and final.output["sub"]["output"] == {"done": True}
