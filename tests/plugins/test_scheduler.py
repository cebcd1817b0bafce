"""The scheduler plugin: reference API, what it drives without host code, the worker pool, stop(), restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    Runtime,
    RunStatus,
    StepPlan,
    WaitReason,
    WorkflowRegistry,
    WorkflowSpec,
    create_scheduled_runtime,
)
from abstractruntime.scheduler import Scheduler
from abstractruntime_inmemory.store import MemoryBackend

SUPPORT = str(Path(__file__).resolve().parents[1] / "support")


def wait_for(predicate, timeout=20.0, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def ask_flow(workflow_id="ask"):
    return WorkflowSpec(workflow_id=workflow_id, entry_node="ask", nodes={
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"),
                                         next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"a": run.vars["a"]}),
    })


def timer_flow(seconds: float, workflow_id="timer"):
    def wait(run, ctx):
        until = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_UNTIL, {"until": until}), next_node="done")

    return WorkflowSpec(workflow_id=workflow_id, entry_node="wait", nodes={
        "wait": wait, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"ok": True})})


def test_reference_run_respond_flow():
    sr = create_scheduled_runtime(auto_start=False)
    run_id, state = sr.run(ask_flow())
    assert state.status is RunStatus.WAITING
    assert [r.run_id for r in sr.find_waiting_runs(wait_reason=WaitReason.USER)] == [run_id]
    state = sr.respond(run_id, {"text": "yes"})
    assert state.status is RunStatus.COMPLETED and state.output == {"a": {"text": "yes"}}
    assert sr.get_ledger(run_id)[-1]["idempotency_key"] == "system:terminal_status:completed"
    with pytest.raises(ValueError):
        sr.respond(run_id, {})


def test_due_timers_are_driven_without_host_code():
    sr = create_scheduled_runtime(poll_interval_s=0.05)
    try:
        run_id = sr.start(workflow=timer_flow(0.2))
        assert wait_for(lambda: sr.get_state(run_id).status is RunStatus.COMPLETED)
        assert sr.stats.runs_resumed >= 1 and sr.stats.poll_cycles >= 1
    finally:
        sr.stop()


def test_event_emitted_inside_a_workflow_wakes_a_listener_that_the_scheduler_drives():
    listener = WorkflowSpec(workflow_id="listener", entry_node="wait", nodes={
        "wait": lambda run, ctx: StepPlan(node_id="wait", effect=Effect(
            EffectType.WAIT_EVENT, {"name": "ping", "scope": "global"}, "evt"), next_node="after"),
        "after": lambda run, ctx: StepPlan(node_id="after", next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"got": run.vars["evt"]["payload"]}),
    })
    emitter = WorkflowSpec(workflow_id="emitter", entry_node="emit", nodes={
        "emit": lambda run, ctx: StepPlan(node_id="emit", effect=Effect(
            EffectType.EMIT_EVENT, {"name": "ping", "scope": "global", "payload": {"n": 7}}), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })
    sr = create_scheduled_runtime(workflows=[listener, emitter], poll_interval_s=5.0)  # wake-ups, not polling
    try:
        lid = sr.start(workflow=listener)
        assert wait_for(lambda: sr.get_state(lid).status is RunStatus.WAITING)
        eid = sr.start(workflow=emitter)
        assert wait_for(lambda: sr.get_state(lid).status is RunStatus.COMPLETED, timeout=10)
        assert sr.get_state(lid).output == {"got": {"n": 7}}
        assert sr.get_state(eid).status is RunStatus.COMPLETED
    finally:
        sr.stop()


def test_async_child_is_driven_and_its_parent_woken_without_host_code():
    child = WorkflowSpec(workflow_id="child", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"answer": 42}),
    })
    parent = WorkflowSpec(workflow_id="parent", entry_node="spawn", nodes={
        "spawn": lambda run, ctx: StepPlan(node_id="spawn", effect=Effect(
            EffectType.START_SUBWORKFLOW, {"workflow_id": "child", "async": True, "wait": True}, "sub"),
            next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"sub": run.vars["sub"]}),
    })
    sr = create_scheduled_runtime(workflows=[child, parent], poll_interval_s=0.05)
    try:
        pid = sr.start(workflow=parent)
        assert wait_for(lambda: sr.get_state(pid).status is RunStatus.COMPLETED)
        out = sr.get_state(pid).output["sub"]
        assert out["output"] == {"answer": 42}
        assert sr.get_state(out["sub_run_id"]).parent_run_id == pid
    finally:
        sr.stop()


def test_worker_pool_runs_different_runs_concurrently_but_never_one_run_twice():
    active = {}
    lock = threading.Lock()
    overlaps, max_parallel = [], [0]

    def slow(run, ctx):
        with lock:
            if active.get(run.run_id):
                overlaps.append(run.run_id)
            active[run.run_id] = True
            max_parallel[0] = max(max_parallel[0], sum(1 for v in active.values() if v))
        time.sleep(0.03)
        with lock:
            active[run.run_id] = False
        n = run.vars.get("n", 0)
        run.vars["n"] = n + 1
        return StepPlan(node_id="slow", next_node="slow") if n < 4 else StepPlan(node_id="slow", complete_output={})

    flow = WorkflowSpec(workflow_id="slow", entry_node="slow", nodes={"slow": slow})
    sr = create_scheduled_runtime(workflows=[flow], poll_interval_s=0.02, workers=4)
    try:
        ids = [sr.start(workflow=flow) for _ in range(8)]
        assert wait_for(lambda: all(sr.get_state(i).status is RunStatus.COMPLETED for i in ids), timeout=30)
    finally:
        sr.stop()
    assert overlaps == []
    assert max_parallel[0] > 1


def test_stop_finishes_the_step_in_flight_and_leaves_the_run_resumable(tmp_path):
    steps = []

    def node(run, ctx):
        time.sleep(0.02)
        steps.append(run.vars.get("n", 0))
        run.vars["n"] = run.vars.get("n", 0) + 1
        if run.vars["n"] >= 60:
            return StepPlan(node_id="loop", complete_output={"n": run.vars["n"]})
        return StepPlan(node_id="loop", next_node="loop")

    flow = WorkflowSpec(workflow_id="loop", entry_node="loop", nodes={"loop": node})
    url = f"lmdb://{tmp_path}/db"
    rt = Runtime.from_config({"store": url})
    reg = WorkflowRegistry()
    reg.register(flow)
    sched = Scheduler(runtime=rt, registry=reg, poll_interval_s=0.02, workers=1)
    run_id = rt.start(workflow=flow)
    sched.start()
    assert wait_for(lambda: len(steps) >= 5)
    sched.stop()
    stopped = rt.get_state(run_id)
    assert stopped.status is RunStatus.RUNNING and 5 <= stopped.vars["n"] < 60
    assert stopped.vars["n"] == len(steps)  # every executed step was committed, none half-done
    time.sleep(0.1)
    assert rt.get_state(run_id).revision == stopped.revision  # nothing runs after stop()
    rt.close()

    rt2 = Runtime.from_config({"store": url})
    sched2 = Scheduler(runtime=rt2, registry=reg, poll_interval_s=0.02)
    sched2.start()
    try:
        assert wait_for(lambda: rt2.get_state(run_id).status is RunStatus.COMPLETED, timeout=30)
        assert rt2.get_state(run_id).output == {"n": 60}
    finally:
        sched2.stop()
        rt2.close()


def test_a_run_another_process_drives_is_left_alone_without_spinning(tmp_path):
    """The run's lock (RunLocks) is held elsewhere -- here by another thread, as another process would: the
    scheduler's poll takes no step, returns at once, and drives the run once the lock is free."""
    steps = []

    def node(run, ctx):
        steps.append(1)
        return StepPlan(node_id="only", complete_output={"ok": True})

    flow = WorkflowSpec(workflow_id="one", entry_node="only", nodes={"only": node})
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    reg = WorkflowRegistry()
    reg.register(flow)
    run_id = rt.start(workflow=flow)
    held, release = threading.Event(), threading.Event()

    def other_driver():
        assert rt.run_store.backend.run_locks.acquire(run_id)
        held.set()
        release.wait(10)
        rt.run_store.backend.run_locks.release(run_id)

    t = threading.Thread(target=other_driver)
    t.start()
    assert held.wait(5)
    sched = Scheduler(runtime=rt, registry=reg, poll_interval_s=0.02, workers=1)
    t0 = time.monotonic()
    assert sched.poll_once() == 1
    assert time.monotonic() - t0 < 1.0 and steps == []
    assert rt.tick(workflow=flow, run_id=run_id).status is RunStatus.RUNNING  # tick leaves it alone too
    release.set()
    t.join()
    sched.poll_once()
    assert steps == [1] and rt.get_state(run_id).status is RunStatus.COMPLETED
    rt.close()


