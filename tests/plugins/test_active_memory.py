"""The ``active_memory`` plugin: MEMORY_NOTE / QUERY / TAG / COMPACT / REHYDRATE on real stores (LMDB files with the
artifact files beside them; the in-memory store with an in-memory artifact store). The LLM_CALL path of the
compaction is tested with abstractcore in tests/plugins/abstractcore/test_ac_memory.py; here the summary comes from a
host ``chat_summarizer`` (a public Runtime parameter)."""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Union

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.memory import ActiveContextPolicy, TimeRange
from abstractruntime_artifacts.store import InMemoryArtifactStore
from abstractruntime_inmemory.store import MemoryBackend

Payload = Union[Dict[str, Any], Callable[[Any], Dict[str, Any]]]
SUMMARIES: List[List[Dict[str, Any]]] = []


def summarizer(messages, *, focus=None, compression_mode="standard"):
    SUMMARIES.append(messages)
    return f"SUMMARY({len(messages)} messages, {compression_mode}, focus={focus}): " + " | ".join(
        str(m["content"]) for m in messages)


def steps_flow(steps: List[tuple], workflow_id: str = "mem") -> WorkflowSpec:
    """A workflow that runs ``steps`` = [(EffectType, payload or fn(run) -> payload), ...] in order; results go to
    ``vars.r0``, ``vars.r1``, ..."""
    nodes = {}
    for i, (etype, payload) in enumerate(steps):
        def node(run, ctx, i=i, etype=etype, payload=payload):
            data = payload(run) if callable(payload) else payload
            return StepPlan(node_id=f"s{i}", effect=Effect(etype, data, f"r{i}"), next_node=f"s{i + 1}")
        nodes[f"s{i}"] = node
    nodes[f"s{len(steps)}"] = lambda run, ctx: StepPlan(node_id=f"s{len(steps)}", complete_output={"ok": True})
    return WorkflowSpec(workflow_id=workflow_id, entry_node="s0", nodes=nodes)


@pytest.fixture(params=["lmdb", "memory"])
def runtime(request, tmp_path):
    SUMMARIES.clear()
    if request.param == "lmdb":
        rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, chat_summarizer=summarizer)
    else:
        b = MemoryBackend()
        rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store, artifact_store=InMemoryArtifactStore(),
                     chat_summarizer=summarizer)
    yield rt
    rt.close()


def run(rt: Runtime, steps: List[tuple], vars: Dict[str, Any] = None, **start):
    flow = steps_flow(steps)
    run_id = rt.start(workflow=flow, vars=vars, **start)
    state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status == RunStatus.COMPLETED, state.error
    return state


def first(result: Dict[str, Any]) -> Dict[str, Any]:
    assert result["mode"] == "executed"
    (entry,) = result["results"]
    return entry


def conversation(n: int) -> List[Dict[str, Any]]:
    msgs = [{"role": "system", "content": "You are helpful."}]
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append({"role": role, "content": f"message {i} about {'paris' if i == 1 else 'topic'}",
                     "timestamp": f"2026-11-0{1 + i // 5}T10:0{i % 5}:00Z"})
    return msgs


# --- MEMORY_NOTE / MEMORY_QUERY ------------------------------------------------------------------------------------
def test_note_is_indexed_in_the_run_and_stored_as_an_artifact(runtime):
    state = run(runtime, [(EffectType.MEMORY_NOTE, {
        "note": "The user prefers window seats on trains.", "tags": {"topic": "travel"}, "location": "Lyon",
        "sources": {"message_ids": ["m1"]}})], actor_id="alice")
    result = state.vars["r0"]
    entry = first(result)
    assert entry["success"] is True and entry["name"] == "remember_note" and entry["error"] is None
    note_id = result["note_id"]
    assert note_id.startswith("note_") and result["span_id"] == note_id
    (span,) = ActiveContextPolicy.spans(state.vars)
    assert span["kind"] == "memory_note" and span["span_id"] == note_id and span["tags"] == {"topic": "travel"}
    assert span["author"] == "alice" and span["location"] == "Lyon" and span["scope"] == "run"
    doc = json.loads(runtime.artifact_store.load(note_id).content) if runtime.artifact_store else None
    if doc is None:  # LMDB: the default artifact store beside the store files
        from abstractruntime_artifacts import artifact_store_for
        doc = artifact_store_for(runtime).load_json(note_id)
    assert doc["note"] == "The user prefers window seats on trains." and doc["sources"] == {"message_ids": ["m1"]}


