"""End to end: a ReAct loop (LLM -> tool calls -> LLM -> answer) built by each factory, against the fake server."""

from __future__ import annotations

import json
import logging

import structlog

from abstractruntime import RunStatus, RuntimeConfig
from abstractruntime_abstractcore import (
    MappingToolExecutor,
    create_hybrid_runtime,
    create_local_file_runtime,
    create_local_runtime,
    create_remote_runtime,
)

from ac_flows import REACT, LoggedTools, react_vars
from fake_llm_server import MODEL


def script(server):
    server.push({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_1"}]},
                lambda body: {"content": "The answer is " + json.loads(
                    body["messages"][-1]["content"].split("Tool results: ", 1)[1])[0]["output"].__str__()})


def check_ledger(rt, run_id):
    rows = [r for r in rt.get_ledger(run_id) if not str(r.get("idempotency_key") or "").startswith("system:")]
    effects = [(r["node_id"], r["status"]) for r in rows if r["effect"] and r["effect"]["type"] != "resume"]
    return effects


def test_local_runtime_react_loop(tmp_path, llm_server):
    script(llm_server)
    tools = LoggedTools(str(tmp_path / "log"))
    rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                              llm_kwargs={"base_url": llm_server.base_url},
                              tool_executor=MappingToolExecutor({"add": tools.add}),
                              config=RuntimeConfig(max_iterations=10))
    assert rt.config.model_capabilities.get("tool_support") == "native"  # asked from the provider
    assert rt.config.max_iterations == 10
    run_id = rt.start(workflow=REACT, vars=react_vars())
    state = rt.tick(workflow=REACT, run_id=run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"answer": "The answer is 5", "turns": 2}
    assert len(tools.executions()) == 1
    assert check_ledger(rt, run_id) == [("llm", "started"), ("llm", "completed"), ("tools", "started"),
                                        ("tools", "completed"), ("llm", "started"), ("llm", "completed")]
    assert len(llm_server.chat_requests) == 2
    assert state.vars["_runtime"]["provider"] == "openai-compatible"


def test_remote_runtime_react_loop_with_host_run_tools(llm_server):
    script(llm_server)
    rt = create_remote_runtime(server_base_url=llm_server.root_url, model=MODEL, headers={"X-Test": "yes"})
    run_id = rt.start(workflow=REACT, vars=react_vars())
    state = rt.tick(workflow=REACT, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.details["mode"] == "passthrough"
    (call,) = state.waiting.details["tool_calls"]
    assert call["name"] == "add" and call["call_id"] == "call_1"
    output = call["arguments"]["a"] + call["arguments"]["b"]  # the host runs the tool
    state = rt.resume(workflow=REACT, run_id=run_id, wait_key=state.waiting.wait_key, payload={
        "mode": "executed", "results": [{"call_id": call["call_id"], "name": "add", "success": True,
                                         "output": output, "error": None}]})
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["answer"] == "The answer is 5"
    assert all(r["headers"]["x-test"] == "yes" for r in llm_server.chat_requests)
    assert llm_server.chat_requests[0]["body"]["stream"] is False


def test_hybrid_runtime_react_loop(tmp_path, llm_server):
    script(llm_server)
    tools = LoggedTools(str(tmp_path / "log"))
    rt = create_hybrid_runtime(server_base_url=llm_server.root_url, model=MODEL,
                               tool_executor=MappingToolExecutor({"add": tools.add}))
    run_id = rt.start(workflow=REACT, vars=react_vars())
    state = rt.tick(workflow=REACT, run_id=run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["answer"] == "The answer is 5" and len(tools.executions()) == 1


def test_hybrid_default_executor_uses_abstractcore_tools(llm_server):
    from abstractruntime_abstractcore import AbstractCoreToolExecutor, integration_for

    rt = create_hybrid_runtime(server_base_url=llm_server.root_url, model=MODEL, tool_timeout_s=5)
    tools = integration_for(rt).tools
    assert isinstance(tools, AbstractCoreToolExecutor) and tools.timeout_s == 5


def test_file_runtime_and_only_missing_stores_are_replaced(tmp_path, llm_server):
    script(llm_server)
    tools = LoggedTools(str(tmp_path / "log"))
    rt = create_local_file_runtime(base_dir=tmp_path / "runs", provider="openai-compatible", model=MODEL,
                                   llm_kwargs={"base_url": llm_server.base_url},
                                   tool_executor=MappingToolExecutor({"add": tools.add}))
    run_id = rt.start(workflow=REACT, vars=react_vars())
    assert rt.tick(workflow=REACT, run_id=run_id).status is RunStatus.COMPLETED
    assert (tmp_path / "runs" / f"run_{run_id}.json").exists()
    from abstractruntime_inmemory.store import InMemoryRunStore

    mine = InMemoryRunStore()
    rt2 = create_remote_runtime(server_base_url=llm_server.root_url, model=MODEL, run_store=mine)
    assert rt2.run_store is mine  # only the missing ledger store was created
    assert hasattr(rt2.ledger_store, "subscribe")


def test_using_the_integration_leaves_the_host_logging_alone(llm_server):
    root = logging.getLogger()
    before = (list(root.handlers), root.level, structlog.is_configured(), structlog.get_config())
    script(llm_server)
    rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                              llm_kwargs={"base_url": llm_server.base_url},
                              tool_executor=MappingToolExecutor({"add": lambda a, b: a + b}))
    run_id = rt.start(workflow=REACT, vars=react_vars())
    assert rt.tick(workflow=REACT, run_id=run_id).status is RunStatus.COMPLETED
    assert (list(root.handlers), root.level, structlog.is_configured(), structlog.get_config()) == before