def test_reference_scheduler_api_details():
    b = MemoryBackend()
    rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store)
    reg = WorkflowRegistry()
    flow = timer_flow(0.0)
    reg.register(flow)
    failed = []
    sched = Scheduler(runtime=rt, registry=reg, on_run_failed=lambda rid, exc: failed.append(rid))
    run_id = rt.start(workflow=flow)
    assert sched.poll_once() == 1
    assert rt.get_state(run_id).status is RunStatus.COMPLETED
    sched.start()
    with pytest.raises(RuntimeError, match="already running"):
        sched.start()
    sched.stop()
    sched.stop()  # no-op when stopped

    orphan = rt.start(workflow=WorkflowSpec(workflow_id="unregistered", entry_node="a",
                                            nodes={"a": lambda r, c: StepPlan(node_id="a", complete_output={})}))
    sched.poll_once()
    assert failed == [orphan] and sched.stats.runs_failed == 1 and "unregistered" in sched.stats.errors[-1]
    sched.poll_once()
    assert failed == [orphan]  # not retried until the run changes

    class NotQueryable:
        def save(self, run): ...
        def load(self, run_id): ...

    with pytest.raises(TypeError):
        Scheduler(runtime=Runtime(run_store=NotQueryable(), ledger_store=b.ledger_store), registry=reg)


