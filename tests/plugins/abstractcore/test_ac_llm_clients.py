"""The LLM clients (integration spec §2.3-§2.6, §8.1, §8.2; checklist lines 1, 2, 7, 29-34, 73).

Local clients run AbstractCore's real ``openai-compatible`` provider against the loopback fake server; the remote
client talks to it over real HTTP (httpx) or through an injected ``request_sender`` (the client's documented seam).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from abstractruntime.integrations.abstractcore.llm_client import (
    HttpResponse,
    LocalAbstractCoreLLMClient,
    MultiLocalAbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
    _local_generate_lock,
    _normalize_tool_calls,
)
from abstractruntime_abstractcore.turn_grounding import HEADER_RE

from fake_llm_server import MODEL

TRACE = {"run_id": "r1", "workflow_id": "wf", "node_id": "n1", "actor_id": "a1", "session_id": "s1",
         "parent_run_id": "p1"}
READ_FILE = {"name": "read_file", "description": "Read a file", "parameters": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}


class RecordingSender:
    """A transport given to the remote client (its ``request_sender`` seam): records each post, answers ``reply``."""

    def __init__(self, reply):
        self.reply = reply
        self.calls = []

    def post(self, url, *, headers, json, timeout):
        self.calls.append({"url": url, "headers": headers, "json": json, "timeout": timeout})
        return self.reply


def local_client(server, cls=LocalAbstractCoreLLMClient, provider="openai-compatible", model=MODEL):
    return cls(provider=provider, model=model, llm_kwargs={"base_url": server.base_url, "timeout": 30})


def completion(message, **extra):
    return {"id": "x", "object": "chat.completion", "model": "srv-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}, **extra}


# --- §1.1 / §1.2 ------------------------------------------------------------------------------------------------
def test_checklist_01_star_import_yields_exactly_the_18_names():
    namespace: dict = {}
    exec("from abstractruntime.integrations.abstractcore import *", namespace)
    names = sorted(k for k in namespace if k != "__builtins__")
    assert names == sorted([
        "AbstractCoreLLMClient", "LocalAbstractCoreLLMClient", "RemoteAbstractCoreLLMClient",
        "AbstractCoreEmbeddingsClient", "EmbeddingsResult", "RuntimeConfig", "ToolExecutor", "MappingToolExecutor",
        "AbstractCoreToolExecutor", "PassthroughToolExecutor", "build_effect_handlers", "create_local_runtime",
        "create_remote_runtime", "create_hybrid_runtime", "create_local_file_runtime", "create_remote_file_runtime",
        "attach_global_event_bus_bridge", "emit_step_record"])
    assert "MultiLocalAbstractCoreLLMClient" not in namespace and "McpToolExecutor" not in namespace
    from abstractruntime.integrations.abstractcore.llm_client import MultiLocalAbstractCoreLLMClient  # noqa: F401
    from abstractruntime.integrations.abstractcore.tool_executor import (  # noqa: F401
        DelegatingMcpToolExecutor,
        McpToolExecutor,
    )


def test_checklist_02_default_timeouts_are_7200_s():
    from abstractruntime.integrations.abstractcore.constants import DEFAULT_LLM_TIMEOUT_S, DEFAULT_TOOL_TIMEOUT_S

    assert DEFAULT_LLM_TIMEOUT_S == DEFAULT_TOOL_TIMEOUT_S == 7200.0
    sender = RecordingSender(completion({"content": "ok"}))
    client = RemoteAbstractCoreLLMClient(server_base_url="http://x", model="m", request_sender=sender)
    assert client.timeout_s == 7200.0
    client.generate(prompt="hi")
    assert sender.calls[0]["timeout"] == 7200.0 and sender.calls[0]["json"]["timeout_s"] == 7200.0
    assert sender.calls[0]["url"] == "http://x/v1/chat/completions"


# --- §2.3 local client --------------------------------------------------------------------------------------------
def test_checklist_07_local_client_drops_recent_tool_activity_and_assembles_the_context(llm_server):
    llm_server.push({"content": "done"})
    client = local_client(llm_server)
    out = client.generate(
        prompt="hi", system_prompt="[2024-01-01 10:00:00 FR]\nYou are helpful.",
        messages=[{"role": "system", "content": "  Recent tool activity: read_file ok"},
                  {"role": "system", "content": "Keep me"}, {"role": "user", "content": "earlier"}, "not a dict"],
        params={"temperature": 0, "_provider": "ignored", "_model": "ignored", "base_url": "http://elsewhere"})
    body = llm_server.chat_requests[0]["body"]
    sent = body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "user"]  # AbstractCore merges the system messages
    assert sent[0]["content"] == "You are helpful.\n\nKeep me"  # the header line of the system prompt is removed
    assert sent[1]["content"] == "earlier"  # the non-dict entry is discarded
    assert HEADER_RE.match(sent[2]["content"]) and sent[2]["content"].endswith("] hi")  # the turn is grounded
    assert not any("Recent tool activity" in str(m.get("content")) for m in sent)
    assert body["model"] == MODEL  # routing keys are discarded by a single local client
    # verbatim capture of what went over the wire
    assert out["metadata"]["_provider_request"]["payload"]["messages"] == sent
    assert out["content"] == "done" and out["trace_id"] == out["metadata"]["trace_id"]


def test_local_client_grounding_is_idempotent_and_all_internal_messages_give_none(llm_server):
    llm_server.push({"content": "a"})
    client = local_client(llm_server)
    client.generate(prompt="[2024-01-01 10:00:00 FR] already grounded",
                    messages=[{"role": "system", "content": "Recent tool activity: x"}])
    (sent,) = llm_server.chat_requests[0]["body"]["messages"]
    assert sent == {"role": "user", "content": "[2024-01-01 10:00:00 FR] already grounded"}


def test_local_client_returns_tool_calls_written_as_text(llm_server):
    """Prompted tool calls in the text are parsed by AbstractCore; the client normalises them (§2.6)."""
    llm_server.push({"content": 'Sure.\n<|tool_call|>{"name": "read_file", "arguments": {"file_path": "a"}}'
                                '</|tool_call|>'})
    out = local_client(llm_server).generate(prompt="read a", tools=[READ_FILE])
    assert out["content"] == "Sure."
    assert out["tool_calls"] == [{"name": "read_file", "arguments": {"file_path": "a"}, "call_id": None}]


def test_local_client_forwards_trace_metadata_to_abstractcore_and_returns_its_trace_id(llm_server):
    """§8.1 hop local client -> AbstractCore: ``trace_metadata`` is a generate kwarg; tracing is on by default."""
    llm_server.push({"content": "traced"})
    client = local_client(llm_server)
    assert client.llm_kwargs["enable_tracing"] is True and client.llm_kwargs["max_traces"] == 50
    out = client.generate(prompt="hi", params={"trace_metadata": dict(TRACE, idempotency_key="k-1")})
    trace = client.llm.get_traces(trace_id=out["trace_id"])
    assert trace and json.dumps(trace, default=str).count("r1") >= 1
    headers = llm_server.chat_requests[0]["headers"]
    assert headers["idempotency-key"] == "k-1" and headers["x-abstractruntime-run-id"] == "r1"


# --- §2.4 multi client --------------------------------------------------------------------------------------------
def test_checklist_29_multi_client_routes_on_provider_and_model_and_caches_one_client_per_pair(llm_server):
    llm_server.models.append("other-model")
    multi = MultiLocalAbstractCoreLLMClient(provider=" OpenAI-Compatible ", model=f" {MODEL} ",
                                            llm_kwargs={"base_url": llm_server.base_url, "timeout": 30})
    assert multi.list_loaded_clients() == [("openai-compatible", MODEL)]  # the default one, built eagerly
    llm_server.push({"content": "1"}, {"content": "2"}, {"content": "3"})
    multi.generate(prompt="a")
    multi.generate(prompt="b", params={"_provider": " OPENAI-COMPATIBLE ", "_model": " other-model "})
    multi.generate(prompt="c", params={"_provider": "openai-compatible", "_model": "other-model"})
    assert [r["body"]["model"] for r in llm_server.chat_requests] == [MODEL, "other-model", "other-model"]
    assert multi.list_loaded_clients() == [("openai-compatible", MODEL), ("openai-compatible", "other-model")]
    other = multi.get_provider_instance(provider="OpenAI-Compatible", model="other-model")
    assert other is multi.get_provider_instance(provider="openai-compatible", model="other-model")
    assert multi._llm is multi.get_provider_instance(provider="", model="")  # blanks: the default
    assert len(multi.list_loaded_clients()) == 2


# --- §2.5 remote client -------------------------------------------------------------------------------------------
def test_checklist_30_remote_request_body_and_trace_headers(llm_server):
    llm_server.push({"content": "ok"}, {"content": "ok"})
    client = RemoteAbstractCoreLLMClient(server_base_url=llm_server.root_url + "/", model=MODEL, timeout_s=30,
                                         headers={"X-AbstractCore-Actor-Id": "configured"})
    client.generate(prompt="hi", system_prompt="SYS", tools=[READ_FILE], params={
        "base_url": "http://lm:1234/v1", "prompt_cache_key": "  k1 ", "temperature": "0.5", "seed": "7",
        "max_tokens": 9, "stop": ["x"], "trace_metadata": TRACE, "audio_policy": "never"})
    client.generate(prompt="again", params={"seed": -1, "temperature": "hot", "prompt_cache_key": "  ",
                                            "base_url": ""})
    first, second = llm_server.chat_requests
    assert first["path"] == "/v1/chat/completions"
    body = first["body"]
    assert body["messages"][0] == {"role": "system", "content": "SYS"}
    assert HEADER_RE.match(body["messages"][1]["content"]) and body["messages"][1]["content"].endswith("] hi")
    assert {k: body[k] for k in ("model", "stream", "timeout_s", "base_url", "prompt_cache_key", "temperature",
                                 "seed", "max_tokens", "stop")} == {
        "model": MODEL, "stream": False, "timeout_s": 30.0, "base_url": "http://lm:1234/v1", "prompt_cache_key": "k1",
        "temperature": 0.5, "seed": 7, "max_tokens": 9, "stop": ["x"]}
    assert body["tools"][0]["function"]["name"] == "read_file"
    assert "audio_policy" not in body and "trace_metadata" not in body
    headers = first["headers"]
    assert json.loads(headers["x-abstractcore-trace-metadata"]) == TRACE
    assert (headers["x-abstractcore-session-id"], headers["x-abstractcore-run-id"],
            headers["x-abstractcore-parent-run-id"]) == ("s1", "r1", "p1")
    assert headers["x-abstractcore-actor-id"] == "configured"  # a configured header is not overridden
    assert not {"seed", "temperature", "prompt_cache_key", "base_url"} & set(second["body"])
    assert "x-abstractcore-trace-metadata" not in second["headers"]


def test_checklist_31_remote_media_is_refused_and_the_choice_is_mapped(llm_server):
    sender = RecordingSender(None)
    client = RemoteAbstractCoreLLMClient(server_base_url="http://x", model="m", request_sender=sender)
    with pytest.raises(ValueError) as info:
        client.generate(prompt="x", media=["/tmp/a.png"])
    assert str(info.value) == ("RemoteAbstractCoreLLMClient does not support media yet (artifact-backed attachments "
                               "require local/hybrid execution).")
    assert sender.calls == []

    body = completion({"content": "hello", "reasoning": "  ", "reasoning_content": "because", "tool_calls": [
        {"id": "call_7", "type": "function", "function": {"name": "read_file", "arguments": '{"file_path": "a"}'}}]})
    llm_server.push({"body": body, "headers": {"X-AbstractCore-Trace-Id": "tr-9", "X-Trace-Id": "other"}})
    client = RemoteAbstractCoreLLMClient(server_base_url=llm_server.root_url, model="m", timeout_s=30)
    out = client.generate(prompt="hi")
    assert out["content"] == "hello" and out["reasoning"] == "because" and out["data"] is None
    assert out["tool_calls"] == [{"name": "read_file", "arguments": {"file_path": "a"}, "call_id": "call_7"}]
    assert out["usage"]["prompt_tokens"] == 4 and out["usage"]["total_tokens"] == 6
    assert (out["model"], out["finish_reason"], out["raw_response"]) == ("srv-model", "stop", body)
    assert out["trace_id"] == out["metadata"]["trace_id"] == "tr-9"
    request = out["metadata"]["_provider_request"]
    assert request["url"] == f"{llm_server.root_url}/v1/chat/completions"
    assert request["payload"] == llm_server.chat_requests[0]["body"]


def test_checklist_32_remote_answer_without_choices_is_kept_as_data(llm_server):
    body = {"model": "srv", "detail": "no completion here"}
    llm_server.push({"body": body})
    out = RemoteAbstractCoreLLMClient(server_base_url=llm_server.root_url, model="m", timeout_s=30).generate(
        prompt="hi")
    assert out["content"] is None and out["data"] == body and out["raw_response"] == body
    assert out["tool_calls"] is None and out["finish_reason"] is None and out["usage"] is None
    assert out["model"] == "srv" and "_provider_request" in out["metadata"]


def test_checklist_33_injected_sender_returning_a_plain_dict_is_the_body():
    sender = RecordingSender(completion({"content": "from dict"}))
    client = RemoteAbstractCoreLLMClient(server_base_url="http://h:9", model="m", timeout_s=5, request_sender=sender,
                                         headers={"Authorization": "Bearer t"})
    out = client.generate(prompt="hi", messages=[{"role": "user", "content": "first"}])
    assert out["content"] == "from dict"
    (call,) = sender.calls
    assert call["url"] == "http://h:9/v1/chat/completions" and call["timeout"] == 5.0
    assert call["headers"]["Authorization"] == "Bearer t"
    # our fix (docs/compatibility.md): the prompt is not dropped when messages are given too
    first, last = call["json"]["messages"]
    assert first == {"role": "user", "content": "first"} and HEADER_RE.match(last["content"])
    assert last["role"] == "user" and last["content"].endswith("] hi")

    class HttpxLike:  # an object with json() and headers, as httpx.Response
        headers = {"x-trace-id": "t-2"}

        def json(self):
            return [1, 2]

    assert RemoteAbstractCoreLLMClient(server_base_url="http://h", model="m", request_sender=RecordingSender(
        HttpResponse(body=completion({"content": "wrapped"}), headers={"X-Trace-Id": "t-1"}))).generate(
        prompt="x")["trace_id"] == "t-1"
    odd = RemoteAbstractCoreLLMClient(server_base_url="http://h", model="m", request_sender=RecordingSender(
        HttpxLike())).generate(prompt="x")
    assert odd["data"] == {"data": [1, 2]} and odd["trace_id"] == "t-2" and odd["content"] is None


def test_checklist_34_tool_calls_in_openai_shape_with_json_or_python_literal_arguments(llm_server):
    llm_server.push({"tool_calls": [
        {"name": "read_file", "arguments": "{'file_path': 'a', 'flag': true, 'n': null}", "id": "c1"},
        {"name": "list_files", "arguments": '{"directory_path": "."}', "id": "c2"},
        {"name": "  ", "arguments": "{}", "id": "c3"},
        {"name": "broken", "arguments": "not json at all", "id": "c4"}]})
    out = RemoteAbstractCoreLLMClient(server_base_url=llm_server.root_url, model="m", timeout_s=30).generate(
        prompt="go")
    assert out["tool_calls"] == [
        {"name": "read_file", "arguments": {"file_path": "a", "flag": True, "n": None}, "call_id": "c1"},
        {"name": "list_files", "arguments": {"directory_path": "."}, "call_id": "c2"},
        {"name": "broken", "arguments": {}, "call_id": "c4"}]
    # the module-private helper hosts import (spec §1.3)
    assert _normalize_tool_calls("nope") is None and _normalize_tool_calls([{"name": ""}]) is None
    assert _normalize_tool_calls([{"name": "x", "function": {"name": "y"}, "arguments": [1]}]) == [
        {"name": "x", "arguments": {}, "call_id": None}]


# --- §8.2 MLX serialisation ---------------------------------------------------------------------------------------
@pytest.fixture
def mlx_provider_on_loopback():
    """AbstractCore's provider name ``mlx`` served by its OpenAI-compatible provider (MLX needs Apple silicon):
    registered in AbstractCore's own provider registry for the test and restored afterwards."""
    from abstractruntime_abstractcore._isolation import import_abstractcore

    registry = import_abstractcore("abstractcore.providers.registry")
    compat = import_abstractcore("abstractcore.providers.openai_compatible_provider")
    reg = registry.get_provider_registry()
    original = reg.get_provider_info("mlx")
    reg.register_provider(registry.ProviderInfo(
        name="mlx", display_name="MLX (test: OpenAI-compatible on 127.0.0.1)",
        provider_class=compat.OpenAICompatibleProvider, description="test", authentication_required=False))
    try:
        yield
    finally:
        reg.register_provider(original)


