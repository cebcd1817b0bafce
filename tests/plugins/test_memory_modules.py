"""The 0.4.2 memory modules (integration-surface spec §6.1-§6.7) at their reference paths
``abstractruntime.memory.*``, on real stores: runs in an LMDB file, span contents in a FileArtifactStore; one test
makes its spans with the real MEMORY_COMPACT / MEMORY_NOTE effects."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunState, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.memory import ActiveContextPolicy, TimeRange
from abstractruntime.memory.active_memory import (
    DEFAULT_PERSONA_MD,
    MEMACT_ENVELOPE_SCHEMA_V1,
    MEMORY_BLUEPRINTS_MD,
    apply_memact_envelope,
    ensure_memact_memory,
    get_memact_memory,
    render_memact_blocks,
    render_memact_system_prompt,
    utc_now_compact_seconds,
    utc_now_iso_seconds,
)
from abstractruntime.memory.compaction import normalize_messages, span_metadata_from_messages, split_for_compaction
from abstractruntime.memory.kg_packets import pack_active_memory_text, packetize_assertions
from abstractruntime.memory.memact_composer import compose_memact_current_context_from_kg_result
from abstractruntime.memory.recall_levels import RecallLevel, parse_recall_level, policy_for
from abstractruntime.memory.token_budget import (
    estimate_message_tokens,
    estimate_tokens,
    trim_messages_to_max_input_tokens,
)
from abstractruntime_artifacts.store import FileArtifactStore


# --- fixtures: a real run store and artifact store ------------------------------------------------------------------
@pytest.fixture
def stores(tmp_path):
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"})
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    yield rt.run_store, artifacts
    rt.close()


def msg(role: str, content: str, mid: str = None, ts: str = None) -> Dict[str, Any]:
    m: Dict[str, Any] = {"role": role, "content": content}
    if mid:
        m["metadata"] = {"message_id": mid}
    if ts:
        m["timestamp"] = ts
    return m


def make_run(stores, *, spans: List[Dict[str, Any]], messages: List[Dict[str, Any]], docs: Dict[str, Any],
             artifact_tags: Dict[str, Dict[str, str]] = None, output: Any = None) -> RunState:
    run_store, artifacts = stores
    run = RunState.new(workflow_id="w", entry_node="n",
                       vars={"context": {"messages": messages}, "_runtime": {"memory_spans": spans}})
    run.output = output
    for artifact_id, doc in docs.items():
        artifacts.store(json.dumps(doc).encode(), content_type="application/json", run_id=run.run_id,
                        tags=(artifact_tags or {}).get(artifact_id, {}), artifact_id=artifact_id)
    run_store.save(run)
    return run


OLD = [msg("user", "old question about paris", "m1", "2026-01-01T10:00:00Z"),
       msg("assistant", "old answer", "m2", "2026-01-01T10:01:00Z")]
SPANS = [
    {"kind": "conversation_span", "artifact_id": "span_a", "created_at": "2026-01-01T11:00:00Z",
     "from_timestamp": "2026-01-01T10:00:00Z", "to_timestamp": "2026-01-01T10:01:00Z", "created_by": "Alice",
     "tags": {"topic": "Travel", "location": "Lyon"}, "compression_mode": "heavy", "focus": "cities"},
    {"kind": "memory_note", "artifact_id": "note_b", "created_at": "2026-01-02T09:00:00Z", "created_by": "bob",
     "location": "Paris", "tags": {"topic": "food"}},
    {"kind": "conversation_span", "created_at": "2026-01-03T09:00:00Z"},  # no artifact: never filtered in
]
DOCS = {"span_a": {"messages": OLD}, "note_b": {"note": "Likes croissants", "sources": {"span_ids": ["span_a"]}}}
SUMMARY = {"role": "system", "content": "Summary: trip planning",
           "metadata": {"kind": "memory_summary", "source_artifact_id": "span_a"}}


def policy(stores) -> ActiveContextPolicy:
    return ActiveContextPolicy(run_store=stores[0], artifact_store=stores[1])


# --- §6.1 ActiveContextPolicy ----------------------------------------------------------------------------------------
def test_list_memory_spans_newest_first_as_copies(stores):
    run = make_run(stores, spans=SPANS, messages=[], docs=DOCS)
    spans = policy(stores).list_memory_spans(run.run_id)
    assert [s["created_at"][:10] for s in spans] == ["2026-01-03", "2026-01-02", "2026-01-01"]
    spans[0]["kind"] = "changed"
    assert ActiveContextPolicy.list_memory_spans_from_run(run)[0]["kind"] == "conversation_span"


def test_time_range_contains():
    assert TimeRange().contains(start=None, end=None) is True
    assert TimeRange(start="2026-01-01T00:00:00Z").contains(start=None, end=None) is False
    window = TimeRange(start="2026-01-01T10:00:30Z", end="2026-01-01T12:00:00+02:00")
    assert window.contains(start="2026-01-01T10:00:00Z", end="2026-01-01T10:01:00Z")  # overlaps the start
    assert window.contains(start="2026-01-01T10:00:00Z", end="2026-01-01T10:00:30Z")  # closed interval
    assert not window.contains(start="2026-01-01T10:01:00Z", end="2026-01-01T10:02:00Z")  # after 10:00Z
    with pytest.raises(ValueError):
        window.contains(start="yesterday", end="2026-01-01T10:00:00Z")


def test_filter_spans_by_time_tags_authors_locations(stores):
    run = make_run(stores, spans=SPANS, messages=[SUMMARY], docs=DOCS,
                   artifact_tags={"span_a": {"topic": "archive", "kind": "memory_span"}})
    p = policy(stores)
    ids = lambda **kw: [s["artifact_id"] for s in p.filter_spans(run.run_id, **kw)]  # noqa: E731
    assert ids() == ["note_b", "span_a"]  # the span without an artifact is left out
    assert ids(time_range=TimeRange(start="2026-01-01T00:00:00Z")) == ["span_a"]  # the note has no timestamps
    # artifact tags win over span tags for the same key; 'kind' in the required map is ignored
    assert ids(tags={"topic": "archive"}) == ["span_a"]
    assert ids(tags={"topic": "travel"}) == []
    assert ids(tags={"topic": ["FOOD", "archive"], "kind": "nothing"}) == ["note_b", "span_a"]
    assert ids(tags={"topic": "food", "compression_mode": "heavy"}, tags_mode="or") == ["note_b", "span_a"]
    assert ids(tags={"topic": "food", "compression_mode": "heavy"}) == []
    assert ids(authors=["ALICE"]) == ["span_a"]
    assert ids(locations=["lyon"]) == ["span_a"]  # from tags.location
    assert ids(locations=["paris"]) == ["note_b"]
    assert ids(limit=1) == ["note_b"]


def test_filter_spans_query_haystack(stores):
    run = make_run(stores, spans=SPANS, messages=[SUMMARY], docs=DOCS)
    ids = lambda q: [s["artifact_id"] for s in policy(stores).filter_spans(run.run_id, query=q)]  # noqa: E731
    assert ids("TRIP PLANNING") == ["note_b", "span_a"]  # the summary, and the note through its sources
    assert ids("croissant") == ["note_b"]
    assert ids("cities") == ["span_a"]  # span focus
    assert ids("application/json") == ["note_b", "span_a"]  # artifact content type
    assert ids("nowhere") == []


def test_rehydrate_by_index_with_dedup_and_placement(stores):
    messages = [msg("system", "sys"), SUMMARY, msg("user", "recent", "m9")]
    run = make_run(stores, spans=SPANS[:2], messages=messages, docs=DOCS, output={"answer": 1})
    p = policy(stores)
    result = p.rehydrate_into_context(run.run_id, span_ids=["2"])  # 1-based, newest first: span_a
    assert result["inserted"] == 2 and result["skipped"] == 0
    (entry,) = result["artifacts"]
    assert entry["artifact_id"] == "span_a" and entry["preview"] == ("user: old question about paris\n"
                                                                      "assistant: old answer")
    saved = stores[0].load(run.run_id)
    got = saved.vars["context"]["messages"]
    assert [m["content"] for m in got] == ["sys", "Summary: trip planning", "old question about paris",
                                           "old answer", "recent"]  # right after the span's summary
    assert got[2]["metadata"] == {"message_id": "m1", "rehydrated": True, "source_artifact_id": "span_a"}
    assert saved.output["messages"] == got
    again = p.rehydrate_into_context(run.run_id, span_ids=["span_a", "span_a", 2])
    assert again == {"inserted": 0, "skipped": 2, "artifacts": [{"artifact_id": "span_a", "inserted": 0,
                                                                 "skipped": 2}]}
    assert p.rehydrate_into_context(run.run_id, span_ids=["7"]) == {"inserted": 0, "skipped": 0, "artifacts": []}


def test_rehydrate_newest_note_placements_cap_and_missing(stores):
    base = [msg("system", "sys"), msg("user", "hi", "m9")]
    p = policy(stores)
    run = make_run(stores, spans=SPANS[:2], messages=list(base), docs=DOCS)
    out = p.rehydrate_into_context_from_run(run, span_ids=["1"], placement="end")  # newest: the note
    assert out["artifacts"] == [{"artifact_id": "note_b", "inserted": 1, "skipped": 0,
                                 "preview": "[MEMORY NOTE]\nLikes croissants"}]
    assert run.vars["context"]["messages"][-1]["content"] == "[MEMORY NOTE]\nLikes croissants"
    run = make_run(stores, spans=SPANS[:2], messages=list(base), docs=DOCS)
    out = p.rehydrate_into_context_from_run(run, span_ids=["span_a", "note_b", "gone"], placement="after_system",
                                            max_messages=1)
    assert out["inserted"] == 1
    assert out["artifacts"][1:] == [{"artifact_id": "note_b", "inserted": 0, "skipped": 0, "error": "max_messages"},
                                    {"artifact_id": "gone", "inserted": 0, "skipped": 0, "error": "max_messages"}]
    assert [m["content"] for m in run.vars["context"]["messages"]] == ["sys", "old question about paris", "hi"]
    run = make_run(stores, spans=SPANS[:2], messages=list(base), docs=DOCS)
    out = p.rehydrate_into_context_from_run(run, span_ids=["gone"])
    assert out["artifacts"] == [{"artifact_id": "gone", "inserted": 0, "skipped": 0, "error": "missing_messages"}]


def test_rehydrate_preview_is_cut():
    long = [{"role": "user", "content": "x" * 500}]
    text = __import__("abstractruntime_active_memory.active_context", fromlist=["_preview"])._preview(long, False)
    assert len(text) == 360 + len("… (truncated)") and text.endswith("… (truncated)")


def test_select_messages_view_and_active_view(stores):
    msgs = [msg("user", "u1"), msg("system", "s1"), msg("assistant", "a1"), msg("system", "s2"), msg("user", "u2")]
    view = ActiveContextPolicy.select_messages_view
    assert [m["content"] for m in view(msgs, max_history_messages=0)] == ["s1", "s2"]
    assert [m["content"] for m in view(msgs, max_history_messages=-1)] == ["s1", "s2", "u1", "a1", "u2"]
    assert [m["content"] for m in view(msgs, max_history_messages=2)] == ["s1", "s2", "a1", "u2"]
    run = make_run(stores, spans=[], messages=msgs, docs={})
    run.vars["_limits"] = {"max_history_messages": 1}
    assert [m["content"] for m in ActiveContextPolicy.select_active_messages_for_llm_from_run(run)] == [
        "s1", "s2", "u2"]
    bare = RunState.new(workflow_id="w", entry_node="n", vars={"context": {"messages": msgs}})
    assert len(ActiveContextPolicy.select_active_messages_for_llm_from_run(bare)) == 5
    assert bare.vars["_limits"]["max_history_messages"] == -1  # default limits filled in
    assert policy(stores).select_active_messages_for_llm(run.run_id, max_history_messages=0)[-1]["content"] == "s2"


def test_policy_over_spans_made_by_the_memory_effects(tmp_path):
    """MEMORY_COMPACT archives, the policy finds the span by its summary and rehydrates it after the summary."""
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, artifact_store=artifacts,
                             chat_summarizer=lambda messages, **kw: f"talked about {len(messages)} things")
    node = lambda run, ctx: StepPlan(node_id="c", effect=Effect(  # noqa: E731
        EffectType.MEMORY_COMPACT, {"preserve_recent": 1}, "r"), next_node="done")
    flow = WorkflowSpec(workflow_id="m", entry_node="c", nodes={
        "c": node, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"ok": True})})
    messages = [msg("system", "sys")] + [msg("user", f"q{i}", ts=f"2026-01-01T10:0{i}:00Z") for i in range(4)]
    run_id = rt.start(workflow=flow, vars={"context": {"messages": messages}})
    assert rt.tick(workflow=flow, run_id=run_id).status == RunStatus.COMPLETED
    p = ActiveContextPolicy(run_store=rt.run_store, artifact_store=artifacts)
    (span,) = p.filter_spans(run_id, query="talked about 3")
    assert p.rehydrate_into_context(run_id, span_ids=[1])["inserted"] == 3
    contents = [m["content"] for m in rt.get_state(run_id).vars["context"]["messages"]]
    assert contents[0] == "sys" and contents[1].endswith("talked about 3 things")
    assert contents[2:] == ["q0", "q1", "q2", "q3"]
    rt.close()


# --- §6.2 token budget -----------------------------------------------------------------------------------------------
def test_token_estimates():
    from abstractcore.utils.token_utils import TokenUtils

    assert estimate_tokens("") == 0 and estimate_tokens(None) == 0
    assert estimate_tokens("hello world, how are you", model="gpt-4") == TokenUtils.estimate_tokens(
        "hello world, how are you", "gpt-4")
    assert estimate_message_tokens({"role": "user", "content": "hi there"}) == estimate_tokens("user: hi there")
    assert estimate_message_tokens({"role": " ", "content": "hi there"}) == estimate_tokens("hi there")


def test_trim_keeps_system_and_last_and_stops_at_the_first_misfit():
    msgs = [msg("user", "a" * 400), msg("system", "sys"), msg("assistant", "short"), msg("user", "b" * 40),
            msg("user", "last " * 200)]
    assert trim_messages_to_max_input_tokens(msgs, max_input_tokens=0) == msgs
    assert trim_messages_to_max_input_tokens(msgs, max_input_tokens="100") == msgs
    out = trim_messages_to_max_input_tokens(msgs, max_input_tokens=1)
    assert [m["content"][:4] for m in out] == ["sys", "last"]  # the last one stays even over budget
    cost = lambda m: estimate_message_tokens(m)  # noqa: E731
    budget = cost(msgs[1]) + cost(msgs[4]) + cost(msgs[3]) + cost(msgs[2])
    out = trim_messages_to_max_input_tokens(msgs, max_input_tokens=budget)
    assert [m["content"][:4] for m in out] == ["sys", "shor", "bbbb", "last"]
    # 'short' would fit after a misfit, but the scan stops at the first message that does not fit
    tight = trim_messages_to_max_input_tokens(msgs, max_input_tokens=cost(msgs[1]) + cost(msgs[4]) + cost(msgs[2]))
    assert [m["content"][:4] for m in tight] == ["sys", "last"]


# --- §6.3 compaction helpers -----------------------------------------------------------------------------------------
def test_normalize_messages():
    out = normalize_messages([{"content": None}, "skip", {"role": "assistant", "content": 5, "timestamp": "t0",
                                                          "metadata": {"message_id": "keep"}}],
                             now_iso=lambda: "NOW")
    assert out[0]["role"] == "user" and out[0]["content"] == "" and out[0]["timestamp"] == "NOW"
    assert re.fullmatch(r"msg_[0-9a-f]{32}", out[0]["metadata"]["message_id"])
    assert out[1] == {"role": "assistant", "content": "5", "timestamp": "t0", "metadata": {"message_id": "keep"}}


def test_split_for_compaction_and_span_metadata():
    msgs = [msg("system", "s"), msg("user", "1", "a", "t1"), msg("assistant", "2", "b", "t2"), msg("user", "3")]
    split = split_for_compaction(msgs, preserve_recent=0)
    assert [m["content"] for m in split.older_messages] == ["1", "2", "3"] and split.recent_messages == []
    assert split_for_compaction(msgs, preserve_recent=-5).older_messages == split.older_messages
    split = split_for_compaction(msgs, preserve_recent=1)
    assert [m["content"] for m in split.system_messages] == ["s"]
    assert [m["content"] for m in split.older_messages] == ["1", "2"] and split.non_system_count == 3
    assert split_for_compaction(msgs, preserve_recent=9).older_messages == []
    assert span_metadata_from_messages(msgs[1:3]) == {"from_timestamp": "t1", "to_timestamp": "t2",
                                                      "from_message_id": "a", "to_message_id": "b",
                                                      "message_count": 2}
    with pytest.raises(ValueError):
        span_metadata_from_messages([])


# --- §6.4 KG packets -------------------------------------------------------------------------------------------------
ASSERTIONS = [
    {"subject": "ex:alice ", "predicate": "schema:knows", "object": "ex:bob", "observed_at": "2026-01-01",
     "scope": "session", "provenance": {"span_id": "s1", "writer_run_id": "r1", "writer_workflow_id": "wf"},
     "attributes": {"_retrieval": {"score": 0.87654}}},
    {"subject": "EX:Alice", "predicate": "schema:knows", "object": "ex:BOB", "observed_at": "2026-01-01"},  # dup
    {"subject": "ex:carol", "predicate": "  schema:likes\n", "object": "tea"},
    {"subject": "", "predicate": "p", "object": "o"},
]


def test_packetize_assertions():
    packets = packetize_assertions(ASSERTIONS)
    assert packets[0] == {"version": 0, "statement": "ex:alice —schema:knows→ ex:bob", "subject": "ex:alice",
                          "predicate": "schema:knows", "object": "ex:bob", "observed_at": "2026-01-01",
                          "scope": "session", "span_id": "s1", "writer_run_id": "r1", "writer_workflow_id": "wf",
                          "retrieval_score": 0.87654}
    assert [p["statement"] for p in packets] == ["ex:alice —schema:knows→ ex:bob", "ex:carol —schema:likes→ tea"]


def test_pack_active_memory_text():
    packets = packetize_assertions(ASSERTIONS)
    assert pack_active_memory_text(packets, scope="", max_input_tokens=0) == ("", [], 0, 0)
    text, kept, used, dropped = pack_active_memory_text(packets, scope=" ", max_input_tokens=1000)
    assert text.splitlines() == ["## KG ACTIVE MEMORY",
                                 "(scope=session; order=similarity-desc; budget=1000 max_input_tokens)", "",
                                 "- [2026-01-01] ex:alice —schema:knows→ ex:bob (span:s1; score:0.877)",
                                 "- ex:carol —schema:likes→ tea"]
    assert kept == packets and dropped == 0
    header = text.split("\n- ")[0] + "\n"
    assert used == estimate_tokens(header) + sum(estimate_tokens("\n" + line) for line in text.splitlines()[3:])
    text, kept, _, _ = pack_active_memory_text(packets, scope="run", max_input_tokens=1000, include_scores=False)
    assert "order=observed_at-desc" in text and "score:" not in text
    # a budget for the header and the first line only (a smaller budget figure in the header only shortens it)
    one = estimate_tokens(text.split("\n- ")[0] + "\n") + estimate_tokens("\n" + text.splitlines()[3])
    text, kept, used, dropped = pack_active_memory_text(packets, scope="run", max_input_tokens=one,
                                                        include_scores=False)
    assert len(kept) == 1 and dropped == 1 and used <= one
    assert pack_active_memory_text(packets, scope="run", max_input_tokens=1) == ("", [], 0, 2)


# --- §6.5 recall levels ----------------------------------------------------------------------------------------------
def test_recall_levels():
    assert parse_recall_level(None) is None and parse_recall_level("  ") is None
    assert parse_recall_level(" DEEP ") is RecallLevel.DEEP
    with pytest.raises(ValueError, match="^recall_level must be a string$"):
        parse_recall_level(True)
    with pytest.raises(ValueError, match="^Unknown recall_level: foo$"):
        parse_recall_level("  FOO ")
    urgent, standard, deep = (policy_for(level) for level in RecallLevel)
    assert (urgent.span.limit_spans_default, urgent.span.limit_spans_max, urgent.span.deep_allowed,
            urgent.span.connected_allowed, urgent.span.max_messages_max) == (2, 3, False, False, 60)
    assert (standard.span.deep_limit_spans_max, standard.span.deep_limit_messages_per_span_max,
            standard.span.neighbor_hops_max, standard.rehydrate.max_messages_max) == (25, 200, 1, 200)
    assert (deep.kg.min_score_default, deep.kg.min_score_floor, deep.kg.limit_max,
            deep.kg.max_input_tokens_default, deep.kg.max_input_tokens_max) == (0.25, 0.0, 1000, 2400, 6000)
    assert (urgent.kg.min_score_default, standard.kg.limit_default, deep.rehydrate.max_messages_default) == (
        0.55, 80, 200)
    assert policy_for("standard") is standard and standard.level is RecallLevel.STANDARD


# --- §6.6 active memory ----------------------------------------------------------------------------------------------
def test_ensure_memact_memory_normalises():
    vars: Dict[str, Any] = {"_runtime": {"active_memory": {
        "version": 7, "persona": "  ", "relationships": ["Alice is my manager", "", 3, {"id": "x", "text": "kept"}],
        "limits": {"history": 5, "references": 0, "current_tasks": True}}}}
    memory = ensure_memact_memory(vars, now_iso=lambda: "T0")
    assert memory is get_memact_memory(vars)
    assert memory["version"] == 1 and memory["persona"] == DEFAULT_PERSONA_MD and memory["created_at"] == "T0"
    rec, kept = memory["relationships"]
    assert re.fullmatch(r"m_[0-9a-f]+", rec["id"]) and rec["text"] == "Alice is my manager"
    assert rec["created_at"] == "T0" and re.fullmatch(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d", rec["ts"])
    assert kept == {"id": "x", "text": "kept"}
    assert memory["limits"] == {"history": 5, "relationships": 40, "current_tasks": 8, "current_context": 60,
                                "critical_insights": 60, "references": 80}
    assert ensure_memact_memory(vars, now_iso=lambda: "T1")["created_at"] == "T0"
    fresh: Dict[str, Any] = {}
    get_memact_memory(fresh)
    assert fresh == {"_runtime": {"active_memory": {}}}


def test_apply_memact_envelope():
    vars: Dict[str, Any] = {}
    assert apply_memact_envelope(vars, envelope=["x"]) == {"ok": False, "error": "envelope must be an object"}
    ensure_memact_memory(vars)["limits"] = {"current_tasks": 2, "history": 2}
    first = apply_memact_envelope(vars, envelope={
        "current_tasks": {"added": ["Write   report", "Call Bob", "write report", "Book train"]},
        "history": {"added": "started", "removed": ["anything"]},
    }, now_iso=lambda: "T", now_compact=lambda: "26/01/02 03:04:05")
    memory = get_memact_memory(vars)
    assert first["ok"] is True
    assert first["applied"]["current_tasks"] == {"added": ["Write report", "Call Bob", "Book train"], "removed": [],
                                                 "trimmed": 1}
    assert first["applied"]["history"] == {"added": ["started"], "trimmed": 0}
    assert [r["text"] for r in memory["current_tasks"]] == ["Book train", "Call Bob"]
    assert memory["current_tasks"][0]["id"].startswith("tsk_") and memory["history"][0]["id"].startswith("hist_")
    assert memory["updated_at"] == "T" and memory["current_tasks"][0]["ts"] == "26/01/02 03:04:05"
    second = apply_memact_envelope(vars, envelope={
        "current_tasks": {"removed": ["[26/01/02 03:04:05] CALL   bob"]},
        "history": {"added": ["a", "b"], "removed": ["started"]}})
    assert second["applied"]["current_tasks"]["removed"] == ["Call Bob"]
    assert [r["text"] for r in memory["current_tasks"]] == ["Book train"]
    assert [r["text"] for r in memory["history"]] == ["b", "a"]  # removed ignored, newest first, trimmed to 2
    assert second["applied"]["history"] == {"added": ["a", "b"], "trimmed": 1}


def test_render_memact_blocks_and_prompt_and_schema():
    vars: Dict[str, Any] = {"_runtime": {"active_memory": {"current_context": [
        {"text": "It rains", "ts": "26/01/01 00:00:00"}]}}}
    blocks = render_memact_blocks(vars)
    assert [b["title"] for b in blocks] == ["MEMORY BLUEPRINTS", "MY PERSONA", "RELATIONSHIPS", "CURRENT TASKS",
                                            "CURRENT CONTEXT", "CRITICAL INSIGHTS", "REFERENCES", "HISTORY"]
    assert blocks[4] == {"component_id": "current_context", "title": "CURRENT CONTEXT",
                         "content": "- [26/01/01 00:00:00] It rains"}
    assert blocks[2]["content"] == "(empty)"
    prompt = render_memact_system_prompt(vars)
    assert prompt.startswith(MEMORY_BLUEPRINTS_MD) and MEMORY_BLUEPRINTS_MD.startswith("## MEMORY BLUEPRINTS")
    assert "\n\n## CURRENT CONTEXT\n- [26/01/01 00:00:00] It rains\n\n## CRITICAL INSIGHTS\n(empty)" in prompt
    assert MEMACT_ENVELOPE_SCHEMA_V1["additionalProperties"] is False
    assert MEMACT_ENVELOPE_SCHEMA_V1["required"] == ["content", "relationships", "current_tasks", "current_context",
                                                     "critical_insights", "references", "history"]
    assert MEMACT_ENVELOPE_SCHEMA_V1["properties"]["history"]["required"] == ["added"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", utc_now_iso_seconds())
    assert re.fullmatch(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d", utc_now_compact_seconds())


# --- §6.7 MemAct composer --------------------------------------------------------------------------------------------
def test_compose_current_context_from_kg_result():
    assert compose_memact_current_context_from_kg_result([], kg_result={}, stimulus="") == {
        "ok": False, "error": "vars must be a dict"}
    assert compose_memact_current_context_from_kg_result({}, kg_result=None, stimulus="") == {
        "ok": False, "error": "kg_result must be a dict"}
    vars: Dict[str, Any] = {"_runtime": {"active_memory": {"current_context": ["kg: stale fact", "Keep me"]}}}
    out = compose_memact_current_context_from_kg_result(vars, kg_result={"items": ASSERTIONS, "count": 4},
                                                        stimulus="  who? ", marker=" ")
    assert out["ok"] is True
    assert out["delta"] == {"current_context": {
        "added": ["KG: ex:alice —schema:knows→ ex:bob (span:s1; wf:wf)", "KG: ex:carol —schema:likes→ tea"],
        "removed": ["kg: stale fact"]}}
    texts = [r["text"] for r in out["active_memory"]["current_context"]]
    assert texts == ["KG: ex:carol —schema:likes→ tea", "KG: ex:alice —schema:knows→ ex:bob (span:s1; wf:wf)",
                     "Keep me"]  # each addition inserted at the front in turn
    trace = out["trace"]
    assert trace["stimulus"] == "who?" and trace["marker"] == "KG:"
    assert trace["packet_source"] == "packetize_assertions(items)" and trace["kg"]["ok"] is None
    assert trace["kg"]["count"] == 4 and trace["delta_preview"] == {"removed": 1, "added": 2}
    assert trace["selected"][0] == {"statement": "ex:alice —schema:knows→ ex:bob", "span_id": "s1",
                                    "observed_at": "2026-01-01", "retrieval_score": 0.87654}
    assert trace["applied"]["applied"]["current_context"]["removed"] == ["kg: stale fact"]
    assert len(out["memact_blocks"]) == 8 and "## CURRENT CONTEXT\n- [" in out["memact_system_prompt"]
    out = compose_memact_current_context_from_kg_result(vars, kg_result={"ok": True, "packets": [
        {"subject": "a", "predicate": "p", "object": "b"}, {"subject": "a", "predicate": " "}, {"statement": "s"}]},
        stimulus="", max_items=2)
    assert out["trace"]["packet_source"] == "kg_result.packets" and out["trace"]["kg"]["ok"] is True
    assert out["delta"]["current_context"]["added"] == ["KG: a —p→ b"]  # the packet without s/p/o is skipped
    assert len(out["delta"]["current_context"]["removed"]) == 2
    none = compose_memact_current_context_from_kg_result({}, kg_result={}, stimulus="")
    assert none["trace"]["packet_source"] == "none" and none["delta"]["current_context"] == {"added": [],
                                                                                              "removed": []}
