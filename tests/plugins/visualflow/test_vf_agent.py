"""The ``agent`` node (VAM §1): ids, inputs, the START_SUBWORKFLOW payload and child vars, reading the child's
result, persisting the turn, the structured pass, outputs, re-entry; the worked example of VAM §6.

The parent runs on a real runtime; the host's part (resuming the parent with the child's result) is done explicitly
with ``Runtime.resume`` where a test needs a precise resume payload, and by ``drive`` with a real child workflow in
the worked example.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from abstractruntime import Effect, EffectOutcome, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime_visualflow import compile_visualflow, drive, register_agent_workflows
from abstractruntime_visualflow.agent_ids import visual_react_workflow_id
from abstractruntime_visualflow.agent_turn import observation_content

from vf_support import E, N, chain, flow, memory_runtime

AGENT_OUTS = "exec-out response success meta scratchpad tool_calls tool_results"


def agent_flow(*, ins: str = "exec-in prompt", defaults: Optional[Dict[str, Any]] = None,
               config: Optional[Dict[str, Any]] = None, flow_id: str = "demo flow", terminal: bool = False,
               extra_edges: Optional[List[Dict[str, str]]] = None) -> Dict[str, Any]:
    cfg = {"provider": "p", "model": "m"} if config is None else config
    nodes = [N("s", "on_flow_start", outs="exec-out x"),
             N("ag", "agent", ins=ins, outs=AGENT_OUTS, pinDefaults=defaults or {}, agentConfig=cfg)]
    edges = [E("s.exec-out", "ag.exec-in")] + list(extra_edges or [])
    if not terminal:
        nodes.append(N("e", "on_flow_end", ins="exec-in response success meta scratchpad"))
        edges += [E("ag.exec-out", "e.exec-in")] + [E(f"ag.{p}", f"e.{p}")
                                                   for p in ("response", "success", "meta", "scratchpad")]
    return flow(flow_id, nodes, edges)


class Host:
    """A parent run with an agent node: started and ticked until it waits for its ReAct child."""

    def __init__(self, visual: Dict[str, Any], vars: Optional[Dict[str, Any]] = None, **rt_kwargs: Any) -> None:
        self.rt = memory_runtime(**rt_kwargs)
        self.spec = compile_visualflow(visual)
        self.rt.workflow_registry.register(self.spec)
        register_agent_workflows(self.rt.workflow_registry, visual)
        self.run_id = self.rt.start(workflow=self.spec, vars=vars)
        self.state = self.rt.tick(workflow=self.spec, run_id=self.run_id)

    def effects(self, effect_type: str) -> List[Dict[str, Any]]:
        return [r["effect"] for r in self.rt.get_ledger(self.run_id)
                if (r.get("effect") or {}).get("type") == effect_type and r["status"] == "started"]

    @property
    def child_vars(self) -> Dict[str, Any]:
        return self.effects("start_subworkflow")[-1]["payload"]["vars"]

    def resume(self, payload: Any):
        assert self.state.status is RunStatus.WAITING, self.state.error
        self.state = self.rt.resume(workflow=self.spec, run_id=self.run_id, wait_key=self.state.waiting.wait_key,
                                    payload=payload)
        return self.state


def trace(ts: str, effect: Dict[str, Any], result: Any = None) -> Dict[str, Any]:
    return {"ts": ts, "node_id": "n", "status": "completed", "effect": effect, "result": result}


def tool_step(ts: str, calls: List[Dict[str, Any]], results: List[Dict[str, Any]]) -> Dict[str, Any]:
    return trace(ts, {"type": "tool_calls", "payload": {"tool_calls": calls}}, {"mode": "executed",
                                                                               "results": results})


# --- 1.1 ids -------------------------------------------------------------------------------------------------------
def test_vam_checklist_1_react_workflow_id():
    assert visual_react_workflow_id(flow_id="demo flow", node_id="ag") == "visual_react_agent_demo_flow_ag"
    assert visual_react_workflow_id(flow_id="", node_id="") == "visual_react_agent_unknown_unknown"
    assert visual_react_workflow_id(flow_id="  a/b  ", node_id=" n.1 ") == "visual_react_agent_a_b_n_1"


def test_vam_checklist_2_configured_react_workflow_id_wins():
    host = Host(agent_flow(config={"provider": "p", "model": "m", "_react_workflow_id": " my_react "}))
    assert host.effects("start_subworkflow")[0]["payload"]["workflow_id"] == "my_react"
    blank = Host(agent_flow(config={"provider": "p", "model": "m", "_react_workflow_id": "  "}))
    assert blank.effects("start_subworkflow")[0]["payload"]["workflow_id"] == "visual_react_agent_demo_flow_ag"


# --- 1.2 / 1.3 inputs ----------------------------------------------------------------------------------------------
def test_vam_checklist_3_task_from_prompt_provider_lowercased_model_stripped():
    host = Host(agent_flow(ins="exec-in prompt task", defaults={"prompt": "  do it ", "task": "ignored"},
                           config={"provider": " OLLAMA ", "model": " qwen "}))
    child = host.child_vars
    assert child["context"]["task"] == "  do it "
    assert (child["_runtime"]["provider"], child["_runtime"]["model"]) == ("ollama", "qwen")
    pins = Host(agent_flow(ins="exec-in prompt provider model", defaults={"prompt": 7, "provider": "LMStudio",
                                                                         "model": "x"}))
    assert pins.child_vars["context"]["task"] == "7"
    assert (pins.child_vars["_runtime"]["provider"], pins.child_vars["_runtime"]["model"]) == ("lmstudio", "x")


def test_vam_checklist_4_tools_pin_overrides_config_and_is_deduplicated():
    cfg = {"provider": "p", "model": "m", "tools": ["read_file", " read_file ", "list_files", "", 3]}
    assert Host(agent_flow(config=cfg)).child_vars["_runtime"]["allowed_tools"] == ["read_file", "list_files"]
    off = Host(agent_flow(ins="exec-in prompt tools", defaults={"tools": []}, config=cfg))
    assert off.child_vars["_runtime"]["allowed_tools"] == []
    one = Host(agent_flow(ins="exec-in prompt tools", defaults={"tools": " web "}, config=cfg))
    assert one.child_vars["_runtime"]["allowed_tools"] == ["web"]


# --- 1.5 payload and child vars -----------------------------------------------------------------------------------
def test_vam_checklist_5_start_subworkflow_payload():
    host = Host(agent_flow())
    (effect,) = host.effects("start_subworkflow")
    payload = effect["payload"]
    assert effect["result_key"] == "_temp.agent.ag.sub"
    assert (payload["async"], payload["wait"], payload["include_traces"]) == (True, True, True)
    assert "resume_to_node" not in payload and "session_id" not in payload
    wait = host.state.waiting
    assert wait.reason is WaitReason.SUBWORKFLOW and wait.resume_to_node == "ag"  # the node re-enters itself


def test_vam_checklist_6_child_runtime():
    plain = Host(agent_flow(ins="exec-in prompt system", defaults={"system": "   "},
                            config={"provider": "p", "model": "m", "tools": ["t"], "temperature": 0.7}))
    assert plain.child_vars["_runtime"] == {"inbox": [], "provider": "p", "model": "m", "allowed_tools": ["t"]}
    tuned = Host(agent_flow(ins="exec-in prompt system seed", defaults={"system": " Be brief", "seed": 0},
                            config={"provider": "p", "model": "m", "temperature": "0.1"}))
    rt = tuned.child_vars["_runtime"]
    assert (rt["temperature"], rt["seed"], rt["system_prompt_extra"]) == (0.1, 0, " Be brief")
    bad_seed = Host(agent_flow(ins="exec-in prompt seed", defaults={"seed": "3.5"}))
    assert "seed" not in bad_seed.child_vars["_runtime"]


def test_vam_checklist_7_audio_settings_inherited_without_context():
    host = Host(agent_flow(), vars={"_runtime": {"audio_policy": " auto ", "stt_language": None,
                                                 "audio_language": " fr "}})
    rt = host.child_vars["_runtime"]
    assert (rt["audio_policy"], rt["stt_language"]) == ("auto", "fr")
    own = Host(agent_flow(), vars={"_runtime": {"stt_language": "de", "audio_language": "fr", "audio_policy": " "}})
    assert own.child_vars["_runtime"]["stt_language"] == "de" and "audio_policy" not in own.child_vars["_runtime"]


def test_vam_checklist_8_child_limits():
    host = Host(agent_flow(ins="exec-in prompt max_iterations max_in_tokens max_output_tokens",
                           defaults={"max_iterations": "4.9", "max_in_tokens": 1000, "max_output_tokens": 0}),
                vars={"_limits": {"max_history_messages": 3, "max_tokens": 999, "custom": 1}})
    limits = host.child_vars["_limits"]
    assert limits["max_iterations"] == 4 and limits["max_input_tokens"] == 1000
    assert limits["max_output_tokens"] is None  # 0 is not positive: the default stays
    assert (limits["max_history_messages"], limits["max_tokens"], limits["custom"]) == (3, 999, 1)
    assert (limits["current_iteration"], limits["estimated_tokens_used"]) == (0, 0)
    assert (limits["warn_iterations_pct"], limits["warn_tokens_pct"]) == (80, 80)
    assert host.child_vars["scratchpad"] == {"iteration": 0, "max_iterations": 4}
    bare = Host(agent_flow(), vars={"_limits": {}})
    assert {k: bare.child_vars["_limits"][k] for k in ("max_iterations", "max_tokens", "max_history_messages")} == \
        {"max_iterations": 25, "max_tokens": 32768, "max_history_messages": -1}


def test_vam_checklist_9_context_inheritance_active_view_and_attachments():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, "junk",
            {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    vars = {"context": {"messages": msgs, "attachments": [{"$artifact": "a"}, " f.png ", "", 5]},
            "_limits": {"max_history_messages": 2}}
    host = Host(agent_flow(ins="exec-in prompt use_context", defaults={"use_context": "yes"}), vars=vars)
    ctx = host.child_vars["context"]
    assert [m["content"] for m in ctx["messages"]] == ["S", "a1", "u2"]
    assert ctx["attachments"] == [{"$artifact": "a"}, "f.png"]
    off = Host(agent_flow(), vars=vars)
    assert off.child_vars["context"] == {"task": "", "messages": []}
    cfg = Host(agent_flow(config={"provider": "p", "model": "m", "include_context": True}),
               vars={"context": {"messages": msgs}, "_limits": {"max_history_messages": 0}})
    assert [m["content"] for m in cfg.child_vars["context"]["messages"]] == ["S"]


def test_vam_checklist_10_context_pin_replaces_messages_and_extra_keys_reach_scratchpad():
    pin = {"task": "no", "messages": [{"role": "user", "content": "mine"}, "x"], "attachments": ["p.png"],
           "topic": {"k": 1}}
    host = Host(agent_flow(ins="exec-in prompt context use_context",
                           defaults={"context": pin, "use_context": True, "prompt": "go"}),
                vars={"context": {"messages": [{"role": "user", "content": "parent"}], "attachments": ["q.png"]}})
    ctx = host.child_vars["context"]
    assert ctx == {"task": "go", "messages": [{"role": "user", "content": "mine"}], "attachments": ["p.png"],
                   "topic": {"k": 1}}
    state = host.resume({"sub_run_id": "sub1", "output": {"answer": "ok"}})
    assert state.output["scratchpad"]["context_extra"] == {"attachments": ["p.png"], "topic": {"k": 1}}


# --- 1.4 errors and re-entry ---------------------------------------------------------------------------------------
def test_vam_checklist_11_missing_provider_model_continues_with_failure():
    host = Host(agent_flow(config={"provider": " ", "model": "m"}))
    state = host.state
    assert state.status is RunStatus.COMPLETED and host.effects("start_subworkflow") == []
    assert state.output["success"] is False  # the run went on to the end node
    assert state.output["response"] == "Agent configuration error: missing provider/model"
    assert state.vars["_flow_error"] == "Agent node missing provider/model configuration"
    assert state.vars["_flow_error_node"] == "ag"
    raw = state.vars["_temp"]["effects"]["ag"]
    assert raw["success"] is False and raw["error"] == "missing provider/model" and raw["provider"] == "unknown"
    terminal = Host(agent_flow(config={}, terminal=True)).state
    assert set(terminal.output) == {"response", "success", "meta", "scratchpad"}
    assert terminal.output["success"] is False


def test_vam_checklist_18_reentry_after_done_starts_a_new_subworkflow():
    nodes = [N("s", "on_flow_start", outs="exec-out xs"), N("l", "loop", ins="exec-in items", outs="loop done item"),
             N("ag", "agent", ins="exec-in prompt", outs=AGENT_OUTS, agentConfig={"provider": "p", "model": "m"}),
             N("e", "on_flow_end", ins="exec-in")]
    edges = [E("s.exec-out", "l.exec-in"), E("s.xs", "l.items"), E("l.loop", "ag.exec-in"), E("l.item", "ag.prompt"),
             E("l.done", "e.exec-in")]
    host = Host(flow("loopy", nodes, edges), vars={"xs": ["one", "two"]})
    assert host.state.status is RunStatus.WAITING  # the first invocation waits for its child
    state = host.resume({"sub_run_id": "s1", "output": {"answer": "A1"}})
    assert state.status is RunStatus.WAITING and state.vars["_temp"]["agent"]["ag"]["phase"] == "subworkflow"
    assert "sub" not in state.vars["_temp"]["agent"]["ag"]  # the bucket was cleared
    tasks = [e["payload"]["vars"]["context"]["task"] for e in host.effects("start_subworkflow")]
    assert tasks == ["one", "two"]
    state = host.resume({"sub_run_id": "s2", "output": {"answer": "A2"}})
    assert state.status is RunStatus.COMPLETED and state.vars["_temp"]["agent"]["ag"]["sub_run_id"] == "s2"


def test_agent_reentering_its_wait_without_a_result_does_not_spin():
    """VAM §8 / §1.4 #7: the reference spins until the step budget is exhausted; we end the invocation."""
    host = Host(agent_flow())
    state = host.resume(None)
    assert state.status is RunStatus.COMPLETED and state.output["success"] is False
    assert "without its subworkflow result" in state.vars["_flow_error"]
    assert state.step < 10