def test_external_emit_event_and_cancel_with_children():
    listener = WorkflowSpec(workflow_id="l", entry_node="w", nodes={
        "w": lambda run, ctx: StepPlan(node_id="w", effect=Effect(
            EffectType.WAIT_EVENT, {"name": "go", "session_id": "s9"}, "e"), next_node="d"),
        "d": lambda run, ctx: StepPlan(node_id="d", complete_output={"e": run.vars["e"]["emitter"]}),
    })
    sr = create_scheduled_runtime(workflows=[listener], auto_start=False)
    run_id, _ = sr.run(listener)
    woken = sr.scheduler.emit_event(name="go", payload={"v": 1}, session_id="s9")
    assert [s.run_id for s in woken] == [run_id]
    assert sr.get_state(run_id).output == {"e": {"source": "external"}}
    with pytest.raises(ValueError):
        sr.scheduler.emit_event(name=" ", session_id="s9")

    parent_flow = WorkflowSpec(workflow_id="p", entry_node="s", nodes={
        "s": lambda run, ctx: StepPlan(node_id="s", effect=Effect(
            EffectType.START_SUBWORKFLOW, {"workflow_id": "l", "async": True, "wait": True}, "sub"),
            next_node="d"),
        "d": lambda run, ctx: StepPlan(node_id="d", complete_output={}),
    })
    pid, state = sr.run(parent_flow)
    child_id = state.waiting.details["sub_run_id"]
    cancelled = sr.cancel_with_children(pid, reason="stop")
    assert {s.run_id for s in cancelled} == {pid, child_id}
    assert all(s.status is RunStatus.CANCELLED for s in cancelled)


