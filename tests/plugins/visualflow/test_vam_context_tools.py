"""VAM §4 (context, builder, trace and tool nodes) and §5 (catalog nodes): checklist lines 39-44 and the builders of
§4.2-§4.5. Real runtimes; the TOOL_CALLS effect runs through the AbstractCore integration's real
``make_tool_calls_handler``; the catalog nodes query AbstractCore's real provider registry, pointed at the loopback
OpenAI-compatible test server."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from abstractruntime import RunStatus
from abstractruntime_visualflow import UnknownNodeTypeError, compile_visualflow, visual_to_flow
from abstractruntime_visualflow.builtins import get_builtin_handler

from vf_support import E, N, chain, flow, memory_runtime, run

AC_TESTS = Path(__file__).resolve().parents[1] / "abstractcore"


def _end(*pins: str, src: str):
    """An ``on_flow_end`` reading ``src.<pin>`` into each pin."""
    return N("e", "on_flow_end", ins="exec-in " + " ".join(pins)), [E(f"{src}.{p}", f"e.{p}") for p in pins]


# --- §4.8 / checklist 39: call_tool -----------------------------------------------------------------------------------
def _tools_handler(**executor_tools):
    from abstractruntime.integrations.abstractcore.effect_handlers import make_tool_calls_handler
    from abstractruntime_abstractcore import MappingToolExecutor

    return make_tool_calls_handler(tools=MappingToolExecutor(executor_tools))


def _double(x: int) -> int:
    """Double x."""
    return x * 2


def _call_tool_flow(**pin_defaults):
    ins = "exec-in tool_call" + (" allowed_tools" if "allowed_tools" in pin_defaults else "")
    end, edges = _end("result", "success", "raw", src="t")
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("t", "call_tool", ins=ins, outs="exec-out result success raw", pinDefaults=pin_defaults), end]
    return flow("f", nodes, chain("s", "t", "e") + edges)


def test_vam_checklist_39_call_tool_emits_one_tool_call_and_maps_the_outcome():
    # the pending effect: a plain TOOL_CALLS with one call; a JSON string holding an object is accepted
    f = visual_to_flow(_call_tool_flow(tool_call='{"name": "double", "arguments": {"x": 21}}'))
    pending = f.nodes["t"].handler({})["_pending_effect"]
    assert pending == {"type": "tool_calls", "tool_calls": [{"name": "double", "arguments": {"x": 21}}],
                       "resume_to_node": "e"}
    # a list (or any non-object) is no call; the allowed_tools pin (non-blank names, stripped) is sent when given
    f = visual_to_flow(_call_tool_flow(tool_call=[{"name": "double"}], allowed_tools=[" double ", "", 3]))
    pending = f.nodes["t"].handler({})["_pending_effect"]
    assert pending["tool_calls"] == [] and pending["allowed_tools"] == ["double"]

    handler = _tools_handler(double=_double)
    state = run(memory_runtime(effect_handlers={"tool_calls": handler}),
                compile_visualflow(_call_tool_flow(tool_call='{"name": "double", "arguments": {"x": 21}}')))
    assert state.status is RunStatus.COMPLETED, state.error
    assert (state.output["result"], state.output["success"]) == (42, True)
    call = state.output["raw"]["results"][0]
    assert call["call_id"] and call["runtime_call_id"]  # filled in before dispatch
    # no call -> no result
    state = run(memory_runtime(effect_handlers={"tool_calls": handler}),
                compile_visualflow(_call_tool_flow(tool_call=["not", "a", "call"])))
    assert (state.output["result"], state.output["success"]) == ("Missing tool result", False)
    # allowed_tools [] allows none: the tool's error is the result
    state = run(memory_runtime(effect_handlers={"tool_calls": handler}),
                compile_visualflow(_call_tool_flow(tool_call={"name": "double", "arguments": {"x": 1}},
                                                   allowed_tools=[])))
    assert state.output["success"] is False and "not allowed" in state.output["result"]


def test_vam_checklist_39_call_tool_not_executed_mode():
    """A host that does not execute the call (passthrough) and resumes the run without results."""
    from abstractruntime.integrations.abstractcore.effect_handlers import make_tool_calls_handler
    from abstractruntime_abstractcore import PassthroughToolExecutor

    rt = memory_runtime(effect_handlers={"tool_calls": make_tool_calls_handler(tools=PassthroughToolExecutor())})
    spec = compile_visualflow(_call_tool_flow(tool_call={"name": "double", "arguments": {"x": 1}}))
    state = run(rt, spec)
    assert state.status is RunStatus.WAITING
    # before the result arrives, the node's outputs are the placeholder
    assert state.vars["_temp"]["node_outputs"]["t"] == {"result": None, "success": None}
    details = state.waiting.details
    state = rt.resume(workflow=spec, run_id=state.run_id, wait_key=state.waiting.wait_key,
                      payload={"mode": details["mode"], "tool_calls": details["tool_calls"]})
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["success"] is False
    assert state.output["result"] == "Tool execution not completed (mode=passthrough)"


def test_vam_4_8_allowed_tools_from_effect_config_only_when_a_list():
    def pending(**cfg):
        nodes = [N("s", "on_flow_start", outs="exec-out"),
                 N("t", "call_tool", ins="exec-in tool_call", outs="exec-out", effectConfig=cfg,
                   pinDefaults={"toolCall": {"name": "a"}})]
        return visual_to_flow(flow("f", nodes, chain("s", "t"))).nodes["t"].handler({})["_pending_effect"]

    assert pending(allowedTools=["a", " "]) == {"type": "tool_calls", "tool_calls": [{"name": "a"}],
                                                "allowed_tools": ["a"], "resume_to_node": None}
    assert "allowed_tools" not in pending(allowed_tools="a") and "allowed_tools" not in pending()


# --- §4.9 / checklist 40: memact_compose -----------------------------------------------------------------------------
def _memact_flow(**pin_defaults):
    end, edges = _end("ok", "error", "delta", "trace", "memact_blocks", "memact_system_prompt", src="m")
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("m", "memact_compose", ins="exec-in kg_result stimulus marker max_items",
               outs="exec-out ok delta trace active_memory memact_system_prompt memact_blocks",
               pinDefaults=pin_defaults), end]
    return compile_visualflow(flow("f", nodes, chain("s", "m", "e") + edges))


def test_vam_checklist_40_memact_compose_without_a_dict_kg_result():
    state = run(memory_runtime(), _memact_flow(kg_result=["not", "a", "dict"]))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"ok": False, "error": "memact_compose requires a dict kg_result (connect "
                            "memory_kg_query.raw or output)", "delta": {}, "trace": {}, "memact_blocks": [],
                            "memact_system_prompt": "", "success": True}


def test_vam_checklist_40_memact_compose_replaces_marker_entries_and_inserts_new_ones_first():
    kg = {"ok": True, "count": 3, "packets": [
        {"statement": "Alice knows Bob", "span_id": "sp1", "writer_workflow_id": "wf1"},
        {"subject": "bob", "predicate": "lives_in", "object": "paris"},
        {"statement": "Third fact"}]}
    start_vars = {"_runtime": {"active_memory": {"current_context": ["kg: stale fact", "keep me"]}}}
    state = run(memory_runtime(), _memact_flow(kg_result=kg, stimulus="  who is bob?  ", marker="  ", max_items="2.9"),
                start_vars)
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output
    added = out["delta"]["current_context"]["added"]
    assert added[0] == "KG: Alice knows Bob (span:sp1; wf:wf1)" and len(added) == 2  # max_items int(float("2.9"))
    assert out["delta"]["current_context"]["removed"] == ["kg: stale fact"]  # marker match is case-insensitive
    texts = [r["text"] for r in state.vars["_runtime"]["active_memory"]["current_context"]]
    assert texts == [added[1], added[0], "keep me"]  # each inserted at index 0: reverse order, first
    records = state.vars["_runtime"]["active_memory"]["current_context"]
    assert records[0]["id"].startswith("ctx_") and records[2]["id"].startswith("m_")
    assert out["ok"] is True
    trace = out["trace"]
    assert (trace["stimulus"], trace["marker"], trace["packet_source"]) == ("who is bob?", "KG:", "kg_result.packets")
    assert trace["delta_preview"] == {"removed": 1, "added": 2} and trace["kg"]["count"] == 3
    assert [b["title"] for b in out["memact_blocks"]] == [
        "MEMORY BLUEPRINTS", "MY PERSONA", "RELATIONSHIPS", "CURRENT TASKS", "CURRENT CONTEXT", "CRITICAL INSIGHTS",
        "REFERENCES", "HISTORY"]
    prompt = out["memact_system_prompt"]
    assert prompt.startswith("## MEMORY BLUEPRINTS") and "## CURRENT CONTEXT\n- [" in prompt
    assert "KG: Alice knows Bob" in prompt
    # the node's output is persisted and becomes _last_output
    assert state.vars["_temp"]["node_outputs"]["m"]["ok"] is True


def test_vam_4_9_memact_compose_items_and_a_second_pass_replace_the_first():
    items = [{"subject": "ada", "predicate": "wrote", "object": "notes"}]
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("m1", "memact_compose", ins="exec-in kg_result", outs="exec-out ok", pinDefaults={"kg_result": {
                 "packets": [{"statement": "Old"}]}}),
             N("m2", "memact_compose", ins="exec-in raw query_text", outs="exec-out ok trace",
               pinDefaults={"raw": {"items": items}, "query_text": "ada"}),
             N("e", "on_flow_end", ins="exec-in trace")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "m1", "m2", "e")
                                                          + [E("m2.trace", "e.trace")])))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["trace"]["packet_source"] == "packetize_assertions(items)"
    texts = [r["text"] for r in state.vars["_runtime"]["active_memory"]["current_context"]]
    assert len(texts) == 1 and texts[0].startswith("KG: ") and "Old" not in texts[0]


# --- §4.6 / checklist 41: agent_trace_report -------------------------------------------------------------------------
SCRATCHPAD = {"sub_run_id": "sub1", "workflow_id": "wf", "node_traces": {
    "act": {"node_id": "act", "steps": [{
        "ts": "2024-01-01T00:00:02", "status": "completed",
        "effect": {"type": "tool_calls", "payload": {"tool_calls": [
            {"name": "read_file", "call_id": "c1", "arguments": {"path": "a"}}]}},
        "result": {"mode": "executed", "results": [{"call_id": "c1", "success": True, "output": {"text": "abc"},
                                                    "error": None}]}}]},
    "think": {"node_id": "think", "steps": [{
        "ts": "2024-01-01T00:00:01", "status": "completed", "duration_ms": 12.3456,
        "effect": {"type": "llm_call", "payload": {}},
        "result": {"model": "m", "finish_reason": "tool_calls", "content": "Let me read.",
                   "tool_calls": [{"name": "read_file", "call_id": "c1", "arguments": {"path": "a"}}]}}]}}}

REPORT = """# Agent Trace Report
- **sub_run_id**: `sub1`
- **workflow_id**: `wf`