def test_failed_child_reported_by_the_host_gives_success_false():
    host = Host(agent_flow())
    state = host.resume({"sub_run_id": "s", "output": None, "status": "failed", "error": "boom"})
    assert state.output["success"] is False and state.vars["_temp"]["effects"]["ag"] == {
        "success": False, "error": "boom"}


# --- 1.6 / 1.7 reading the result, persisting the turn -------------------------------------------------------------
def test_vam_checklist_12_turn_persisted_once_with_ids():
    results = [{"call_id": f"c{i}", "name": "t", "success": True, "output": i} for i in range(22)]
    results[1] = {"name": "t", "success": True, "output": "no id"}
    traces = {"n": {"steps": [tool_step("1", [], results)]}}
    host = Host(agent_flow(ins="exec-in prompt use_context", defaults={"use_context": True, "prompt": " q "}),
                vars={"context": {"messages": [{"role": "user", "content": "old"}]}})
    state = host.resume({"sub_run_id": "sub9", "output": {"answer": " fin "}, "node_traces": traces})
    added = state.vars["context"]["messages"][1:]
    ids = [m["metadata"]["message_id"] for m in added]
    assert ids[0] == "agent:sub9:ag:task" and added[0]["content"] == "q"
    assert ids[1:4] == ["agent:sub9:ag:tool:c0", "agent:sub9:ag:tool:1", "agent:sub9:ag:tool:c2"]
    assert len([i for i in ids if ":tool:" in i]) == 21  # 20 observations + the omitted summary
    assert ids[-2] == "agent:sub9:ag:tool:omitted"
    assert added[-2]["content"] == "[tools]: (omitted 2 additional tool results for brevity; see sub_run_id=sub9)"
    assert ids[-1] == "agent:sub9:ag:answer" and added[-1]["content"] == "fin"
    assert added[1]["metadata"] == {"kind": "tool_observation", "node_id": "ag", "message_id": ids[1],
                                    "tool_name": "t", "success": True, "call_id": "c0", "sub_run_id": "sub9"}
    assert all(m["role"] == "assistant" for m in added[1:])
    none = Host(agent_flow(ins="exec-in prompt use_context", defaults={"use_context": True, "prompt": "q"}),
                vars={"context": {"messages": []}})
    state = none.resume({"output": {"answer": "fin"}})  # no string sub_run_id: nothing appended (kept quirk)
    assert state.vars["context"]["messages"] == []


