"""Long-tail families only build effects (llm_call, tool_calls, start_subworkflow, memory_*) with the spec's pin
names; their handlers come from other plugins. Here host handlers stand in for them."""

from __future__ import annotations

from abstractruntime import EffectOutcome, RunStatus
from abstractruntime_visualflow import compile_visualflow, visual_to_flow

from vf_support import E, N, chain, flow, memory_runtime, run


def _llm_flow(**pin_defaults):
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("llm", "llm_call", ins="exec-in prompt system context provider model",
               outs="exec-out response tool_calls success meta", pinDefaults=pin_defaults,
               effectConfig={"provider": "p", "model": "m", "temperature": 0.2}),
             N("e", "on_flow_end", ins="exec-in response success")]
    return flow("f", nodes, chain("s", "llm", "e") + [E("llm.response", "e.response"), E("llm.success", "e.success")])


def test_llm_call_payload_and_output_mapping():
    seen = []

    def fake_llm(run, effect, default_next):
        seen.append(effect.payload)
        return EffectOutcome.completed({"content": "Hi!", "model": "m", "usage": {"total_tokens": 3}})

    rt = memory_runtime(effect_handlers={"llm_call": fake_llm})
    state = run(rt, compile_visualflow(_llm_flow(prompt="Say hi", system="Be brief")))
    assert state.status is RunStatus.COMPLETED and state.output == {"response": "Hi!", "success": True}
    p = seen[0]
    assert (p["system_prompt"], p["provider"], p["model"]) == ("Be brief", "p", "m")
    assert p["prompt"].endswith("] Say hi")  # grounded by the abstractcore plugin, as in 0.4.2 (date header)
    assert p["params"] == {"temperature": 0.2} and p["type"] == "llm_call" and p["resume_to_node"] == "e"


def test_llm_call_with_context_messages_and_structured_output():
    ctx = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "earlier"}],
           "attachments": [{"$artifact": "x"}]}
    f = visual_to_flow(_llm_flow(prompt="now", system="extra", context=ctx,
                                 response_schema={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}))
    pending = f.nodes["llm"].handler({})["_pending_effect"]
    assert "prompt" not in pending and pending["media"] == [{"$artifact": "x"}]
    assert [m["content"] for m in pending["messages"]] == ["S", "extra", "earlier", "now"]
    assert pending["response_schema"] == {"type": "object"}
    assert pending["response_schema_name"] == "LLM_StructuredOutput"


def test_tool_calls_and_call_tool():
    def fake_tools(run, effect, default_next):
        calls = effect.payload["tool_calls"]
        return EffectOutcome.completed({"mode": "executed", "results": [
            {"call_id": "1", "name": c["name"], "success": True, "output": c["arguments"]["x"] * 2, "error": None}
            for c in calls]})

    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("p", "tool_parameters", ins="x", toolParametersConfig={"tool": "double"}, pinDefaults={"x": 21}),
             N("t", "call_tool", ins="exec-in tool_call", outs="exec-out result success"),
             N("e", "on_flow_end", ins="exec-in result success")]
    edges = chain("s", "t", "e") + [E("p.tool_call", "t.tool_call"), E("t.result", "e.result"),
                                    E("t.success", "e.success")]
    state = run(memory_runtime(effect_handlers={"tool_calls": fake_tools}), compile_visualflow(flow("f", nodes, edges)))
    assert state.output == {"result": 42, "success": True}
    f = visual_to_flow(flow("g", [N("s", "on_flow_start", outs="exec-out"),
                                  N("t", "tool_calls", ins="exec-in tool_calls", outs="exec-out",
                                    pinDefaults={"tool_calls": '[{"name": "a", "arguments": {}}]'},
                                    effectConfig={"allowedTools": []})], chain("s", "t")))
    pending = f.nodes["t"].handler({})["_pending_effect"]
    assert pending["tool_calls"] == [{"name": "a", "arguments": {}}] and pending["allowed_tools"] == []


