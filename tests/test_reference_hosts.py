"""Host programs written against AbstractRuntime 0.4.2's documented API run unchanged.

Each test is a small host program in the reference's style (its README/docs import forms and constructor style).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone


def test_pause_resume_with_ask_user_on_in_memory_stores():
    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
    from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore

    def ask(run, ctx):
        return StepPlan(
            node_id="ask",
            effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Continue?", "choices": ["yes", "no"]},
                          result_key="user_input"),
            next_node="done",
        )

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"answer": run.vars["user_input"]})

    wf = WorkflowSpec(workflow_id="demo", entry_node="ask", nodes={"ask": ask, "done": done})
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status == RunStatus.WAITING
    assert state.waiting.reason == WaitReason.USER
    assert state.waiting.prompt == "Continue?" and state.waiting.choices == ["yes", "no"]

    # a host pauses and un-pauses while the user thinks; the user wait is untouched
    assert rt.pause_run(run_id, reason="lunch").waiting.reason == WaitReason.USER

    state = rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "yes"})
    assert state.status == RunStatus.COMPLETED
    assert state.output == {"answer": {"text": "yes"}}
    ledger = rt.get_ledger(run_id)
    assert ledger[-1]["idempotency_key"] == "system:terminal_status:completed"


def test_multi_step_workflow_with_pause_and_cancel():
    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
    from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore

    def step(i, last):
        def node(run, ctx):
            run.vars.setdefault("trail", []).append(i)
            if i == last:
                return StepPlan(node_id=f"s{i}", complete_output={"trail": run.vars["trail"]})
            if i == 1:
                return StepPlan(node_id="s1", effect=Effect(type=EffectType.ANSWER_USER,
                                                            payload={"message": "halfway", "level": "info"},
                                                            result_key="said"), next_node="s2")
            return StepPlan(node_id=f"s{i}", next_node=f"s{i + 1}")
        return node

    wf = WorkflowSpec(workflow_id="multi", entry_node="s0", nodes={f"s{i}": step(i, 4) for i in range(5)})
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
    run_id = rt.start(workflow=wf, vars={"trail": []})
    state = rt.tick(workflow=wf, run_id=run_id, max_steps=2)
    assert state.status == RunStatus.RUNNING and state.current_node == "s2"
    assert state.vars["said"] == {"message": "halfway", "level": "message"}

    paused = rt.pause_run(run_id)
    assert paused.status == RunStatus.WAITING and paused.vars["_runtime"]["control"]["paused"] is True
    assert rt.tick(workflow=wf, run_id=run_id).status == RunStatus.WAITING
    rt.resume_run(run_id)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status == RunStatus.COMPLETED and state.output == {"trail": [0, 1, 2, 3, 4]}

    other = rt.start(workflow=wf, vars={"trail": []})
    cancelled = rt.cancel_run(other, reason="user aborted")
    assert cancelled.status == RunStatus.CANCELLED and cancelled.error == "user aborted"
    assert rt.tick(workflow=wf, run_id=other).status == RunStatus.CANCELLED


def test_wait_until_host_loop():
    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
    from abstractruntime.storage import InMemoryLedgerStore, InMemoryRunStore

    def wait(run, ctx):
        until = (datetime.now(timezone.utc) + timedelta(milliseconds=300)).isoformat()
        return StepPlan(node_id="wait", effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": until}),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"ok": True})

    wf = WorkflowSpec(workflow_id="timer", entry_node="wait", nodes={"wait": wait, "done": done})
    run_store = InMemoryRunStore()
    rt = Runtime(run_store=run_store, ledger_store=InMemoryLedgerStore())
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status == RunStatus.WAITING and state.waiting.reason == WaitReason.UNTIL
    assert run_store.list_due_wait_until(now_iso=datetime.now(timezone.utc).isoformat()) == []
    time.sleep(0.35)
    due = run_store.list_due_wait_until(now_iso=datetime.now(timezone.utc).isoformat())
    assert [r.run_id for r in due] == [run_id]
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status == RunStatus.COMPLETED


def test_legacy_host_effect_handlers_and_sqlite_stores(tmp_path):
    from abstractruntime import Effect, Runtime, RunStatus, SqliteLedgerStore, SqliteRunStore, StepPlan, WorkflowSpec
    from abstractruntime.core.runtime import EffectOutcome
    from abstractruntime.storage.sqlite import SqliteDatabase

    seen = []

    def two_args(run, effect):
        seen.append(("two", effect.payload["n"]))
        return EffectOutcome.completed({"n": effect.payload["n"] + 1})

    def three_args(run, effect, default_next_node):
        seen.append(("three", default_next_node))
        return EffectOutcome.completed({"next": default_next_node})

    def a(run, ctx):
        return StepPlan(node_id="a", effect=Effect(type="inc", payload={"n": 1}, result_key="inc"), next_node="b")

    def b(run, ctx):
        return StepPlan(node_id="b", effect=Effect(type="peek", payload={}, result_key="peek"), next_node="c")

    def c(run, ctx):
        return StepPlan(node_id="c", complete_output={"inc": run.vars["inc"], "peek": run.vars["peek"]})

    wf = WorkflowSpec(workflow_id="legacy", entry_node="a", nodes={"a": a, "b": b, "c": c})
    db = SqliteDatabase(tmp_path / "runs.db")
    rt = Runtime(run_store=SqliteRunStore(db), ledger_store=SqliteLedgerStore(db),
                 effect_handlers={"inc": two_args, "peek": three_args})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status == RunStatus.COMPLETED
    assert state.output == {"inc": {"n": 2}, "peek": {"next": "c"}}
    assert seen == [("two", 1), ("three", "c")]
