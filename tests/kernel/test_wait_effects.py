"""The wait effects of the builtin ``waits`` plugin: WAIT_UNTIL, ASK_USER, WAIT_EVENT, ANSWER_USER (spec §4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WaitReason

from kernel_support import effect_node, runtime_on, snapshot, workflow

PLUS5 = timezone(timedelta(hours=5))
MINUS5 = timezone(timedelta(hours=-5))


def now():
    return datetime.now(timezone.utc)


def until_workflow(payload, result_key="tick"):
    seen = []

    def wait(run, ctx):
        seen.append("wait")
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_UNTIL, payload, result_key), next_node="after")

    def after(run, ctx):
        seen.append("after")
        return StepPlan(node_id="after", complete_output={"tick": run.vars.get(result_key)})

    return workflow({"wait": wait, "after": after}), seen


# --- WAIT_UNTIL -----------------------------------------------------------------------------------------------------
def test_wait_until_in_the_future_waits_and_tick_before_due_changes_nothing():
    rt = runtime_on()
    until = (now() + timedelta(hours=1)).isoformat()
    wf, seen = until_workflow({"until": until})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    w = state.waiting
    assert w.reason is WaitReason.UNTIL and w.until == until
    assert w.resume_to_node == "after" and w.result_key == "tick"
    ledger = rt.get_ledger(run_id)
    assert [r["status"] for r in ledger] == ["started", "waiting"]
    assert ledger[1]["result"]["wait"]["reason"] == "until"
    assert ledger[1]["result"]["wait"]["until"] == until

    before = snapshot(rt, run_id)
    again = rt.tick(workflow=wf, run_id=run_id)
    assert again.status is RunStatus.WAITING
    assert snapshot(rt, run_id) == before
    assert seen == ["wait"]


@pytest.mark.parametrize(
    "make_until",
    [
        lambda: (now() - timedelta(seconds=5)).isoformat(),
        lambda: (now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        lambda: (now() - timedelta(hours=1)).astimezone(PLUS5).isoformat(),
        lambda: (now() - timedelta(hours=1)).replace(tzinfo=None).isoformat(),  # naive = UTC
    ],
    ids=["utc_offset", "zulu", "plus_five", "naive"],
)
def test_wait_until_already_due_completes_immediately(make_until):
    rt = runtime_on()
    until = make_until()
    wf, seen = until_workflow({"until": until})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"tick": {"until": until, "ready": True}}
    assert seen == ["wait", "after"]


def test_wait_until_compares_instants_not_strings():
    # One hour ago in +05:00 sorts *after* now in UTC as a string, yet it is due.
    past_plus5 = (now() - timedelta(hours=1)).astimezone(PLUS5).isoformat()
    assert past_plus5 > now().isoformat()
    rt = runtime_on()
    wf, _ = until_workflow({"until": past_plus5})
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED

    # One hour ahead in -05:00 sorts *before* now in UTC as a string, yet it is not due.
    future_minus5 = (now() + timedelta(hours=1)).astimezone(MINUS5).isoformat()
    assert future_minus5 < now().isoformat()
    wf2, _ = until_workflow({"until": future_minus5})
    run2 = rt.start(workflow=wf2)
    assert rt.tick(workflow=wf2, run_id=run2).status is RunStatus.WAITING

    # Z form in the future also waits
    future_z = (now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    wf3, _ = until_workflow({"until": future_z})
    run3 = rt.start(workflow=wf3)
    assert rt.tick(workflow=wf3, run_id=run3).status is RunStatus.WAITING


@pytest.mark.parametrize(
    "make_past",
    [
        lambda: (now() - timedelta(minutes=1)).isoformat(),
        lambda: (now() - timedelta(hours=1)).astimezone(PLUS5).isoformat(),
        lambda: (now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    ],
    ids=["utc", "plus_five", "zulu"],
)
def test_stored_wait_that_became_due_continues_on_tick_without_a_resume_row(make_past):
    rt = runtime_on()
    wf, seen = until_workflow({"until": (now() + timedelta(days=1)).isoformat()})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    rows_before = rt.get_ledger(run_id)

    state = rt.get_state(run_id)
    state.waiting.until = make_past()
    rt.run_store.save(state)

    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED
    assert seen == ["wait", "after"]  # continued at resume_to_node; the waiting node was not re-run
    assert final.output == {"tick": None}  # nothing is written to result_key by a time-out
    ledger = rt.get_ledger(run_id)
    assert ledger[: len(rows_before)] == rows_before
    assert not [r for r in ledger if (r.get("effect") or {}).get("type") == "resume"]


def test_wait_until_without_until_fails():
    rt = runtime_on()
    wf, _ = until_workflow({})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert "wait_until requires payload.until (ISO timestamp)" in state.error


def test_wait_until_with_garbage_fails_clearly():
    rt = runtime_on()
    wf, _ = until_workflow({"until": "next tuesday-ish"})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert "next tuesday-ish" in state.error
    assert "ISO" in state.error
    assert state.error.startswith("Effect failed after 1 attempt: wait_until")


# --- ASK_USER -------------------------------------------------------------------------------------------------------
def test_ask_user_waits_with_default_key_and_payload_fields():
    rt = runtime_on()
    eff = Effect(EffectType.ASK_USER, {"prompt": "Proceed?", "choices": ["yes", "no"], "allow_free_text": False},
                 "answer")
    wf = workflow({"ask": effect_node("ask", eff, next_node="next"),
                   "next": lambda run, ctx: StepPlan(node_id="next", complete_output={})})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    w = state.waiting
    assert w.reason is WaitReason.USER
    assert w.wait_key == f"user:{run_id}:ask"
    assert w.prompt == "Proceed?" and w.choices == ["yes", "no"] and w.allow_free_text is False
    assert w.resume_to_node == "next" and w.result_key == "answer"
    assert state.current_node == "ask"
    assert rt.get_state(run_id).waiting == w


def test_ask_user_explicit_wait_key_and_resume_node():
    rt = runtime_on()
    eff = Effect(EffectType.ASK_USER, {"prompt": "?", "wait_key": "custom", "resume_to_node": "other"})
    wf = workflow({"ask": effect_node("ask", eff, next_node="next")})
    run_id = rt.start(workflow=wf)
    w = rt.tick(workflow=wf, run_id=run_id).waiting
    assert w.wait_key == "custom" and w.resume_to_node == "other" and w.allow_free_text is True
    assert w.choices is None


@pytest.mark.parametrize("payload", [{}, {"prompt": ""}, {"prompt": None}])
def test_ask_user_without_prompt_fails(payload):
    rt = runtime_on()
    wf = workflow({"ask": effect_node("ask", Effect(EffectType.ASK_USER, payload), next_node="next")})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert "ask_user requires payload.prompt" in state.error


# --- WAIT_EVENT -----------------------------------------------------------------------------------------------------
def event_wait(rt, payload, *, session_id=None, result_key="evt"):
    wf = workflow({"w": effect_node("w", Effect(EffectType.WAIT_EVENT, payload, result_key), next_node="after")},
                  workflow_id="wf-events")
    run_id = rt.start(workflow=wf, session_id=session_id)
    return run_id, rt.tick(workflow=wf, run_id=run_id)


def test_wait_event_default_key_uses_session_scope():
    rt = runtime_on()
    run_id, state = event_wait(rt, {"name": "approved"}, session_id="s1")
    assert state.status is RunStatus.WAITING
    w = state.waiting
    assert w.reason is WaitReason.EVENT
    assert w.wait_key == "evt:session:s1:approved"
    assert w.resume_to_node == "after" and w.result_key == "evt"
    assert w.allow_free_text is True


def test_wait_event_session_scope_falls_back_to_run_id():
    rt = runtime_on()
    run_id, state = event_wait(rt, {"name": " approved "})
    assert state.waiting.wait_key == f"evt:session:{run_id}:approved"


def test_wait_event_payload_session_id_wins():
    rt = runtime_on()
    _, state = event_wait(rt, {"name": "x", "session_id": "from-payload"}, session_id="from-run")
    assert state.waiting.wait_key == "evt:session:from-payload:x"


@pytest.mark.parametrize(
    "scope,expected",
    [("workflow", "evt:workflow:wf-events:done"), ("global", "evt:global:global:done"), ("RUN", "evt:run:{run_id}:done")],
)
def test_wait_event_scopes(scope, expected):
    rt = runtime_on()
    run_id, state = event_wait(rt, {"event_name": "done", "scope": scope})
    assert state.waiting.wait_key == expected.format(run_id=run_id)


def test_wait_event_explicit_key_and_ui_fields():
    rt = runtime_on()
    _, state = event_wait(rt, {"wait_key": "my-key", "prompt": "Approve?", "choices": [" a ", "", 3, "b"],
                               "allowFreeText": False, "details": {"k": 1}, "resume_to_node": "elsewhere"})
    w = state.waiting
    assert w.wait_key == "my-key"
    assert w.prompt == "Approve?"
    assert w.choices == ["a", "b"]
    assert w.allow_free_text is False
    assert w.details == {"k": 1}
    assert w.resume_to_node == "elsewhere"


def test_wait_event_without_key_or_name_fails():
    rt = runtime_on()
    _, state = event_wait(rt, {"scope": "session"})
    assert state.status is RunStatus.FAILED
    assert "wait_event requires payload.wait_key or payload.name" in state.error


def test_wait_event_with_invalid_scope_fails():
    rt = runtime_on()
    _, state = event_wait(rt, {"name": "x", "scope": "galaxy"})
    assert state.status is RunStatus.FAILED
    assert "wait_event invalid payload:" in state.error and "galaxy" in state.error


# --- ANSWER_USER ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload,expected",
    [
        ({"message": "hello"}, {"message": "hello", "level": "message"}),
        ({"message": "hi", "level": "info"}, {"message": "hi", "level": "message"}),
        ({"message": "hi", "level": "warn"}, {"message": "hi", "level": "warning"}),
        ({"message": "hi", "level": "WARNING"}, {"message": "hi", "level": "warning"}),
        ({"message": "hi", "level": "error"}, {"message": "hi", "level": "error"}),
        ({"message": "hi", "level": "shout"}, {"message": "hi", "level": "message"}),
        ({"message": "hi", "level": 3}, {"message": "hi", "level": "message"}),
        ({"text": "from text"}, {"message": "from text", "level": "message"}),
        ({"content": "from content"}, {"message": "from content", "level": "message"}),
        ({"message": 42}, {"message": "42", "level": "message"}),
    ],
)
def test_answer_user_completes_without_blocking(payload, expected):
    rt = runtime_on()
    wf = workflow({
        "say": effect_node("say", Effect(EffectType.ANSWER_USER, payload, "said"), next_node="after"),
        "after": lambda run, ctx: StepPlan(node_id="after", complete_output={"said": run.vars["said"]}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"said": expected}


def test_answer_user_without_message_fails():
    rt = runtime_on()
    wf = workflow({"say": effect_node("say", Effect(EffectType.ANSWER_USER, {"level": "info"}), next_node="x")})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert "answer_user requires payload.message" in state.error


def test_wait_effects_are_registered_without_reservation_rows():
    """The wait handlers do not touch the outside world: the whole step is one commit (no separate STARTED)."""
    from abstractruntime_inmemory.store import MemoryBackend

    backend = MemoryBackend()
    commits = []
    rt = runtime_on(backend)
    eff = Effect(EffectType.ASK_USER, {"prompt": "?"})
    wf = workflow({"ask": effect_node("ask", eff, next_node="n")})
    run_id = rt.start(workflow=wf)
    backend.fault_injector = commits.append
    rt.tick(workflow=wf, run_id=run_id)
    assert len(commits) == 1
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started", "waiting"]
