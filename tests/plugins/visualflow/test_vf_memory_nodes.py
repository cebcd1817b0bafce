"""VAM §3: the memory nodes map their pins onto their effect payloads exactly, and their outcomes onto outputs.

Payloads are read from the nodes' pending effects (``Flow`` dry handlers) and from the ledger of real runs against
the active_memory (in-memory ArtifactStore) and kg_memory (SQLite file) handlers.
"""

from __future__ import annotations

import pytest

from abstractruntime import RunStatus
from abstractruntime_artifacts.store import InMemoryArtifactStore
from abstractruntime_visualflow import compile_visualflow, visual_to_flow

from vf_support import E, N, chain, flow, memory_runtime, run


def _pending(node_type, pins, **data):
    f = visual_to_flow(flow("m", [N("s", "on_flow_start", outs="exec-out x"),
                                  N("m", node_type, ins="exec-in", outs="exec-out", pinDefaults=pins, **data),
                                  N("e", "on_flow_end", ins="exec-in")], chain("s", "m", "e")))
    out = f.nodes["m"].handler({})
    return out.pop("_pending_effect"), out


def _runtime(tmp_path):
    return memory_runtime(artifact_store=InMemoryArtifactStore(),
                          settings={"plugin_options": {"kg_memory": {"store": f"sqlite://{tmp_path}/kg.sqlite3"}}})


def _run(tmp_path, nodes, edges, **kw):
    rt = _runtime(tmp_path)
    state = run(rt, compile_visualflow(flow("mem", nodes, edges)), **kw)
    assert state.status is RunStatus.COMPLETED, state.error
    return state


def test_vam_checklist_30_memory_note_payload_and_note_id(tmp_path):
    payload, placeholder = _pending("memory_note", {"content": "hello", "keep_in_context": "no", "scope": " run ",
                                                    "location": "  ", "sources": "x"})
    assert payload == {"type": "memory_note", "note": "hello", "tags": {}, "scope": "run", "resume_to_node": "e"}
    assert placeholder == {"note_id": None}
    payload, _ = _pending("memory_note", {"content": "hello", "keepInContext": "yes"})
    assert payload["keep_in_context"] is True
    payload, _ = _pending("memory_note", {"content": "hello"}, effectConfig={"keep_in_context": True})
    assert payload["keep_in_context"] is True
    state = _run(tmp_path, [N("s", "on_flow_start", outs="exec-out x"),
                            N("n", "memory_note", ins="exec-in content", outs="exec-out note_id raw",
                              pinDefaults={"content": "remember me"}, outputKey="saved"),
                            N("e", "on_flow_end", ins="exec-in note_id")],
                 chain("s", "n", "e") + [E("n.note_id", "e.note_id")])
    note_id = state.output["note_id"]
    assert note_id.startswith("note_") and state.vars["saved"] == note_id


def test_vam_checklist_31_memory_query_payload_and_outputs(tmp_path):
    payload, placeholder = _pending("memory_query", {"query": "q", "limit": "2.5", "usernames": "bob",
                                                     "locations": [" here ", "", 3], "since": 0})
    assert payload == {"type": "memory_query", "query": "q", "limit_spans": 10, "return": "both",
                       "locations": ["here"], "since": 0, "resume_to_node": "e"}
    assert placeholder == {"results": [], "rendered": ""}
    assert _pending("memory_query", {"limit": 3, "usernames": [" bob "]})[0]["limit_spans"] == 3
    assert _pending("memory_query", {"usernames": [" bob "]})[0]["usernames"] == ["bob"]
    state = _run(tmp_path, [N("s", "on_flow_start", outs="exec-out x"),
                            N("n", "memory_note", ins="exec-in content", outs="exec-out note_id",
                              pinDefaults={"content": "The code word is heron"}),
                            N("q", "memory_query", ins="exec-in query", outs="exec-out results span_ids rendered",
                              pinDefaults={"query": "heron"}, outputKey="found"),
                            N("e", "on_flow_end", ins="exec-in results span_ids rendered note")],
                 chain("s", "n", "q", "e") + [E("q.results", "e.results"), E("q.span_ids", "e.span_ids"),
                                              E("q.rendered", "e.rendered"), E("n.note_id", "e.note")])
    out = state.output
    assert out["span_ids"] == [out["note"]] and [m["span_id"] for m in out["results"]] == [out["note"]]
    assert "heron" in out["rendered"] and state.vars["found"] == out["results"]


