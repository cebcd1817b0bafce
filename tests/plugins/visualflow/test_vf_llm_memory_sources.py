"""VAM §2: the ``llm_call`` node's pins, schema refs and memory sources (pre-call recall scheduling, injection).

Recall runs against the real active_memory (in-memory ArtifactStore) and kg_memory (SQLite file) handlers; the
LLM provider is replaced by an ``llm_call`` effect handler that records the payload it receives.
"""

from __future__ import annotations

import sys

import pytest

from abstractruntime import RunStatus
from abstractruntime_artifacts.store import InMemoryArtifactStore
from abstractruntime_visualflow import compile_visualflow, visual_to_flow
from abstractruntime_visualflow.catalogue.llm_node import inject_into_call, resolve_tools
from abstractruntime_visualflow.memory_sources import memory_bucket, memory_sources
from abstractruntime_visualflow.schema_refs import SchemaRefDependencyError, SchemaRefError

from vf_support import E, N, chain, flow, memory_runtime, run

pytest.importorskip("abstractmemory")
NOTE = "The launch code word is heron"


def _runtime(tmp_path, calls):
    def fake_llm(run_state, effect, default_next):
        from abstractruntime.models import EffectOutcome
        calls.append(dict(effect.payload))
        return EffectOutcome.completed({"content": "ok", "model": "m", "provider": "p"})

    return memory_runtime(artifact_store=InMemoryArtifactStore(), effect_handlers={"llm_call": fake_llm},
                          settings={"plugin_options": {"kg_memory": {"store": f"sqlite://{tmp_path}/kg.sqlite3"}}})


def _flow(llm_defaults):
    # on_flow_start declares a data pin, so vars.context does not leak in as a `context` pin (VAM §1.12)
    nodes = [N("s", "on_flow_start", outs="exec-out unused"),
             N("n", "memory_note", ins="exec-in content", outs="exec-out note_id", pinDefaults={"content": NOTE}),
             N("llm", "llm_call", ins="exec-in prompt system provider model", outs="exec-out response",
               pinDefaults={"provider": "p", "model": "m", **llm_defaults}),
             N("e", "on_flow_end", ins="exec-in response")]
    edges = chain("s", "n", "llm", "e") + [E("llm.response", "e.response")]
    return flow("mem", nodes, edges)


def _effects(rt, run_id):
    return [r["effect"] for r in rt.get_ledger(run_id)
            if isinstance(r.get("effect"), dict) and r.get("node_id") == "llm" and r.get("status") == "started"]


def _run(rt, vf, **kw):
    spec = compile_visualflow(vf)
    state = run(rt, spec, **kw)
    return state, _effects(rt, state.run_id)


def test_vam_checklist_19_recall_phases_in_order_with_defaults(tmp_path):
    calls = []
    rt = _runtime(tmp_path, calls)
    state, effects = _run(rt, _flow({"prompt": "What is the code word heron?", "use_span_memory": True,
                                     "use_kg_memory": True}))
    assert state.status is RunStatus.COMPLETED, state.error
    assert [e["type"] for e in effects] == ["memory_query", "memory_rehydrate", "memory_kg_query", "llm_call"]
    q, r, k, llm = (e["payload"] for e in effects)
    assert q == {"query": "What is the code word heron?", "scope": "run", "return": "meta"}
    assert r["placement"] == "after_summary" and r["max_messages"] == 80 and len(r["span_ids"]) == 1
    assert k == {"query_text": "What is the code word heron?", "scope": "run", "max_input_tokens": 1200, "model": "m"}
    assert [e["result_key"] for e in effects[:3]] == [
        "_temp.memory_sources.llm.span_query", "_temp.memory_sources.llm.span_rehydrate",
        "_temp.memory_sources.llm.kg_query"]
    assert effects[3]["result_key"] == "_temp.effects.llm" and llm["resume_to_node"] == "e"
    assert not any("type" in p or "resume_to_node" in p for p in (q, r, k))
    meta = state.vars["_temp"]["memory_sources"]["llm"]["_meta"]
    assert meta["span_ids"] == r["span_ids"] and len(meta["warnings"]) == 2
    assert set(state.vars["_temp"]["effects"]) == {"n", "llm"}  # recall results are not main outcomes
    assert len(calls) == 1


def test_vam_checklist_20_blank_query_skips_query_but_rehydrates(tmp_path):
    calls = []
    rt = _runtime(tmp_path, calls)
    state, effects = _run(rt, _flow({"prompt": "   ", "use_span_memory": True, "use_kg_memory": True}))
    assert state.status is RunStatus.COMPLETED, state.error
    assert [e["type"] for e in effects] == ["memory_rehydrate", "llm_call"]
    assert effects[0]["payload"]["span_ids"] == []
    # memory_query wins over the prompt
    state, effects = _run(_runtime(tmp_path, []), _flow({"prompt": "p", "memory_query": "heron",
                                                         "use_kg_memory": True}))
    assert effects[0]["payload"]["query_text"] == "heron"


