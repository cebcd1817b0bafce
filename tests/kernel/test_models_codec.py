"""Models and the codec: every model round-trips through JSON text; enums match the reference."""

from __future__ import annotations

import json

import pytest

from abstractruntime import (
    Effect,
    EffectOutcome,
    EffectType,
    LimitWarning,
    RunState,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    WorkflowSpec,
)
from abstractruntime.codec import converter, decode_run, encode_run


# Module-level node functions: the only kind a WorkflowSpec can be written to JSON with.
def node_start(run, ctx):
    return StepPlan(node_id="start", next_node="end")


def node_end(run, ctx):
    return StepPlan(node_id="end", complete_output={"ok": True})


def roundtrip(obj, cls):
    data = converter.unstructure(obj)
    text = json.dumps(data, allow_nan=False)
    back = converter.structure(json.loads(text), cls)
    assert back == obj
    assert type(back) is cls
    return back, data


def full_wait() -> WaitState:
    return WaitState(
        reason=WaitReason.USER,
        wait_key="user:r1:ask",
        until="2030-01-01T00:00:00+00:00",
        resume_to_node="after",
        result_key="answers.first",
        prompt="Pick one",
        choices=["a", "b"],
        allow_free_text=False,
        details={"kind": "x", "n": [1, 2.5, None, True]},
    )


def test_wait_state_round_trips_with_every_field():
    back, data = roundtrip(full_wait(), WaitState)
    assert data["reason"] == "user"
    assert back.reason is WaitReason.USER


@pytest.mark.parametrize("reason", list(WaitReason))
def test_wait_state_round_trips_for_every_reason(reason):
    back, data = roundtrip(WaitState(reason=reason, wait_key="k"), WaitState)
    assert data["reason"] == reason.value
    assert back.reason is reason


def test_run_state_round_trips_including_nested_wait_and_our_fields():
    run = RunState.new(workflow_id="wf", entry_node="start", actor_id="a", session_id="s",
                       vars={"x": {"y": [1, "two", 3.5, None, False]}, "ü": "ö"}, parent_run_id="p")
    run.status = RunStatus.WAITING
    run.waiting = full_wait()
    run.output = {"o": 1}
    run.error = "e"
    run.step = 7
    run.revision = 3
    back, data = roundtrip(run, RunState)
    assert data["status"] == "waiting"
    assert data["waiting"]["reason"] == "user"
    assert back.step == 7 and back.revision == 3
    assert back.waiting == run.waiting
    # the kernel's own encode/decode agrees with the converter
    assert decode_run(encode_run(run)) == run


@pytest.mark.parametrize("status", list(RunStatus))
def test_run_state_round_trips_for_every_status(status):
    run = RunState(run_id="r", workflow_id="wf", status=status, current_node="n")
    back, data = roundtrip(run, RunState)
    assert data["status"] == status.value
    assert back.status is status


def test_step_record_round_trips_in_each_state():
    run = RunState.new(workflow_id="wf", entry_node="n", actor_id="actor", session_id="sess")
    effect = Effect(EffectType.ASK_USER, {"prompt": "?"}, "r")
    started = StepRecord.start(run=run, node_id="n", effect=effect, attempt=2, idempotency_key="k")
    assert started.status is StepStatus.STARTED
    assert started.actor_id == "actor" and started.session_id == "sess"
    assert started.effect == {"type": "ask_user", "payload": {"prompt": "?"}, "result_key": "r"}
    for rec in (
        started,
        started.finish_success({"v": 1}),
        started.finish_waiting(full_wait()),
        started.finish_failure("bad"),
    ):
        back, data = roundtrip(rec, StepRecord)
        assert data["status"] == rec.status.value
        assert back.step_id == started.step_id
    waiting = started.finish_waiting(full_wait())
    assert waiting.result["wait"]["reason"] == "user"
    assert waiting.result["wait"]["choices"] == ["a", "b"]
    assert waiting.ended_at is not None
    # finishing never mutates the STARTED row
    assert started.status is StepStatus.STARTED and started.ended_at is None


