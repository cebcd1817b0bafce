"""Non-determinism and versioning of durable functions: a replay that diverges from the record parks the run in a
visible wait (not FAILED) until fixed code resumes it; ``ctx.patched`` keeps old runs on their path."""

from __future__ import annotations

import pytest

from abstractruntime import Runtime, RunStatus, WaitReason
from abstractruntime.functional import NonDeterminismError, workflow

import fn_flows
from fn_flows import lines


@pytest.fixture
def rt(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}) as runtime:
        yield runtime


def v1():
    @workflow("nd")
    def flow(ctx):
        a = fn_flows.note("a")
        answer = ctx.ask_user("go?")
        return {"a": a, "answer": answer}
    return flow


def test_a_changed_call_parks_the_run_with_the_error_then_fixed_code_resumes_it(rt, provider):
    old = v1()
    run_id = rt.start(workflow=old)
    state = rt.tick(workflow=old, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.prompt == "go?"

    @workflow("nd")
    def changed(ctx):  # the recorded call #0 was note("a")
        a = fn_flows.note("b")
        return {"a": a, "answer": ctx.ask_user("go?")}

    state = rt.resume(workflow=changed, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "yes"})
    assert state.status is RunStatus.WAITING  # not FAILED
    wait = state.waiting
    assert wait.reason is WaitReason.USER and wait.details["kind"] == "non_determinism"
    assert wait.prompt == wait.details["error"]
    assert ("call #0 is step 'fn_flows:note' with other arguments" in wait.prompt
            and "ctx.patched" in wait.prompt and state.run_id in wait.prompt)
    assert wait.details["recorded"]["description"].startswith("step 'fn_flows:note' (arguments ")
    assert lines(provider / "notes.log") == ["a"]  # nothing of the new code ran
    assert rt.get_state(run_id).waiting.details["kind"] == "non_determinism"  # what get_state and the CLI show

    # the host deploys the old code again (or a fix) and resumes the wait: the replay continues from the record,
    # which holds the answer delivered before the divergence
    state = rt.resume(workflow=old, run_id=run_id, wait_key=wait.wait_key, payload={})
    assert state.status is RunStatus.COMPLETED and state.output == {"a": "a", "answer": "yes"}
    assert lines(provider / "notes.log") == ["a"]


def test_another_kind_of_call_and_an_early_return_are_non_deterministic(rt, provider):
    old = v1()
    run_id = rt.start(workflow=old)
    wait_key = rt.tick(workflow=old, run_id=run_id).waiting.wait_key

    @workflow("nd")
    def now_first(ctx):
        ctx.now()
        return {}

    state = rt.resume(workflow=now_first, run_id=run_id, wait_key=wait_key, payload={"text": "y"})
    assert "call #0 is now 'now' instead of step 'fn_flows:note'" in state.waiting.prompt

    @workflow("nd")
    def returns(ctx):
        return {}

    state = rt.resume(workflow=returns, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
    assert state.status is RunStatus.WAITING and state.waiting.details["kind"] == "non_determinism"
    assert "returned after 0 durable calls, but the run recorded 2" in state.waiting.prompt


def test_new_code_that_raises_before_the_recorded_calls_parks_the_run(rt, provider):
    old = v1()
    run_id = rt.start(workflow=old)
    wait_key = rt.tick(workflow=old, run_id=run_id).waiting.wait_key

    @workflow("nd")
    def broken(ctx):
        raise KeyError("refactored away")

    state = rt.resume(workflow=broken, run_id=run_id, wait_key=wait_key, payload={"text": "y"})
    assert state.status is RunStatus.WAITING and state.waiting.details["kind"] == "non_determinism"
    assert "raised KeyError: 'refactored away' after 0 durable calls, but the run recorded 2" in state.waiting.prompt


def test_the_error_is_raised_in_the_body_and_parks_the_run_even_if_caught(rt, provider):
    old = v1()
    run_id = rt.start(workflow=old)
    wait_key = rt.tick(workflow=old, run_id=run_id).waiting.wait_key
    caught = []

    @workflow("nd")
    def catching(ctx):
        try:
            fn_flows.note("c")
        except NonDeterminismError as exc:
            caught.append(exc)
        return {"carried": "on"}

    state = rt.resume(workflow=catching, run_id=run_id, wait_key=wait_key, payload={"text": "y"})
    assert state.status is RunStatus.WAITING and state.waiting.details["kind"] == "non_determinism"
    assert caught and caught[0].call == 0 and caught[0].run_id == run_id


def test_patched_keeps_old_runs_on_their_path_and_new_runs_on_the_new_one(rt, provider):
    @workflow("pt")
    def before(ctx):
        fn_flows.note("a")
        fn_flows.note("old")
        ctx.ask_user("continue?")
        return {"path": "old"}

    old_run = rt.start(workflow=before)
    wait_key = rt.tick(workflow=before, run_id=old_run).waiting.wait_key

    @workflow("pt")
    def after(ctx):
        fn_flows.note("a")
        if ctx.patched("use-new-step"):
            fn_flows.note("new")
            path = "new"
        else:
            fn_flows.note("old")
            path = "old"
        ctx.ask_user("continue?")
        return {"path": path}

    state = rt.resume(workflow=after, run_id=old_run, wait_key=wait_key, payload={"text": "y"})
    assert state.output == {"path": "old"} and state.vars["_fn"]["patches"] == {"use-new-step": False}

    new_run = rt.start(workflow=after)
    state = rt.tick(workflow=after, run_id=new_run)
    state = rt.resume(workflow=after, run_id=new_run, wait_key=state.waiting.wait_key, payload={"text": "y"})
    assert state.output == {"path": "new"} and state.vars["_fn"]["patches"] == {"use-new-step": True}
    assert lines(provider / "notes.log") == ["a", "old", "a", "new"]
