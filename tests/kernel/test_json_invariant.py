"""The JSON invariant: a non-JSON value in run state raises JsonInvariantError naming its path; nothing is written."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from abstractruntime import Effect, EffectOutcome, EffectType, JsonInvariantError, RunStatus, StepPlan
from abstractruntime.codec import find_json_violation

from kernel_support import HandlerPlugin, Counter, finish, goto, runtime_on, snapshot, workflow


class Opaque:
    pass


def _cycle():
    d = {"a": 1}
    d["self"] = d
    return d


BAD_VALUES = [
    ("datetime_in_list", "items", lambda: [1, 2, {"when": datetime.now()}], "vars.items[2].when"),
    ("object", "obj", lambda: Opaque(), "vars.obj"),
    ("set", "tags", lambda: {"a", "b"}, "vars.tags"),
    ("bytes", "blob", lambda: b"\x00\x01", "vars.blob"),
    ("nan", "score", lambda: float("nan"), "vars.score"),
    ("inf", "score", lambda: float("inf"), "vars.score"),
    ("neg_inf_nested", "m", lambda: {"x": [0.5, -math.inf]}, "vars.m.x[1]"),
    ("int_key", "by_id", lambda: {1: "one"}, "vars.by_id[1]"),
    ("cycle", "loop", _cycle, "vars.loop.self"),
    ("non_identifier_key", "d", lambda: {"a b": {1, 2}}, 'vars.d["a b"]'),
]


def _two_step_workflow(key, make_bad):
    """``prep`` (an ANSWER_USER effect: leaves ledger rows) -> ``bad`` (puts a non-JSON value into vars)."""

    def prep(run, ctx):
        run.vars["good"] = {"n": 1}
        return StepPlan(node_id="prep", effect=Effect(EffectType.ANSWER_USER, {"message": "hi"}, "said"),
                        next_node="bad")

    def bad(run, ctx):
        run.vars["good"]["n"] = 2  # a legitimate mutation in the same step must not be persisted either
        run.vars[key] = make_bad()
        return StepPlan(node_id="bad", next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"ok": True})

    return workflow({"prep": prep, "bad": bad, "done": done})


@pytest.mark.parametrize("name,key,make_bad,path", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_non_json_vars_raise_with_exact_path_and_nothing_is_persisted(name, key, make_bad, path):
    rt = runtime_on()
    wf = _two_step_workflow(key, make_bad)
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id, max_steps=1)
    assert state.current_node == "bad"
    before_state, before_ledger = snapshot(rt, run_id)
    assert len(before_ledger) == 2  # STARTED + COMPLETED of the answer_user effect

    with pytest.raises(JsonInvariantError) as exc_info:
        rt.tick(workflow=wf, run_id=run_id)
    err = exc_info.value
    assert err.path == path
    assert err.node_id == "bad"
    assert err.run_id == run_id
    assert path in str(err) and "bad" in str(err)
    assert isinstance(err, TypeError)

    after_state, after_ledger = snapshot(rt, run_id)
    assert after_state == before_state
    assert after_state["revision"] == before_state["revision"]
    assert after_state["current_node"] == "bad"
    assert after_state["vars"]["good"] == {"n": 1}
    assert key not in after_state["vars"]
    assert after_ledger == before_ledger


def test_find_json_violation_accepts_plain_json():
    assert find_json_violation({"a": [1, 2.5, "s", None, True, {"b": []}], "c": (1, 2)}, "vars") is None


def test_non_json_output_raises_and_nothing_is_persisted():
    rt = runtime_on()

    def fin(run, ctx):
        return StepPlan(node_id="fin", complete_output={"at": datetime(2020, 1, 1)})

    wf = workflow({"fin": fin})
    run_id = rt.start(workflow=wf)
    before = snapshot(rt, run_id)
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.tick(workflow=wf, run_id=run_id)
    assert exc_info.value.path == "output.at"
    assert exc_info.value.node_id == "fin"
    assert snapshot(rt, run_id) == before
    assert rt.get_state(run_id).status is RunStatus.RUNNING


def test_non_json_effect_payload_raises_before_anything_runs_or_is_written():
    calls = []

    def host(run, effect, next_node):
        calls.append(effect)
        return EffectOutcome.completed({"ok": True})

    rt = runtime_on(effect_handlers={"greet": host})

    def node(run, ctx):
        return StepPlan(node_id="n", effect=Effect("greet", {"who": "ada", "when": datetime.now()}), next_node="end")

    wf = workflow({"n": node, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={})})
    run_id = rt.start(workflow=wf)
    before = snapshot(rt, run_id)
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.tick(workflow=wf, run_id=run_id)
    assert exc_info.value.path.startswith("effect.payload")
    assert exc_info.value.path == "effect.payload.when"
    assert exc_info.value.node_id == "n"
    assert calls == []
    assert snapshot(rt, run_id) == before


def test_non_json_vars_with_side_effecting_effect_do_not_run_the_effect_or_write_a_reservation():
    """The invariant is checked before the side effect (reference defect §17 #15 must not come back)."""
    handler = Counter()
    plugin = HandlerPlugin("charger", "charge", handler, side_effects=True)
    rt = runtime_on(plugins=[plugin])

    def node(run, ctx):
        run.vars["when"] = datetime.now()
        return StepPlan(node_id="n", effect=Effect("charge", {"amount": 5}, "receipt"), next_node="end")

    wf = workflow({"n": node, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={})})
    run_id = rt.start(workflow=wf)
    before = snapshot(rt, run_id)
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.tick(workflow=wf, run_id=run_id)
    assert exc_info.value.path == "vars.when"
    assert snapshot(rt, run_id) == before  # no STARTED reservation either
    assert handler.calls == []  # the side effect did not happen


