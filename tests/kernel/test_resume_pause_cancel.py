"""resume (§3.5), pause_run / resume_run / cancel_run (§3.6), including a cancel from another thread."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    RunNotWaitingError,
    RunPausedError,
    RunStatus,
    StepPlan,
    UnknownRunError,
    WaitKeyMismatchError,
    WaitReason,
)

from kernel_support import effect_node, runtime_on, snapshot, status_rows, workflow


def ask_workflow(result_key="answer", next_node="after", calls=None):
    calls = calls if calls is not None else []

    def ask(run, ctx):
        calls.append("ask")
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "Name?"}, result_key),
                        next_node=next_node)

    def after(run, ctx):
        calls.append("after")
        return StepPlan(node_id="after", complete_output={"vars": {k: v for k, v in run.vars.items()
                                                                    if not k.startswith("_l")}})

    return workflow({"ask": ask, "after": after}), calls


def waiting_run(rt, **kwargs):
    wf, calls = ask_workflow(**kwargs)
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    return wf, run_id, state.waiting.wait_key, calls


# --- resume ---------------------------------------------------------------------------------------------------------
def test_resume_with_wrong_wait_key_raises_and_changes_nothing():
    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt)
    before = snapshot(rt, run_id)
    with pytest.raises(WaitKeyMismatchError) as exc_info:
        rt.resume(workflow=wf, run_id=run_id, wait_key="wrong", payload={"x": 1})
    err = exc_info.value
    assert isinstance(err, ValueError)
    assert f"wait_key mismatch: expected '{key}', got 'wrong'" in str(err)
    assert err.expected == key and err.got == "wrong"
    assert snapshot(rt, run_id) == before
    assert calls == ["ask"]


def test_a_workflow_other_than_the_runs_is_refused_by_tick_and_resume_and_changes_nothing():
    """Issue 14 #6: B's code never runs on a run of A (same node names or not), and the run is not failed."""
    from abstractruntime.errors import ValidationError as WorkflowMismatchError

    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt)
    other_calls = []
    other = workflow({"ask": lambda run, ctx: other_calls.append(1) or StepPlan(node_id="ask", complete_output={}),
                      "after": lambda run, ctx: other_calls.append(2) or StepPlan(node_id="after",
                                                                                  complete_output={})},
                     workflow_id="other")
    before = snapshot(rt, run_id)
    for attempt in (lambda: rt.resume(workflow=other, run_id=run_id, wait_key=key, payload={"x": 1}),
                    lambda: rt.tick(workflow=other, run_id=run_id)):
        with pytest.raises(WorkflowMismatchError, match="belongs to workflow 'wf', not 'other'") as exc_info:
            attempt()
        assert isinstance(exc_info.value, ValueError) and exc_info.value.run_id == run_id
    assert snapshot(rt, run_id) == before and other_calls == []
    # a RUNNING run too
    running = rt.start(workflow=wf)
    before = snapshot(rt, running)
    with pytest.raises(WorkflowMismatchError):
        rt.tick(workflow=other, run_id=running)
    assert snapshot(rt, running) == before and other_calls == []
    assert rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={"x": 1}).status is RunStatus.COMPLETED


def test_resume_with_none_wait_key_skips_the_check():
    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt)
    state = rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload={"name": "Ada"})
    assert state.status is RunStatus.COMPLETED
    assert state.vars["answer"] == {"name": "Ada"}


def test_resume_of_a_run_that_is_not_waiting_raises():
    rt = runtime_on()
    wf, _ = ask_workflow()
    run_id = rt.start(workflow=wf)
    with pytest.raises(RunNotWaitingError) as exc_info:
        rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload={})
    assert isinstance(exc_info.value, ValueError)
    assert "Run is not waiting" in str(exc_info.value)


def test_resume_of_an_unknown_run_raises_key_error():
    rt = runtime_on()
    wf, _ = ask_workflow()
    with pytest.raises(UnknownRunError) as exc_info:
        rt.resume(workflow=wf, run_id="missing-run", wait_key=None, payload={})
    assert isinstance(exc_info.value, KeyError)
    assert str(exc_info.value) == "Unknown run_id: missing-run"