def test_vam_checklist_21_recall_level_forwarded_without_defaults(tmp_path):
    state, effects = _run(_runtime(tmp_path, []), _flow({"prompt": "heron", "use_span_memory": True,
                                                         "use_kg_memory": True, "recall_level": " urgent "}))
    assert state.status is RunStatus.COMPLETED, state.error
    q, r, k = (e["payload"] for e in effects[:3])
    assert q["recall_level"] == r["recall_level"] == k["recall_level"] == "urgent"
    assert "max_messages" not in r and "max_input_tokens" not in k
    assert "warnings" not in state.vars["_temp"]["memory_sources"]["llm"]["_meta"]


def test_vam_checklist_22_memory_object_pin_expands_individual_pins_win(tmp_path):
    state, effects = _run(_runtime(tmp_path, []), _flow({
        "prompt": "heron", "memory": {"use_kg_memory": "yes", "kg_limit": 3, "memory_scope": "session",
                                      "use_span_memory": True}, "use_span_memory": False}))
    assert state.status is RunStatus.COMPLETED, state.error
    assert [e["type"] for e in effects] == ["memory_kg_query", "llm_call"]
    assert effects[0]["payload"]["limit"] == 3 and effects[0]["payload"]["scope"] == "session"
    assert effects[1]["payload"]["use_kg_memory"] is True and effects[1]["payload"]["use_span_memory"] is False


def _bucket_with_kg(text):
    vars = {}
    memory_bucket(vars, "n")["kg_query"] = {"ok": True, "active_memory_text": text}
    return vars


def test_vam_checklist_23_kg_text_injection():
    text = "## KG ACTIVE MEMORY\n- a —p→ b"
    sources = memory_sources({"use_kg_memory": True})
    prompt_mode = inject_into_call({"prompt": "q", "system_prompt": "SYS", "params": {}}, _bucket_with_kg(text),
                                   "n", sources)
    assert prompt_mode["system_prompt"] == f"SYS\n\n{text}"
    blank = inject_into_call({"prompt": "q", "system_prompt": " ", "params": {}}, _bucket_with_kg(text), "n", sources)
    assert blank["system_prompt"] == text
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}]
    message_mode = inject_into_call({"messages": list(msgs), "params": {}}, _bucket_with_kg(text), "n", sources)
    assert message_mode["messages"][1] == {"role": "system", "content": text}
    already = [{"role": "system", "content": "x ## KG ACTIVE MEMORY y"}, {"role": "user", "content": "u"}]
    kept = inject_into_call({"messages": list(already), "params": {}}, _bucket_with_kg(text), "n", sources)
    assert kept["messages"] == already


def test_vam_checklist_24_span_recall_without_context_builds_messages(tmp_path):
    calls = []
    state, _ = _run(_runtime(tmp_path, calls), _flow({"prompt": "heron?", "system": "SYS", "use_span_memory": True}))
    assert state.status is RunStatus.COMPLETED, state.error
    msgs = calls[0]["messages"]
    assert msgs[0] == {"role": "system", "content": "SYS"}
    assert msgs[1]["content"] == f"[MEMORY NOTE]\n{NOTE}" and msgs[1]["metadata"]["rehydrated"] is True
    assert msgs[-1]["role"] == "user" and msgs[-1]["content"].endswith("heron?")  # + the grounding stamp
    assert not {"prompt", "system_prompt"} & set(calls[0])


def test_vam_checklist_25_use_context_builds_trimmed_messages_from_active_view(tmp_path):
    calls = []
    history = [{"role": "system", "content": "CTX-SYS"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"old message number {i} " * 20} for i in range(6)]
    vf = _flow({"prompt": "now", "system": "SYS", "use_context": True})
    state, _ = _run(_runtime(tmp_path, calls), vf, vars={"context": {"messages": history}})
    assert state.status is RunStatus.COMPLETED, state.error
    msgs = calls[0]["messages"]
    assert [m["content"] for m in msgs[:2]] == ["CTX-SYS", "SYS"] and len(msgs) == 9
    assert msgs[-1]["content"].endswith("now") and calls[0]["include_context"] is True
    # _limits.max_input_tokens trims (system messages and the last message always kept)
    calls.clear()
    state, _ = _run(_runtime(tmp_path, calls), vf, vars={"context": {"messages": history},
                                                        "_limits": {"max_input_tokens": 60}})
    msgs = calls[0]["messages"]
    assert [m["content"] for m in msgs[:2]] == ["CTX-SYS", "SYS"] and msgs[-1]["content"].endswith("now") and len(msgs) < 9
    # the node's max_input_tokens wins over _limits
    calls.clear()
    vf = _flow({"prompt": "now", "use_context": True, "max_input_tokens": 100000})
    _run(_runtime(tmp_path, calls), vf, vars={"context": {"messages": history}, "_limits": {"max_input_tokens": 60}})
    assert len(calls[0]["messages"]) == 8