RESTART_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from abstractruntime import Runtime, WorkflowRegistry
    from abstractruntime.scheduler import Scheduler
    from sched_flows import ALL, TIMER, EVENT, USER
    rt = Runtime.from_config({"store": "lmdb://" + sys.argv[1] + "?sync=false"})
    reg = WorkflowRegistry()
    for wf in ALL:
        reg.register(wf)
    flows = [TIMER, EVENT, USER]
    for i in range(int(sys.argv[3])):
        wf = flows[i % 3]
        rt.start(workflow=wf, vars={"kind": wf.workflow_id, "delay": 1.5})
    sched = Scheduler(runtime=rt, registry=reg, poll_interval_s=0.05, workers=4)
    sched.start()
    print("started", flush=True)
    time.sleep(600)
    """
)


def test_restart_after_sigkill_every_parked_run_completes_exactly_once(tmp_path):
    sys.path.insert(0, SUPPORT)
    from sched_flows import ALL

    n = 999
    proc = subprocess.Popen([sys.executable, "-c", RESTART_CHILD, str(tmp_path / "db"), SUPPORT, str(n)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.6)  # the scheduler is busy parking runs (and none of the timers is due yet)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false"})
    reg = WorkflowRegistry()
    for wf in ALL:
        reg.register(wf)
    sched = Scheduler(runtime=rt, registry=reg, poll_interval_s=0.05, workers=4)
    sched.start()
    try:
        ids = [r["run_id"] for r in rt.run_store.list_run_index(limit=10 * n)]
        assert len(ids) == n
        # runs the killed process had not ticked yet are RUNNING: the new scheduler parks them too
        assert wait_for(lambda: len(rt.run_store.list_runs(status=RunStatus.RUNNING, limit=n)) == 0, timeout=60)
        sched.emit_event(name="go", scope="global", payload={"ok": True}, max_steps=0)
        for run in rt.run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER, limit=n):
            rt.resume(workflow=reg.get_or_raise(run.workflow_id), run_id=run.run_id,
                      wait_key=run.waiting.wait_key, payload={"text": "yes"}, max_steps=0)
        assert wait_for(lambda: len(rt.run_store.list_runs(status=RunStatus.COMPLETED, limit=10 * n)) == n,
                        timeout=90)
    finally:
        sched.stop()
    for run_id in ids:
        rows = rt.get_ledger(run_id)
        statuses = [(r["node_id"], r["status"], (r["effect"] or {}).get("type")) for r in rows]
        assert statuses.count(("done", "completed", None)) == 1, statuses  # completed exactly once
        assert sum(1 for r in rows if r["idempotency_key"] == "system:terminal_status:completed") == 1
        started = [r["step_id"] for r in rows if r["status"] == "started"]
        assert len(started) == len(set(started)) == 1, statuses  # the wait step recorded once
    rt.close()


def test_a_parent_whose_wake_up_was_missed_is_reached_however_many_parents_wait_for_running_children():
    """A waiting parent is polled in turn with the others: with more parents waiting for children still running than
    one poll takes (here 8: one worker), the oldest one -- whose child finished while no driver was attached, so its
    wake-up was missed -- used to be left out of every poll (the store lists the newest first)."""
    sys.path.insert(0, SUPPORT)
    from sched_flows import QUICK as quick, parent_of

    asker = ask_flow("asker")
    ready_parent, waiting_parent = parent_of("quick"), parent_of("asker")
    registry = WorkflowRegistry()
    for spec in (quick, asker, ready_parent, waiting_parent):
        registry.register(spec)
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, workflow_registry=registry)
    missed = rt.start(workflow=ready_parent)
    state = rt.tick(workflow=ready_parent, run_id=missed)
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.SUBWORKFLOW
    child = state.waiting.details["sub_run_id"]
    assert rt.tick(workflow=quick, run_id=child).status is RunStatus.COMPLETED  # no driver: the parent stays waiting
    assert rt.get_state(missed).status is RunStatus.WAITING
    others = []
    for _ in range(12):
        time.sleep(0.002)  # newer than the missed parent
        run_id = rt.start(workflow=waiting_parent)
        state = rt.tick(workflow=waiting_parent, run_id=run_id)
        rt.tick(workflow=asker, run_id=state.waiting.details["sub_run_id"])  # the child waits for a person
        others.append(run_id)
    scheduler = Scheduler(runtime=rt, registry=registry, poll_interval_s=0.02, workers=1)
    scheduler.start()
    try:
        assert wait_for(lambda: rt.get_state(missed).status is RunStatus.COMPLETED, timeout=10)
        assert rt.get_state(missed).output["sub"]["output"] == {"answer": 42}
        assert all(rt.get_state(r).status is RunStatus.WAITING for r in others)
    finally:
        scheduler.stop()