def test_resume_writes_result_key_appends_resume_row_and_does_not_rerun_the_waiting_node():
    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt, result_key="form.answer")
    rows_before = rt.get_ledger(run_id)
    state = rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={"name": "Ada"})
    assert state.status is RunStatus.COMPLETED
    assert state.vars["form"] == {"answer": {"name": "Ada"}}
    assert calls == ["ask", "after"]
    assert state.waiting is None

    ledger = rt.get_ledger(run_id)
    assert ledger[: len(rows_before)] == rows_before
    resume_row = ledger[len(rows_before)]
    assert resume_row["status"] == "completed"
    assert resume_row["node_id"] == "ask"
    assert resume_row["effect"] == {
        "type": "resume",
        "payload": {"wait_reason": "user", "wait_key": key, "resume_to_node": "after",
                    "result_key": "form.answer", "payload": {"name": "Ada"}},
        "result_key": None,
    }
    assert resume_row["result"] == {"resumed": True}
    assert resume_row["idempotency_key"] is None
    assert resume_row["run_id"] == run_id


def test_resume_payload_without_result_key_lands_in_temp():
    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt, result_key=None)
    state = rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={"name": "Ada"}, max_steps=0)
    assert state.vars["_temp"]["resume_payload"] == {"name": "Ada"}
    assert rt.get_state(run_id).vars["_temp"]["resume_payload"] == {"name": "Ada"}


def test_resume_with_max_steps_zero_returns_running_without_ticking():
    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt)
    state = rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={"a": 1}, max_steps=0)
    assert state.status is RunStatus.RUNNING
    assert state.current_node == "after"
    assert state.waiting is None
    assert calls == ["ask"]
    persisted = rt.get_state(run_id)
    assert persisted.status is RunStatus.RUNNING and persisted.current_node == "after"
    assert persisted.vars["answer"] == {"a": 1}
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    assert calls == ["ask", "after"]


def test_terminal_wait_completes_on_resume_with_three_rows():
    rt = runtime_on()
    wf, run_id, key, calls = waiting_run(rt, next_node=None)
    assert rt.get_state(run_id).waiting.resume_to_node is None
    n_before = len(rt.get_ledger(run_id))
    payload = {"name": "Ada"}
    state = rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload=payload)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"success": True, "result": payload}
    assert state.waiting is None
    assert calls == ["ask"]
    new_rows = rt.get_ledger(run_id)[n_before:]
    assert len(new_rows) == 3
    resume_row, completion, status = new_rows
    assert resume_row["effect"]["type"] == "resume" and resume_row["result"] == {"resumed": True}
    assert completion["status"] == "completed"
    assert completion["result"] == {"completed": True, "via": "resume", "wait_reason": "user", "wait_key": key,
                                    "output": {"success": True, "result": payload}}
    assert status["idempotency_key"] == "system:terminal_status:completed"
    assert status["result"] == {"emitted": True, "name": "abstract.status", "payload": {"text": "completed"}}


def test_resume_of_an_event_wait_continues_to_completion():
    rt = runtime_on()
    wf = workflow({
        "w": effect_node("w", Effect(EffectType.WAIT_EVENT, {"name": "go"}, "evt"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"evt": run.vars["evt"]}),
    })
    run_id = rt.start(workflow=wf, session_id="s")
    rt.tick(workflow=wf, run_id=run_id)
    state = rt.resume(workflow=wf, run_id=run_id, wait_key="evt:session:s:go", payload={"ok": True})
    assert state.status is RunStatus.COMPLETED and state.output == {"evt": {"ok": True}}
    assert rt.get_ledger(run_id)[2]["effect"]["payload"]["wait_reason"] == "event"


def test_resuming_a_wait_that_was_resumed_already_returns_the_state_and_writes_nothing():
    """A host call for a transition that was made already (by a driver, or a retried request) is harmless: the
    current state comes back. Resuming a wait the run never had is still refused."""
    rt = runtime_on()
    wf, run_id, key, _ = waiting_run(rt)
    first = rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={})
    rows = len(rt.get_ledger(run_id))
    again = rt.resume(workflow=wf, run_id=run_id, wait_key=key, payload={})
    assert again.status is first.status and again.revision == first.revision
    assert len(rt.get_ledger(run_id)) == rows
    with pytest.raises(RunNotWaitingError):
        rt.resume(workflow=wf, run_id=run_id, wait_key="never-waited-for", payload={})
    with pytest.raises(RunNotWaitingError):
        rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload={})


# --- pause / resume_run ---------------------------------------------------------------------------------------------
def chain_workflow(calls):
    def a(run, ctx):
        calls.append("a")
        return StepPlan(node_id="a", next_node="b")

    def b(run, ctx):
        calls.append("b")
        return StepPlan(node_id="b", complete_output={"ok": True})

    return workflow({"a": a, "b": b})