def test_query_filters_by_text_tags_authors_locations_and_time(runtime):
    notes = [
        ({"note": "Flight to Tokyo booked", "tags": {"topic": "travel", "prio": "high"}, "location": "Paris"}, "a"),
        ({"note": "Buy milk and bread", "tags": ["topic=errands"], "location": "Home"}, "b"),
        ({"note": "Train to Lyon, window seat", "tags": {"topic": "travel"}, "location": "paris"}, "a"),
    ]
    steps = [(EffectType.MEMORY_NOTE, dict(p, author=a)) for p, a in notes]
    q = lambda **kw: (EffectType.MEMORY_QUERY, dict(kw, **{"return": "meta"}))  # noqa: E731
    steps += [q(query="tokyo flight"), q(tags={"topic": "travel"}), q(tags={"topic": "travel", "prio": "high"}),
              q(tags={"topic": "errands", "prio": "high"}, tags_mode="any"), q(authors=["B"]),
              q(locations=["PARIS"]), q(since="2000-01-01T00:00:00+02:00", until="2000-01-02T00:00:00Z"),
              q(query="nothing matches zzz"), q(tags={"topic": "travel"}, limit_spans=1)]
    state = run(runtime, steps)
    ids = [state.vars[f"r{i}"]["note_id"] for i in range(3)]
    got = [state.vars[f"r{i}"]["span_ids"] for i in range(3, 12)]
    assert got[0] == [ids[0]]                       # text
    assert sorted(got[1]) == sorted([ids[0], ids[2]])  # one tag
    assert got[2] == [ids[0]]                       # all tags
    assert sorted(got[3]) == sorted([ids[0], ids[1]])  # any tag
    assert got[4] == [ids[1]]                       # author, case-insensitive
    assert sorted(got[5]) == sorted([ids[0], ids[2]])  # location, case-insensitive
    assert got[6] == []                             # time window before every note
    assert got[7] == []
    assert len(got[8]) == 1
    meta = first(state.vars["r3"])["output"]
    assert meta["matches"][0]["span_id"] == ids[0] and meta["matches"][0]["score"] >= 2
    assert "effort" not in meta  # the reference reports effort only when a recall_level applied


def test_query_return_modes_and_rendering(runtime):
    note = (EffectType.MEMORY_NOTE, {"note": "Deploy freeze starts Friday", "tags": {"team": "ops"}})
    state = run(runtime, [note, (EffectType.MEMORY_QUERY, {"query": "deploy"}),
                          (EffectType.MEMORY_QUERY, {"query": "deploy", "return": "both"}),
                          (EffectType.MEMORY_QUERY, {"query": "unrelated"})])
    rendered = first(state.vars["r1"])["output"]
    assert isinstance(rendered, str) and state.vars["r0"]["note_id"] in rendered
    assert "Deploy freeze starts Friday" in rendered and "team=ops" in rendered
    both = first(state.vars["r2"])["output"]
    assert both["rendered"] == rendered and both["span_ids"] == [state.vars["r0"]["note_id"]]
    assert first(state.vars["r3"])["output"] == "No memory matched."


def test_keep_in_context_puts_the_note_into_the_active_context_once(runtime):
    payload = {"note": "Call me Bob", "keep_in_context": True}
    state = run(runtime, [(EffectType.MEMORY_NOTE, payload)], vars={"context": {"messages": conversation(2)}})
    notes = [m for m in state.vars["context"]["messages"] if (m.get("metadata") or {}).get("kind") == "memory_note"]
    assert len(notes) == 1 and "Call me Bob" in notes[0]["content"]


