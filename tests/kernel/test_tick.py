"""tick(): transitions, completion, failures, unknown effects, retries and legacy host handlers (spec §3.4, §5, §7)."""

from __future__ import annotations

import pytest

from abstractruntime import (
    DefaultEffectPolicy,
    Effect,
    EffectOutcome,
    EffectType,
    RunStatus,
    StepPlan,
    UnknownRunError,
)
from abstractruntime.errors import WorkflowSpecError

from kernel_support import effect_node, finish, goto, runtime_on, snapshot, status_rows, workflow


def status_row_expectation(status: str) -> dict:
    return {
        "status": "completed",
        "effect": {
            "type": "emit_event",
            "payload": {"name": "abstract.status", "scope": "session", "payload": {"text": status}},
            "result_key": None,
        },
        "result": {"emitted": True, "name": "abstract.status", "payload": {"text": status}},
        "idempotency_key": f"system:terminal_status:{status}",
        "attempt": 1,
        "error": None,
    }


def assert_status_row(row: dict, status: str, *, run_id: str, node_id: str) -> None:
    for key, value in status_row_expectation(status).items():
        assert row[key] == value, key
    assert row["run_id"] == run_id
    assert row["node_id"] == node_id
    assert row["ended_at"] is not None


def linear_workflow(trail):
    def a(run, ctx):
        trail.append("a")
        run.vars["total"] = 1
        return StepPlan(node_id="a", next_node="b")

    def b(run, ctx):
        trail.append("b")
        run.vars["total"] += 10
        return StepPlan(node_id="b", next_node="c")

    def c(run, ctx):
        trail.append("c")
        run.vars["total"] += 100
        return StepPlan(node_id="c", next_node="d")

    def d(run, ctx):
        trail.append("d")
        return StepPlan(node_id="d", complete_output={"total": run.vars["total"]})

    return workflow({"a": a, "b": b, "c": c, "d": d})


def test_linear_workflow_completes_with_output():
    rt = runtime_on()
    trail = []
    wf = linear_workflow(trail)
    run_id = rt.start(workflow=wf, vars={"seed": 0})
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"total": 111}
    assert trail == ["a", "b", "c", "d"]
    persisted = rt.get_state(run_id)
    assert persisted.status is RunStatus.COMPLETED and persisted.output == {"total": 111}
    assert persisted.vars["total"] == 111 and persisted.vars["seed"] == 0
    assert persisted.step == 4


def test_start_checkpoints_a_running_run_and_writes_no_ledger_row():
    rt = runtime_on()
    trail = []
    wf = linear_workflow(trail)
    run_id = rt.start(workflow=wf, vars={"x": 1}, actor_id="actor", session_id="sess")
    state = rt.get_state(run_id)
    assert state.status is RunStatus.RUNNING and state.current_node == "a"
    assert state.actor_id == "actor" and state.session_id == "sess"
    assert state.vars["x"] == 1 and state.vars["_limits"]["max_iterations"] == 25
    assert isinstance(state.vars["_runtime"], dict)
    assert rt.get_ledger(run_id) == []
    assert trail == []


def test_start_rejects_an_entry_node_that_is_not_a_node():
    rt = runtime_on()
    wf = workflow({"a": finish("a")}, entry="nope")
    with pytest.raises(WorkflowSpecError, match="nope"):
        rt.start(workflow=wf)


def test_max_steps_is_respected_and_run_stays_running_at_the_right_node():
    rt = runtime_on()
    trail = []
    wf = linear_workflow(trail)
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id, max_steps=2)
    assert state.status is RunStatus.RUNNING
    assert state.current_node == "c"
    assert trail == ["a", "b"]
    persisted = rt.get_state(run_id)
    assert persisted.current_node == "c" and persisted.status is RunStatus.RUNNING
    assert persisted.vars["total"] == 11
    # a pure transition writes no ledger row
    assert rt.get_ledger(run_id) == []
    state = rt.tick(workflow=wf, run_id=run_id, max_steps=1)
    assert state.current_node == "d" and trail == ["a", "b", "c"]
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED and trail == ["a", "b", "c", "d"]


def test_max_steps_may_be_any_number_infinity_included():
    rt = runtime_on()
    trail = []
    wf = linear_workflow(trail)
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id, max_steps=1.5).current_node == "c"  # steps while below it
    assert rt.tick(workflow=wf, run_id=run_id, max_steps=float("inf")).status is RunStatus.COMPLETED
    assert trail == ["a", "b", "c", "d"]