def test_pause_running_run_sets_synthetic_wait_and_tick_is_a_no_op():
    rt = runtime_on()
    calls = []
    wf = chain_workflow(calls)
    run_id = rt.start(workflow=wf, vars={"_runtime": {"control": {"other": 1}}})
    paused = rt.pause_run(run_id, reason="maintenance")
    assert paused.status is RunStatus.WAITING
    w = paused.waiting
    assert w.reason is WaitReason.USER
    assert w.wait_key == f"pause:{run_id}"
    assert w.resume_to_node == "a"
    assert w.prompt == "Paused" and w.allow_free_text is False
    assert w.details == {"kind": "pause"} and w.result_key is None
    control = rt.get_state(run_id).vars["_runtime"]["control"]
    assert control["paused"] is True and control["pause_reason"] == "maintenance"
    assert control["other"] == 1 and control["paused_at"]
    assert rt.get_ledger(run_id) == []

    before = snapshot(rt, run_id)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.WAITING
    assert snapshot(rt, run_id) == before
    assert calls == []

    with pytest.raises(RunPausedError) as exc_info:
        rt.resume(workflow=wf, run_id=run_id, wait_key=f"pause:{run_id}", payload={})
    assert isinstance(exc_info.value, ValueError)
    assert snapshot(rt, run_id) == before

    resumed = rt.resume_run(run_id)
    assert resumed.status is RunStatus.RUNNING and resumed.current_node == "a" and resumed.waiting is None
    control = rt.get_state(run_id).vars["_runtime"]["control"]
    assert "paused" not in control and "pause_reason" not in control and control["resumed_at"]
    assert calls == []  # resume_run does not tick
    assert rt.get_ledger(run_id) == []
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    assert calls == ["a", "b"]


def test_pause_with_blank_reason_has_no_pause_reason_and_pausing_twice_is_a_no_op():
    rt = runtime_on()
    wf = chain_workflow([])
    run_id = rt.start(workflow=wf)
    rt.pause_run(run_id, reason="   ")
    state = rt.get_state(run_id)
    assert "pause_reason" not in state.vars["_runtime"]["control"]
    again = rt.pause_run(run_id, reason="x")
    assert again.revision == state.revision
    assert "pause_reason" not in rt.get_state(run_id).vars["_runtime"]["control"]


def test_pause_on_a_genuine_user_wait_is_a_no_op():
    rt = runtime_on()
    wf, run_id, key, _ = waiting_run(rt)
    before = snapshot(rt, run_id)
    state = rt.pause_run(run_id)
    assert state.waiting.wait_key == key
    assert snapshot(rt, run_id) == before
    assert not rt.get_state(run_id).is_paused


def test_pause_on_an_until_wait_only_sets_the_flag_and_blocks_the_due_tick():
    rt = runtime_on()
    calls = []

    def wait(run, ctx):
        calls.append("wait")
        until = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_UNTIL, {"until": until}), next_node="done")

    def done(run, ctx):
        calls.append("done")
        return StepPlan(node_id="done", complete_output={})

    wf = workflow({"wait": wait, "done": done})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    paused = rt.pause_run(run_id)
    assert paused.status is RunStatus.WAITING and paused.waiting.reason is WaitReason.UNTIL
    assert paused.is_paused

    state = rt.get_state(run_id)
    state.waiting.until = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    rt.run_store.save(state)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.WAITING  # due, but paused
    assert calls == ["wait"]

    resumed = rt.resume_run(run_id)
    assert resumed.status is RunStatus.WAITING and resumed.waiting.reason is WaitReason.UNTIL
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    assert calls == ["wait", "done"]


def test_pause_and_resume_run_are_no_ops_on_terminal_runs():
    rt = runtime_on()
    wf = chain_workflow([])
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    before = snapshot(rt, run_id)
    assert rt.pause_run(run_id).status is RunStatus.COMPLETED
    assert rt.resume_run(run_id).status is RunStatus.COMPLETED
    assert snapshot(rt, run_id) == before


def test_resume_run_on_a_run_that_is_not_paused_is_a_no_op():
    rt = runtime_on()
    wf, run_id, key, _ = waiting_run(rt)
    before = snapshot(rt, run_id)
    state = rt.resume_run(run_id)
    assert state.status is RunStatus.WAITING and state.waiting.wait_key == key
    assert snapshot(rt, run_id) == before


