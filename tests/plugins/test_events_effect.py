"""EMIT_EVENT (builtin ``events`` plugin): delivery to WAIT_EVENT listeners through real stores.

Reference §4 (EMIT_EVENT row, event keys) and §17 #12 (resumed listeners are driven, one emit semantics with
wildcards). No mocks: real in-memory and LMDB backends, workflows found through a ``WorkflowRegistry``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Dict, Optional

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime_pluginkit.registry import WorkflowRegistry
from abstractruntime_inmemory.store import MemoryBackend

ENVELOPE_KEYS = {"event_id", "name", "scope", "session_id", "payload", "emitted_at", "emitter"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)


# --- workflows ------------------------------------------------------------------------------------------------

def listener_wf(workflow_id: str = "listener", *, name: str = "go", scope: str = "session",
                session_id: Optional[str] = "s1", result_key: Optional[str] = "evt") -> WorkflowSpec:
    payload: Dict[str, Any] = {"name": name, "scope": scope}
    if session_id is not None:
        payload["session_id"] = session_id

    def wait(run, ctx):
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_EVENT, payload, result_key), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"got": run.vars.get(result_key) if result_key else None})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="wait", nodes={"wait": wait, "done": done})


def emitter_wf(payload: Dict[str, Any], workflow_id: str = "emitter") -> WorkflowSpec:
    def emit(run, ctx):
        return StepPlan(node_id="emit", effect=Effect(EffectType.EMIT_EVENT, payload, "emit"), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"emit": run.vars.get("emit")})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="emit", nodes={"emit": emit, "done": done})


def both_wf(workflow_id: str, event: str, emit_payload: Dict[str, Any]) -> WorkflowSpec:
    """One workflow that either listens (vars.role == "listen") or emits: workflow-scoped events need both."""

    def route(run, ctx):
        return StepPlan(node_id="route", next_node="wait" if run.vars.get("role") == "listen" else "emit")

    def wait(run, ctx):
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_EVENT, {"name": event, "scope": "workflow"},
                                                      "evt"), next_node="done")

    def emit(run, ctx):
        return StepPlan(node_id="emit", effect=Effect(EffectType.EMIT_EVENT, emit_payload, "emit"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"ok": True})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="route",
                        nodes={"route": route, "wait": wait, "emit": emit, "done": done})


def memory_runtime(*specs: WorkflowSpec, registry: bool = True) -> Runtime:
    b = MemoryBackend()
    reg = None
    if registry:
        reg = WorkflowRegistry()
        for spec in specs:
            reg.register(spec)
    return Runtime(run_store=b.run_store, ledger_store=b.ledger_store, workflow_registry=reg)


def start_waiting(rt: Runtime, spec: WorkflowSpec, session_id: Optional[str] = "s1", **kw: Any) -> str:
    run_id = rt.start(workflow=spec, session_id=session_id, **kw)
    state = rt.tick(workflow=spec, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.EVENT
    return run_id


def run_emitter(rt: Runtime, spec: WorkflowSpec, session_id: Optional[str] = "s1"):
    run_id = rt.start(workflow=spec, session_id=session_id)
    return run_id, rt.tick(workflow=spec, run_id=run_id)


# --- delivery -------------------------------------------------------------------------------------------------

def test_emit_delivers_envelope_and_leaves_listener_running_with_default_max_steps():
    listener = listener_wf()
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}})
    rt = memory_runtime(listener, emitter)
    lid = start_waiting(rt, listener)
    assert rt.get_state(lid).waiting.wait_key == "evt:session:s1:go"

    eid, state = run_emitter(rt, emitter)

    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["emit"] == {
        "wait_key": "evt:session:s1:go",
        "name": "go",
        "scope": "session",
        "delivered": 1,
        "delivered_to": [lid],
        "resumed": [{"run_id": lid, "status": "running"}],
    }
    listener_state = rt.get_state(lid)
    # max_steps defaults to 0: the listener is resumed (RUNNING at its continuation) but not driven here.
    assert listener_state.status is RunStatus.RUNNING
    assert listener_state.current_node == "done"
    assert listener_state.waiting is None
    env = listener_state.vars["evt"]
    assert set(env) == ENVELOPE_KEYS
    assert env["name"] == "go"
    assert env["scope"] == "session"
    assert env["session_id"] == "s1"
    assert env["payload"] == {"x": 1}
    assert env["emitter"] == {"run_id": eid, "workflow_id": "emitter", "node_id": "emit"}
    assert isinstance(env["emitted_at"], str)
    datetime.fromisoformat(env["emitted_at"].replace("Z", "+00:00"))
    # The envelope is delivered as the resume payload: the listener's ledger has the resume row.
    resume_rows = [r for r in rt.get_ledger(lid) if (r.get("effect") or {}).get("type") == "resume"]
    assert len(resume_rows) == 1
    assert resume_rows[0]["effect"]["payload"]["wait_key"] == "evt:session:s1:go"
    assert resume_rows[0]["effect"]["payload"]["payload"] == env
    # Whoever drives RUNNING runs (a scheduler, here a tick) finishes it.
    final = rt.tick(workflow=listener, run_id=lid)
    assert final.status is RunStatus.COMPLETED
    assert final.output == {"got": env}


def test_emit_with_max_steps_drives_listener_to_completion():
    listener = listener_wf()
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}, "max_steps": 10})
    rt = memory_runtime(listener, emitter)
    lid = start_waiting(rt, listener)

    _, state = run_emitter(rt, emitter)

    assert state.vars["emit"]["resumed"] == [{"run_id": lid, "status": "completed"}]
    final = rt.get_state(lid)
    assert final.status is RunStatus.COMPLETED
    assert final.output["got"]["payload"] == {"x": 1}


def test_wildcard_listener_in_same_session_receives_and_other_sessions_do_not():
    exact = listener_wf("exact")
    wildcard = listener_wf("wild", name="*")
    other_name = listener_wf("other_name", name="other")
    other_session = listener_wf("other_session", session_id="s2")
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}})
    rt = memory_runtime(exact, wildcard, other_name, other_session, emitter)
    l_exact = start_waiting(rt, exact)
    l_wild = start_waiting(rt, wildcard)
    l_other_name = start_waiting(rt, other_name)
    l_other_session = start_waiting(rt, other_session, session_id="s2")
    assert rt.get_state(l_wild).waiting.wait_key == "evt:session:s1:*"

    _, state = run_emitter(rt, emitter)

    result = state.vars["emit"]
    assert result["delivered"] == 2
    assert sorted(result["delivered_to"]) == sorted([l_exact, l_wild])
    assert sorted(result["resumed"], key=lambda r: r["run_id"]) == sorted(
        [{"run_id": l_exact, "status": "running"}, {"run_id": l_wild, "status": "running"}],
        key=lambda r: r["run_id"])
    assert "available_listeners_in_session" not in result
    wild_env = rt.get_state(l_wild).vars["evt"]
    assert wild_env["name"] == "go" and wild_env["payload"] == {"x": 1}
    for untouched in (l_other_name, l_other_session):
        st = rt.get_state(untouched)
        assert st.status is RunStatus.WAITING
        assert "evt" not in st.vars


def test_payload_session_id_overrides_emitter_session():
    listener = listener_wf()
    emitter = emitter_wf({"name": "go", "session_id": "s1", "payload": {"x": 1}})
    rt = memory_runtime(listener, emitter)
    lid = start_waiting(rt, listener)

    _, state = run_emitter(rt, emitter, session_id="elsewhere")

    assert state.vars["emit"]["wait_key"] == "evt:session:s1:go"
    assert state.vars["emit"]["delivered_to"] == [lid]
    assert rt.get_state(lid).vars["evt"]["session_id"] == "s1"


def test_paused_listener_is_skipped_and_not_advertised():
    go = listener_wf("go_listener")
    other = listener_wf("other_listener", name="other")
    ping = listener_wf("ping_listener", name="ping")
    foreign = listener_wf("foreign_listener", name="zzz", session_id="s2")
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}})
    rt = memory_runtime(go, other, ping, foreign, emitter)
    paused = start_waiting(rt, go)
    start_waiting(rt, other)
    start_waiting(rt, ping)
    start_waiting(rt, foreign, session_id="s2")
    rt.pause_run(paused)

    _, state = run_emitter(rt, emitter)

    result = state.vars["emit"]
    assert result["delivered"] == 0
    assert result["delivered_to"] == []
    assert result["resumed"] == []
    # Names other unpaused runs of session s1 wait for: not the paused one, not session s2's.
    assert sorted(result["available_listeners_in_session"]) == ["other", "ping"]
    st = rt.get_state(paused)
    assert st.status is RunStatus.WAITING and st.is_paused
    assert "evt" not in st.vars


def test_no_listeners_reports_zero_and_needs_no_registry():
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}})
    rt = memory_runtime(emitter, registry=False)

    _, state = run_emitter(rt, emitter)

    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["emit"] == {
        "wait_key": "evt:session:s1:go", "name": "go", "scope": "session",
        "delivered": 0, "delivered_to": [], "resumed": [],
    }


def test_no_listeners_lists_available_listener_names_of_the_session():
    other = listener_wf("other_listener", name="other")
    emitter = emitter_wf({"name": "go"})
    rt = memory_runtime(other, emitter)
    start_waiting(rt, other)

    _, state = run_emitter(rt, emitter)

    result = state.vars["emit"]
    assert result["delivered"] == 0
    assert result["available_listeners_in_session"] == ["other"]


def test_listener_whose_workflow_is_not_registered_is_skipped():
    listener = listener_wf("unregistered")
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}})
    rt = memory_runtime(emitter)  # the listener's workflow is not in the registry
    lid = start_waiting(rt, listener)

    _, state = run_emitter(rt, emitter)

    assert state.status is RunStatus.COMPLETED, state.error
    result = state.vars["emit"]
    assert result["resumed"] == [{"run_id": lid, "status": "skipped", "error": "workflow_not_registered"}]
    assert result["delivered"] == 0
    assert result["delivered_to"] == []
    assert rt.get_state(lid).status is RunStatus.WAITING


def test_listeners_without_workflow_registry_fail_the_emit_clearly():
    listener = listener_wf()
    emitter = emitter_wf({"name": "go"})
    rt = memory_runtime(registry=False)
    lid = start_waiting(rt, listener)

    _, state = run_emitter(rt, emitter)

    assert state.status is RunStatus.FAILED
    assert "workflow_registry" in state.error
    assert rt.get_state(lid).status is RunStatus.WAITING


@pytest.mark.parametrize("payload", [{}, {"name": "   "}, {"payload": {"x": 1}}])
def test_missing_name_fails_the_run(payload):
    emitter = emitter_wf(payload)
    rt = memory_runtime(emitter)

    _, state = run_emitter(rt, emitter)

    assert state.status is RunStatus.FAILED
    assert "emit_event requires payload.name" in state.error


@pytest.mark.parametrize("inner, expected", [(5, {"value": 5}), ("hi", {"value": "hi"}), ([1, 2], {"value": [1, 2]}),
                                             (None, {})])
def test_non_dict_payload_is_wrapped(inner, expected):
    listener = listener_wf()
    emitter = emitter_wf({"event_name": "go", "payload": inner, "event_id": "e-42", "max_steps": 10})
    rt = memory_runtime(listener, emitter)
    lid = start_waiting(rt, listener)

    run_emitter(rt, emitter)

    env = rt.get_state(lid).output["got"]
    assert env["payload"] == expected
    assert env["event_id"] == "e-42"
    assert env["name"] == "go"


def test_global_scope_crosses_sessions():
    listener = listener_wf("global_listener", name="g", scope="global", session_id=None)
    emitter = emitter_wf({"name": "g", "scope": "global", "payload": {"n": 1}, "max_steps": 10})
    rt = memory_runtime(listener, emitter)
    lid = start_waiting(rt, listener, session_id="s9")
    assert rt.get_state(lid).waiting.wait_key == "evt:global:global:g"

    _, state = run_emitter(rt, emitter, session_id="s1")

    assert state.vars["emit"]["wait_key"] == "evt:global:global:g"
    assert state.vars["emit"]["scope"] == "global"
    assert state.vars["emit"]["delivered_to"] == [lid]
    final = rt.get_state(lid)
    assert final.status is RunStatus.COMPLETED
    assert final.output["got"]["scope"] == "global"
    assert final.output["got"]["payload"] == {"n": 1}


def test_workflow_scope_reaches_runs_of_the_same_workflow_only():
    wf_a = both_wf("wf_a", "w", {"name": "w", "scope": "workflow", "payload": {"k": "v"}})
    wf_b = both_wf("wf_b", "w", {"name": "w", "scope": "workflow"})
    rt = memory_runtime(wf_a, wf_b)
    same = start_waiting(rt, wf_a, vars={"role": "listen"})
    other = start_waiting(rt, wf_b, vars={"role": "listen"})
    assert rt.get_state(same).waiting.wait_key == "evt:workflow:wf_a:w"

    eid = rt.start(workflow=wf_a, vars={"role": "emit"}, session_id="sX")
    state = rt.tick(workflow=wf_a, run_id=eid)

    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["emit"]["wait_key"] == "evt:workflow:wf_a:w"
    assert state.vars["emit"]["delivered_to"] == [same]
    env = rt.get_state(same).vars["evt"]
    assert env["scope"] == "workflow" and env["payload"] == {"k": "v"}
    assert env["emitter"]["workflow_id"] == "wf_a"
    assert rt.get_state(other).status is RunStatus.WAITING


def test_emit_on_lmdb_store(tmp_path):
    listener = listener_wf()
    wildcard = listener_wf("wild", name="*")
    emitter = emitter_wf({"name": "go", "payload": {"x": 1}, "max_steps": 10})
    reg = WorkflowRegistry()
    for spec in (listener, wildcard, emitter):
        reg.register(spec)
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, workflow_registry=reg)
    try:
        lid = start_waiting(rt, listener)
        wid = start_waiting(rt, wildcard)
        _, state = run_emitter(rt, emitter)
        result = state.vars["emit"]
        assert result["delivered"] == 2
        assert sorted(result["delivered_to"]) == sorted([lid, wid])
        assert {r["status"] for r in result["resumed"]} == {"completed"}
        for rid in (lid, wid):
            final = rt.get_state(rid)
            assert final.status is RunStatus.COMPLETED
            assert final.output["got"]["payload"] == {"x": 1}
            assert set(final.output["got"]) == ENVELOPE_KEYS
    finally:
        rt.close()