def test_complete_output_writes_completion_row_then_terminal_status_row():
    rt = runtime_on()
    trail = []
    wf = linear_workflow(trail)
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    ledger = rt.get_ledger(run_id)
    assert len(ledger) == 2  # three pure transitions wrote nothing
    completion, status = ledger
    assert completion["node_id"] == "d"
    assert completion["status"] == "completed"
    assert completion["effect"] is None
    assert completion["idempotency_key"] is None
    assert completion["result"] == {"completed": True, "output": {"total": 111}}
    assert completion["run_id"] == run_id
    assert_status_row(status, "completed", run_id=run_id, node_id="d")
    assert ledger[-1]["idempotency_key"] == "system:terminal_status:completed"


@pytest.mark.parametrize("extra,named", [({"effect": Effect("greet")}, "effect"),
                                         ({"effect": Effect("greet"), "next_node": "n"}, "effect"),
                                         ({"next_node": "n"}, "next_node")])
def test_a_plan_with_complete_output_and_another_outcome_fails_the_node_naming_both(extra, named):
    """Reference §2 let complete_output win silently (the effect was dropped); a plan has exactly one outcome."""
    calls = []
    rt = runtime_on(effect_handlers={"greet": lambda run, effect: calls.append(1) or EffectOutcome.completed({})})

    def node(run, ctx):
        run.vars["touched"] = True
        return StepPlan(node_id="n", complete_output={"done": 1}, **extra)

    wf = workflow({"n": node})
    run_id = rt.start(workflow=wf, vars={"x": 1})
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED and state.output is None and calls == []
    assert "complete_output" in state.error and named in state.error
    assert "touched" not in state.vars and state.vars["x"] == 1  # the last good vars are kept
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["failed", "completed"]


def test_terminal_effect_node_completes_with_success_result():
    rt = runtime_on()
    wf = workflow({"say": effect_node("say", Effect(EffectType.ANSWER_USER, {"message": "bye"}, "said"))})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    result = {"message": "bye", "level": "message"}
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"success": True, "result": result}
    assert state.vars["said"] == result
    ledger = rt.get_ledger(run_id)
    assert [r["status"] for r in ledger] == ["started", "completed", "completed"]
    started, done, status = ledger
    assert started["step_id"] == done["step_id"]
    assert done["result"] == result
    assert started["effect"] == {"type": "answer_user", "payload": {"message": "bye"}, "result_key": "said"}
    assert started["idempotency_key"] and started["idempotency_key"] == done["idempotency_key"]
    # no {"completed": True} row for a terminal effect node
    assert not any((r.get("result") or {}).get("completed") for r in ledger)
    assert_status_row(status, "completed", run_id=run_id, node_id="say")


def test_result_key_is_a_dotted_path_and_replaces_non_dict_intermediates():
    rt = runtime_on(effect_handlers={"calc": lambda run, effect: EffectOutcome.completed({"v": 42})})
    wf = workflow({
        "n": effect_node("n", Effect("calc", {}, "a.b.c"), next_node="end"),
        "end": lambda run, ctx: StepPlan(node_id="end", complete_output={"vars": run.vars["a"]}),
    })
    run_id = rt.start(workflow=wf, vars={"a": {"b": "not a dict", "keep": 1}})
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.output == {"vars": {"b": {"c": {"v": 42}}, "keep": 1}}


# --- failures -------------------------------------------------------------------------------------------------------
def assert_failed(rt, run_id, node_id, *fragments):
    state = rt.get_state(run_id)
    assert state.status is RunStatus.FAILED
    for fragment in fragments:
        assert fragment in state.error, (fragment, state.error)
    ledger = rt.get_ledger(run_id)
    failed_rows = [r for r in ledger if r["status"] == "failed"]
    assert failed_rows, ledger
    assert failed_rows[-1]["node_id"] == node_id
    assert failed_rows[-1]["error"]
    assert_status_row(ledger[-1], "failed", run_id=run_id, node_id=node_id)
    assert len(status_rows(ledger)) == 1
    return state, ledger


def test_unknown_node_fails_the_run():
    rt = runtime_on()
    wf = workflow({"a": goto("a", "ghost")})
    run_id = rt.start(workflow=wf)
    returned = rt.tick(workflow=wf, run_id=run_id)
    assert returned.status is RunStatus.FAILED
    state, ledger = assert_failed(rt, run_id, "ghost", "ghost", "Unknown node")
    assert returned.error == state.error