def test_session_scope_lives_on_the_root_run_and_global_scope_is_shared(runtime):
    root = run(runtime, [(EffectType.ANSWER_USER, {"message": "root"})], session_id="s1")
    child = run(runtime, [(EffectType.MEMORY_NOTE, {"note": "Session fact: budget is 500 EUR", "scope": "session"}),
                          (EffectType.MEMORY_NOTE, {"note": "Global fact: the office is in Geneva",
                                                    "scope": "global"})],
                parent_run_id=root.run_id, session_id="s1")
    assert ActiveContextPolicy.spans(child.vars) == []
    root_spans = ActiveContextPolicy.spans(runtime.get_state(root.run_id).vars)
    assert [s["span_id"] for s in root_spans] == [child.vars["r0"]["note_id"]]
    other = run(runtime, [(EffectType.MEMORY_QUERY, {"query": "office geneva", "scope": "global"}),
                          (EffectType.MEMORY_QUERY, {"query": "office geneva"}),
                          (EffectType.MEMORY_QUERY, {"query": "budget", "scope": "session"})])
    assert other.vars["r0"]["span_ids"] == [child.vars["r1"]["note_id"]]
    assert other.vars["r1"]["span_ids"] == []  # run scope: nothing of another run
    assert other.vars["r2"]["span_ids"] == []  # another session's root
    mine = run(runtime, [(EffectType.MEMORY_QUERY, {"query": "budget", "scope": "session"}),
                         (EffectType.MEMORY_QUERY, {"query": "fact", "scope": "all", "return": "meta"})],
               parent_run_id=root.run_id)
    assert mine.vars["r0"]["span_ids"] == [child.vars["r0"]["note_id"]]
    assert sorted(mine.vars["r1"]["span_ids"]) == sorted([child.vars["r0"]["note_id"], child.vars["r1"]["note_id"]])


def test_target_run_id_is_limited_to_the_run_tree(runtime):
    stranger = run(runtime, [(EffectType.ANSWER_USER, {"message": "x"})])
    state = run(runtime, [(EffectType.MEMORY_NOTE, {"note": "sneaky", "target_run_id": stranger.run_id}),
                          (EffectType.MEMORY_COMPACT, {"target_run_id": stranger.run_id}),
                          (EffectType.MEMORY_REHYDRATE, {"span_id": "x", "target_run_id": stranger.run_id})])
    for i in range(2):
        entry = first(state.vars[f"r{i}"])
        assert entry["success"] is False and "Unknown target_run_id" in entry["error"]
    assert "Unknown target_run_id" in state.vars["r2"]["error"]
    assert ActiveContextPolicy.spans(runtime.get_state(stranger.run_id).vars) == []


def test_bad_input_is_an_error_result_not_a_failed_run(runtime):
    state = run(runtime, [(EffectType.MEMORY_NOTE, {"note": "  "}),
                          (EffectType.MEMORY_NOTE, {"note": "x", "scope": "planet"}),
                          (EffectType.MEMORY_QUERY, {"since": "yesterday"}),
                          (EffectType.MEMORY_QUERY, {"limit_spans": "many"}),
                          (EffectType.MEMORY_TAG, {"span_id": "nope", "tags": {"a": 1}}),
                          (EffectType.MEMORY_TAG, {"span_id": "nope"}),
                          (EffectType.MEMORY_COMPACT, {"compression_mode": "extreme"}),
                          (EffectType.MEMORY_REHYDRATE, {}),
                          (EffectType.MEMORY_REHYDRATE, {"span_id": "nope"})])
    errors = [first(state.vars[f"r{i}"])["error"] for i in range(7)]
    assert "requires payload.note" in errors[0]
    assert "scope must be one of run, session, global" in errors[1]
    assert "'yesterday' is not an ISO 8601 timestamp" in errors[2]
    assert "limit_spans must be an integer" in errors[3]
    assert "Unknown span_id: nope" in errors[4]
    assert "requires payload.span_id and non-empty payload.tags" in errors[5]
    assert "compression_mode must be one of light, standard, heavy" in errors[6]
    # no span ids, or none resolved: the reference's no-op result
    assert state.vars["r7"] == state.vars["r8"] == {"inserted": 0, "skipped": 0, "artifacts": []}


def test_without_an_artifact_store_the_effects_say_what_to_do():
    b = MemoryBackend()
    rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store)
    state = run(rt, [(EffectType.MEMORY_NOTE, {"note": "x"})])
    assert "need an artifact store" in first(state.vars["r0"])["error"]