def test_vam_checklist_13_tool_observation_content():
    calls = [{"call_id": "c1", "name": "f", "arguments": {"b": 1, "a": "x"}}]
    ok = observation_content({"call_id": "c1", "name": "f", "success": True, "output": {"k": "é"}}, calls)
    assert ok == '[f]: args={"a": "x", "b": 1}\n{\n  "k": "é"\n}'
    bad = observation_content({"name": None, "success": False, "error": "nope", "output": "o"}, calls)
    assert bad == "[tool]: Error: nope"
    long = observation_content({"name": "f", "success": True, "output": "y" * 5000}, [])
    suffix = "\n… (truncated, 5,000 chars total)"
    assert long == "[f]: " + "y" * (2000 - len(suffix)) + suffix and len(long) == len("[f]: ") + 2000


def test_vam_checklist_14_unstructured_outputs():
    host = Host(agent_flow(ins="exec-in prompt", config={"provider": "P", "model": "m"}))
    state = host.resume({"sub_run_id": "s", "output": {"answer": "  42  ", "iterations": 2}})
    assert state.vars["_temp"]["effects"]["ag"] == {"success": True}
    out = state.output
    assert out["response"] == "42" and out["success"] is True
    assert out["meta"] == {"schema": "abstractcode.agent.v1.meta", "version": 1, "provider": "p", "model": "m",
                           "sub_run_id": "s", "iterations": 2, "tool_calls": 0, "tool_results": 0,
                           "output_mode": "unstructured"}
    assert out["scratchpad"]["messages"] == [{"role": "assistant", "content": "  42  "}]  # minimal transcript


