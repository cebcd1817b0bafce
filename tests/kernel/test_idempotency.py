"""Idempotency keys with the step counter: loops re-execute, crash-and-retry reuses (spec §6, §17 #2/#3)."""

from __future__ import annotations

import uuid

import pytest

from abstractruntime import Effect, EffectOutcome, RunStatus, Runtime, StepPlan, StepRecord, StepStatus
from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore, MemoryBackend

from kernel_support import Counter, HandlerPlugin, effect_node, runtime_on, workflow


def loop_workflow(times: int) -> object:
    """``work`` requests the identical effect each visit; ``check`` loops back ``times`` times."""

    def work(run, ctx):
        return StepPlan(node_id="work", effect=Effect("count_me", {"same": "payload"}, "last"), next_node="check")

    def check(run, ctx):
        run.vars["i"] = run.vars.get("i", 0) + 1
        if run.vars["i"] < times:
            return StepPlan(node_id="check", next_node="work")
        return StepPlan(node_id="check", complete_output={"i": run.vars["i"], "last": run.vars["last"]})

    return workflow({"work": work, "check": check})


@pytest.mark.parametrize("via_plugin", [False, True])
def test_loop_revisiting_a_node_with_the_same_effect_executes_it_each_time(via_plugin):
    counter = Counter()
    if via_plugin:
        rt = runtime_on(plugins=[HandlerPlugin("counter_plugin", "count_me", counter)])
    else:
        rt = runtime_on(effect_handlers={"count_me": lambda run, effect: counter(None)})
    wf = loop_workflow(3)
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert len(counter.calls) == 3  # reference bug §17 #3 would execute once and reuse twice
    assert state.output == {"i": 3, "last": {"ok": True, "n": 3}}
    keys = [r["idempotency_key"] for r in rt.get_ledger(run_id) if r["status"] == "completed" and r["effect"]
            and r["effect"]["type"] == "count_me"]
    assert len(keys) == 3 and len(set(keys)) == 3


def test_idempotency_key_depends_on_step_but_is_stable_for_the_same_checkpoint():
    rt = runtime_on()
    wf = loop_workflow(2)
    run_id = rt.start(workflow=wf)
    state = rt.get_state(run_id)
    eff = Effect("count_me", {"same": "payload"})
    k1 = rt.effect_policy.idempotency_key(run=state, node_id="work", effect=eff)
    assert k1 == rt.effect_policy.idempotency_key(run=rt.get_state(run_id), node_id="work", effect=eff)
    state.step += 1
    assert rt.effect_policy.idempotency_key(run=state, node_id="work", effect=eff) != k1


def _recorded_row(run, node_id, effect, key, status, result=None):
    return StepRecord(
        run_id=run.run_id,
        step_id=str(uuid.uuid4()),
        node_id=node_id,
        status=status,
        effect=effect.to_record(),
        result=result,
        idempotency_key=key,
    )