def test_vam_checklist_26_use_session_attachments_maps_to_params(tmp_path):
    f = visual_to_flow(_flow({"prompt": "x", "use_session_attachments": False}))
    pending = f.nodes["llm"].handler({})["_pending_effect"]
    assert inject_into_call(pending, {}, "llm", memory_sources(pending))["params"][
        "include_session_attachments_index"] is False
    calls = []
    _run(_runtime(tmp_path, calls), _flow({"prompt": "x", "memory": {"use_session_attachments": "on"}}))
    assert calls[0]["params"]["include_session_attachments_index"] is True


def test_vam_checklist_27_identical_reentry_reuses_recall_changed_inputs_clear_it(tmp_path):
    """A loop runs the LLM node twice with the same prompt (one recall), then with another prompt (recall again)."""
    calls = []
    rt = _runtime(tmp_path, calls)
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("loop", "for", ins="exec-in start end", outs="loop done", pinDefaults={"start": 0, "end": 2}),
             N("llm", "llm_call", ins="exec-in prompt provider model", outs="exec-out response",
               pinDefaults={"prompt": "heron", "provider": "p", "model": "m", "use_kg_memory": True}),
             N("e", "on_flow_end", ins="exec-in")]
    edges = [E("s.exec-out", "loop.exec-in"), E("loop.loop", "llm.exec-in"), E("loop.done", "e.exec-in")]
    state, effects = _run(rt, flow("loop", nodes, edges))
    assert state.status is RunStatus.COMPLETED, state.error
    assert [e["type"] for e in effects] == ["memory_kg_query", "llm_call", "llm_call"]
    fingerprint = state.vars["_temp"]["memory_sources"]["llm"]["_meta"]["fingerprint"]
    assert len(fingerprint) == 32
    nodes[2]["data"]["pinDefaults"]["prompt"] = "another question"
    state2 = run(rt, compile_visualflow(flow("loop2", nodes, edges)), vars={"_temp": state.vars["_temp"]})
    again = _effects(rt, state2.run_id)
    assert [e["type"] for e in again] == ["memory_kg_query", "llm_call", "llm_call"]
    assert state2.vars["_temp"]["memory_sources"]["llm"]["_meta"]["fingerprint"] != fingerprint


def test_vam_checklist_28_schema_ref_resolved_or_typed_error(tmp_path, monkeypatch):
    ref = {"$ref": "abstractsemantics:kg_assertion_schema_v0"}
    f = visual_to_flow(_flow({"prompt": "x", "resp_schema": ref}))
    pending = f.nodes["llm"].handler({})["_pending_effect"]
    assert pending["response_schema"]["type"] == "object" and "assertions" in pending["response_schema"]["properties"]
    bad = visual_to_flow(_flow({"prompt": "x", "resp_schema": {"$ref": "abstractsemantics:nope"}}))
    with pytest.raises(SchemaRefError, match="Unknown structured-output schema ref: abstractsemantics:nope"):
        bad.nodes["llm"].handler({})
    state, effects = _run(_runtime(tmp_path, []), _flow({"prompt": "x", "resp_schema": {"$ref": "abstractsemantics:nope"}}))
    assert state.status is RunStatus.FAILED and "Unknown structured-output schema ref" in state.error
    assert effects == []
    monkeypatch.setitem(sys.modules, "abstractsemantics", None)  # the optional package is not installed
    with pytest.raises(SchemaRefDependencyError, match="pip install abstractsemantics") as info:
        f.nodes["llm"].handler({})
    assert isinstance(info.value, RuntimeError) and sys.executable in str(info.value)


def test_vam_checklist_29_tool_names_resolve_against_known_specs():
    pytest.importorskip("abstractcore")
    tools = resolve_tools(["read_file", "no_such_tool", " ", 3])
    assert [t["name"] for t in tools] == ["read_file"] and "parameters" in tools[0]
    specs = resolve_tools([{"name": " mine ", "description": None, "parameters": "x"}, {"description": "nameless"}])
    assert specs == [{"name": "mine", "description": "", "parameters": {}}]
    assert resolve_tools("read_file") == []
    f = visual_to_flow(_flow({"prompt": "x", "tools": ["list_files", "bogus"]}))
    assert [t["name"] for t in f.nodes["llm"].handler({})["_pending_effect"]["tools"]] == ["list_files"]