def test_vam_checklist_15_steps_sorted_and_tool_activity():
    llm = trace("2024-01-01T00:00:03", {"type": "llm_call", "payload": {}}, {"content": "x"})
    tools = tool_step("2024-01-01T00:00:01", [{"call_id": "a", "name": "t"}, "junk"],
                      [{"call_id": "a", "name": "t", "success": True, "output": 1}])
    traces = {"llm": {"steps": [llm]}, "tools": {"steps": [tools, "junk"]}}
    host = Host(agent_flow(terminal=True))
    state = host.resume({"sub_run_id": "s", "output": {"answer": "a", "messages": ["hi", {"role": "user"}]},
                         "node_traces": traces})
    pad = state.output["scratchpad"]
    assert [s["ts"] for s in pad["steps"]] == ["2024-01-01T00:00:01", "2024-01-01T00:00:03"]
    assert pad["tool_calls"] == [{"call_id": "a", "name": "t"}] and len(pad["tool_results"]) == 1
    assert state.output["meta"]["tool_calls"] == 1 and state.output["meta"]["tool_results"] == 1
    assert pad["messages"] == [{"role": "assistant", "content": "hi"}, {"role": "user"}]
    bare = Host(agent_flow(terminal=True)).resume({"sub_run_id": "s", "output": {"answer": "a"}})
    assert bare.output["meta"]["tool_calls"] == 0 and bare.output["scratchpad"]["steps"] == []


