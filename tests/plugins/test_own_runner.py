"""Hosts with their own runner keep 0.4.2's semantics: a bare ``Runtime`` drives no run its caller did not name.
Automatic driving (waking the parent of a finished child, ticking a woken listener) is a driver's job: the
scheduler, the PostgreSQL worker, or ``drive_parents``. Host calls for a transition a driver already made return
the current state."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime.scheduler import Scheduler, create_scheduled_runtime
from abstractruntime_pluginkit import WorkflowRegistry, is_driven

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for postgres_support
from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)


def _child() -> WorkflowSpec:
    return WorkflowSpec(workflow_id="child", entry_node="work", nodes={
        "work": lambda run, ctx: StepPlan(node_id="work", effect=Effect(EffectType.ANSWER_USER, {"message": "w"}),
                                          next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"answer": 42}),
    })


def _parent() -> WorkflowSpec:
    def call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW,
                                                      {"workflow_id": "child", "async": True, "wait": True}, "sub"),
                        next_node="end")

    return WorkflowSpec(workflow_id="parent", entry_node="call", nodes={
        "call": call, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={"got": run.vars["sub"]})})


def _registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()
    reg.register(_parent())
    reg.register(_child())
    return reg


STORES = ["memory", "lmdb", "sqlite", "jsonfiles", "postgres"]


@pytest.fixture(params=STORES)
def store_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("pg_dsn")
    return {"memory": "memory://", "lmdb": f"lmdb://{tmp_path}/lmdb", "sqlite": f"sqlite://{tmp_path}/db.sqlite",
            "jsonfiles": f"jsonfiles://{tmp_path}/json"}[request.param]


def test_a_0_4_2_host_loop_sees_exactly_the_transitions_it_makes(store_url):
    """Tick the child to completion, resume the parent with max_steps=0, find it RUNNING, tick it itself."""
    parent, child = _parent(), _child()
    with Runtime.from_config({"store": store_url}, workflow_registry=_registry()) as rt:
        assert not is_driven(rt)
        pid = rt.start(workflow=parent)
        waiting = rt.tick(workflow=parent, run_id=pid)
        assert waiting.status is RunStatus.WAITING and waiting.waiting.reason is WaitReason.SUBWORKFLOW
        cid = waiting.waiting.details["sub_run_id"]

        done = rt.tick(workflow=child, run_id=cid)
        assert done.status is RunStatus.COMPLETED
        assert rt.get_state(pid).status is RunStatus.WAITING  # the child's commit did not touch its parent

        resumed = rt.resume(workflow=parent, run_id=pid, wait_key=f"subworkflow:{cid}",
                            payload={"sub_run_id": cid, "output": done.output}, max_steps=0)
        assert resumed.status is RunStatus.RUNNING and resumed.current_node == "end"
        assert rt.get_state(pid).status is RunStatus.RUNNING  # still the host's to tick

        finished = rt.tick(workflow=parent, run_id=pid)
        assert finished.status is RunStatus.COMPLETED
        assert finished.output == {"got": {"sub_run_id": cid, "output": {"answer": 42}}}


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_under_the_scheduler_the_same_workflow_completes_without_host_code():
    with create_scheduled_runtime(workflows=[_parent(), _child()], store="memory://", poll_interval_s=0.05) as sr:
        assert is_driven(sr.runtime)
        pid = sr.start(workflow=_parent())
        _wait_for(lambda: sr.get_state(pid).status is RunStatus.COMPLETED)
        child = sr.runtime.run_store.list_children(parent_run_id=pid)[0]
        assert sr.get_state(pid).output == {"got": {"sub_run_id": child.run_id, "output": {"answer": 42}}}
        # the host still calls what 0.4.2 made it call: harmless, it gets the current state
        again = sr.resume_subworkflow_parent(child_run_id=child.run_id, child_output=child.output)
        assert again is not None and again.status is RunStatus.COMPLETED and again.run_id == pid
        assert sr.runtime.resume(workflow=_parent(), run_id=pid, wait_key=f"subworkflow:{child.run_id}",
                                 payload={}, max_steps=0).status is RunStatus.COMPLETED


def test_under_the_postgres_worker_the_same_workflow_completes_without_host_code(pg_dsn):
    from abstractruntime_postgres import PostgresWorker

    with Runtime.from_config({"store": pg_dsn}, workflow_registry=_registry()) as rt:
        pid = rt.start(workflow=_parent())
        worker = PostgresWorker(rt, poll_interval_s=0.05, listen=False)
        assert is_driven(rt)
        worker.start()
        try:
            _wait_for(lambda: rt.get_state(pid).status is RunStatus.COMPLETED)
        finally:
            worker.stop()
        assert rt.get_state(pid).output["got"]["output"] == {"answer": 42}
        assert worker.stats.errors == []


def _listener() -> WorkflowSpec:
    return WorkflowSpec(workflow_id="listener", entry_node="wait", nodes={
        "wait": lambda run, ctx: StepPlan(node_id="wait", effect=Effect(
            EffectType.WAIT_EVENT, {"name": "go", "scope": "global"}, "event"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"heard": run.vars["event"]["name"]}),
    })


def _emitter() -> WorkflowSpec:
    return WorkflowSpec(workflow_id="emitter", entry_node="emit", nodes={
        "emit": lambda run, ctx: StepPlan(node_id="emit", effect=Effect(
            EffectType.EMIT_EVENT, {"name": "go", "scope": "global", "payload": {"n": 1}}), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"emitted": True}),
    })


def test_an_event_under_a_bare_runtime_leaves_the_listener_to_its_host():
    reg = WorkflowRegistry()
    reg.register(_listener())
    reg.register(_emitter())
    rt = Runtime.from_config({"store": "memory://"}, workflow_registry=reg)
    lid = rt.start(workflow=_listener())
    assert rt.tick(workflow=_listener(), run_id=lid).status is RunStatus.WAITING
    eid = rt.start(workflow=_emitter())
    assert rt.tick(workflow=_emitter(), run_id=eid).status is RunStatus.COMPLETED
    listener = rt.get_state(lid)
    assert listener.status is RunStatus.RUNNING and listener.current_node == "done"  # resumed, as 0.4.2 does
    time.sleep(0.2)
    assert rt.get_state(lid).revision == listener.revision  # and nobody drives it: that is the host's tick
    assert rt.tick(workflow=_listener(), run_id=lid).output == {"heard": "go"}


def test_under_the_scheduler_the_listener_is_driven():
    with create_scheduled_runtime(workflows=[_listener(), _emitter()], store="memory://",
                                  poll_interval_s=0.05) as sr:
        lid = sr.start(workflow=_listener())
        _wait_for(lambda: sr.get_state(lid).status is RunStatus.WAITING)
        sr.start(workflow=_emitter())
        _wait_for(lambda: sr.get_state(lid).status is RunStatus.COMPLETED)
        assert sr.get_state(lid).output == {"heard": "go"}


def test_respond_again_after_the_scheduler_continued_the_run_returns_its_state():
    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="done")

    flow = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={
        "ask": ask, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"a": run.vars["a"]})})
    with create_scheduled_runtime(workflows=[flow], store="memory://", poll_interval_s=0.05) as sr:
        rid = sr.start(workflow=flow)
        _wait_for(lambda: sr.get_state(rid).status is RunStatus.WAITING)
        sr.respond(rid, {"text": "yes"})
        _wait_for(lambda: sr.get_state(rid).status is RunStatus.COMPLETED)
        rows = len(sr.get_ledger(rid))
        assert sr.respond(rid, {"text": "yes"}).status is RunStatus.COMPLETED  # a retried request: harmless
        assert len(sr.get_ledger(rid)) == rows
        from abstractruntime.errors import RunNotWaitingError

        with pytest.raises(RunNotWaitingError):  # a different answer to a run that no longer waits is an error
            sr.respond(rid, {"text": "no"})


def test_drive_parents_turns_automatic_wake_up_on_for_a_bare_runtime():
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"subworkflows": {"drive_parents": True}}},
                             workflow_registry=_registry())
    pid = rt.start(workflow=_parent())
    cid = rt.tick(workflow=_parent(), run_id=pid).waiting.details["sub_run_id"]
    rt.tick(workflow=_child(), run_id=cid)
    assert rt.get_state(pid).status is RunStatus.COMPLETED
    scheduler = Scheduler(runtime=Runtime.from_config({"store": "memory://"}), registry=_registry())
    assert is_driven(scheduler.runtime)  # a scheduler drives its runtime from the moment it is attached


def test_a_driver_finishes_the_parent_whose_child_a_bare_runtime_completed(tmp_path):
    """Nothing is lost when the process that commits the child is not the driver: the scheduler finds the waiting
    parent through the store's index and its tick delivers the child's result."""
    url = f"sqlite://{tmp_path}/db.sqlite"
    with Runtime.from_config({"store": url}, workflow_registry=_registry()) as host:
        pid = host.start(workflow=_parent())
        cid = host.tick(workflow=_parent(), run_id=pid).waiting.details["sub_run_id"]
        assert host.tick(workflow=_child(), run_id=cid).status is RunStatus.COMPLETED
        assert host.get_state(pid).status is RunStatus.WAITING
    with create_scheduled_runtime(workflows=[_parent(), _child()], store=url, poll_interval_s=0.05) as sr:
        _wait_for(lambda: sr.get_state(pid).status is RunStatus.COMPLETED)
        assert sr.get_state(pid).output == {"got": {"sub_run_id": cid, "output": {"answer": 42}}}