# --- MEMORY_TAG ----------------------------------------------------------------------------------------------------
def test_tag_merges_or_replaces_in_every_scope(runtime):
    def tag(i, **kw):
        return (EffectType.MEMORY_TAG, lambda r: dict(kw, span_id=r.vars[f"r{i}"]["note_id"]))

    state = run(runtime, [(EffectType.MEMORY_NOTE, {"note": "alpha", "tags": {"a": "1"}}),
                          (EffectType.MEMORY_NOTE, {"note": "beta", "tags": {"b": "1"}, "scope": "global"}),
                          tag(0, tags={"c": "2"}), tag(1, tags=["d=3"], merge=False),
                          (EffectType.MEMORY_QUERY, {"tags": {"d": "3"}, "scope": "global"}),
                          (EffectType.MEMORY_QUERY, {"tags": {"a": "1", "c": "2"}})])
    assert state.vars["r2"]["tags"] == {"a": "1", "c": "2"} and first(state.vars["r2"])["name"] == "remember"
    assert state.vars["r3"]["tags"] == {"d": "3"} and state.vars["r3"]["scope"] == "global"
    assert state.vars["r4"]["span_ids"] == [state.vars["r1"]["note_id"]]
    assert state.vars["r5"]["span_ids"] == [state.vars["r0"]["note_id"]]
    assert ActiveContextPolicy.spans(state.vars)[0]["tags"] == {"a": "1", "c": "2"}


# --- MEMORY_COMPACT / MEMORY_REHYDRATE -----------------------------------------------------------------------------
def test_compact_archives_older_messages_and_rehydrate_brings_them_back(runtime):
    compact = (EffectType.MEMORY_COMPACT, {"preserve_recent": 4, "compression_mode": "heavy", "focus": "cities"})
    span = lambda r: r.vars["r0"]["span_id"]  # noqa: E731
    state = run(runtime, [
        compact,
        (EffectType.MEMORY_QUERY, {"query": "paris", "deep": True}),
        (EffectType.MEMORY_QUERY, {"query": "paris"}),
        (EffectType.MEMORY_REHYDRATE, lambda r: {"span_ids": [span(r)], "max_messages": 2}),
        (EffectType.MEMORY_REHYDRATE, lambda r: {"span_ids": [span(r)]}),
        (EffectType.MEMORY_REHYDRATE, lambda r: {"span_ids": [span(r)]}),
    ], vars={"context": {"messages": conversation(10)}})
    result = state.vars["r0"]
    assert first(result)["success"] is True and first(result)["name"] == "compact_memory"
    assert result["compacted"] == 6 and result["summarizer"] == {"via": "chat_summarizer"}
    assert len(SUMMARIES) == 1 and [m["content"] for m in SUMMARIES[0]] == [f"message {i} about " + (
        "paris" if i == 1 else "topic") for i in range(6)]
    assert "heavy" in result["summary"] and "focus=cities" in result["summary"]
    span_id = result["span_id"]
    (archived,) = [s for s in ActiveContextPolicy.spans(state.vars) if s["kind"] == "conversation_span"]
    assert archived["message_count"] == 6 and archived["from_timestamp"] == "2026-11-01T10:00:00Z"
    assert archived["to_timestamp"] == "2026-11-02T10:00:00Z"
    assert state.vars["r1"]["span_ids"] == [span_id]  # deep search reads the archived messages
    assert state.vars["r2"]["span_ids"] == [span_id]  # the summary text mentions paris too
    assert "message 1 about paris" in first(state.vars["r1"])["output"]
    assert state.vars["r3"]["inserted"] == 2 and state.vars["r3"]["skipped"] == 4
    assert "max_messages=2" in state.vars["r3"]["warnings"][0]
    assert state.vars["r4"]["inserted"] == 4 and state.vars["r4"]["skipped"] == 2
    assert state.vars["r5"]["inserted"] == 0 and state.vars["r5"]["skipped"] == 6
    assert state.vars["r5"]["artifacts"] == [{"span_id": span_id, "artifact_id": span_id, "inserted": 0,
                                              "skipped": 6, "error": None, "kind": "conversation_span"}]
    messages = state.vars["context"]["messages"]
    kinds = [(m["role"], (m.get("metadata") or {}).get("kind")) for m in messages]
    assert kinds[:2] == [("system", None), ("system", "memory_summary")]
    restored = messages[2:8]
    assert [m["content"] for m in restored] == [m["content"] for m in conversation(10)[1:7]]
    assert all(m["metadata"]["rehydrated_from"] == span_id and m["metadata"]["rehydrated"] is True
               and m["metadata"]["source_artifact_id"] == span_id for m in restored)
    assert [m["content"] for m in messages[8:]] == [m["content"] for m in conversation(10)[7:]]