# --- 1.8 structured pass ----------------------------------------------------------------------------------------
def _structured_host(reply: Dict[str, Any], **kw: Any) -> Host:
    def llm(run, effect, default_next):
        return EffectOutcome.completed(reply)

    cfg = {"provider": "p", "model": "m", "seed": 3,
           "outputSchema": {"enabled": True, "jsonSchema": {"type": "object"}}}
    return Host(agent_flow(config=cfg, **kw), effect_handlers={"llm_call": llm})


def test_vam_checklist_16_structured_pass():
    host = _structured_host({"data": {"answer": "é", "n": 1}})
    state = host.resume({"sub_run_id": "s", "output": {"answer": "raw answer"}})
    (call,) = host.effects("llm_call")
    assert call["result_key"] == "_temp.agent.ag.structured"
    payload = call["payload"]
    assert payload["response_schema_name"] == "Agent_ag" and payload["response_schema"] == {"type": "object"}
    assert payload["params"] == {"temperature": 0.7, "seed": 3} and payload["system_prompt"] == ""
    assert payload["messages"][0]["content"].endswith("Task:\n\n\nAnswer:\nraw answer")
    assert state.output["response"] == '{"answer":"é","n":1}'
    assert state.vars["_temp"]["effects"]["ag"] == {"answer": "é", "n": 1}
    assert state.output["meta"]["output_mode"] == "structured"
    parsed = _structured_host({"content": '{"k": 2}'}).resume({"sub_run_id": "s", "output": {"answer": "a"}})
    assert parsed.output["response"] == '{"k":2}'
    junk = _structured_host({"content": "[1, 2]"}).resume({"sub_run_id": "s", "output": {"answer": "a"}})
    assert junk.output["response"] == "{}"