def test_step_record_start_allows_no_effect():
    run = RunState.new(workflow_id="wf", entry_node="n")
    rec = StepRecord.start(run=run, node_id="n", effect=None)
    assert rec.effect is None and rec.attempt == 1
    roundtrip(rec, StepRecord)


@pytest.mark.parametrize("etype", list(EffectType))
def test_effect_round_trips_for_every_enum_member(etype):
    eff = Effect(etype, {"a": [1, {"b": None}]}, "x.y")
    back, data = roundtrip(eff, Effect)
    assert data["type"] == etype.value and type(data["type"]) is str
    assert back.type is etype


def test_third_party_effect_type_stays_plain_string():
    eff = Effect("greet", {"name": "Ada"})
    assert eff.type == "greet" and type(eff.type) is str
    back, data = roundtrip(eff, Effect)
    assert data["type"] == "greet"
    assert type(back.type) is str and back.type == "greet"
    assert eff.type_value == "greet"


def test_known_effect_type_strings_become_enum_members():
    assert Effect("ask_user").type is EffectType.ASK_USER
    assert converter.structure({"type": "wait_until", "payload": {}}, Effect).type is EffectType.WAIT_UNTIL
    # "resume" appears in ledgers but is not an enum member
    assert type(Effect("resume").type) is str


def test_effect_payload_none_becomes_empty_dict_and_blank_type_is_rejected():
    assert Effect("greet", None).payload == {}
    with pytest.raises(ValueError):
        Effect("")
    with pytest.raises(ValueError):
        Effect("   ")


def test_step_plan_round_trips_with_effect_and_with_output():
    roundtrip(StepPlan(node_id="a", effect=Effect("greet", {"x": 1}, "r"), next_node="b"), StepPlan)
    roundtrip(StepPlan(node_id="a", effect=Effect(EffectType.ANSWER_USER, {"message": "m"})), StepPlan)
    back, data = roundtrip(StepPlan(node_id="z", complete_output={"answer": 42}), StepPlan)
    assert data == {"node_id": "z", "effect": None, "next_node": None, "complete_output": {"answer": 42}}


def test_runtime_config_round_trips():
    cfg = RuntimeConfig(max_iterations=10, max_tokens=1000, max_output_tokens=100, max_input_tokens=50,
                        provider="ollama", model="m", model_capabilities={"tool_support": "native", "n": 1})
    roundtrip(cfg, RuntimeConfig)
    roundtrip(RuntimeConfig(), RuntimeConfig)


def test_limit_warning_round_trips_and_computes_pct():
    lw = LimitWarning("iterations", "warning", 20, 25)
    assert lw.pct == 80.0
    roundtrip(lw, LimitWarning)
    # a passed pct is ignored when maximum > 0
    assert LimitWarning("tokens", "exceeded", 1, 3, pct=99.0).pct == 33.3
    assert LimitWarning("history", "warning", 5, 0).pct == 0.0


@pytest.mark.parametrize(
    "outcome",
    [
        EffectOutcome.completed({"v": [1, 2]}),
        EffectOutcome.completed(),
        EffectOutcome.waiting(full_wait()),
        EffectOutcome.failed("nope"),
    ],
)
def test_effect_outcome_round_trips(outcome):
    back, data = roundtrip(outcome, EffectOutcome)
    assert data["status"] in ("completed", "waiting", "failed")


def test_effect_outcome_constructors():
    assert EffectOutcome.completed({"a": 1}) == EffectOutcome("completed", {"a": 1}, None, None)
    w = WaitState(reason=WaitReason.EVENT, wait_key="k")
    assert EffectOutcome.waiting(w) == EffectOutcome("waiting", None, w, None)
    assert EffectOutcome.failed("e") == EffectOutcome("failed", None, None, "e")


def test_workflow_spec_with_module_level_functions_round_trips():
    spec = WorkflowSpec(workflow_id="wf", entry_node="start", nodes={"start": node_start, "end": node_end})
    back, data = roundtrip(spec, WorkflowSpec)
    assert data["nodes"]["start"].endswith(":node_start")
    assert back.nodes["start"] is node_start and back.nodes["end"] is node_end