def test_compact_replaces_older_messages_by_one_summary(runtime):
    state = run(runtime, [(EffectType.MEMORY_COMPACT, {"preserve_recent": 2})],
                vars={"context": {"messages": conversation(5)}})
    messages = state.vars["context"]["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "assistant", "user"]
    assert messages[1]["metadata"] == {"kind": "memory_summary", "span_id": state.vars["r0"]["span_id"],
                                       "source_artifact_id": state.vars["r0"]["span_id"],
                                       "message_id": "summary_" + state.vars["r0"]["span_id"]}
    assert messages[1]["content"].startswith("[CONVERSATION HISTORY SUMMARY")
    assert [m["content"] for m in messages[2:]] == ["message 3 about topic", "message 4 about topic"]


def test_rehydrate_placements(runtime):
    span = lambda r: r.vars["r0"]["span_id"]  # noqa: E731
    for placement, at in (("end", -1), ("after_system", 3)):  # after_system: after system + summary
        state = run(runtime, [(EffectType.MEMORY_COMPACT, {"preserve_recent": 2}),
                              (EffectType.MEMORY_REHYDRATE, lambda r, p=placement: {"span_id": span(r),
                                                                                     "placement": p})],
                    vars={"context": {"messages": conversation(4)}})
        messages = state.vars["context"]["messages"]
        assert messages[at]["content"] == "message 1 about paris", placement
        assert state.vars["r1"]["placement"] == placement and state.vars["r1"]["effort"] is None


def test_nothing_to_compact(runtime):
    state = run(runtime, [(EffectType.MEMORY_COMPACT, {})], vars={"context": {"messages": conversation(3)}})
    assert state.vars["r0"]["compacted"] == 0 and "Nothing to compact" in first(state.vars["r0"])["output"]
    assert len(state.vars["context"]["messages"]) == 4 and SUMMARIES == []


def test_compaction_without_llm_or_summarizer_is_a_clear_error(tmp_path):
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db", "plugins": {"block": ["abstractcore"]}})
    state = run(rt, [(EffectType.MEMORY_COMPACT, {"preserve_recent": 1})],
                vars={"context": {"messages": conversation(4)}})
    assert "no LLM_CALL handler is installed" in first(state.vars["r0"])["error"]
    assert len(state.vars["context"]["messages"]) == 5  # nothing lost
    rt.close()


def test_a_failing_summarizer_changes_nothing(tmp_path):
    def broken(messages, **kw):
        raise RuntimeError("quota exceeded")

    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, chat_summarizer=broken)
    state = run(rt, [(EffectType.MEMORY_COMPACT, {"preserve_recent": 1})],
                vars={"context": {"messages": conversation(4)}})
    assert "chat_summarizer failed: RuntimeError: quota exceeded" in first(state.vars["r0"])["error"]
    assert state.vars["context"]["messages"] == conversation(4)
    assert ActiveContextPolicy.spans(state.vars) == []
    rt.close()