def test_vam_checklist_17_success_key_in_structured_data_becomes_the_pin():
    state = _structured_host({"data": {"success": False, "model": "mm"}}).resume(
        {"sub_run_id": "s", "output": {"answer": "a"}})
    assert state.output["success"] is False and state.output["meta"]["model"] == "mm"


def test_agent_schema_pin_forces_structured_and_bad_ref_fails_the_run():
    host = _structured_host({"data": {"x": 1}}, ins="exec-in prompt resp_schema",
                            defaults={"resp_schema": {"type": "json_schema",
                                                      "json_schema": {"schema": {"type": "object", "x": 1}}}})
    host.resume({"sub_run_id": "s", "output": {"answer": "a"}})
    assert host.effects("llm_call")[0]["payload"]["response_schema"] == {"type": "object", "x": 1}
    bad = Host(agent_flow(ins="exec-in prompt resp_schema",
                          defaults={"resp_schema": {"$ref": "abstractsemantics:nope"}}))
    assert bad.state.status is RunStatus.FAILED and "abstractsemantics" in bad.state.error


# --- §6 worked example, with a real child workflow driven by the host -----------------------------------------------
def _worked_example_child(seen: Dict[str, Any]) -> WorkflowSpec:
    def call_tool(run, ctx):
        seen["vars"] = json.loads(json.dumps(run.vars))
        return StepPlan(node_id="call_tool", effect=Effect("tool_calls", {"tool_calls": [
            {"name": "read_file", "arguments": {"path": "a"}, "call_id": "c1"}]}, result_key="_temp.r"),
                        next_node="answer")

    def answer(run, ctx):
        return StepPlan(node_id="answer", complete_output={"answer": "  42  ", "iterations": 3})

    return WorkflowSpec(workflow_id="visual_react_agent_demo_flow_ag", entry_node="call_tool",
                        nodes={"call_tool": call_tool, "answer": answer})