def test_vam_checklist_32_memory_tag_payload_and_success(tmp_path):
    payload, placeholder = _pending("memory_tag", {"spanId": "s1", "scope": "  "})
    assert payload == {"type": "memory_tag", "span_id": "s1", "tags": {}, "resume_to_node": "e"}
    assert placeholder == {"rendered": "", "success": False}
    assert _pending("memory_tag", {"span_id": "s1", "tags": {"a": "b"}, "merge": "off"})[0]["merge"] is False
    state = _run(tmp_path, [N("s", "on_flow_start", outs="exec-out x"),
                            N("n", "memory_note", ins="exec-in content", outs="exec-out note_id",
                              pinDefaults={"content": "tag me"}),
                            N("t", "memory_tag", ins="exec-in span_id tags", outs="exec-out success rendered",
                              pinDefaults={"tags": {"topic": "birds"}}),
                            N("e", "on_flow_end", ins="exec-in success rendered")],
                 chain("s", "n", "t", "e") + [E("n.note_id", "t.span_id"), E("t.success", "e.success"),
                                              E("t.rendered", "e.rendered")])
    assert state.output["success"] is True and "topic" in state.output["rendered"]


def test_vam_checklist_33_memory_compact_span_id():
    from abstractruntime_visualflow.catalogue.memory_nodes import MEMORY_NODES

    payload, placeholder = _pending("memory_compact", {"preserve_recent": 2, "compression_mode": " light ",
                                                       "focus": ""})
    assert payload == {"type": "memory_compact", "preserve_recent": 2, "compression_mode": "light",
                       "resume_to_node": "e"}
    assert placeholder == {"span_id": None}
    mapper = MEMORY_NODES["memory_compact"][2]
    raw = {"mode": "executed", "results": [{"success": True, "output": "x", "meta": {"span_id": "span_1"}}]}
    assert mapper(raw, {}, None) == {"span_id": "span_1", "raw": raw}


def test_vam_checklist_34_memory_rehydrate_payload_and_outputs(tmp_path):
    payload, placeholder = _pending("memory_rehydrate", {"span_id": "s1", "placement": "middle", "recall_level": 1})
    assert payload == {"type": "memory_rehydrate", "span_ids": ["s1"], "placement": "after_summary",
                       "resume_to_node": "e"}
    assert placeholder == {"inserted": 0, "skipped": 0}
    assert _pending("memory_rehydrate", {"span_ids": ["a"], "placement": " end "})[0]["placement"] == "end"
    state = _run(tmp_path, [N("s", "on_flow_start", outs="exec-out x"),
                            N("n", "memory_note", ins="exec-in content", outs="exec-out note_id",
                              pinDefaults={"content": "bring me back"}),
                            N("r", "memory_rehydrate", ins="exec-in span_id", outs="exec-out inserted skipped artifacts"),
                            N("e", "on_flow_end", ins="exec-in inserted skipped artifacts")],
                 chain("s", "n", "r", "e") + [E("n.note_id", "r.span_id"), E("r.inserted", "e.inserted"),
                                              E("r.skipped", "e.skipped"), E("r.artifacts", "e.artifacts")])
    assert state.output["inserted"] == 1 and state.output["skipped"] == 0 and len(state.output["artifacts"]) == 1
    recalled = [m for m in state.vars["context"]["messages"] if (m.get("metadata") or {}).get("rehydrated")]
    assert recalled[0]["content"] == "[MEMORY NOTE]\nbring me back"


def test_vam_checklist_35_memory_kg_assert_payload_and_empty_noop(tmp_path):
    pytest.importorskip("abstractmemory")
    payload, placeholder = _pending("memory_kg_assert", {
        "triples": [{"subject": "ex:a", "predicate": "schema:name", "object": "A"}, "junk"],
        "allow_custom_predicates": "yes", "attributes_defaults": {}, "span_id": " sp "})
    assert payload == {"type": "memory_kg_assert", "resume_to_node": "e", "span_id": "sp",
                       "assertions": [{"subject": "ex:a", "predicate": "schema:name", "object": "A"}]}
    assert placeholder == {"assertion_ids": [], "count": 0}
    assert _pending("memory_kg_assert", {"items": {"subject": "s"}, "allow_custom_predicates": False})[0] == {
        "type": "memory_kg_assert", "assertions": [{"subject": "s"}], "allow_custom_predicates": False,
        "resume_to_node": "e"}
    state = _run(tmp_path, [N("s", "on_flow_start", outs="exec-out x"),
                            N("a", "memory_kg_assert", ins="exec-in assertions", outs="exec-out assertion_ids count ok raw",
                              pinDefaults={"assertions": []}),
                            N("e", "on_flow_end", ins="exec-in ids count ok raw")],
                 chain("s", "a", "e") + [E("a.assertion_ids", "e.ids"), E("a.count", "e.count"), E("a.ok", "e.ok"),
                                         E("a.raw", "e.raw")])
    assert state.output["ids"] == [] and state.output["count"] == 0 and state.output["ok"] is True
    assert state.output["raw"]["skipped"] is True


