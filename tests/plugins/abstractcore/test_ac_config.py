"""Default toolsets with comms gating, and configuring the plugin through plugin options (no factory)."""

from __future__ import annotations

import pytest

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import ConfigurationError
from abstractruntime_abstractcore import (
    build_default_tool_map,
    filter_tool_specs,
    get_default_tools,
    get_default_toolsets,
    list_default_tool_specs,
)
from abstractruntime_abstractcore.default_tools import COMMS_FAMILIES

from fake_llm_server import MODEL

COMMS_VARS = ("ABSTRACT_ENABLE_COMMS_TOOLS", "ABSTRACT_ENABLE_EMAIL_TOOLS", "ABSTRACT_ENABLE_WHATSAPP_TOOLS",
              "ABSTRACT_ENABLE_TELEGRAM_TOOLS")


def test_toolsets_without_comms_by_default():
    toolsets = get_default_toolsets()
    assert set(toolsets) == {"files", "web", "system"}
    assert [f.__name__ for f in toolsets["web"]] == ["web_search", "fetch_url"]
    assert [f.__name__ for f in get_default_tools(["system"])] == ["execute_command"]
    assert get_default_tools(["comms"]) == []
    specs = list_default_tool_specs()
    assert specs[-1]["name"] == "open_attachment"
    assert {s["toolset"] for s in specs} == {"files", "web", "system"}  # open_attachment is in "files"
    read = next(s for s in specs if s["name"] == "read_file")
    assert read["parameters"]["type"] == "object" and "file_path" in read["parameters"]["required"]
    assert [s["name"] for s in filter_tool_specs(specs, ["fetch_url", "read_file"])] == ["read_file", "fetch_url"]
    with pytest.raises(ValueError, match="Unknown toolset"):
        get_default_tools(["bogus"])


@pytest.mark.parametrize("value", ["1", "true", "YES", "y", "On"])
def test_comms_enabled_by_the_umbrella_variable(monkeypatch, value):
    monkeypatch.setenv("ABSTRACT_ENABLE_COMMS_TOOLS", value)
    names = set(build_default_tool_map(["comms"]))
    assert names == {n for family in COMMS_FAMILIES.values() for n in family}


@pytest.mark.parametrize("value", ["0", "false", "", "maybe"])
def test_comms_stays_off_for_other_values(monkeypatch, value):
    for var in COMMS_VARS:
        monkeypatch.setenv(var, value)
    assert "comms" not in get_default_toolsets()


def test_comms_families_individually(monkeypatch):
    monkeypatch.setenv("ABSTRACT_ENABLE_TELEGRAM_TOOLS", "1")
    assert set(build_default_tool_map(["comms"])) == {"send_telegram_message", "send_telegram_artifact"}
    monkeypatch.setenv("ABSTRACT_ENABLE_EMAIL_TOOLS", "yes")
    assert set(build_default_tool_map(["comms"])) >= {"send_email", "read_email", "send_telegram_message"}
    assert "send_whatsapp_message" not in build_default_tool_map(["comms"])


FLOW = WorkflowSpec(workflow_id="cfg", entry_node="a", nodes={
    "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL, {"prompt": "hi"}, "r"),
                                   next_node="b"),
    "b": lambda run, ctx: StepPlan(node_id="b", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": [
        {"name": "read_file", "arguments": {"file_path": "/x"}}]}, "t"), next_node="c"),
    "c": lambda run, ctx: StepPlan(node_id="c", complete_output={"r": run.vars["r"]["content"]}),
})


def test_plugin_options_configure_remote_llm_and_passthrough_tools(llm_server):
    llm_server.push({"content": "configured"})
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"abstractcore": {
        "server_base_url": llm_server.root_url, "model": MODEL, "timeout_s": 10}}}, plugins=[plugin])
    run_id = rt.start(workflow=FLOW)
    state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.details["mode"] == "passthrough"
    state = rt.resume(workflow=FLOW, run_id=run_id, wait_key=state.waiting.wait_key,
                      payload={"mode": "executed", "results": [{"name": "read_file", "success": True, "output": 1}]})
    assert state.output == {"r": "configured"}
    assert llm_server.chat_requests[0]["body"]["timeout_s"] == 10


def test_plugin_options_local_provider_with_approval_over_toolsets(llm_server, tmp_path):
    llm_server.push({"content": "local"})
    rt = Runtime.from_config({"store": "memory://", "plugin_options": {"abstractcore": {
        "provider": "openai-compatible", "model": MODEL, "base_url": llm_server.base_url,
        "tools": "approval", "toolsets": ["files"]}}}, plugins=[plugin])
    run_id = rt.start(workflow=FLOW)
    state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.WAITING and state.waiting.details["mode"] == "approval_required"
    state = rt.resolve_tool_approval(workflow=FLOW, run_id=run_id, decisions=True)
    assert state.status is RunStatus.COMPLETED
    assert state.vars["t"]["results"][0]["success"] is False  # /x does not exist: an error *result*


def test_unconfigured_and_misconfigured_plugin_fail_clearly():
    rt = Runtime.from_config({"store": "memory://"}, plugins=[plugin])
    state = rt.tick(workflow=FLOW, run_id=rt.start(workflow=FLOW))
    assert state.status is RunStatus.FAILED and "llm_call has no LLM client" in state.error
    # a typo in the options fails the runtime's construction (abstractruntime_runtime_created), not a step later
    with pytest.raises(ConfigurationError, match=r"Unknown option\(s\) 'modle' in plugin_options.abstractcore; "
                                                 r"valid options: .*\bmodel\b"):
        Runtime.from_config({"store": "memory://", "plugin_options": {"abstractcore": {"modle": "x"}}},
                            plugins=[plugin])


def test_event_bus_bridge_and_embeddings(llm_server, tmp_path):
    from abstractcore.events import EventType, GlobalEventBus

    from abstractruntime_abstractcore import (
        AbstractCoreEmbeddingsClient,
        MappingToolExecutor,
        attach_global_event_bus_bridge,
        create_local_runtime,
    )

    seen = []
    handler = lambda event: seen.append((event.type, event.data.get("node_id")))  # noqa: E731
    for name in ("WORKFLOW_STEP_STARTED", "WORKFLOW_STEP_COMPLETED"):
        GlobalEventBus.on(getattr(EventType, name), handler)
    try:
        llm_server.push({"content": "hi"})
        rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                                  llm_kwargs={"base_url": llm_server.base_url},
                                  tool_executor=MappingToolExecutor({"read_file": lambda file_path: "x"}))
        stop = attach_global_event_bus_bridge(runtime=rt)
        state = rt.tick(workflow=FLOW, run_id=rt.start(workflow=FLOW))
        stop()
        assert state.status is RunStatus.COMPLETED, state.error
        assert (EventType.WORKFLOW_STEP_STARTED, "a") in seen and (EventType.WORKFLOW_STEP_COMPLETED, "b") in seen
    finally:
        for name in ("WORKFLOW_STEP_STARTED", "WORKFLOW_STEP_COMPLETED"):
            GlobalEventBus.off(getattr(EventType, name), handler)
    result = AbstractCoreEmbeddingsClient(provider="openai-compatible", model="embedder", manager_kwargs={
        "provider_kwargs": {"base_url": llm_server.base_url}, "cache_dir": tmp_path / "emb"}).embed_texts(["ab", "cde"])
    assert result.embeddings == [[2.0, 0.0, 1.0], [3.0, 1.0, 1.0]] and result.dimension == 3