def test_recorded_completed_outcome_is_reused_without_calling_the_handler():
    backend = MemoryBackend()
    counter = Counter()
    rt = runtime_on(backend, effect_handlers={"charge": lambda run, effect: counter(None)})
    effect = Effect("charge", {"amount": 5}, "receipt")
    wf = workflow({
        "pay": effect_node("pay", effect, next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"receipt": run.vars["receipt"]}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.get_state(run_id)
    key = rt.effect_policy.idempotency_key(run=state, node_id="pay", effect=effect)
    prior = _recorded_row(state, "pay", effect, key, StepStatus.COMPLETED, {"charged": "earlier"})
    rt.ledger_store.append(prior)

    final = rt.tick(workflow=wf, run_id=run_id)
    assert counter.calls == []
    assert final.status is RunStatus.COMPLETED
    assert final.output == {"receipt": {"charged": "earlier"}}
    ledger = rt.get_ledger(run_id)
    # reuse writes no effect rows: the prior row, the completion row and the status row
    assert [r["step_id"] for r in ledger][0] == prior.step_id
    assert not [r for r in ledger if r["status"] == "started"]
    assert len(ledger) == 3


def test_a_reservation_left_by_a_crash_is_reused_not_duplicated():
    """A STARTED row with the step's key (process died mid-effect): the handler runs once, one STARTED row."""
    counter = Counter({"charged": 5})
    plugin = HandlerPlugin("payments", "charge", counter, side_effects=True)
    rt = runtime_on(plugins=[plugin])
    effect = Effect("charge", {"amount": 5}, "receipt")
    wf = workflow({
        "pay": effect_node("pay", effect, next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"receipt": run.vars["receipt"]}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.get_state(run_id)
    key = rt.effect_policy.idempotency_key(run=state, node_id="pay", effect=effect)
    reservation = StepRecord.start(run=state, node_id="pay", effect=effect, attempt=1, idempotency_key=key)
    rt.ledger_store.append(reservation)

    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED
    assert len(counter.calls) == 1
    assert counter.calls[0].idempotency_key == key
    ledger = rt.get_ledger(run_id)
    rows = [r for r in ledger if r["step_id"] == reservation.step_id]
    assert [r["status"] for r in rows] == ["started", "completed"]
    assert rows[1]["result"] == {"charged": 5, "n": 1}
    assert [r["status"] for r in ledger if r["idempotency_key"] == key] == ["started", "completed"]
    assert len([r for r in ledger if r["status"] == "started"]) == 1


def test_side_effecting_handler_commits_a_reservation_before_it_runs():
    backend = MemoryBackend()
    seen_rows = []

    def charge(call):
        seen_rows.extend(backend.ledger_store.list(call.run.run_id))
        return EffectOutcome.completed({"ok": 1})

    rt = runtime_on(backend, plugins=[HandlerPlugin("payments", "charge", charge, side_effects=True)])
    wf = workflow({"pay": effect_node("pay", Effect("charge", {"a": 1}), next_node="done"),
                   "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    assert [r["status"] for r in seen_rows] == ["started"]
    assert seen_rows[0]["idempotency_key"]


def test_crash_between_reservation_and_checkpoint_reruns_under_the_same_reservation():
    """Simulated crash with the store's fault seam: the step's final commit fails after the reservation."""
    backend = MemoryBackend()
    counter = Counter()
    rt = runtime_on(backend, plugins=[HandlerPlugin("payments", "charge", counter, side_effects=True)])
    wf = workflow({"pay": effect_node("pay", Effect("charge", {"amount": 1}, "r"), next_node="done"),
                   "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    run_id = rt.start(workflow=wf)
    before = rt.get_state(run_id)
    commits = []

    def crash_on_second_commit(point):
        commits.append(point)
        if len(commits) == 2:
            raise OSError("power loss")

    backend.fault_injector = crash_on_second_commit
    with pytest.raises(OSError):
        rt.tick(workflow=wf, run_id=run_id)
    backend.fault_injector = None
    assert rt.get_state(run_id) == before
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started"]
    assert len(counter.calls) == 1

    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED
    assert len(counter.calls) == 2  # at-least-once: the effect may run again ...
    ledger = rt.get_ledger(run_id)
    # ... but the bookkeeping is exactly-once: one reservation, completed under the same step_id
    assert [r["status"] for r in ledger] == ["started", "completed", "completed", "completed"]
    assert ledger[0]["step_id"] == ledger[1]["step_id"]
    assert counter.calls[0].idempotency_key == counter.calls[1].idempotency_key


def test_split_stores_crash_after_outcome_recorded_reuses_the_outcome():
    """Reference-style separate stores: records are written before the checkpoint; a crash between the two
    leaves the outcome in the ledger, and the retried step must reuse it instead of executing again."""
    runs, ledger_store = InMemoryRunStore(), InMemoryLedgerStore()
    counter = Counter()
    rt = Runtime(run_store=runs, ledger_store=ledger_store, effect_handlers={"charge": lambda r, e: counter(None)})
    wf = workflow({"pay": effect_node("pay", Effect("charge", {"amount": 1}, "r"), next_node="done"),
                   "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"r": run.vars["r"]})})
    run_id = rt.start(workflow=wf)

    def crash(point):
        raise OSError("crash before checkpoint")

    runs.backend.fault_injector = crash
    with pytest.raises(OSError):
        rt.tick(workflow=wf, run_id=run_id)
    runs.backend.fault_injector = None
    assert rt.get_state(run_id).current_node == "pay"
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started", "completed"]
    assert len(counter.calls) == 1

    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED
    assert len(counter.calls) == 1
    assert final.output == {"r": {"ok": True, "n": 1}}


# --- TOOL_CALLS payload normalisation (spec §6) ----------------------------------------------------------------------
def _tool_key(payload, effect_type="tool_calls"):
    from abstractruntime import compute_idempotency_key

    return compute_idempotency_key(run_id="r", node_id="n", effect=Effect(effect_type, payload), step=3)


def test_tool_calls_key_ignores_drifting_ids_argument_encoding_names_and_allowlist_order():
    base = _tool_key({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}], "allowed_tools": ["add", "x"]})
    drifted = {
        "tool_calls": [{"name": "  add ", "arguments": '{"b": 2, "a": 1}', "call_id": "call_xyz", "id": "x",
                        "runtime_call_id": "rt", "model_call_id": "m", "idempotency_key": "k"}],
        "allowed_tools": [" x", "add", "add", "", 7],
    }
    assert _tool_key(drifted) == base
    assert _tool_key({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "call_abc"}],
                      "allowed_tools": ["x", "add"]}) == base
    # OpenAI-style nested function, normalised the same way
    nested = _tool_key({"tool_calls": [{"id": "call_1", "function": {"name": "add ", "arguments": '{"a": 1}'}}]})
    assert nested == _tool_key({"tool_calls": [{"id": "call_2", "function": {"name": "add", "arguments": {"a": 1}}}]})
    # unparsable / non-object / non-string arguments all hash as {}
    empty = _tool_key({"tool_calls": [{"name": "add", "arguments": {}}]})
    for args in ("{not json", "[1, 2]", "3", None, 42, ["a"]):
        assert _tool_key({"tool_calls": [{"name": "add", "arguments": args}]}) == empty


def test_tool_calls_key_still_differs_for_different_calls_and_other_effects_are_not_normalised():
    one = _tool_key({"tool_calls": [{"name": "add", "arguments": {"a": 1}}]})
    assert _tool_key({"tool_calls": [{"name": "add", "arguments": {"a": 2}}]}) != one
    assert _tool_key({"tool_calls": [{"name": "sub", "arguments": {"a": 1}}]}) != one
    assert _tool_key({"tool_calls": [{"name": "add", "arguments": {"a": 1}}], "allowed_tools": ["add"]}) != one
    ask = {"prompt": "ok?", "call_id": "a"}
    assert _tool_key(ask, "ask_user") != _tool_key({**ask, "call_id": "b"}, "ask_user")
    assert _tool_key({"prompt": " ok?"}, "ask_user") != _tool_key({"prompt": "ok?"}, "ask_user")


def test_tool_calls_key_does_not_modify_the_payload():
    import copy

    payload = {"tool_calls": [{"name": " add ", "arguments": '{"a": 1}', "call_id": "c",
                               "function": {"name": " add", "arguments": "{}", "id": "f"}}, "junk"],
               "allowed_tools": ["b", "a", "a"]}
    before = copy.deepcopy(payload)
    _tool_key(payload)
    assert payload == before


def test_tool_calls_reissued_with_a_new_provider_call_id_after_a_crash_reuse_the_recorded_result():
    """The node re-derives its tool calls on the retry (as an LLM re-run would) and the provider ids drift: the
    recorded outcome is still found under the same key and the tool does not run again."""
    runs, ledger_store = InMemoryRunStore(), InMemoryLedgerStore()
    executed = []

    def run_tools(run, effect):
        executed.append(effect.payload["tool_calls"][0])
        return EffectOutcome.completed({"results": [dict(effect.payload["tool_calls"][0], output=3)]})

    rt = Runtime(run_store=runs, ledger_store=ledger_store, effect_handlers={"tool_calls": run_tools})
    issued = iter([{"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "call_abc"},
                   {"name": "add ", "arguments": '{"a": 1, "b": 2}', "call_id": "call_xyz"}])
    wf = workflow({
        "tools": lambda run, ctx: StepPlan(node_id="tools", effect=Effect("tool_calls", {
            "tool_calls": [next(issued)]}, "res"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars["res"]}),
    })
    run_id = rt.start(workflow=wf)

    def crash(point):
        raise OSError("crash before checkpoint")

    runs.backend.fault_injector = crash
    with pytest.raises(OSError):
        rt.tick(workflow=wf, run_id=run_id)
    runs.backend.fault_injector = None
    assert len(executed) == 1

    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED
    assert len(executed) == 1  # reused, not executed again
    assert final.output["res"]["results"][0]["call_id"] == "call_abc"  # the recorded outcome