def test_workflow_spec_with_lambda_cannot_be_serialised():
    spec = WorkflowSpec(workflow_id="wf", entry_node="a",
                        nodes={"a": lambda run, ctx: StepPlan(node_id="a", next_node="a")})
    with pytest.raises(TypeError, match="lambda") as exc:
        converter.unstructure(spec)
    assert "module-level" in str(exc.value)


def test_workflow_spec_with_closure_cannot_be_serialised():
    def inner(run, ctx):
        return StepPlan(node_id="a", next_node="a")

    spec = WorkflowSpec(workflow_id="wf", entry_node="a", nodes={"a": inner})
    with pytest.raises(TypeError, match="module-level"):
        converter.unstructure(spec)


def test_workflow_spec_get_node_and_is_terminal():
    spec = WorkflowSpec(workflow_id="wf", entry_node="start", nodes={"start": node_start})
    assert spec.get_node("start") is node_start
    with pytest.raises(KeyError):
        spec.get_node("missing")
    assert spec.is_terminal("start") is False


def test_enum_values_are_the_reference_lowercase_strings():
    assert {m.name: m.value for m in RunStatus} == {
        "RUNNING": "running", "WAITING": "waiting", "COMPLETED": "completed",
        "FAILED": "failed", "CANCELLED": "cancelled",
    }
    assert {m.name: m.value for m in WaitReason} == {
        "EVENT": "event", "UNTIL": "until", "USER": "user", "JOB": "job", "SUBWORKFLOW": "subworkflow",
    }
    assert {m.name: m.value for m in StepStatus} == {
        "STARTED": "started", "COMPLETED": "completed", "WAITING": "waiting", "FAILED": "failed",
    }
    for enum in (RunStatus, WaitReason, StepStatus, EffectType):
        for m in enum:
            assert isinstance(m, str) and m.value == m.name.lower()


def test_effect_type_has_exactly_the_17_reference_members():
    assert len(EffectType) == 17
    assert {m.value for m in EffectType} == {
        "wait_event", "wait_until", "ask_user", "answer_user", "emit_event", "llm_call", "tool_calls",
        "memory_query", "memory_tag", "memory_compact", "memory_note", "memory_rehydrate",
        "memory_kg_assert", "memory_kg_query", "memory_kg_resolve", "vars_query", "start_subworkflow",
    }
    assert not hasattr(EffectType, "ACTIVE_MEMORY_DELTA") and not hasattr(EffectType, "TOOL_WAIT")


def test_run_status_is_terminal():
    assert {s for s in RunStatus if s.is_terminal} == {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}


def test_runtime_config_limits_dict_has_section_9_defaults():
    assert RuntimeConfig().to_limits_dict() == {
        "max_iterations": 25,
        "current_iteration": 0,
        "max_tokens": 32768,
        "max_output_tokens": None,
        "max_input_tokens": None,
        "estimated_tokens_used": 0,
        "max_history_messages": -1,
        "warn_iterations_pct": 80,
        "warn_tokens_pct": 80,
    }


def test_runtime_config_limits_from_capabilities_and_input_clamp():
    cfg = RuntimeConfig(max_input_tokens=10_000, model_capabilities={"max_tokens": 8000, "max_output_tokens": 1000})
    limits = cfg.to_limits_dict()
    assert limits["max_tokens"] == 8000
    assert limits["max_output_tokens"] == 1000
    assert limits["max_input_tokens"] == 8000 - 1000 - 256


def test_runtime_config_with_capabilities_replaces_not_merges():
    cfg = RuntimeConfig(model="m", model_capabilities={"a": 1})
    new = cfg.with_capabilities({"b": 2})
    assert new.model_capabilities == {"b": 2}
    assert new.model == "m"
    assert cfg.model_capabilities == {"a": 1}


