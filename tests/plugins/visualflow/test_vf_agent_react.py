"""End to end: an agent flow (``examples/flows/agent_calculator.json``) runs the default ReAct workflow on the
LLM_CALL / TOOL_CALLS effects of the AbstractCore integration, against the loopback OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from abstractruntime import RunStatus, WorkflowRegistry

from vf_support import REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("abstractcore") is None, reason="needs abstractcore")

AC_TESTS = REPO / "tests" / "plugins" / "abstractcore"
EXAMPLE = REPO / "examples" / "flows" / "agent_calculator.json"
ADD_SPEC = {"name": "add", "description": "Add two integers",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                           "required": ["a", "b"]}}


@pytest.fixture
def llm_server():
    if str(AC_TESTS) not in sys.path:
        sys.path.insert(0, str(AC_TESTS))
    from fake_llm_server import MODEL, FakeLLMServer

    server = FakeLLMServer(model=MODEL).start()
    server.model_name = MODEL
    try:
        yield server
    finally:
        server.stop()


def _runtime(server, added):
    from abstractruntime_abstractcore import MappingToolExecutor, create_local_runtime

    def add(a: int, b: int) -> int:
        added.append((a, b))
        return a + b

    return create_local_runtime(provider="openai-compatible", model=server.model_name,
                                llm_kwargs={"base_url": server.base_url},
                                tool_executor=MappingToolExecutor({"add": add}), workflow_registry=WorkflowRegistry())


def _answer_from_tool_message(body):
    tool = body["messages"][-1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_1"
    return {"content": f"The answer is {tool['content']}."}


def test_example_agent_flow_runs_the_default_react_workflow_end_to_end(llm_server):
    from abstractruntime_visualflow import compile_visualflow_tree, drive

    llm_server.push({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_1"}]},
                    _answer_from_tool_message)
    added = []
    rt = _runtime(llm_server, added)
    visual = json.loads(EXAMPLE.read_text())
    specs = compile_visualflow_tree(root_id="agent_calculator", flows_by_id={"agent_calculator": visual})
    assert set(specs) == {"agent_calculator", "visual_react_agent_agent_calculator_agent"}
    for spec in specs.values():
        rt.workflow_registry.register(spec)
    run_id = rt.start(workflow=specs["agent_calculator"],
                      vars={"provider": "openai-compatible", "model": llm_server.model_name})
    state = drive(rt, run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["answer"] == "The answer is 5." and state.output["success"] is True
    meta = state.output["meta"]
    assert (meta["tool_calls"], meta["tool_results"], meta["iterations"]) == (1, 1, 2)
    assert added == [(2, 3)]
    first, second = [r["body"] for r in llm_server.chat_requests]
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][0]["content"].endswith("Answer with one short sentence.")
    assert first["messages"][-1]["content"].endswith("What is 2 + 3? Use the add tool.")
    assert [t["function"]["name"] for t in first["tools"]] == ["add"]
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"


def test_default_react_uses_host_tool_specs_and_stops_at_the_iteration_limit(llm_server):
    from abstractruntime_visualflow import compile_visualflow, drive, register_agent_workflows

    call = {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}, "id": "c"}]}
    llm_server.push(call, call, call, call)
    added = []
    rt = _runtime(llm_server, added)
    visual = json.loads(EXAMPLE.read_text())
    spec = compile_visualflow(visual)
    rt.workflow_registry.register(spec)
    assert register_agent_workflows(rt.workflow_registry, visual, tool_specs=[ADD_SPEC]) == [
        "visual_react_agent_agent_calculator_agent"]
    assert register_agent_workflows(rt.workflow_registry, visual) == []  # registered ids are kept
    run_id = rt.start(workflow=spec, vars={"provider": "openai-compatible", "model": llm_server.model_name})
    state = drive(rt, run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["meta"]["iterations"] == 4 and len(added) == 3  # max_iterations 4: no 4th tool round
    params = llm_server.chat_requests[0]["body"]["tools"][0]["function"]["parameters"]
    assert params["required"] == ["a", "b"]