# --- cancel ---------------------------------------------------------------------------------------------------------
def test_cancel_running_run_writes_the_cancelled_status_row():
    rt = runtime_on()
    calls = []
    wf = chain_workflow(calls)
    run_id = rt.start(workflow=wf)
    state = rt.cancel_run(run_id, reason="user asked")
    assert state.status is RunStatus.CANCELLED and state.error == "user asked"
    persisted = rt.get_state(run_id)
    assert persisted.status is RunStatus.CANCELLED and persisted.error == "user asked"
    ledger = rt.get_ledger(run_id)
    assert len(ledger) == 1
    row = ledger[0]
    assert row["idempotency_key"] == "system:terminal_status:cancelled"
    assert row["status"] == "completed" and row["node_id"] == "a"
    assert row["effect"]["payload"] == {"name": "abstract.status", "scope": "session", "payload": {"text": "cancelled"}}
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.CANCELLED
    assert calls == []


def test_cancel_waiting_paused_run_clears_wait_and_flag_with_default_reason():
    rt = runtime_on()
    wf = chain_workflow([])
    run_id = rt.start(workflow=wf)
    rt.pause_run(run_id)
    state = rt.cancel_run(run_id)
    assert state.status is RunStatus.CANCELLED
    assert state.error == "Cancelled"
    assert state.waiting is None
    assert not rt.get_state(run_id).is_paused


def test_cancel_is_a_no_op_on_terminal_runs():
    rt = runtime_on()
    wf = chain_workflow([])
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    before = snapshot(rt, run_id)
    state = rt.cancel_run(run_id, reason="too late")
    assert state.status is RunStatus.COMPLETED
    assert snapshot(rt, run_id) == before
    rt2_id = rt.start(workflow=wf)
    rt.cancel_run(rt2_id)
    before2 = snapshot(rt, rt2_id)
    rt.cancel_run(rt2_id, reason="again")
    assert snapshot(rt, rt2_id) == before2
    assert len(status_rows(before2[1])) == 1


def test_cancel_from_another_thread_while_ticking_is_never_overwritten():
    rt = runtime_on()
    visits = []

    def work(run, ctx):
        time.sleep(0.01)
        visits.append(1)
        run.vars["i"] = run.vars.get("i", 0) + 1
        if run.vars["i"] >= 200:
            return StepPlan(node_id="work", complete_output={"i": run.vars["i"]})
        return StepPlan(node_id="work", next_node="work")

    wf = workflow({"work": work})
    run_id = rt.start(workflow=wf)
    result = {}

    def ticker():
        result["state"] = rt.tick(workflow=wf, run_id=run_id, max_steps=1000)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.05)
    cancelled = rt.cancel_run(run_id, reason="stop")
    t.join(timeout=10)
    assert not t.is_alive()
    assert cancelled.status is RunStatus.CANCELLED
    assert result["state"].status is RunStatus.CANCELLED
    persisted = rt.get_state(run_id)
    assert persisted.status is RunStatus.CANCELLED and persisted.error == "stop"
    assert persisted.vars.get("i", 0) < 200
    assert len(visits) < 200
    ledger = rt.get_ledger(run_id)
    assert [r["idempotency_key"] for r in status_rows(ledger)] == ["system:terminal_status:cancelled"]
    assert ledger[-1]["idempotency_key"] == "system:terminal_status:cancelled"
    # a later tick does not revive it
    time.sleep(0.02)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.CANCELLED
    assert rt.get_state(run_id).status is RunStatus.CANCELLED


@pytest.mark.parametrize("durability", ["step", "barrier"])
def test_pause_from_another_thread_while_ticking_stops_the_loop_and_is_kept(durability):
    """With durability "barrier" the steps staged since the last barrier are dropped (the pause moved the run's
    revision) and run again after resume_run; the pause is kept either way."""
    rt = runtime_on(settings={"durability": durability})
    slow = threading.Event()
    slow.set()

    def work(run, ctx):
        if slow.is_set():
            time.sleep(0.01)
        run.vars["i"] = run.vars.get("i", 0) + 1
        if run.vars["i"] >= 200:
            return StepPlan(node_id="work", complete_output={})
        return StepPlan(node_id="work", next_node="work")

    wf = workflow({"work": work})
    run_id = rt.start(workflow=wf)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", rt.tick(workflow=wf, run_id=run_id, max_steps=1000)))
    t.start()
    time.sleep(0.05)
    rt.pause_run(run_id)
    t.join(timeout=10)
    assert result["s"].is_paused and result["s"].status is RunStatus.WAITING
    persisted = rt.get_state(run_id)
    assert persisted.is_paused and persisted.status is RunStatus.WAITING
    assert persisted.waiting.wait_key == f"pause:{run_id}"
    i_at_pause = persisted.vars.get("i", 0)
    slow.clear()
    rt.resume_run(run_id)
    final = rt.tick(workflow=wf, run_id=run_id, max_steps=1000)
    assert final.status is RunStatus.COMPLETED
    assert final.vars["i"] == 200 and i_at_pause < 200