def test_compacting_a_child_from_its_parent_and_rerunning_the_step_is_idempotent(runtime):
    """The handler may run twice for one step (a crash before the step's commit): the second run changes nothing."""
    parent = run(runtime, [(EffectType.ANSWER_USER, {"message": "p"})])
    child_flow = steps_flow([(EffectType.ANSWER_USER, {"message": "c"})], "child")
    child_id = runtime.start(workflow=child_flow, vars={"context": {"messages": conversation(6)}},
                             parent_run_id=parent.run_id)
    effect = Effect(EffectType.MEMORY_COMPACT, {"preserve_recent": 2, "target_run_id": child_id}, "r")
    first_try = runtime.execute_effect(parent, effect, node_id="n", idempotency_key="k" * 32)
    second_try = runtime.execute_effect(runtime.get_state(parent.run_id), effect, node_id="n",
                                        idempotency_key="k" * 32)
    assert first_try.result["compacted"] == 4
    assert "Already compacted" in first(second_try.result)["output"]
    child = runtime.get_state(child_id)
    assert len(child.vars["context"]["messages"]) == 4 and len(ActiveContextPolicy.spans(child.vars)) == 1
    assert len(SUMMARIES) == 1
    note = Effect(EffectType.MEMORY_NOTE, {"note": "once", "scope": "session"}, "r")
    for _ in range(2):
        runtime.execute_effect(runtime.get_state(child_id), note, node_id="n", idempotency_key="j" * 32)
    assert len(ActiveContextPolicy.spans(runtime.get_state(parent.run_id).vars)) == 1


def test_memory_survives_a_restart(tmp_path):
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    run(rt, [(EffectType.MEMORY_NOTE, {"note": "Remember the cellar key", "scope": "global"})])
    rt.close()
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    state = run(rt, [(EffectType.MEMORY_QUERY, {"query": "cellar", "scope": "global", "deep": True})])
    assert len(state.vars["r0"]["span_ids"]) == 1
    assert "Remember the cellar key" in first(state.vars["r0"])["output"]
    rt.close()


# --- helpers of abstractruntime.memory -----------------------------------------------------------------------------
def test_time_range_compares_instants_not_strings():
    window = TimeRange("2026-11-26T10:00:00+02:00", "2026-11-26T09:00:00Z")
    assert window.overlaps("2026-11-26T08:30:00Z")            # 08:00Z .. 09:00Z
    assert not window.overlaps("2026-11-26T09:30:00+00:00")
    assert window.overlaps("2026-11-26T07:00:00Z", "2026-11-26T08:00:00Z")
    assert TimeRange(None, None).overlaps("not a date")
    with pytest.raises(ValueError, match="TimeRange.end: 'soon' is not an ISO 8601 timestamp"):
        TimeRange(None, "soon")


def test_active_messages_keep_system_messages_and_the_newest_others():
    vars = {"context": {"messages": conversation(6)}}
    kept = ActiveContextPolicy.active_messages(vars, max_messages=2)
    assert [m["content"] for m in kept] == ["You are helpful.", "message 4 about topic", "message 5 about topic"]
    assert ActiveContextPolicy.active_messages(vars) == conversation(6)


def test_a_summary_llm_call_that_would_wait_fails_clearly(tmp_path):
    """Reference defect 25: the compaction's LLM sub-call cannot wait. Here that is an error result that says so,
    and the context is unchanged (a host LLM_CALL handler that asks for approval before any call)."""
    from abstractruntime import EffectOutcome, WaitReason, WaitState

    def needs_approval(run, effect, default_next_node):
        return EffectOutcome.waiting(WaitState(reason=WaitReason.USER, wait_key="approve-llm", prompt="ok?"))

    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, effect_handlers={EffectType.LLM_CALL: needs_approval})
    state = run(rt, [(EffectType.MEMORY_COMPACT, {"preserve_recent": 1})],
                vars={"context": {"messages": conversation(4)}})
    assert "asked to wait, and a compaction cannot wait" in first(state.vars["r0"])["error"]
    assert state.vars["context"]["messages"] == conversation(4)
    rt.close()


