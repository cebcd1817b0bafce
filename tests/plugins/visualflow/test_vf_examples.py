"""The spec's Examples A-C (Part 3), run on real runtimes."""

from __future__ import annotations

import time

import pytest

from abstractruntime import RunStatus, WaitReason
from abstractruntime_visualflow import compile_visualflow, compile_visualflow_tree, drive

from vf_support import load, memory_runtime


def test_example_a_ask_then_answer():
    rt = memory_runtime()
    spec = compile_visualflow(load("example_a_greet"))
    assert spec.workflow_id == "greet" and spec.entry_node == "start"
    assert set(spec.nodes) == {"start", "ask", "say", "end"}  # pure nodes are folded into data resolution
    run_id = rt.start(workflow=spec)
    state = rt.tick(workflow=spec, run_id=run_id)
    assert state.status is RunStatus.WAITING
    w = state.waiting
    assert (w.reason, w.prompt, w.wait_key, w.resume_to_node) == (
        WaitReason.USER, "What is your name?", f"user:{run_id}:ask", "say")
    state = rt.resume(workflow=spec, run_id=run_id, wait_key=w.wait_key, payload={"response": "Ada"})
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"greeting": "Hello, Ada", "success": True}
    answers = [r for r in rt.get_ledger(run_id)
               if (r.get("effect") or {}).get("type") == "answer_user" and r["status"] == "completed"]
    assert answers[0]["result"] == {"message": "Hello, Ada", "level": "message"}


@pytest.mark.parametrize("vars,total", [({"numbers": [2, 5, 10]}, 17.0), (None, 6.0)])
def test_example_b_loop_over_a_list(vars, total):
    rt = memory_runtime()
    spec = compile_visualflow(load("example_b_sum_list"))
    run_id = rt.start(workflow=spec, vars=vars)
    state = rt.tick(workflow=spec, run_id=run_id, max_steps=1000)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"total": total, "success": True}
    assert state.vars["total"] == total
    rows = rt.get_ledger(run_id)
    # no effects: only the completion row and the abstract.status row
    assert len(rows) == 2 and rows[0]["result"]["completed"] is True
    assert rows[1]["effect"]["payload"]["name"] == "abstract.status"
    # every visual node step is a kernel step (checkpointed): start, init, each x4, acc x3, end
    assert state.step == 10


def _tree():
    return compile_visualflow_tree(root_id="main", flows_by_id={"main": load("example_c_main"),
                                                                "double": load("example_c_double")})


def _example_c_child_done(rt):
    specs = _tree()
    assert set(specs) == {"main", "double"}
    for spec in specs.values():
        rt.workflow_registry.register(spec)
    run_id = rt.start(workflow=specs["main"])
    state = rt.tick(workflow=specs["main"], run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.SUBWORKFLOW
    child_id = state.waiting.details["sub_run_id"]
    assert state.waiting.wait_key == f"subworkflow:{child_id}"
    started = [r for r in rt.get_ledger(run_id) if (r.get("effect") or {}).get("type") == "start_subworkflow"][0]
    payload = started["effect"]["payload"]
    assert payload["workflow_id"] == "double" and payload["vars"] == {"x": 21}
    assert payload["async"] is True and payload["wait"] is True
    child = rt.get_state(child_id)
    assert child.vars["x"] == 21 and child.parent_run_id == run_id
    child = rt.tick(workflow=specs["double"], run_id=child_id)
    assert child.status is RunStatus.COMPLETED and child.output == {"y": 42.0, "success": True}
    return specs, run_id, child


def test_example_c_subflow_host_ticks_the_child_and_resumes_the_parent():
    """The spec's host, on a bare runtime (0.4.2 semantics): the parent waits until the host resumes it."""
    from abstractruntime_scheduler import Scheduler

    rt = memory_runtime()
    specs, run_id, child = _example_c_child_done(rt)
    assert rt.get_state(run_id).status is RunStatus.WAITING  # a bare runtime does not drive the parent
    scheduler = Scheduler(runtime=rt, registry=rt.workflow_registry)  # not started: the host drives
    parent = scheduler.resume_subworkflow_parent(child_run_id=child.run_id, child_output=child.output)
    assert parent.status is RunStatus.COMPLETED
    assert parent.output == {"answer": 42.0, "success": True}


def test_example_c_subflow_parent_wakes_up_under_drive_parents():
    rt = memory_runtime(settings={"plugin_options": {"subworkflows": {"drive_parents": True}}})
    _specs, run_id, _child = _example_c_child_done(rt)
    parent = rt.get_state(run_id)  # woken automatically when the child finished
    assert parent.status is RunStatus.COMPLETED
    assert parent.output == {"answer": 42.0, "success": True}


def test_example_c_sync_host_drive_runs_the_whole_tree():
    rt = memory_runtime()
    for spec in _tree().values():
        rt.workflow_registry.register(spec)
    run_id = rt.start(workflow=rt.workflow_registry.get("main"))
    state = drive(rt, run_id)
    assert state.status is RunStatus.COMPLETED and state.output == {"answer": 42.0, "success": True}


def test_example_c_the_scheduler_drives_child_and_parent():
    from abstractruntime import create_scheduled_runtime

    sr = create_scheduled_runtime(workflows=list(_tree().values()), poll_interval_s=0.05)
    try:
        run_id = sr.start(workflow=sr.registry.get("main"))
        deadline = time.time() + 10
        while time.time() < deadline and sr.get_state(run_id).status is not RunStatus.COMPLETED:
            time.sleep(0.02)
        assert sr.get_state(run_id).output == {"answer": 42.0, "success": True}
    finally:
        sr.stop()