def test_non_json_resume_payload_raises_and_run_stays_waiting():
    rt = runtime_on()

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "answer"),
                        next_node="end")

    def end(run, ctx):
        return StepPlan(node_id="end", complete_output={"answer": run.vars["answer"]})

    wf = workflow({"ask": ask, "end": end})
    run_id = rt.start(workflow=wf)
    waiting = rt.tick(workflow=wf, run_id=run_id)
    assert waiting.status is RunStatus.WAITING
    before = snapshot(rt, run_id)

    with pytest.raises(JsonInvariantError) as exc_info:
        rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"choice": {1, 2}})
    assert exc_info.value.path == "vars.answer.choice"
    assert snapshot(rt, run_id) == before
    assert rt.get_state(run_id).status is RunStatus.WAITING

    # the run is not broken: a valid payload resumes it
    done = rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"choice": "a"})
    assert done.status is RunStatus.COMPLETED
    assert done.output == {"answer": {"choice": "a"}}


def test_non_json_resume_payload_without_result_key_raises_too():
    rt = runtime_on()
    wf = workflow({
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}),
                                         next_node="end"),
        "end": lambda run, ctx: StepPlan(node_id="end", complete_output={}),
    })
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    before = snapshot(rt, run_id)
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload={"x": float("nan")})
    assert exc_info.value.path == "vars._temp.resume_payload.x"
    assert snapshot(rt, run_id) == before


def test_start_with_non_json_vars_raises_and_creates_no_run(backend):
    from abstractruntime import Runtime

    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store)
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a", complete_output={})})
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.start(workflow=wf, vars={"bad": {"x": b"bytes"}})
    assert exc_info.value.path == "vars.bad.x"
    assert backend.run_store.list_runs() == []


@pytest.mark.parametrize("result_key,path", [("r", "vars.r.when"), (None, "ledger.result.when")])
def test_non_json_handler_result_raises_and_nothing_is_persisted(result_key, path):
    plugin = HandlerPlugin("maker", "make_thing",
                           lambda call: EffectOutcome.completed({"when": datetime(2020, 1, 1)}), side_effects=False)
    rt = runtime_on(plugins=[plugin])
    wf = workflow({
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect("make_thing", {}, result_key), next_node="z"),
        "z": lambda run, ctx: StepPlan(node_id="z", complete_output={}),
    })
    run_id = rt.start(workflow=wf)
    before = snapshot(rt, run_id)
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.tick(workflow=wf, run_id=run_id)
    assert exc_info.value.path == path
    assert exc_info.value.node_id == "a"
    assert snapshot(rt, run_id) == before