# --- recall levels (integration-surface §6.5, VAM §3.10) ---------------------------------------------------------
def test_recall_levels_set_defaults_clamp_with_warnings_and_report_effort(runtime):
    notes = [(EffectType.MEMORY_NOTE, {"note": f"paris note {i}"}) for i in range(5)]
    state = run(runtime, notes + [
        (EffectType.MEMORY_QUERY, {"query": "paris", "recall_level": "urgent", "return": "both"}),
        (EffectType.MEMORY_QUERY, {"query": "paris", "recallLevel": "URGENT", "limit_spans": 50, "deep": True,
                                   "connected": True, "max_messages": 500, "return": "both"}),
        (EffectType.MEMORY_QUERY, {"query": "paris", "recall_level": "deep", "neighbor_hops": 9, "return": "meta"}),
        (EffectType.MEMORY_QUERY, {"query": "paris", "limit_spans": 0, "return": "meta"}),
    ])
    urgent = first(state.vars["r5"])["output"]
    assert urgent["effort"] == {"recall_level": "urgent", "applied": {
        "limit_spans": 2, "deep": False, "deep_limit_spans": 0, "deep_limit_messages_per_span": 0, "connected": False,
        "neighbor_hops": 0, "max_messages": 30}}
    assert len(urgent["span_ids"]) == 2 and "warnings" not in urgent
    assert not urgent["rendered"].startswith("[recall warnings]")
    clamped = first(state.vars["r6"])["output"]
    assert clamped["warnings"] == ["recall_level=urgent: clamped limit_spans from 50 to 3",
                                   "recall_level=urgent: disabled deep (not allowed at this level)",
                                   "recall_level=urgent: disabled connected (not allowed at this level)",
                                   "recall_level=urgent: clamped max_messages from 500 to 60"]
    assert clamped["rendered"].startswith("[recall warnings]\n- recall_level=urgent: clamped limit_spans from 50 to 3")
    assert len(clamped["span_ids"]) == 3
    deep = first(state.vars["r7"])["output"]
    assert deep["effort"]["applied"]["neighbor_hops"] == 2 and deep["effort"]["applied"]["limit_spans"] == 8
    assert deep["warnings"] == ["recall_level=deep: clamped neighbor_hops from 9 to 2"]
    plain = first(state.vars["r8"])["output"]
    assert "effort" not in plain and len(plain["span_ids"]) == 5  # limit_spans 0 means the default, 5


def test_an_invalid_recall_level_fails_the_effect(runtime):
    for effect in (EffectType.MEMORY_QUERY, EffectType.MEMORY_REHYDRATE):
        flow = steps_flow([(effect, {"recall_level": "extreme", "span_ids": []})], workflow_id=f"bad_{effect.value}")
        run_id = runtime.start(workflow=flow)
        state = runtime.tick(workflow=flow, run_id=run_id)
        assert state.status is RunStatus.FAILED and "Unknown recall_level: extreme" in state.error


def test_rehydrate_with_a_recall_level_clamps_max_messages_and_marks_messages(runtime):
    state = run(runtime, [(EffectType.MEMORY_COMPACT, {"preserve_recent": 1}),
                          (EffectType.MEMORY_REHYDRATE, lambda r: {"span_ids": [r.vars["r0"]["span_id"]],
                                                                    "recall_level": "urgent", "max_messages": 99})],
                vars={"context": {"messages": conversation(6)}})
    result = state.vars["r1"]
    assert result["effort"] == {"recall_level": "urgent", "applied": {"max_messages": 60}}
    assert result["warnings"] == ["recall_level=urgent: clamped max_messages from 99 to 60"]
    assert result["inserted"] == 5
    span_id = state.vars["r0"]["span_id"]
    restored = [m for m in state.vars["context"]["messages"] if (m.get("metadata") or {}).get("rehydrated")]
    assert len(restored) == 5 and all(m["metadata"]["source_artifact_id"] == span_id for m in restored)


def test_a_rehydrated_memory_note_is_one_system_message(runtime):
    state = run(runtime, [(EffectType.MEMORY_NOTE, {"note": "the door code is 1234"}),
                          (EffectType.MEMORY_REHYDRATE, lambda r: {"span_ids": r.vars["r0"]["span_ids"]
                                                                    if "span_ids" in r.vars["r0"]
                                                                    else [r.vars["r0"]["span_id"]]})])
    notes = [m for m in state.vars["context"]["messages"] if (m.get("metadata") or {}).get("kind") == "memory_note"]
    assert len(notes) == 1 and notes[0]["role"] == "system"
    assert notes[0]["content"] == "[MEMORY NOTE]\nthe door code is 1234"
    assert notes[0]["metadata"]["message_id"].startswith("memory_note:")
