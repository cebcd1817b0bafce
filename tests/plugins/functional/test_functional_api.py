"""Durable functions in one process (LMDB store): the durable calls, arguments from vars, the return value as the
output, recorded values, readable ledger rows, errors of the body and of steps, per-step retries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from abstractruntime import EffectOutcome, Runtime, RunStatus, WaitReason
from abstractruntime.errors import JsonInvariantError
from abstractruntime.functional import (NotInStepError, WorkflowBodyError, current_step, function_of,
                                        recorded_results, step, workflow)

import fn_flows
from fn_flows import lines


@pytest.fixture
def rt(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}) as runtime:
        yield runtime


def drive(rt, flow, **vars):
    run_id = rt.start(workflow=flow, vars=vars)
    return rt.tick(workflow=flow, run_id=run_id, max_steps=1000)


def test_the_issue_example_runs_through_every_kind_of_durable_call(tmp_path, provider):
    seen = []

    def my_effect(run, effect):
        seen.append(effect.payload)
        return EffectOutcome.completed({"echo": effect.payload["any"]})

    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, effect_handlers={"my_plugin_effect": my_effect}) as rt:
        @workflow("onboarding")
        def onboarding(ctx, customer_id: str):
            plan = ctx.ask_user("Which plan?", choices=["basic", "pro"])
            receipt = fn_flows.charge(customer_id, 900 if plan == "basic" else 4900)
            ctx.sleep(seconds=3600)
            event = ctx.wait_event(f"kyc:{customer_id}")
            echoed = ctx.effect("my_plugin_effect", {"any": "payload"})
            return {"plan": plan, "receipt": receipt, "kyc": event["payload"], "echoed": echoed}

        run_id = rt.start(workflow=onboarding, vars={"customer_id": "c1"}, session_id="s1")
        state = rt.tick(workflow=onboarding, run_id=run_id)
        assert state.waiting.reason is WaitReason.USER and state.waiting.choices == ["basic", "pro"]
        assert state.waiting.allow_free_text is False
        state = rt.resume(workflow=onboarding, run_id=run_id, wait_key=state.waiting.wait_key,
                          payload={"response": "basic"})
        assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.UNTIL
        until = datetime.fromisoformat(state.waiting.until)
        assert timedelta(seconds=3590) < until - datetime.now(timezone.utc) <= timedelta(seconds=3600)
        assert len(lines(provider / "charges.log")) == 1

        # the timer is due (an operator moves it; in production the scheduler ticks the run when it is)
        def due(run):
            run.waiting.until = "2000-01-01T00:00:00+00:00"
            return []
        rt.update_run(run_id, due)
        state = rt.tick(workflow=onboarding, run_id=run_id)
        assert state.waiting.reason is WaitReason.EVENT and state.waiting.wait_key == "evt:session:s1:kyc:c1"
        state = rt.resume(workflow=onboarding, run_id=run_id, wait_key=state.waiting.wait_key,
                          payload={"name": "kyc:c1", "payload": {"ok": True}})
        assert state.status is RunStatus.COMPLETED, state.error
        assert state.output == {"plan": "basic", "receipt": {"customer": "c1", "cents": 900,
                                                             "pid": state.output["receipt"]["pid"]},
                                "kyc": {"ok": True}, "echoed": {"echo": "payload"}}
        assert seen[0]["functional_call"] == {"number": 4, "name": "my_plugin_effect"}
        assert len(lines(provider / "charges.log")) == 1  # replays never re-run a recorded step

        # every effect row names its call: number and name
        calls = [(r["effect"]["type"], r["effect"]["payload"].get("functional_call"), r["effect"]["result_key"])
                 for r in rt.get_ledger(run_id) if r["status"] == "started"]
        assert calls == [("ask_user", {"number": 0, "name": "ask_user"}, "_fn.results.0"),
                         ("function_step", {"number": 1, "name": "fn_flows:charge"}, "_fn.results.1"),
                         ("wait_until", {"number": 2, "name": "sleep"}, "_fn.results.2"),
                         ("wait_event", {"number": 3, "name": "kyc:c1"}, "_fn.results.3"),
                         ("my_plugin_effect", {"number": 4, "name": "my_plugin_effect"}, "_fn.results.4")]
        assert all(r["node_id"] == "fn" for r in rt.get_ledger(run_id))


def test_arguments_come_from_vars_and_the_return_value_is_the_output(rt):
    @workflow("args")
    def args(ctx, a, b=2, *, c, **rest):
        return {"a": a, "b": b, "c": c, "rest": rest}

    state = drive(rt, args, a=1, c=3, extra="x")
    assert state.output == {"a": 1, "b": 2, "c": 3, "rest": {"extra": "x"}}

    @workflow("scalar")
    def scalar(ctx):
        return 42

    assert drive(rt, scalar).output == {"result": 42}
    assert function_of(scalar) is not None and function_of(scalar).__name__ == "scalar"


def test_a_missing_argument_fails_the_run_naming_the_var(rt):
    @workflow("needs")
    def needs(ctx, customer_id):
        return {}

    state = drive(rt, needs)
    assert state.status is RunStatus.FAILED
    assert "needs vars['customer_id']" in state.error and "vars={'customer_id': ...}" in state.error


def test_mutating_arguments_or_results_does_not_change_the_record(rt):
    @step
    def make() -> dict:
        return {"n": 0}

    @workflow("mutate")
    def mutate(ctx, items):
        items.append("x")  # the run's vars keep their value
        r = make()
        r["n"] += 1  # the recorded result keeps its value
        ctx.sleep(seconds=0)
        return {"items": items, "n": r["n"]}

    state = drive(rt, mutate, items=[])
    assert state.output == {"items": ["x"], "n": 1}
    assert state.vars["items"] == [] and recorded_results(state.vars)["0"] == {"value": {"n": 0}}


def test_now_random_uuid_and_patched_are_recorded_and_replayed(rt):
    @workflow("values")
    def values(ctx):
        out = {"now": ctx.now().isoformat(), "random": ctx.random(), "uuid": ctx.uuid(), "patched": ctx.patched("p")}
        ctx.ask_user("ok?")
        return out

    run_id = rt.start(workflow=values)
    state = rt.tick(workflow=values, run_id=run_id)
    recorded = recorded_results(state.vars)
    assert state.vars["_fn"]["patches"] == {"p": True}
    state = rt.resume(workflow=values, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "y"})
    assert state.output == {"now": recorded["0"], "random": recorded["1"], "uuid": recorded["2"], "patched": True}
    assert isinstance(state.output["random"], float) and len(state.output["uuid"]) == 36


def test_an_exception_in_the_body_fails_the_run_with_its_traceback(rt, provider):
    @workflow("boom")
    def boom(ctx):
        fn_flows.note("before")
        raise ValueError("no such plan: 'gold'")

    state = drive(rt, boom)
    assert state.status is RunStatus.FAILED
    assert "WorkflowBodyError: workflow 'boom' raised ValueError: no such plan: 'gold'" in state.error
    assert "Traceback (most recent call last)" in state.error and 'raise ValueError("no such plan' in state.error
    assert WorkflowBodyError.__name__ in state.error


def test_an_exception_in_a_step_fails_the_effect_and_the_run(rt):
    @step
    def refuse(amount: int) -> None:
        raise PermissionError(f"card declined for {amount}")

    @workflow("declined")
    def declined(ctx):
        refuse(5)
        return {}

    state = drive(rt, declined)
    assert state.status is RunStatus.FAILED
    assert "Effect failed after 1 attempt: @step" in state.error and "refuse' raised PermissionError: card " \
           "declined for 5" in state.error and "Traceback" in state.error
    failed = [r for r in rt.get_ledger(state.run_id) if r["status"] == "failed" and r["effect"]]
    assert failed[0]["effect"]["type"] == "function_step"


def test_per_step_retries(rt, tmp_path):
    tries = tmp_path / "tries"

    @step(retries=2, backoff_s=0.01)
    def flaky() -> str:
        n = len(lines(tries)) + 1
        with tries.open("a") as fh:
            fh.write(f"{n}:{current_step().try_number}:{current_step().idempotency_key}\n")
        if n < 3:
            raise ConnectionError(f"try {n}")
        return "ok"

    @step(retries=1)
    def hopeless() -> str:
        raise ConnectionError("down")

    @workflow("retrying")
    def retrying(ctx):
        return {"flaky": flaky()}

    state = drive(rt, retrying)
    assert state.output == {"flaky": "ok"}
    recorded = lines(tries)
    assert [t.split(":")[:2] for t in recorded] == [["1", "1"], ["2", "2"], ["3", "3"]]
    assert len({t.split(":")[2] for t in recorded}) == 1  # one step, one idempotency key

    @workflow("hopeless")
    def give_up(ctx):
        return {"x": hopeless()}

    state = drive(rt, give_up)
    assert state.status is RunStatus.FAILED and "(after 2 tries)" in state.error


def test_a_step_outside_a_workflow_is_a_plain_call(provider):
    assert fn_flows.note("direct") == "direct"
    assert lines(provider / "notes.log") == ["direct"]
    with pytest.raises(NotInStepError):
        current_step()


def test_step_arguments_that_are_not_json_leave_the_run_unchanged(rt):
    @workflow("badargs")
    def badargs(ctx):
        fn_flows.note(datetime.now(timezone.utc))
        return {}

    run_id = rt.start(workflow=badargs)
    before = rt.get_state(run_id)
    with pytest.raises(JsonInvariantError, match=r"effect\.payload\.args\[0\]"):
        rt.tick(workflow=badargs, run_id=run_id)
    after = rt.get_state(run_id)
    assert (after.revision, after.status, rt.get_ledger(run_id)) == (before.revision, RunStatus.RUNNING, [])


def test_a_body_that_swallows_the_suspension_is_still_suspended(rt, provider):
    @workflow("swallow")
    def swallow(ctx):
        try:
            fn_flows.note("a")
        except Exception:  # noqa: BLE001 - what a careless body does
            pass
        fn_flows.note("b")
        return {"done": True}

    state = drive(rt, swallow)
    assert state.output == {"done": True}
    assert lines(provider / "notes.log") == ["a", "b"]


def test_replaying_a_long_record_is_cheap(rt):
    """O(1) per recorded call: a replay of 600 recorded steps takes about a millisecond (the bound is generous);
    the number of calls replayed over the whole run is the sum 1 + 2 + ... (benchmarks/functional.py measures)."""
    import time

    @step
    def tiny(i: int) -> int:
        return i

    @workflow("long")
    def long(ctx, n):
        return {"sum": sum(tiny(i) for i in range(n))}

    run_id = rt.start(workflow=long, vars={"n": 600})
    state = rt.tick(workflow=long, run_id=run_id, max_steps=1000)
    assert state.output == {"sum": 179700} and len(state.vars["_fn"]["calls"]) == 600
    assert state.step == 601  # one step per call, and the completion
    node = long.nodes["fn"]
    t0 = time.perf_counter()
    plan = node(state, None)
    assert time.perf_counter() - t0 < 0.25
    assert plan.complete_output == {"sum": 179700}


def test_the_record_is_one_string_per_call_for_the_kernels_per_step_checks(rt):
    """The kernel checks and encodes a run's vars at every step: a recorded result is packed as JSON text (one type
    check there, not a walk of the value), moved out of ``_fn.results`` by the next replay (docs/functional.md)."""
    @step
    def nested(i: int) -> dict:
        return {"i": i, "deep": {"list": [i, {"x": [1, 2]}]}}

    @workflow("packed")
    def packed(ctx, n):
        return {"sum": sum(nested(i)["deep"]["list"][0] for i in range(n))}

    state = drive(rt, packed, n=30)
    assert state.output == {"sum": 435}
    record = state.vars["_fn"]
    assert record["results"] == {}  # the last step's result was packed by the final replay
    assert len(record["packed"]) == 30 and all(type(v) is str for v in record["packed"].values())
    assert recorded_results(state.vars)["7"] == {"value": {"i": 7, "deep": {"list": [7, {"x": [1, 2]}]}}}


def test_a_run_failed_by_a_step_continues_with_retry_run(rt, tmp_path):
    switch = tmp_path / "fixed"

    @step
    def fragile() -> str:
        if not switch.exists():
            raise ConnectionError("provider down")
        return "ok"

    @workflow("fragile")
    def flow(ctx):
        first = ctx.effect("nothing")  # completes without a result
        return {"first": first, "fragile": fragile()}

    def nothing(run, effect):
        return EffectOutcome.completed(None)

    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db2"}, effect_handlers={"nothing": nothing}) as rt2:
        state = drive(rt2, flow)
        assert state.status is RunStatus.FAILED and "provider down" in state.error
        switch.write_text("1")
        rt2.retry_run(state.run_id)  # the recovery plugin: RUNNING again at its last checkpoint
        state = rt2.tick(workflow=flow, run_id=state.run_id)
        assert state.status is RunStatus.COMPLETED, state.error
        assert state.output == {"first": {}, "fragile": "ok"}