def _concurrent_generations(client_a, client_b, server) -> int:
    """Runs one generate on each client at the same time; returns how many requests the server held at once."""
    state = {"now": 0, "max": 0}
    guard = threading.Lock()

    def slow(_body):
        with guard:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.4)
        with guard:
            state["now"] -= 1
        return {"content": "ok"}

    server.push(slow, slow)
    barrier = threading.Barrier(2)
    errors = []

    def run(client):
        try:
            barrier.wait()
            client.generate(prompt="hi")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in (client_a, client_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    return state["max"]


def test_checklist_73_mlx_generations_on_one_model_never_overlap(llm_server, mlx_provider_on_loopback):
    a = local_client(llm_server, provider="mlx")
    b = local_client(llm_server, provider=" MLX ")  # another client, same (trimmed, case-insensitive) key
    a.llm, b.llm  # noqa: B018 - build both providers before timing
    assert _concurrent_generations(a, b, llm_server) == 1
    assert _local_generate_lock(provider="mlx", model=f" {MODEL} ") is _local_generate_lock(provider="MLX",
                                                                                            model=MODEL)
    assert _local_generate_lock(provider="mlx", model="another") is not _local_generate_lock(provider="mlx",
                                                                                             model=MODEL)
    assert _local_generate_lock(provider="openai-compatible", model=MODEL) is None


def test_other_providers_are_not_serialised(llm_server):
    a, b = local_client(llm_server), local_client(llm_server)
    a.llm, b.llm  # noqa: B018
    assert _concurrent_generations(a, b, llm_server) == 2