def test_vam_worked_example_agent_with_context_inheritance():
    from abstractruntime.integrations.abstractcore.effect_handlers import make_tool_calls_handler
    from abstractruntime_abstractcore import MappingToolExecutor

    ag = {"id": "ag", "type": "agent", "data": {
        "inputs": [{"id": "exec-in", "type": "execution"}, {"id": "prompt", "type": "string"},
                   {"id": "use_context", "type": "boolean"}, {"id": "system", "type": "string"}],
        "outputs": [{"id": "exec-out", "type": "execution"}, {"id": "response", "type": "string"}],
        "pinDefaults": {"prompt": "  Find the answer  ", "use_context": True, "system": "Be brief"},
        "agentConfig": {"provider": "OLLAMA ", "model": " qwen ", "tools": ["read_file", "read_file", "list_files"],
                        "temperature": 0.2, "seed": 7, "max_iterations": "5"}}}
    nodes = [N("s", "on_flow_start", outs="exec-out x"), ag,
             N("e", "on_flow_end", ins="exec-in response meta")]
    visual = flow("demo flow", nodes, chain("s", "ag", "e") + [E("ag.response", "e.response"),
                                                               E("ag.meta", "e.meta")])
    parent_vars = {"context": {"messages": [{"role": "system", "content": "SYS"},
                                            {"role": "user", "content": "hi", "metadata": {"message_id": "m1"}},
                                            {"role": "assistant", "content": "hello"}],
                               "attachments": [{"$artifact": "a1"}, "  f.png ", ""]},
                   "_runtime": {"audio_policy": " auto ", "audio_language": "fr"},
                   "_limits": {"max_history_messages": 1}}
    tools = make_tool_calls_handler(tools=MappingToolExecutor({"read_file": lambda path: {"text": "abc"}}))
    rt = memory_runtime(effect_handlers={"tool_calls": tools})
    spec = compile_visualflow(visual)
    seen: Dict[str, Any] = {}
    rt.workflow_registry.register(spec)
    rt.workflow_registry.register(_worked_example_child(seen))
    run_id = rt.start(workflow=spec, vars=parent_vars)
    state = drive(rt, run_id)
    assert state.status is RunStatus.COMPLETED, state.error

    child = [r["effect"]["payload"]["vars"] for r in rt.get_ledger(run_id)
             if (r.get("effect") or {}).get("type") == "start_subworkflow" and r["status"] == "started"][0]
    parent_limits = rt.get_state(run_id).vars["_limits"]
    assert seen["vars"]["context"] == child["context"]  # what the child workflow received
    assert child["context"] == {"task": "  Find the answer  ",
                                "messages": [{"role": "system", "content": "SYS"},
                                             {"role": "assistant", "content": "hello"}],
                                "attachments": [{"$artifact": "a1"}, "f.png"]}
    assert child["scratchpad"] == {"iteration": 0, "max_iterations": 5}
    assert child["_runtime"] == {"inbox": [], "provider": "ollama", "model": "qwen",
                                 "allowed_tools": ["read_file", "list_files"], "audio_policy": "auto",
                                 "stt_language": "fr", "temperature": 0.2, "seed": 7,
                                 "system_prompt_extra": "Be brief"}
    expected_limits = {"max_history_messages": 1, "max_iterations": 5, "current_iteration": 0, "max_tokens": 32768,
                       "max_output_tokens": None, "max_input_tokens": None, "estimated_tokens_used": 0,
                       "warn_iterations_pct": 80, "warn_tokens_pct": 80}
    assert {k: child["_limits"][k] for k in expected_limits} == expected_limits
    assert set(child["_limits"]) - set(expected_limits) <= set(parent_limits)  # the rest is the parent's

    assert state.output["response"] == "42"
    meta = state.output["meta"]
    assert (meta["tool_calls"], meta["iterations"], meta["output_mode"]) == (1, 3, "unstructured")
    sub = meta["sub_run_id"]
    added = state.vars["context"]["messages"][3:]
    assert [(m["role"], m["content"], m["metadata"]["message_id"]) for m in added] == [
        ("user", "Find the answer", f"agent:{sub}:ag:task"),
        ("assistant", '[read_file]: args={"path": "a"}\n{\n  "text": "abc"\n}', f"agent:{sub}:ag:tool:c1"),
        ("assistant", "42", f"agent:{sub}:ag:answer")]
    assert state.vars["_temp"]["effects"]["ag"] == {"success": True}