def test_run_state_new_defaults():
    v = {"k": 1}
    run = RunState.new(workflow_id="wf", entry_node="e", vars=v)
    assert run.status is RunStatus.RUNNING and run.current_node == "e"
    assert run.vars is v
    assert run.created_at.endswith("+00:00")
    assert run.step == 0 and run.revision == 0
    assert RunState.new(workflow_id="wf", entry_node="e").run_id != run.run_id


def test_status_and_reason_convert_on_assignment_without_a_setattr_hook_on_other_fields():
    # ``status`` / ``reason`` are properties over their slots (kernel/abstractruntime/models.py): a string assigned
    # becomes its member at once and a wrong one is refused; the classes have no __setattr__ hook, which attrs would
    # run in Python for every field assignment (each object's __init__ included).
    run = RunState.new(workflow_id="w", entry_node="a")
    run.status = "completed"
    assert run.status is RunStatus.COMPLETED and decode_run(encode_run(run)).status is RunStatus.COMPLETED
    with pytest.raises(ValueError):
        run.status = "finished"
    assert run.status is RunStatus.COMPLETED
    record = StepRecord(run_id="r", step_id="s", node_id="n", status="started")
    record.status = "completed"
    wait = WaitState(reason="user")
    wait.reason = "event"
    assert record.status is StepStatus.COMPLETED and wait.reason is WaitReason.EVENT
    for cls in (RunState, StepRecord, WaitState):
        assert cls.__setattr__ is object.__setattr__, cls
    assert RunState(run_id="r", workflow_id="w", status="waiting", current_node="a").status is RunStatus.WAITING


def test_encoded_json_is_kept_in_bytes_of_its_own_size():
    # orjson returns its growth buffer (4-8 KiB for a few bytes of JSON); a store that keeps the encoded checkpoint
    # or record (the memory store keeps every one) would keep the buffer too.
    import tracemalloc

    from abstractruntime import codec

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [codec.to_json_bytes({"i": i, "text": "x" * 100}) for i in range(500)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept[7] == b'{"i":7,"text":"' + b"x" * 100 + b'"}'
    assert grown / len(kept) < 400, f"{grown / len(kept):.0f} bytes kept per 122-byte encoding"


def test_new_ids_are_random_uuid4_strings_and_a_forked_child_draws_its_own():
    import os
    import threading
    import uuid

    from abstractruntime.models import new_id

    ids = [new_id() for _ in range(1000)]  # several 256-id pools
    assert len(set(ids)) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every place but the dashes and the version digit varies (each id of a pool is laid out from its own bytes)
    assert [i for i in range(36) if len({t[i] for t in ids}) == 1] == [8, 13, 14, 18, 23]

    other = []
    t = threading.Thread(target=lambda: other.extend(new_id() for _ in range(300)))
    t.start()
    t.join()
    assert not set(other) & set(ids)  # a thread draws from a pool of its own

    if not hasattr(os, "fork"):
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, from the pool it must not have inherited
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4
    assert child != new_id()  # with the parent's pool copied, the child would have drawn the parent's next id


def test_timestamps_are_what_datetime_isoformat_writes_and_never_go_back(monkeypatch):
    import time
    from datetime import datetime, timezone

    from abstractruntime import models

    before = datetime.now(timezone.utc).isoformat()
    stamps = [models.utc_now_iso() for _ in range(20000)]  # crosses seconds on a slow machine; ordered always
    after = datetime.now(timezone.utc).isoformat()
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after
    for text in stamps[::997]:
        assert datetime.fromisoformat(text).isoformat() == text  # the same text datetime would write
    # the exact text at chosen instants: a whole second has no fraction (as isoformat), a new second is formatted
    for ns, expected in [(1_764_763_200_000_000_000, "2025-12-03T12:00:00+00:00"),
                         (1_764_763_200_000_005_999, "2025-12-03T12:00:00.000005+00:00"),
                         (1_764_763_201_250_000_000, "2025-12-03T12:00:01.250000+00:00"),
                         (253_402_300_799_999_999_000, "9999-12-31T23:59:59.999999+00:00")]:
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        assert models.utc_now_iso() == expected
        us = ns // 1000
        assert expected == datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(
            microsecond=us % 1_000_000).isoformat()