def test_raising_node_fails_the_run_and_its_half_mutations_are_not_persisted():
    rt = runtime_on()

    def a(run, ctx):
        run.vars["stage"] = "a-done"
        return StepPlan(node_id="a", next_node="b")

    def b(run, ctx):
        run.vars["stage"] = "half"
        run.vars["junk"] = [1, 2, 3]
        raise ValueError("boom in b")

    wf = workflow({"a": a, "b": b})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    state, ledger = assert_failed(rt, run_id, "b", "Node 'b'", "boom in b", "ValueError")
    assert state.vars["stage"] == "a-done"
    assert "junk" not in state.vars
    assert state.current_node == "b"
    assert len(ledger) == 2
    assert ledger[0]["error"] == state.error


def test_node_returning_a_non_step_plan_fails_the_run():
    rt = runtime_on()
    wf = workflow({"a": lambda run, ctx: {"node_id": "a", "next_node": "a"}})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    assert_failed(rt, run_id, "a", "Node 'a'", "StepPlan", "dict")


def test_plan_with_neither_effect_nor_next_node_fails_the_run():
    rt = runtime_on()
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    assert_failed(rt, run_id, "a", "Node 'a' returned no effect and no next_node")


def test_tick_on_a_failed_run_returns_it_unchanged():
    rt = runtime_on()
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    before = snapshot(rt, run_id)
    again = rt.tick(workflow=wf, run_id=run_id)
    assert again.status is RunStatus.FAILED
    assert snapshot(rt, run_id) == before