def test_non_json_result_of_a_side_effecting_handler_fails_the_step_instead_of_looping():
    calls = []

    def charge(call):
        calls.append(call.idempotency_key)
        return EffectOutcome.completed({"when": datetime(2020, 1, 1)})

    plugin = HandlerPlugin("payments", "charge", charge, side_effects=True)
    rt = runtime_on(plugins=[plugin])
    wf = workflow({
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect("charge", {}, "r"), next_node="z"),
        "z": lambda run, ctx: StepPlan(node_id="z", complete_output={}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status.value == "failed"
    assert "not plain JSON" in state.error and "result.when" in state.error
    rows = rt.get_ledger(run_id)
    assert [r["status"] for r in rows] == ["started", "failed", "completed"]  # reservation, outcome, status row
    assert rt.tick(workflow=wf, run_id=run_id).status.value == "failed"
    assert len(calls) == 1  # never re-run


def test_integers_beyond_64_bits_are_refused_with_their_path(backend):
    from abstractruntime import Runtime

    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store)
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a", complete_output={})})
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.start(workflow=wf, vars={"big": [2**64]})
    assert exc_info.value.path == "vars.big[0]" and "64-bit" in str(exc_info.value)
    run_id = rt.start(workflow=wf, vars={"ok": [2**64 - 1, -(2**63)]})
    assert rt.get_state(run_id).vars["ok"] == [2**64 - 1, -(2**63)]


def _deep(levels: int):
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_values_nested_too_deep_are_refused_quickly_with_a_path_and_nothing_is_written():
    """Issue 14 #3: a 100,000-deep resume payload or effect payload is a JsonInvariantError (not orjson's
    TypeError, a RecursionError or gigabytes of paths); 250 levels are fine."""
    import time

    rt = runtime_on(effect_handlers={"greet": lambda run, effect: EffectOutcome.completed({"ok": True})})

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "answer"), next_node="end")

    wf = workflow({"ask": ask, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={})})
    run_id = rt.start(workflow=wf)
    waiting = rt.tick(workflow=wf, run_id=run_id)
    before = snapshot(rt, run_id)
    started = time.monotonic()
    with pytest.raises(JsonInvariantError, match="nested more than 250 levels") as exc_info:
        rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"x": _deep(100_000)})
    assert time.monotonic() - started < 5
    assert exc_info.value.path.startswith("vars.answer.x[0][0]")
    assert snapshot(rt, run_id) == before

    calls = []
    deep_effect = workflow({"n": lambda run, ctx: calls.append(1) or StepPlan(
        node_id="n", effect=Effect("greet", {"deep": _deep(100_000)}), next_node="n")}, workflow_id="deep")
    other = rt.start(workflow=deep_effect)
    before = snapshot(rt, other)
    with pytest.raises(JsonInvariantError, match="nested more than 250 levels"):
        rt.tick(workflow=deep_effect, run_id=other)
    assert snapshot(rt, other) == before

    done = rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"x": _deep(240)})
    assert done.status is RunStatus.COMPLETED


class _Tag(str):
    pass


class _Color(__import__("enum").Enum):
    RED = 1


def _json_like_values():
    """Values around every edge of the invariant: what the fast check must refuse or leave to the walk."""
    import uuid
    from collections import OrderedDict

    yield from (make() for _n, _k, make, _p in BAD_VALUES)
    nan_where_none_was = {"a": None, "b": [1, None]}
    nan_where_none_was["b"][1] = float("nan")
    yield from [
        {"max_tokens": None, "score": float("nan")}, [None, float("inf")], nan_where_none_was,
        {"id": uuid.uuid4()}, {"c": _Color.RED}, {"t": _Tag("x")}, {_Tag("k"): 1}, OrderedDict(a=1), (1, [2]),
        {"big": 2**64}, {"big": -(2**63) - 1}, {"ok": 2**64 - 1}, _deep(250), _deep(251), _deep(254), _deep(300),
        {"plain": [1, 2.5, "s", None, True, {"b": []}], "neg_zero": -0.0, "e": 1e308}, {}, [], None, "s", 3,
    ]


def test_the_fast_check_accepts_nothing_the_path_walk_refuses_and_encodes_plain_json_exactly():
    """``plain_json`` (orjson + decode-and-compare, what each step's check runs first) must never let through
    what ``find_json_violation`` refuses -- NaN/Infinity written as null where a None was, an Enum or UUID written as
    its value, str subclasses, 251+ levels -- and for plain JSON it gives the bytes orjson writes."""
    import orjson

    from abstractruntime.codec import plain_json

    accepted = 0
    for value in _json_like_values():
        found = plain_json(value)
        if found is not None:
            accepted += 1
            assert find_json_violation(value, "vars") is None, value
            assert found[0] == orjson.dumps(value) and found[1] == orjson.loads(found[0])
    assert accepted >= 8  # plain values do take the fast path
    assert plain_json(_deep(250)) is not None and plain_json(_deep(251)) is None


