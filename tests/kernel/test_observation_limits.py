"""Observation and limits API of the kernel: ledger subscriptions (§3.2, §10.3), node traces (§3.7), limits
(§9, §2.2 RuntimeConfig / LimitWarning), ActorFingerprint, WorkflowRegistry (§14.1), and resume without a
result_key (§17 #14). Real in-memory and LMDB stores; no mocks."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Dict, List

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.identity import ActorFingerprint
from abstractruntime.models import RuntimeConfig
from abstractruntime_observation import LimitWarning
from abstractruntime_pluginkit.registry import WorkflowRegistry
from abstractruntime_inmemory.store import MemoryBackend

WAIT_FIELDS = {"reason", "wait_key", "until", "resume_to_node", "result_key", "prompt", "choices",
               "allow_free_text", "details"}
STEP_KEYS = {"ts", "node_id", "status", "idempotency_key", "reused_prior_result", "effect", "duration_ms"}


def chatty_wf(workflow_id: str = "chatty") -> WorkflowSpec:
    """say (ANSWER_USER, completed) -> hop (pure transition) -> ask (ASK_USER, waits) -> done (complete_output)."""

    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": "hi"}, "said"),
                        next_node="hop")

    def hop(run, ctx):
        return StepPlan(node_id="hop", next_node="ask")

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "name?"}, "reply"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"reply": run.vars.get("reply")})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="say",
                        nodes={"say": say, "hop": hop, "ask": ask, "done": done})


def simple_wf(workflow_id: str = "simple") -> WorkflowSpec:
    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": "hello"}), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"ok": True})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="say", nodes={"say": say, "done": done})


@pytest.fixture(params=["memory", "lmdb"])
def any_runtime(request, tmp_path):
    if request.param == "memory":
        b = MemoryBackend()
        yield Runtime(run_store=b.run_store, ledger_store=b.ledger_store)
    else:
        rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, workflow_registry=WorkflowRegistry())
        try:
            yield rt
        finally:
            rt.close()


# --- subscribe_ledger -------------------------------------------------------------------------------------------

def test_subscriber_receives_every_committed_record_in_order(any_runtime):
    rt = any_runtime
    spec = chatty_wf()
    got: List[Dict[str, Any]] = []
    committed_when_seen: List[bool] = []

    def callback(record):
        got.append(record)
        committed_when_seen.append(
            any(r["step_id"] == record["step_id"] and r["status"] == record["status"]
                for r in rt.get_ledger(record["run_id"])))

    rt.subscribe_ledger(callback)
    rid = rt.start(workflow=spec)
    rt.tick(workflow=spec, run_id=rid)
    waiting = rt.get_state(rid)
    rt.resume(workflow=spec, run_id=rid, wait_key=waiting.waiting.wait_key, payload={"text": "Ada"})

    ledger = rt.get_ledger(rid)
    assert rt.get_state(rid).status is RunStatus.COMPLETED
    assert len(ledger) >= 5  # say, ask, resume, completion and terminal-status rows at least
    assert got == ledger
    assert all(isinstance(r, dict) for r in got)
    assert all(committed_when_seen)


def test_subscription_filtered_by_run_id(any_runtime):
    rt = any_runtime
    spec = simple_wf()
    a = rt.start(workflow=spec)
    b = rt.start(workflow=spec)
    only_a: List[dict] = []
    everything: List[dict] = []
    rt.subscribe_ledger(only_a.append, run_id=a)
    rt.subscribe_ledger(everything.append)

    rt.tick(workflow=spec, run_id=b)
    rt.tick(workflow=spec, run_id=a)

    assert only_a == rt.get_ledger(a)
    assert {r["run_id"] for r in only_a} == {a}
    assert everything == rt.get_ledger(b) + rt.get_ledger(a)


def test_unsubscribe_stops_delivery():
    b = MemoryBackend()
    rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store)
    spec = simple_wf()
    got: List[dict] = []
    unsubscribe = rt.subscribe_ledger(got.append)
    first = rt.start(workflow=spec)
    rt.tick(workflow=spec, run_id=first)
    seen = len(got)
    assert seen > 0

    unsubscribe()
    second = rt.start(workflow=spec)
    rt.tick(workflow=spec, run_id=second)

    assert len(got) == seen
    assert rt.get_ledger(second)  # records were still written
    unsubscribe()  # idempotent


def test_raising_subscriber_does_not_break_the_run(any_runtime):
    rt = any_runtime
    spec = chatty_wf()
    calls: List[str] = []
    good: List[dict] = []

    def bad(record):
        calls.append(record["step_id"])
        raise RuntimeError("subscriber bug")

    rt.subscribe_ledger(bad)
    rt.subscribe_ledger(good.append)
    rid = rt.start(workflow=spec)
    state = rt.tick(workflow=spec, run_id=rid)
    assert state.status is RunStatus.WAITING
    state = rt.resume(workflow=spec, run_id=rid, wait_key=state.waiting.wait_key, payload={"text": "x"})

    assert state.status is RunStatus.COMPLETED
    assert good == rt.get_ledger(rid)
    assert len(calls) == len(good)


# --- node traces ------------------------------------------------------------------------------------------------

def test_node_trace_shapes_for_completed_and_waiting_steps(runtime):
    spec = chatty_wf()
    rid = runtime.start(workflow=spec)
    state = runtime.tick(workflow=spec, run_id=rid)
    runtime.resume(workflow=spec, run_id=rid, wait_key=state.waiting.wait_key, payload={"text": "Ada"})

    traces = runtime.get_node_traces(rid)

    # Only effect steps: not the pure transition "hop", not the complete_output node "done", not resume rows.
    assert set(traces) == {"say", "ask"}
    for node_id, trace in traces.items():
        assert set(trace) == {"node_id", "steps", "updated_at"}
        assert trace["node_id"] == node_id
        assert len(trace["steps"]) == 1
        assert trace["updated_at"] == trace["steps"][-1]["ts"]
    say = traces["say"]["steps"][0]
    assert set(say) == STEP_KEYS | {"result"}
    assert say["node_id"] == "say"
    assert say["status"] == "completed"
    assert re.fullmatch(r"[0-9a-f]{32}", say["idempotency_key"])
    assert say["reused_prior_result"] is False
    assert say["effect"] == {"type": "answer_user", "payload": {"message": "hi"}, "result_key": "said"}
    assert isinstance(say["duration_ms"], float) and say["duration_ms"] >= 0
    assert isinstance(say["ts"], str)
    assert say["result"] == {"message": "hi", "level": "message"}

    ask = traces["ask"]["steps"][0]
    assert set(ask) == STEP_KEYS | {"wait"}
    assert ask["status"] == "waiting"
    assert ask["effect"]["type"] == "ask_user"
    assert set(ask["wait"]) == WAIT_FIELDS
    assert ask["wait"]["reason"] == "user"
    assert ask["wait"]["wait_key"] == state.waiting.wait_key
    assert ask["wait"]["resume_to_node"] == "done"
    assert ask["wait"]["result_key"] == "reply"
    assert ask["wait"]["prompt"] == "name?"

    assert runtime.get_node_trace(rid, "say") == traces["say"]
    assert runtime.get_node_trace(rid, "hop") == {"node_id": "hop", "steps": []}
    assert runtime.get_node_trace(rid, "nope") == {"node_id": "nope", "steps": []}


def test_node_trace_for_failed_step(runtime):
    spec = WorkflowSpec(workflow_id="bad", entry_node="bad", nodes={
        "bad": lambda run, ctx: StepPlan(node_id="bad", effect=Effect(EffectType.ANSWER_USER, {}), next_node="x")})
    rid = runtime.start(workflow=spec)
    assert runtime.tick(workflow=spec, run_id=rid).status is RunStatus.FAILED

    [step] = runtime.get_node_trace(rid, "bad")["steps"]

    assert set(step) == STEP_KEYS | {"error"}
    assert step["status"] == "failed"
    assert "answer_user requires payload.message" in step["error"]


def test_node_traces_keep_newest_100_per_node(runtime):
    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": f"m{run.vars['i']}"}),
                        next_node="inc")

    def inc(run, ctx):
        run.vars["i"] += 1
        return StepPlan(node_id="inc", next_node="say" if run.vars["i"] < 105 else "done")

    spec = WorkflowSpec(workflow_id="loop", entry_node="say", nodes={
        "say": say, "inc": inc, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    rid = runtime.start(workflow=spec, vars={"i": 0})
    assert runtime.tick(workflow=spec, run_id=rid, max_steps=1000).status is RunStatus.COMPLETED

    steps = runtime.get_node_trace(rid, "say")["steps"]

    assert len(steps) == 100
    assert [s["effect"]["payload"]["message"] for s in steps] == [f"m{i}" for i in range(5, 105)]
    assert len({s["idempotency_key"] for s in steps}) == 100  # each loop iteration is its own step


def test_node_traces_are_copies_and_unknown_run_raises(runtime):
    spec = simple_wf()
    rid = runtime.start(workflow=spec)
    runtime.tick(workflow=spec, run_id=rid)
    traces = runtime.get_node_traces(rid)
    traces["say"]["steps"].clear()
    assert len(runtime.get_node_traces(rid)["say"]["steps"]) == 1
    with pytest.raises(KeyError):
        runtime.get_node_traces("no-such-run")
    with pytest.raises(KeyError):
        runtime.get_node_trace("no-such-run", "say")


# --- limits -----------------------------------------------------------------------------------------------------

DEFAULT_STATUS = {
    "iterations": {"current": 0, "max": 25, "pct": 0.0, "warning": False},
    "tokens": {"estimated_used": 0, "max": 32768, "max_input_tokens": None, "max_output_tokens": None,
               "pct": 0.0, "warning": False},
    "history": {"max_messages": -1},
}


def fresh_run(runtime: Runtime, vars=None) -> str:
    return runtime.start(workflow=simple_wf(), vars=vars)


def test_limit_status_default_shape(runtime):
    assert runtime.get_limit_status(fresh_run(runtime)) == DEFAULT_STATUS


def test_limit_status_of_run_without_limits_falls_back_to_defaults(runtime):
    rid = fresh_run(runtime, vars={"_limits": None})
    assert runtime.get_state(rid).vars["_limits"] is None
    assert runtime.get_limit_status(rid) == DEFAULT_STATUS


def test_limit_status_pct_and_warning_math(runtime):
    rid = fresh_run(runtime)
    runtime.update_limits(rid, {"current_iteration": 20, "max_iterations": 25, "estimated_tokens_used": 900,
                                "max_tokens": 1000, "max_output_tokens": 100, "max_input_tokens": 500,
                                "max_history_messages": 12})

    status = runtime.get_limit_status(rid)

    assert status == {
        "iterations": {"current": 20, "max": 25, "pct": 80.0, "warning": True},
        "tokens": {"estimated_used": 900, "max": 1000, "max_input_tokens": 500, "max_output_tokens": 100,
                   "pct": 90.0, "warning": True},
        "history": {"max_messages": 12},
    }
    runtime.update_limits(rid, {"current_iteration": 1, "max_iterations": 3, "estimated_tokens_used": 0})
    status = runtime.get_limit_status(rid)
    assert status["iterations"]["pct"] == 33.3
    assert status["iterations"]["warning"] is False
    runtime.update_limits(rid, {"max_iterations": 0})
    assert runtime.get_limit_status(rid)["iterations"]["pct"] == 0.0


def warning_tuples(warnings: List[LimitWarning]):
    return [(w.limit_type, w.status, w.current, w.maximum, w.pct) for w in warnings]


@pytest.mark.parametrize("updates, expected", [
    ({"current_iteration": 19, "estimated_tokens_used": 799, "max_tokens": 1000}, []),
    ({"current_iteration": 20, "estimated_tokens_used": 800, "max_tokens": 1000},
     [("iterations", "warning", 20, 25, 80.0), ("tokens", "warning", 800, 1000, 80.0)]),
    ({"current_iteration": 25, "estimated_tokens_used": 1000, "max_tokens": 1000},
     [("iterations", "exceeded", 25, 25, 100.0), ("tokens", "exceeded", 1000, 1000, 100.0)]),
    ({"current_iteration": 30, "estimated_tokens_used": 1200, "max_tokens": 1000},
     [("iterations", "exceeded", 30, 25, 120.0), ("tokens", "exceeded", 1200, 1000, 120.0)]),
    ({"current_iteration": 13, "warn_iterations_pct": 50}, [("iterations", "warning", 13, 25, 52.0)]),
])
def test_check_limits(runtime, updates, expected):
    rid = fresh_run(runtime)
    runtime.update_limits(rid, updates)
    assert warning_tuples(runtime.check_limits(runtime.get_state(rid))) == expected


def test_token_warning_needs_tokens_used(runtime):
    rid = fresh_run(runtime)
    runtime.update_limits(rid, {"warn_tokens_pct": 0, "estimated_tokens_used": 0})
    assert runtime.get_limit_status(rid)["tokens"]["warning"] is True  # pct 0.0 >= 0
    assert runtime.check_limits(runtime.get_state(rid)) == []


def test_update_limits_persists_only_allowed_keys(runtime, backend):
    rid = fresh_run(runtime)
    runtime.update_limits(rid, {"max_iterations": 7, "warn_tokens_pct": 60, "bogus": 1, "current_iteration": 3})

    reopened = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store)
    limits = reopened.get_state(rid).vars["_limits"]
    assert limits["max_iterations"] == 7
    assert limits["warn_tokens_pct"] == 60
    assert limits["current_iteration"] == 3
    assert "bogus" not in limits
    assert runtime.get_ledger(rid) == []  # a limits update is not a step


def test_update_limits_creates_limits_when_missing(runtime):
    rid = fresh_run(runtime, vars={"_limits": None})
    runtime.update_limits(rid, {"max_iterations": 9})
    limits = runtime.get_state(rid).vars["_limits"]
    assert limits == dict(RuntimeConfig().to_limits_dict(), max_iterations=9)


def test_update_limits_is_durable_on_lmdb(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    rt = Runtime.from_config({"store": url})
    try:
        rid = fresh_run(rt)
        rt.update_limits(rid, {"estimated_tokens_used": 4096, "nope": True})
    finally:
        rt.close()
    rt = Runtime.from_config({"store": url})
    try:
        assert rt.get_limit_status(rid)["tokens"]["estimated_used"] == 4096
        assert rt.get_limit_status(rid)["tokens"]["pct"] == 12.5
        assert "nope" not in rt.get_state(rid).vars["_limits"]
    finally:
        rt.close()


def test_limits_methods_on_unknown_run_raise_key_error(runtime):
    with pytest.raises(KeyError):
        runtime.get_limit_status("no-such-run")
    with pytest.raises(KeyError):
        runtime.update_limits("no-such-run", {"max_iterations": 1})


def test_limit_warning_pct_is_computed():
    assert LimitWarning("iterations", "warning", 20, 25).pct == 80.0
    assert LimitWarning("tokens", "warning", 1, 3, pct=99.0).pct == 33.3
    assert LimitWarning("history", "warning", 5, 0, pct=7.5).pct == 7.5


# --- RuntimeConfig.to_limits_dict ---------------------------------------------------------------------------------

def test_runtime_config_default_limits():
    assert RuntimeConfig().to_limits_dict() == {
        "max_iterations": 25, "current_iteration": 0, "max_tokens": 32768, "max_output_tokens": None,
        "max_input_tokens": None, "estimated_tokens_used": 0, "max_history_messages": -1,
        "warn_iterations_pct": 80, "warn_tokens_pct": 80,
    }


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_tokens": 10000, "max_output_tokens": 2000, "max_input_tokens": 9000}, (10000, 2000, 7744)),
    ({"max_tokens": 10000, "max_output_tokens": 2000, "max_input_tokens": 5000}, (10000, 2000, 5000)),
    ({"max_tokens": 10000, "max_output_tokens": 2000, "max_input_tokens": -5}, (10000, 2000, 0)),
    ({"max_tokens": 1000, "max_output_tokens": 900, "max_input_tokens": 500}, (1000, 900, 0)),
    ({"max_tokens": 10000, "max_input_tokens": 50000}, (10000, None, 50000)),  # not clamped: output unknown
    ({"max_output_tokens": 1000, "max_input_tokens": 40000}, (32768, 1000, 31512)),
    ({"model_capabilities": {"max_tokens": 8000, "max_output_tokens": 1000}, "max_input_tokens": 9000},
     (8000, 1000, 6744)),
    ({"max_tokens": 4000, "model_capabilities": {"max_tokens": 8000}}, (4000, None, None)),
])
def test_runtime_config_token_limits_and_clamping(kwargs, expected):
    limits = RuntimeConfig(**kwargs).to_limits_dict()
    assert (limits["max_tokens"], limits["max_output_tokens"], limits["max_input_tokens"]) == expected


def test_runtime_config_limits_are_copied_into_new_runs():
    b = MemoryBackend()
    rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store,
                 config=RuntimeConfig(max_iterations=5, max_tokens=2000, max_output_tokens=500,
                                      max_input_tokens=3000))
    rid = rt.start(workflow=simple_wf())
    status = rt.get_limit_status(rid)
    assert status["iterations"]["max"] == 5
    assert (status["tokens"]["max"], status["tokens"]["max_output_tokens"],
            status["tokens"]["max_input_tokens"]) == (2000, 500, 1244)


# --- ActorFingerprint ---------------------------------------------------------------------------------------------

def test_actor_fingerprint_is_deterministic():
    a = ActorFingerprint.from_metadata(kind="agent", display_name="Bob", metadata={"b": 2, "a": "é"})
    b = ActorFingerprint.from_metadata(kind="agent", display_name="Bob", metadata={"a": "é", "b": 2})

    assert a.actor_id == b.actor_id
    assert re.fullmatch(r"ar_[0-9a-f]{24}", a.actor_id)
    canonical = json.dumps({"kind": "agent", "display_name": "Bob", "metadata": {"a": "é", "b": 2}},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert a.actor_id == "ar_" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
    assert (a.kind, a.display_name, a.metadata) == ("agent", "Bob", {"b": 2, "a": "é"})
    assert a.to_dict() == {"actor_id": a.actor_id, "kind": "agent", "display_name": "Bob",
                           "metadata": {"b": 2, "a": "é"}}


def test_actor_fingerprint_differs_with_inputs():
    base = ActorFingerprint.from_metadata(kind="agent", metadata={"team": "x"})
    ids = {
        base.actor_id,
        ActorFingerprint.from_metadata(kind="agent", metadata={"team": "y"}).actor_id,
        ActorFingerprint.from_metadata(kind="human", metadata={"team": "x"}).actor_id,
        ActorFingerprint.from_metadata(kind="agent", display_name="B", metadata={"team": "x"}).actor_id,
    }
    assert len(ids) == 4
    no_meta = ActorFingerprint.from_metadata(kind="agent")
    assert no_meta.metadata == {}
    assert no_meta.actor_id == ActorFingerprint.from_metadata(kind="agent", metadata={}).actor_id


# --- WorkflowRegistry ---------------------------------------------------------------------------------------------

def test_workflow_registry_api():
    reg = WorkflowRegistry()
    a, b = simple_wf("a"), simple_wf("b")
    assert len(reg) == 0 and reg.get("a") is None and "a" not in reg

    reg.register(b)
    reg.register(a)
    assert reg.list_ids() == ["b", "a"]  # registration order
    assert len(reg) == 2
    assert "a" in reg and "zzz" not in reg
    assert reg.get("a") is a
    assert reg.get_or_raise("b") is b
    with pytest.raises(ValueError):
        reg.register(simple_wf("a"))
    assert reg.get("a") is a
    with pytest.raises(KeyError):
        reg.get_or_raise("zzz")
    with pytest.raises(KeyError):
        reg.unregister("zzz")

    reg.unregister("b")
    assert reg.list_ids() == ["a"] and reg.get("b") is None and len(reg) == 1


# --- resume without result_key (§17 #14) --------------------------------------------------------------------------

def test_resume_without_result_key_keeps_payload_in_temp(runtime):
    def wait(run, ctx):
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k1"}), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"seen": run.vars["_temp"]["resume_payload"]})

    spec = WorkflowSpec(workflow_id="nokey", entry_node="wait", nodes={"wait": wait, "done": done})
    rid = runtime.start(workflow=spec)
    state = runtime.tick(workflow=spec, run_id=rid)
    assert state.waiting.result_key is None

    resumed = runtime.resume(workflow=spec, run_id=rid, wait_key="k1", payload={"k": 1}, max_steps=0)

    assert resumed.status is RunStatus.RUNNING
    assert runtime.get_state(rid).vars["_temp"]["resume_payload"] == {"k": 1}
    final = runtime.tick(workflow=spec, run_id=rid)
    assert final.output == {"seen": {"k": 1}}


def test_current_iteration_counts_every_executed_step(runtime):
    """Reference defect 11: ``_limits.current_iteration`` never moved. Here every executed step (effect step, pure
    transition, completion) increments it; a run whose ``_limits`` is not a dict is left alone."""
    wf = chatty_wf()
    rid = runtime.start(workflow=wf, vars={"_limits": {"max_iterations": 4, "current_iteration": 0}})
    run = runtime.tick(workflow=wf, run_id=rid)
    assert run.status == RunStatus.WAITING
    assert run.vars["_limits"]["current_iteration"] == 3  # say, hop, ask
    run = runtime.resume(workflow=wf, run_id=rid, wait_key=run.waiting.wait_key, payload={"text": "Ada"})
    assert run.status == RunStatus.COMPLETED
    assert runtime.get_state(rid).vars["_limits"]["current_iteration"] == 4
    status = runtime.get_limit_status(rid)["iterations"]
    assert (status["current"], status["pct"], status["warning"]) == (4, 100.0, True)
    assert [w.status for w in runtime.check_limits(runtime.get_state(rid)) if w.limit_type == "iterations"] \
        == ["exceeded"]

    bare = runtime.start(workflow=wf, vars={"_limits": None})
    assert runtime.tick(workflow=wf, run_id=bare).vars["_limits"] is None