def test_unknown_effect_type_fails_naming_the_type_and_installed_handlers():
    rt = runtime_on()
    wf = workflow({"a": effect_node("a", Effect("no_such_effect", {"x": 1}), next_node="a")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    state, ledger = assert_failed(rt, run_id, "a", "No effect handler registered for no_such_effect", "ask_user",
                                  "Effect failed after 1 attempt: ")
    assert state.error.startswith("Effect failed after 1 attempt: No effect handler registered for no_such_effect")


def test_raising_handler_fails_with_reference_message():
    def boom(run, effect, next_node):
        raise RuntimeError("kaput")

    rt = runtime_on(effect_handlers={"boom": boom})
    wf = workflow({"a": effect_node("a", Effect("boom"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    state, ledger = assert_failed(rt, run_id, "a")
    assert state.error == "Effect failed after 1 attempt: Effect handler raised exception: kaput"
    assert [r["status"] for r in ledger] == ["started", "failed", "completed"]
    assert ledger[1]["error"] == "Effect handler raised exception: kaput"
    assert ledger[0]["step_id"] == ledger[1]["step_id"]


def test_handler_returning_failed_outcome_fails_the_run():
    rt = runtime_on(effect_handlers={"no": lambda run, effect: EffectOutcome.failed("said no")})
    wf = workflow({"a": effect_node("a", Effect("no"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    state, _ = assert_failed(rt, run_id, "a")
    assert state.error == "Effect failed after 1 attempt: said no"


def test_handler_returning_something_else_than_an_outcome_fails_clearly():
    rt = runtime_on(effect_handlers={"odd": lambda run, effect: {"status": "completed"}})
    wf = workflow({"a": effect_node("a", Effect("odd"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    assert_failed(rt, run_id, "a", "odd", "EffectOutcome")


# --- retries --------------------------------------------------------------------------------------------------------
class Flaky:
    """Fails ``failures`` times (raising or returning failed), then succeeds."""

    def __init__(self, failures: int, *, raise_: bool = True) -> None:
        self.failures = failures
        self.raise_ = raise_
        self.calls = 0

    def __call__(self, run, effect, default_next_node):
        self.calls += 1
        if self.calls <= self.failures:
            if self.raise_:
                raise ConnectionError(f"flake {self.calls}")
            return EffectOutcome.failed(f"flake {self.calls}")
        return EffectOutcome.completed({"attempt": self.calls})


@pytest.mark.parametrize("raise_", [True, False])
def test_retries_until_success_record_each_attempt(raise_):
    flaky = Flaky(2, raise_=raise_)
    rt = runtime_on(effect_handlers={"flaky": flaky},
                    effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=0))
    wf = workflow({
        "a": effect_node("a", Effect("flaky", {"q": 1}, "res"), next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"res": run.vars["res"]}),
    })
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert state.output == {"res": {"attempt": 3}}
    assert flaky.calls == 3
    ledger = rt.get_ledger(run_id)
    effect_rows = ledger[:6]
    assert [(r["status"], r["attempt"]) for r in effect_rows] == [
        ("started", 1), ("failed", 1), ("started", 2), ("failed", 2), ("started", 3), ("completed", 3),
    ]
    for i in range(0, 6, 2):
        assert effect_rows[i]["step_id"] == effect_rows[i + 1]["step_id"]
    assert len({r["step_id"] for r in effect_rows}) == 3  # each retry gets a new step_id
    assert len({r["idempotency_key"] for r in effect_rows}) == 1 and effect_rows[0]["idempotency_key"]
    assert "flake 1" in effect_rows[1]["error"] and "flake 2" in effect_rows[3]["error"]
    assert effect_rows[5]["result"] == {"attempt": 3}
    assert [r["status"] for r in ledger[6:]] == ["completed", "completed"]


def test_retries_exhausted_fail_with_attempt_count_and_backoff_uses_injected_sleep():
    flaky = Flaky(10, raise_=False)
    sleeps = []
    rt = runtime_on(effect_handlers={"flaky": flaky}, sleep=sleeps.append,
                    effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=0.5))
    wf = workflow({"a": effect_node("a", Effect("flaky"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert state.error == "Effect failed after 3 attempts: flake 3"
    assert flaky.calls == 3
    assert sleeps == [0.5, 1.0]  # base * 2**(attempt-1) after attempts 1 and 2, none after the last
    ledger = rt.get_ledger(run_id)
    assert [r["status"] for r in ledger] == ["started", "failed"] * 3 + ["completed"]


def test_waiting_outcomes_are_not_retried():
    calls = []

    def asker(run, effect, nxt):
        calls.append(1)
        from abstractruntime import WaitReason, WaitState

        return EffectOutcome.waiting(WaitState(reason=WaitReason.EVENT, wait_key="k", resume_to_node=nxt))

    rt = runtime_on(effect_handlers={"asker": asker},
                    effect_policy=DefaultEffectPolicy(default_max_attempts=5, default_backoff_base=0))
    wf = workflow({"a": effect_node("a", Effect("asker"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.wait_key == "k"
    assert calls == [1]
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started", "waiting"]


# --- legacy host handlers -------------------------------------------------------------------------------------------
def test_legacy_two_argument_handler_is_called_once_per_attempt():
    seen = []

    def two(run, effect):
        seen.append((run.run_id, run.current_node, effect.type, dict(effect.payload)))
        return EffectOutcome.completed({"two": True})

    rt = runtime_on(effect_handlers={"two": two})
    wf = workflow({"a": effect_node("a", Effect("two", {"p": 1}, "r"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    assert seen == [(run_id, "a", "two", {"p": 1})]
    assert rt.get_state(run_id).vars["r"] == {"two": True}


def test_legacy_three_argument_handler_gets_default_next_node():
    seen = []

    def three(run, effect, default_next_node):
        seen.append(default_next_node)
        return EffectOutcome.completed({"three": True})

    rt = runtime_on(effect_handlers={"three": three})
    wf = workflow({"a": effect_node("a", Effect("three"), next_node="b"), "b": finish("b")})
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    assert seen == ["b"]


def test_legacy_varargs_handler_gets_three_arguments_and_enum_keys_work():
    seen = []

    def var(*args):
        seen.append(len(args))
        return EffectOutcome.completed({"n": len(args)})

    # a host overriding a builtin effect type, keyed by the enum member as reference hosts do
    rt = runtime_on(effect_handlers={EffectType.ANSWER_USER: var})
    assert rt.effect_handler_types()["answer_user"] == "host"
    wf = workflow({"a": effect_node("a", Effect(EffectType.ANSWER_USER, {"message": "x"}), next_node="b"),
                   "b": finish("b")})
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    assert seen == [3]


# --- unknown runs ---------------------------------------------------------------------------------------------------
def test_unknown_run_raises_key_error_with_reference_message():
    rt = runtime_on()
    wf = workflow({"a": finish("a")})
    for call in (
        lambda: rt.get_state("nope"),
        lambda: rt.tick(workflow=wf, run_id="nope"),
        lambda: rt.cancel_run("nope"),
        lambda: rt.pause_run("nope"),
        lambda: rt.resume_run("nope"),
    ):
        with pytest.raises(UnknownRunError) as exc_info:
            call()
        assert isinstance(exc_info.value, KeyError)
        assert str(exc_info.value) == "Unknown run_id: nope"


def test_start_copies_vars_shallowly_and_seeds_runtime_namespace_from_config():
    from abstractruntime import RuntimeConfig

    rt = runtime_on(config=RuntimeConfig(provider=" ollama ", model="qwen", max_iterations=7,
                                         model_capabilities={"tool_support": "native"}))
    caller_vars = {"x": 1}
    run_id = rt.start(workflow=workflow({"a": finish("a")}), vars=caller_vars)
    assert caller_vars == {"x": 1}
    v = rt.get_state(run_id).vars
    assert v["_limits"]["max_iterations"] == 7
    assert v["_runtime"] == {"provider": "ollama", "model": "qwen", "tool_support": "native",
                             "supports_native_tools": True}


def test_tick_on_a_user_wait_returns_it_unchanged():
    rt = runtime_on()
    wf = workflow({"ask": effect_node("ask", Effect(EffectType.ASK_USER, {"prompt": "?"}), next_node="b"),
                   "b": finish("b")})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    before = snapshot(rt, run_id)
    state = rt.tick(workflow=wf, run_id=run_id)
    assert state.status is RunStatus.WAITING
    assert snapshot(rt, run_id) == before


def test_a_stale_writer_is_fenced_and_returns_the_winners_state():
    """Two runtimes on one store tick the same run: the one that commits second writes nothing (§17 #1)."""
    from abstractruntime_inmemory.store import MemoryBackend

    backend = MemoryBackend()
    rt_a, rt_b = runtime_on(backend), runtime_on(backend)
    wf_b = workflow({
        "a": lambda run, ctx: StepPlan(node_id="a", next_node="z"),
        "z": lambda run, ctx: StepPlan(node_id="z", complete_output={"by": "B"}),
    })

    def a_for_a(run, ctx):
        run.vars["by"] = "A"
        rt_b.tick(workflow=wf_b, run_id=run.run_id)  # another worker finishes the run meanwhile
        return StepPlan(node_id="a", effect=Effect(EffectType.ANSWER_USER, {"message": "from A"}), next_node="z")

    wf_a = workflow({"a": a_for_a, "z": lambda run, ctx: StepPlan(node_id="z", complete_output={"by": "A"})})
    run_id = rt_a.start(workflow=wf_a)
    state = rt_a.tick(workflow=wf_a, run_id=run_id)
    assert state.status is RunStatus.COMPLETED and state.output == {"by": "B"}
    persisted = rt_a.get_state(run_id)
    assert persisted.output == {"by": "B"} and "by" not in persisted.vars
    ledger = rt_a.get_ledger(run_id)
    assert [r["node_id"] for r in ledger] == ["z", "z"]  # none of A's effect rows were written


def test_node_failing_right_after_a_due_wait_until_leaves_a_consistent_failed_run():
    from datetime import datetime, timedelta, timezone

    rt = runtime_on()

    def wait(run, ctx):
        until = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_UNTIL, {"until": until}), next_node="after")

    def after(run, ctx):
        raise ValueError("after exploded")

    wf = workflow({"wait": wait, "after": after})
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    state = rt.get_state(run_id)
    state.waiting.until = "2000-01-01T00:00:00Z"
    rt.run_store.save(state)

    failed = rt.tick(workflow=wf, run_id=run_id)
    assert failed.status is RunStatus.FAILED
    assert "after exploded" in failed.error
    persisted = rt.get_state(run_id)
    assert persisted.status is RunStatus.FAILED
    assert persisted.waiting is None  # a failed run must not keep a stale wait
    assert persisted.current_node == "after"  # it failed at the node it resumed to
    assert rt.get_ledger(run_id)[-2]["node_id"] == "after"


def test_execute_effect_runs_a_handler_in_process_without_ledger_rows():
    """Runtime.execute_effect: the handler (through the execute_effect wrappers) sees the given key; nothing is
    written; an exception or an unknown type is a failed outcome, never raised."""
    from abstractruntime import Effect, EffectOutcome
    from kernel_support import HandlerPlugin

    seen = []

    def echo(call):
        seen.append((call.idempotency_key, call.node_id, call.attempt))
        if call.effect.payload.get("boom"):
            raise RuntimeError("kaput")
        return EffectOutcome.completed({"echo": call.effect.payload})

    rt = runtime_on(plugins=[HandlerPlugin("echo", "echo", echo)])
    wf = workflow({"a": lambda run, ctx: finish("a")})
    run = rt.get_state(rt.start(workflow=wf))
    before = snapshot(rt, run.run_id)
    ok = rt.execute_effect(run, Effect("echo", {"x": 1}), node_id="n", idempotency_key="k1")
    assert ok.status == "completed" and ok.result == {"echo": {"x": 1}} and seen == [("k1", "n", 1)]
    failed = rt.execute_effect(run, Effect("echo", {"boom": True}), node_id="n", idempotency_key="k2")
    assert failed.status == "failed" and failed.error == "Effect handler raised exception: kaput"
    unknown = rt.execute_effect(run, Effect("nope", {}), node_id="n", idempotency_key="k3")
    assert unknown.status == "failed" and unknown.error.startswith("No effect handler registered for nope")
    assert snapshot(rt, run.run_id) == before  # no ledger row, no checkpoint
