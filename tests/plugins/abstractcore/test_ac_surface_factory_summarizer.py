"""Issue 24, integration-surface.md §1.6 / §1.8 / §1.9: the public names of ``.factory``, ``.mcp_worker`` and
``.summarizer`` at their 0.4.2 paths with the spec's signatures; checklist line 47 (the factory pushes the resolved
tool timeout into a caller's executor); §6.3 (the chat summariser, through AbstractCore's real provider code talking
HTTP to the loopback OpenAI-compatible server)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_abstractcore import MappingToolExecutor, create_local_runtime
from abstractruntime_artifacts.store import InMemoryArtifactStore

from fake_llm_server import MODEL

E = inspect.Parameter.empty
KW, POS = inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD

#: (module, name) -> [(parameter, kind, default)] as integration-surface.md §1.6/§1.8/§1.9 and API §15.1 give them
EXPECTED = {
    ("factory", "create_local_runtime"): [
        ("provider", KW, E), ("model", KW, E), ("llm_kwargs", KW, None), ("run_store", KW, None),
        ("ledger_store", KW, None), ("tool_executor", KW, None), ("tool_timeout_s", KW, None), ("context", KW, None),
        ("effect_policy", KW, None), ("config", KW, None), ("artifact_store", KW, None),
        ("extra_effect_handlers", KW, None)],
    ("factory", "create_remote_runtime"): [
        ("server_base_url", KW, E), ("model", KW, E), ("headers", KW, None), ("timeout_s", KW, None),
        ("run_store", KW, None), ("ledger_store", KW, None), ("tool_executor", KW, None), ("context", KW, None),
        ("artifact_store", KW, None)],
    ("factory", "create_hybrid_runtime"): [
        ("server_base_url", KW, E), ("model", KW, E), ("headers", KW, None), ("timeout_s", KW, None),
        ("tool_timeout_s", KW, None), ("run_store", KW, None), ("ledger_store", KW, None), ("context", KW, None),
        ("artifact_store", KW, None)],
    ("factory", "create_local_file_runtime"): [
        ("base_dir", KW, E), ("provider", KW, E), ("model", KW, E), ("llm_kwargs", KW, None), ("context", KW, None),
        ("config", KW, None), ("tool_timeout_s", KW, None)],
    ("factory", "create_remote_file_runtime"): [
        ("base_dir", KW, E), ("server_base_url", KW, E), ("model", KW, E), ("headers", KW, None),
        ("timeout_s", KW, None), ("context", KW, None)],
    ("mcp_worker", "McpWorkerState"): [
        ("tools", POS, E), ("executor", POS, E), ("http_require_auth", POS, False), ("http_auth_token", POS, None),
        ("http_allowed_origins", POS, ())],
    ("mcp_worker", "build_worker_state"): [("toolsets", KW, E)],
    ("mcp_worker", "handle_mcp_request"): [("req", KW, E), ("state", KW, E)],
    ("mcp_worker", "serve_stdio"): [("state", KW, E)],
    ("mcp_worker", "build_wsgi_app"): [("state", KW, E)],
    ("mcp_worker", "main"): [("argv", POS, None)],
    ("summarizer", "AbstractCoreChatSummarizer"): [
        ("llm", POS, E), ("max_tokens", KW, -1), ("max_output_tokens", KW, -1)],
    ("summarizer", "ChatSummarizer.summarize_chat_history"): [
        ("messages", POS, E), ("preserve_recent", KW, 6), ("focus", KW, None), ("compression_mode", KW, "standard")],
    ("summarizer", "AbstractCoreChatSummarizer.summarize_chat_history"): [
        ("messages", POS, E), ("preserve_recent", KW, 6), ("focus", KW, None), ("compression_mode", KW, "standard")],
}


def _resolve(module: str, dotted: str):
    obj = importlib.import_module(f"abstractruntime.integrations.abstractcore.{module}")
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("key", list(EXPECTED), ids=lambda k: f"{k[0]}.{k[1]}")
def test_surface_signatures_match_the_spec(key):
    """Every spec parameter, with its kind and default, in the spec's order. Our additions (documented in
    docs/abstractcore.md) are keyword-only with a default, so every 0.4.2 call still binds."""
    module, dotted = key
    params = [p for p in inspect.signature(_resolve(module, dotted)).parameters.values() if p.name != "self"]
    by_name = {p.name: p for p in params}
    for name, kind, default in EXPECTED[key]:
        assert name in by_name, f"{dotted} lacks parameter {name!r}"
        p = by_name[name]
        assert (p.kind, p.default) == (kind, default), f"{dotted}({name}): {p.kind!s}={p.default!r}"
    spec_names = [n for n, _, _ in EXPECTED[key]]
    assert [p.name for p in params if p.name in spec_names] == spec_names, "parameter order differs from the spec"
    for p in params:
        if p.name not in spec_names:
            assert p.kind is inspect.Parameter.VAR_KEYWORD or (p.kind is KW and p.default is not E), p


def test_surface_names_import_from_the_reference_paths():
    from abstractruntime.integrations.abstractcore import factory, mcp_worker, summarizer

    assert set(factory.__all__) == {"create_local_runtime", "create_remote_runtime", "create_hybrid_runtime",
                                    "create_local_file_runtime", "create_remote_file_runtime"}
    assert set(mcp_worker.__all__) >= {"McpWorkerState", "build_worker_state", "handle_mcp_request", "serve_stdio",
                                       "build_wsgi_app", "main"}
    assert set(summarizer.__all__) == {"ChatSummarizer", "AbstractCoreChatSummarizer"}
    import attrs

    assert attrs.has(mcp_worker.McpWorkerState)
    state = mcp_worker.McpWorkerState(tools=[], executor=None, http_auth_token="tok")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.tools = [1]
    assert "tok" not in repr(state)  # the token never shows in a repr (logs, tracebacks)
    assert isinstance(summarizer.AbstractCoreChatSummarizer.max_tokens, property)
    assert isinstance(summarizer.AbstractCoreChatSummarizer.max_output_tokens, property)


# --- §1.6 / checklist 47 ---------------------------------------------------------------------------------------------
def _slow():
    return "done"


def test_checklist_47_create_local_runtime_pushes_the_config_tool_timeout_into_a_callers_executor(llm_server):
    from abstractruntime_abstractcore.llm_client import default_tool_timeout_s

    assert default_tool_timeout_s() == 7200.0  # AbstractCore's default configuration
    executor = MappingToolExecutor({"slow": _slow}, timeout_s=5)
    rt = create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": llm_server.base_url},
                              tool_executor=executor)
    assert executor.timeout_s == 7200.0  # as in 0.4.2: the caller's 5 s is overridden
    assert rt._abstractcore_llm_client is not None  # the reference's private attribute
    # an explicit tool_timeout_s wins
    executor = MappingToolExecutor({"slow": _slow}, timeout_s=5)
    create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": llm_server.base_url},
                         tool_executor=executor, tool_timeout_s=3)
    assert executor.timeout_s == 3


# --- §6.3 the chat summariser ------------------------------------------------------------------------------------------
SUMMARY = {"summary": "They chose Kyoto for the trip.", "key_points": ["Kyoto", "April"], "confidence": 0.8,
           "focus_alignment": 0.6}


def _llm(server):
    from abstractcore import create_llm

    return create_llm("openai-compatible", model=MODEL, base_url=server.base_url)


def _chat(n):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]


def _prompt(request):
    return request["body"]["messages"][-1]["content"]


def test_section_6_3_summarizer_returns_the_documented_fields(llm_server):
    from abstractruntime.integrations.abstractcore.summarizer import AbstractCoreChatSummarizer, ChatSummarizer

    summarizer = AbstractCoreChatSummarizer(_llm(llm_server), max_tokens=32000, max_output_tokens=800)
    assert isinstance(summarizer, ChatSummarizer)
    assert (summarizer.max_tokens, summarizer.max_output_tokens) == (32000, 800)
    llm_server.push({"json": SUMMARY})
    out = summarizer.summarize_chat_history(_chat(8), preserve_recent=3, focus="destinations")
    assert set(out) == {"summary", "key_points", "confidence", "focus_alignment", "word_count_original",
                        "word_count_summary"}
    assert out["summary"] == SUMMARY["summary"] and out["key_points"] == ["Kyoto", "April"]
    assert out["confidence"] == 0.8 and out["focus_alignment"] == 0.6
    assert out["word_count_summary"] == 6 and out["word_count_original"] > 0
    (request,) = llm_server.chat_requests
    assert request["body"]["response_format"]["type"] == "json_schema"  # structured output
    prompt = _prompt(request)
    assert "turn 4" in prompt and "turn 5" not in prompt  # the last 3 are preserved, not summarised
    assert "destinations" in prompt


@pytest.mark.parametrize("mode, marker", [
    ("light", "Keep most information"), ("LIGHT", "Keep most information"),
    ("Heavy", "Extract only the most critical information"), ("bogus", "Balance"),
    ("standard", "Balance")])
def test_section_6_3_summarizer_maps_compression_modes_case_insensitively(llm_server, mode, marker):
    from abstractcore.processing.basic_summarizer import COMPRESSION_INSTRUCTIONS, CompressionMode

    from abstractruntime.integrations.abstractcore.summarizer import AbstractCoreChatSummarizer

    expected = {"Keep most information": CompressionMode.LIGHT, "Balance": CompressionMode.STANDARD,
                "Extract only the most critical information": CompressionMode.HEAVY}[marker]
    llm_server.push({"json": SUMMARY})
    AbstractCoreChatSummarizer(_llm(llm_server)).summarize_chat_history(_chat(4), preserve_recent=0,
                                                                       compression_mode=mode)
    assert COMPRESSION_INSTRUCTIONS[expected] in _prompt(llm_server.chat_requests[0])


def test_section_6_3_summarizer_confidence_none_when_falsy_and_preserve_recent_0_summarises_all(llm_server):
    from abstractruntime.integrations.abstractcore.summarizer import AbstractCoreChatSummarizer

    llm_server.push({"json": dict(SUMMARY, confidence=0, focus_alignment=0)})
    out = AbstractCoreChatSummarizer(_llm(llm_server)).summarize_chat_history(
        _chat(5) + [{"role": "tool", "content": None}], preserve_recent=0)
    assert out["confidence"] is None and out["focus_alignment"] is None
    prompt = _prompt(llm_server.chat_requests[0])
    # every message is summarised (AbstractCore alone would summarise messages[:-0], i.e. nothing)
    assert all(f"turn {i}" in prompt for i in range(5))


def _compact_flow(payload):
    return WorkflowSpec(workflow_id="compact", entry_node="compact", nodes={
        "compact": lambda run, ctx: StepPlan(node_id="compact", effect=Effect(EffectType.MEMORY_COMPACT, payload, "c"),
                                             next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"c": run.vars.get("c")}),
    })


def test_section_6_3_memory_compact_calls_the_summarizer_with_the_older_messages(llm_server):
    from abstractruntime.integrations.abstractcore.summarizer import AbstractCoreChatSummarizer

    llm_server.push({"json": SUMMARY})
    rt = create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": llm_server.base_url},
                              artifact_store=InMemoryArtifactStore(),
                              chat_summarizer=AbstractCoreChatSummarizer(_llm(llm_server)))
    flow = _compact_flow({"preserve_recent": 2, "compression_mode": "heavy"})
    messages = [{"role": "system", "content": "You plan trips."}] + _chat(6)
    run_id = rt.start(workflow=flow, vars={"context": {"messages": messages}})
    state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    result = state.output["c"]
    assert result["summary"] == SUMMARY["summary"] and result["summarizer"]["via"] == "chat_summarizer"
    assert result["compacted"] == 4
    (request,) = llm_server.chat_requests  # one structured call, no LLM_CALL sub-run
    prompt = _prompt(request)
    assert all(f"turn {i}" in prompt for i in range(4)) and "turn 4" not in prompt and "turn 5" not in prompt
    assert "You plan trips." not in prompt  # system messages are kept, not summarised
    assert [m["content"] for m in state.vars["context"]["messages"][-2:]] == ["turn 4", "turn 5"]