## Timeline

### 1. `think` — `llm_call` (completed)
- **duration_ms**: 12.346
- **model**: `m`
- **finish_reason**: `tool_calls`
- **tool_calls_requested**:
  - `read_file` (call_id=c1)

**Assistant content**
```markdown
Let me read.
```

### 2. `act` — `tool_calls` (completed)

#### Tool: `read_file` (call_id=c1)

**Arguments**
```json
{
  "path": "a"
}
```

**Result**
- **success**: true
```json
{
  "text": "abc"
}
```
"""


def test_vam_checklist_41_agent_trace_report_fallbacks_and_timeline():
    def report(scratchpad):
        end, edges = _end("report", src="r")
        nodes = [N("s", "on_flow_start", outs="exec-out"),
                 N("r", "agent_trace_report", ins="scratchpad", outs="result", pinDefaults={"scratchpad": scratchpad}),
                 end]
        state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "e") + [
            E("r.result", "e.report")])))
        return state.output["report"]

    assert report("not a dict") == "# Agent Trace Report\n\n_No scratchpad provided._\n"
    assert report({"task": "x"}) == "# Agent Trace Report\n\n_No node_traces found in scratchpad._\n"
    assert report({"node_traces": {"a": {"steps": []}}}) == "# Agent Trace Report\n\n_No trace steps found._\n"
    assert report(SCRATCHPAD) == REPORT


# --- §4.7 / checklist 42: format_tool_results ------------------------------------------------------------------------
def test_vam_checklist_42_format_tool_results_lines():
    fmt = get_builtin_handler("format_tool_results")
    long_text = "word " * 100
    results = [
        {"name": "read_file", "arguments": {"start_line": 1, "file_path": "  docs/a.md "}, "success": True,
         "output": "line 1\n  line 2"},
        {"name": "custom", "arguments": {"b": None, "a": True}, "success": False, "error": "boom"},
        {"tool": "fetch", "arguments": {"q": {"z": 1, "a": [1, 2]}}, "success": "yes",
         "output": {"rendered": "Rendered text", "x": 1}},
        {"arguments": {}, "output": {"url": "http://x"}, "success": True},
        {"name": "noop", "success": True, "output": None},
        {"name": "big", "arguments": {"text": long_text}, "success": True, "output": {"data": long_text}},
        "not a dict",
    ]
    lines = fmt({"tool_results": results}).split("\n")
    assert lines[0] == "- read_file(docs/a.md) [SUCCESS] : line 1 line 2"  # the spec's required_args
    assert lines[1] == "- custom(true) [FAILURE] : boom"
    assert lines[2] == '- fetch({"a":[1,2],"z":1}) [DONE] : Rendered text'
    assert lines[3] == '- tool(http://x) [SUCCESS] : {"url":"http://x"}'  # primary found in the output
    assert lines[4] == "- noop() [SUCCESS] : (no output)"
    primary = re.match(r"- big\((.*)\) \[SUCCESS\] : (.*)$", lines[5])
    assert len(primary.group(1)) == 160 and primary.group(1).endswith("…")
    assert len(primary.group(2)) == 420 and primary.group(2).endswith("…")
    assert len(lines) == 6
    # `results` when there is no `tool_results`; a non-list value is wrapped
    assert fmt({"results": {"name": "x", "success": True, "output": 3}}) == "- x() [SUCCESS] : 3"
    assert fmt({}) == ""


# --- §4.1 / checklist 43: get_context -------------------------------------------------------------------------------
def test_vam_checklist_43_get_context_reads_live_vars():
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("c", "get_context"),
             N("m", "add_message", ins="exec-in role content", outs="exec-out",
               pinDefaults={"role": "user", "content": "hello"}),
             N("e", "on_flow_end", ins="exec-in task msgs ctx")]
    edges = chain("s", "m", "e") + [E("c.task", "e.task"), E("c.messages", "e.msgs"), E("c.context", "e.ctx")]
    spec = compile_visualflow(flow("f", nodes, edges))
    first = {"role": "system", "content": "first"}
    state = run(memory_runtime(), spec, {"context": {"task": "  do it  ", "messages": [first], "extra": 1}})
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output
    assert out["task"] == "  do it  "  # strings as is
    # the message appended by add_message (a later step) is seen: the pure node is re-evaluated on every read
    assert [m["content"] for m in out["msgs"]] == ["first", "hello"] and out["ctx"]["extra"] == 1
    handler = visual_to_flow(flow("g", nodes, edges)).nodes["c"].handler
    # task falsy -> "", a non-string task -> str, a scalar messages value -> [value], null -> []
    assert handler({}, vars={"context": {"task": 0, "messages": "m"}}) == {
        "context": {"task": 0, "messages": "m"}, "task": "", "messages": ["m"]}
    assert handler({}, vars={"context": {"task": 3, "messages": None}})["messages"] == []
    assert handler({}, vars={"context": {"task": 3}})["task"] == "3"
    # no run attached (or no context dict)
    assert handler({}) == {"context": {}, "task": "", "messages": []}
    assert handler({}, vars={"context": "x"}) == {"context": {}, "task": "", "messages": []}


# --- §5 / checklist 44: catalog nodes --------------------------------------------------------------------------------
def _catalog_flow(**pin_defaults):
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("mc", "model_catalog", ins="allowed_providers allowed_models index",
               outs="providers models pair provider model", pinDefaults=pin_defaults,
               modelCatalogConfig={"index": 1}),
             N("pc", "provider_catalog", ins="allowed_providers", outs="providers"),
             N("pm", "provider_models", ins="provider allowed_models", outs="provider models",
               providerModelsConfig={"provider": "openai-compatible", "allowedModels": ["m-two"]}),
             N("e", "on_flow_end", ins="exec-in catalog providers models")]
    edges = chain("s", "e") + [E("mc.result", "e.catalog"), E("pc.providers", "e.providers"),
                               E("pm.result", "e.models")]
    return flow("catalogs", nodes, edges)


def test_vam_checklist_44_catalog_nodes_without_abstractcore(monkeypatch):
    for name in ("abstractcore", "abstractcore.providers", "abstractcore.providers.registry"):
        monkeypatch.setitem(sys.modules, name, None)  # as if AbstractCore were not installed
    state = run(memory_runtime(), compile_visualflow(_catalog_flow(), strict=True))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"catalog": {"providers": [], "models": [], "pair": None, "provider": "", "model": ""},
                            "providers": [], "models": {"provider": "openai-compatible", "models": []},
                            "success": True}
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("pm", "provider_models", ins="provider", outs="models"),
             N("e", "on_flow_end", ins="exec-in r")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "e") + [E("pm.result", "e.r")])))
    assert state.output["r"] == {"provider": "", "models": []}


@pytest.fixture
def openai_compatible_server(monkeypatch):
    pytest.importorskip("abstractcore")
    monkeypatch.syspath_prepend(str(AC_TESTS))
    from fake_llm_server import FakeLLMServer

    server = FakeLLMServer(models=["m-one", "m-two"]).start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    try:
        yield server
    finally:
        server.stop()


def test_vam_5_catalog_nodes_answer_from_the_abstractcore_registry(openai_compatible_server):
    state = run(memory_runtime(), compile_visualflow(_catalog_flow(allowed_providers=["OpenAI-Compatible"])))
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output
    pair = {"provider": "openai-compatible", "model": "m-two", "id": "openai-compatible/m-two"}
    assert out["catalog"] == {"providers": ["openai-compatible"],
                              "models": ["openai-compatible/m-one", "openai-compatible/m-two"],
                              "pair": pair, "provider": "openai-compatible", "model": "m-two"}  # config index 1
    assert "openai-compatible" in out["providers"]
    assert out["models"] == {"provider": "openai-compatible", "models": ["m-two"]}
    # pin allowlist (id or bare model), out-of-range index -> the first pair, negative index -> 0
    state = run(memory_runtime(), compile_visualflow(_catalog_flow(allowed_models=["openai-compatible/m-two"],
                                                                   index=5)))
    assert state.output["catalog"]["models"] == ["openai-compatible/m-two"]
    assert state.output["catalog"]["pair"] == pair
    state = run(memory_runtime(), compile_visualflow(_catalog_flow(index=-3)))
    assert state.output["catalog"]["model"] == "m-one"
    state = run(memory_runtime(), compile_visualflow(_catalog_flow(allowed_providers=["ollama"])))
    assert state.output["catalog"]["providers"] == [] and state.output["catalog"]["pair"] is None


def test_vam_5_catalog_and_memact_nodes_are_known_in_strict_mode():
    for node_type in ("model_catalog", "provider_catalog", "provider_models", "memact_compose", "call_tool"):
        nodes = [N("s", "on_flow_start", outs="exec-out"), N("x", node_type), N("e", "on_flow_end", ins="exec-in")]
        compile_visualflow(flow("f", nodes, chain("s", "x", "e")), strict=True)
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("x", "no_such_node"), N("e", "on_flow_end", ins="exec-in")]
    with pytest.raises(UnknownNodeTypeError):
        compile_visualflow(flow("f", nodes, chain("s", "x", "e")), strict=True)


# --- §4.2-§4.5: the builders ----------------------------------------------------------------------------------------
def test_vam_4_2_make_context():
    fn = get_builtin_handler("make_context")
    extra = {"task": "overridden", "attachments": ["a"]}
    assert fn({"task": "T", "messages": ({"role": "user"},), "context_extra": extra}) == {
        "context": {"task": "T", "messages": [{"role": "user"}], "attachments": ["a"]}}
    assert fn({"task": 7, "messages": "hi"}) == {"context": {"task": "7", "messages": ["hi"]}}
    assert fn({}) == {"context": {"task": "", "messages": []}}


def test_vam_4_3_add_message_builtin_and_execution_node():
    msg = get_builtin_handler("add_message")({"content": 5})["message"]
    assert (msg["role"], msg["content"]) == ("user", "5") and msg["timestamp"].endswith("+00:00")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", msg["metadata"]["message_id"])
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("m", "add_message", ins="exec-in role content", outs="exec-out message",
               pinDefaults={"role": "assistant", "content": "hi"})]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, chain("s", "m"))), {"context": {"task": "t"}})
    assert state.output["success"] is True and state.output["message"]["content"] == "hi"
    stored = state.vars["_temp"]["node_outputs"]["m"]
    assert stored["task"] == "t" and stored["messages"] == state.vars["context"]["messages"]
    assert stored["messages"] is not state.vars["context"]["messages"]  # a copy
    assert "_last_output" not in state.vars or state.vars["_last_output"] != stored


def test_vam_4_4_make_meta():
    fn = get_builtin_handler("make_meta")
    assert fn({}) == {"meta": {"schema": "abstractcode.agent.v1.meta", "version": 1}}
    meta = fn({"extra": {"x": 1, "schema": "old"}, "schema": "  ", "version": "3", "output_mode": "structured",
               "provider": 42, "model": " ", "sub_run_id": "sub", "iterations": "2.0", "tool_calls": True,
               "tool_results": 1.0, "finish_reason": "stop", "gen_time": 0, "ttft_ms": False,
               "usage": {"total_tokens": 3}, "trace": "tr-1", "trace_id": "tr-2", "warnings": ["w", " ", None, 3],
               "debug": "d"})["meta"]
    assert meta == {"x": 1, "schema": "abstractcode.agent.v1.meta", "version": 3, "output_mode": "structured",
                    "provider": "42", "sub_run_id": "sub", "iterations": 2, "tool_results": 1,
                    "finish_reason": "stop", "gen_time": 0, "usage": {"total_tokens": 3},
                    "trace": {"trace_id": "tr-2"}, "warnings": ["w", "3"], "debug": "d"}
    assert fn({"version": True, "warnings": "careful", "trace": {"a": 1}})["meta"] == {
        "schema": "abstractcode.agent.v1.meta", "version": 1, "warnings": ["careful"], "trace": {"a": 1}}


def test_vam_4_5_make_scratchpad():
    fn = get_builtin_handler("make_scratchpad")
    assert fn({}) == {"scratchpad": {"task": "", "messages": [], "node_traces": {}, "steps": [], "tool_calls": [],
                                     "tool_results": []}}
    pad = fn({"sub_run_id": "s", "workflow_id": " ", "task": None, "messages": ({"role": "user"},),
              "context_extra": {"k": 1}, "node_traces": {"n": {}}, "steps": {"one": 1}, "tool_calls": None,
              "tool_results": [{"x": 1}], "ignored": 1})["scratchpad"]
    assert pad == {"sub_run_id": "s", "task": "", "messages": [{"role": "user"}], "context_extra": {"k": 1},
                   "node_traces": {"n": {}}, "steps": [{"one": 1}], "tool_calls": [], "tool_results": [{"x": 1}]}