def test_str_subclasses_in_vars_are_plain_json_between_barriers_too():
    """A ``str`` subclass (what the invariant accepts: it encodes as its value) in vars under barrier durability
    used to escape the staged step as orjson's raw TypeError; it is written as the string."""
    rt = runtime_on()

    def tag(run, ctx):
        run.vars["tag"] = _Tag("x")
        return StepPlan(node_id="tag", next_node="end")

    wf = workflow({"tag": tag, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={"t": run.vars["tag"]})})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert rt.get_state(run_id).vars["tag"] == "x" and type(rt.get_state(run_id).vars["tag"]) is str


def _same_json_swaps():
    """A value swapped, in place, for one that orjson writes the same way but the invariant refuses."""
    import uuid

    u = uuid.uuid4()
    return [
        ("none_to_nan", {"x": None}, lambda v: v.__setitem__("x", float("nan")), "vars.x"),
        ("none_to_inf_nested", {"m": {"y": [None]}}, lambda v: v["m"]["y"].__setitem__(0, float("inf")), "vars.m.y[0]"),
        ("str_to_uuid", {"id": str(u)}, lambda v: v.__setitem__("id", u), "vars.id"),
        ("value_to_enum", {"c": 1}, lambda v: v.__setitem__("c", _Color.RED), "vars.c"),
    ]


@pytest.mark.parametrize("name,start_vars,swap,path", _same_json_swaps(), ids=[s[0] for s in _same_json_swaps()])
def test_a_swap_that_keeps_the_json_is_caught_at_its_step_after_steps_that_changed_nothing(name, start_vars, swap,
                                                                                        path):
    """Steps that leave vars as they were (the kernel's iteration counter aside) are staged without decoding their
    JSON again (vars compared with the copy checked last): a node that swaps a value for a non-JSON one written the
    same way (NaN for None, a UUID for its string, an Enum for its value) is still refused at its own step."""
    rt = runtime_on()

    def bad(run, ctx):
        swap(run.vars)
        return StepPlan(node_id="bad", next_node="end")

    wf = workflow({"a": goto("a", "b"), "b": goto("b", "c"), "c": goto("c", "bad"), "bad": bad,
                   "end": finish("end")})
    run_id = rt.start(workflow=wf, vars=start_vars)
    before = snapshot(rt, run_id)
    with pytest.raises(JsonInvariantError) as exc_info:
        rt.tick(workflow=wf, run_id=run_id)
    assert (exc_info.value.path, exc_info.value.node_id) == (path, "bad")
    assert snapshot(rt, run_id) == before  # the staged steps were never written


def test_steps_that_change_nothing_stage_the_state_a_failing_node_falls_back_to():
    """The state after a run of unchanged steps -- its iteration counter moved at each -- is what a node that raises
    falls back to (and what is written): not the live vars it half-mutated."""
    rt = runtime_on()

    def boom(run, ctx):
        run.vars["half"] = "written"
        raise RuntimeError("boom")

    wf = workflow({"a": goto("a", "b"), "b": goto("b", "c"), "c": goto("c", "boom"), "boom": boom})
    run_id = rt.start(workflow=wf, vars={"keep": [1, {"k": None}]})
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED and "boom" in state.error
    stored = rt.get_state(run_id)
    assert stored.vars["keep"] == [1, {"k": None}] and "half" not in stored.vars
    assert stored.vars["_limits"]["current_iteration"] == 3  # a, b and c; boom's step failed


def test_a_tuple_swapped_for_a_list_is_plain_json_and_written_as_the_list():
    rt = runtime_on()

    def swap(run, ctx):
        run.vars["l"] = tuple(run.vars["l"])
        return StepPlan(node_id="swap", next_node="end")

    wf = workflow({"a": goto("a", "swap"), "swap": swap, "end": finish("end")})
    run_id = rt.start(workflow=wf, vars={"l": [1, 2]})
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    assert rt.get_state(run_id).vars["l"] == [1, 2]