def test_vam_checklist_36_memory_kg_query_payload_and_packing_keys(tmp_path):
    pytest.importorskip("abstractmemory")
    payload, placeholder = _pending("memory_kg_query", {
        "subject": " ex:a ", "predicate": "", "query_text": "who", "max_in_tokens": "300.7", "min_score": "0.5",
        "limit": "2.5", "order": "asc", "owner_id": 5, "since": "2020", "active_at": None})
    assert payload == {"type": "memory_kg_query", "subject": "ex:a", "query_text": "who", "order": "asc",
                       "since": "2020", "max_input_tokens": 300, "min_score": 0.5, "resume_to_node": "e"}
    assert placeholder == {"items": [], "count": 0}
    assert _pending("memory_kg_query", {"limit": 4, "min_score": True})[0] == {
        "type": "memory_kg_query", "limit": 4, "resume_to_node": "e"}
    state = _run(tmp_path, [N("s", "on_flow_start", outs="exec-out x"),
                            N("a", "memory_kg_assert", ins="exec-in assertions", outs="exec-out",
                              pinDefaults={"assertions": [{"subject": "ex:Ada", "predicate": "schema:name",
                                                           "object": "Ada"}]}),
                            N("q", "memory_kg_query", ins="exec-in subject max_input_tokens",
                              outs="exec-out items count ok active_memory_text", outputKey="items",
                              pinDefaults={"subject": "ex:ada", "max_input_tokens": 500}),
                            N("q2", "memory_kg_query", ins="exec-in subject", outs="exec-out raw",
                              pinDefaults={"subject": "ex:ada"}),
                            N("e", "on_flow_end", ins="exec-in count text plain")],
                 chain("s", "a", "q", "q2", "e") + [E("q.count", "e.count"), E("q.active_memory_text", "e.text"),
                                                    E("q2.raw", "e.plain")])
    assert state.output["count"] == 1 and "## KG ACTIVE MEMORY" in state.output["text"]
    assert [i["subject"] for i in state.vars["items"]] == ["ex:ada"]
    assert "active_memory_text" not in state.output["plain"]  # no packing asked: the key is not mapped
    from abstractruntime_visualflow.catalogue.memory_nodes import MEMORY_NODES
    mapped = MEMORY_NODES["memory_kg_query"][2]({"ok": True, "count": 0, "items": []}, {}, None)
    assert "packets" not in mapped and "active_memory_text" not in mapped


def test_vam_checklist_37_memory_kg_resolve_aliases():
    payload, placeholder = _pending("memory_kg_resolve", {"label": " Ada ", "includeSemantic": False,
                                                          "minScore": "0.3", "limit": "7.9", "expected_type": " "})
    assert payload == {"type": "memory_kg_resolve", "label": "Ada", "include_semantic": False, "min_score": 0.3,
                       "max_candidates": 7, "resume_to_node": "e"}
    assert placeholder == {"candidates": [], "count": 0}
    assert _pending("memory_kg_resolve", {"maxCandidates": 3, "limit": 9, "include_semantic": "yes"})[0] == {
        "type": "memory_kg_resolve", "max_candidates": 3, "resume_to_node": "e"}


def test_vam_checklist_38_memory_payloads_carry_type_and_resume_and_outcomes_at_temp_effects(tmp_path):
    for node_type in ("memory_note", "memory_query", "memory_tag", "memory_compact", "memory_rehydrate",
                      "memory_kg_assert", "memory_kg_query", "memory_kg_resolve"):
        payload, _ = _pending(node_type, {})
        assert payload["type"] == node_type and payload["resume_to_node"] == "e"
    rt = _runtime(tmp_path)
    nodes = [N("s", "on_flow_start", outs="exec-out x"),
             N("n", "memory_note", ins="exec-in content", outs="exec-out note_id", pinDefaults={"content": "c"}),
             N("e", "on_flow_end", ins="exec-in")]
    state = run(rt, compile_visualflow(flow("t", nodes, chain("s", "n", "e"))))
    effect = [r["effect"] for r in rt.get_ledger(state.run_id) if isinstance(r.get("effect"), dict)][0]
    assert effect["result_key"] == "_temp.effects.n" and effect["payload"]["resume_to_node"] == "e"
    assert state.vars["_temp"]["effects"]["n"]["results"][0]["meta"]["span_id"].startswith("note_")