def test_memory_and_agent_nodes_emit_their_effects():
    f = visual_to_flow(flow("my flow", [N("s", "on_flow_start", outs="exec-out"),
                                        N("m", "memory_note", ins="exec-in content tags", outs="exec-out",
                                          pinDefaults={"content": "remember", "tags": {"k": "v"}}),
                                        N("a", "agent", ins="exec-in prompt task", outs="exec-out",
                                          pinDefaults={"prompt": "t", "task": "not a pin of the agent"})],
                            chain("s", "m", "a")))
    note = f.nodes["m"].handler({})["_pending_effect"]
    assert note["type"] == "memory_note" and note["note"] == "remember" and note["tags"] == {"k": "v"}
    agent = f.nodes["a"].handler({})  # the agent's data-aware handler: its resolved inputs (VAM §1.2)
    assert agent["task"] == "t" and agent["tools"] == [] and agent["context"] == {}


def test_memory_nodes_run_against_the_active_memory_plugin():
    """memory_note -> memory_query in a visual flow: the active_memory plugin handles both effects and the
    nodes' outputs (note_id, rendered, span_ids) reach the flow's end."""
    from abstractruntime_artifacts.store import InMemoryArtifactStore

    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("m", "memory_note", ins="exec-in content tags", outs="exec-out note_id",
               pinDefaults={"content": "The launch code word is heron", "tags": {"topic": "launch"}}),
             N("q", "memory_query", ins="exec-in query tags", outs="exec-out rendered span_ids",
               pinDefaults={"query": "heron", "tags": {"topic": "launch"}}),
             N("e", "on_flow_end", ins="exec-in note rendered span_ids")]
    edges = chain("s", "m", "q", "e") + [E("m.note_id", "e.note"), E("q.rendered", "e.rendered"),
                                         E("q.span_ids", "e.span_ids")]
    state = run(memory_runtime(artifact_store=InMemoryArtifactStore()), compile_visualflow(flow("f", nodes, edges)))
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output
    assert out["note"].startswith("note_") and out["span_ids"] == [out["note"]]
    assert "The launch code word is heron" in out["rendered"]


def test_read_file_and_write_file_nodes_under_the_workspace_policy(tmp_path):
    (tmp_path / "in.json").write_text('{"n": 1}')
    (tmp_path / "notes.txt").write_text(" [1, 2] ")
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("r", "read_file", ins="exec-in file_path", outs="exec-out content", pinDefaults={"file_path": "in.json"}),
             N("t", "read_file", ins="exec-in file_path", outs="exec-out content",
               pinDefaults={"file_path": "notes.txt"}),
             N("w", "write_file", ins="exec-in file_path content", outs="exec-out bytes file_path",
               pinDefaults={"file_path": "out/result.json"}),
             N("e", "on_flow_end", ins="exec-in data listed written")]
    edges = chain("s", "r", "t", "w", "e") + [E("r.content", "w.content"), E("r.content", "e.data"),
                                              E("t.content", "e.listed"), E("w.bytes", "e.written")]
    spec = compile_visualflow(flow("files", nodes, edges))
    state = run(memory_runtime(), spec, vars={"workspace_root": str(tmp_path)})
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["data"] == {"n": 1} and state.output["listed"] == [1, 2]
    assert (tmp_path / "out" / "result.json").read_text() == '{\n  "n": 1\n}\n'
    assert state.output["written"] == len('{\n  "n": 1\n}\n')
    escape = [N("s", "on_flow_start", outs="exec-out"),
              N("r", "read_file", ins="exec-in file_path", outs="exec-out content",
                pinDefaults={"file_path": "../outside.txt"}), N("e", "on_flow_end", ins="exec-in")]
    state = run(memory_runtime(), compile_visualflow(flow("esc", escape, chain("s", "r", "e"))),
                vars={"workspace_root": str(tmp_path)})
    # a handler node's error completes the flow with success false (the VisualFlow convention)
    assert state.status is RunStatus.COMPLETED and state.output["success"] is False and state.output["node"] == "r"
    assert "'../outside.txt' is outside this run's workspace" in state.output["error"]
