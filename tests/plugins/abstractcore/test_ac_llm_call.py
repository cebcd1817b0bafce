"""LLM_CALL through AbstractCore's real openai-compatible provider (and the remote client) against the fake server."""

from __future__ import annotations

import json

import pytest

from abstractruntime import Effect, EffectType, RetryPolicy, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_abstractcore import (
    LocalAbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
    create_local_runtime,
    create_remote_runtime,
)

from fake_llm_server import MODEL

RESULT_KEYS = {"content", "reasoning", "data", "raw_response", "tool_calls", "usage", "model", "finish_reason",
               "metadata", "trace_id", "gen_time"}


def one_call(payload, result_key="out"):
    return WorkflowSpec(workflow_id="llm1", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.LLM_CALL, payload, result_key),
                                          next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"out": run.vars.get(result_key)}),
    })


def effect_rows(rt, run_id, node_id):
    return [r for r in rt.get_ledger(run_id)
            if r["node_id"] == node_id and not str(r.get("idempotency_key") or "").startswith("system:")]


def make_runtime(mode, server, **kw):
    if mode == "local":
        return create_local_runtime(provider="openai-compatible", model=MODEL,
                                    llm_kwargs={"base_url": server.base_url, "timeout": kw.pop("timeout", 30)}, **kw)
    return create_remote_runtime(server_base_url=server.root_url, model=MODEL, timeout_s=kw.pop("timeout", 30), **kw)


@pytest.fixture(params=["local", "remote"])
def mode(request):
    return request.param


def run_flow(rt, flow, **vars):
    run_id = rt.start(workflow=flow, vars=vars or None, session_id="sess-1", actor_id="actor-1")
    return run_id, rt.tick(workflow=flow, run_id=run_id)


def test_plain_text_result_shape_headers_and_token_limits(mode, llm_server):
    llm_server.push({"content": "Hello there", "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
    rt = make_runtime(mode, llm_server)
    run_id, state = run_flow(rt, one_call({"prompt": "Say hello", "params": {"temperature": 0}}))
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output["out"]
    assert set(out) >= RESULT_KEYS
    assert out["content"] == "Hello there"
    assert out["usage"]["input_tokens"] == 11 and out["usage"]["total_tokens"] == 14
    assert out["metadata"]["trace_id"] == out["trace_id"]
    assert state.vars["_limits"]["estimated_tokens_used"] == 11
    assert rt.get_limit_status(run_id)["tokens"]["estimated_used"] == 11
    (request,) = llm_server.chat_requests
    rows = effect_rows(rt, run_id, "call")
    assert [r["status"] for r in rows] == ["started", "completed"]
    key = rows[0]["idempotency_key"]
    assert request["headers"]["idempotency-key"] == key  # the effect's key travels with the request
    assert request["headers"]["x-abstractruntime-run-id"] == run_id
    user = [m for m in request["body"]["messages"] if m["role"] == "user"][-1]["content"]
    assert user.startswith("[") and user.endswith("Say hello")  # date grounding prefix, also in the ledger
    assert rows[0]["effect"]["payload"]["prompt"] == user  # (integration spec §2.2)
    assert request["body"]["temperature"] == 0


def test_tool_call_is_returned_normalised(mode, llm_server):
    llm_server.push({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_abc"}]})
    rt = make_runtime(mode, llm_server)
    spec = {"name": "add", "description": "Add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}
    _, state = run_flow(rt, one_call({"messages": [{"role": "user", "content": "2+3?"}], "tools": [spec]}))
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output["out"]
    assert out["tool_calls"] == [{"name": "add", "arguments": {"a": 2, "b": 3}, "call_id": "call_abc"}]
    assert out["finish_reason"] == "tool_calls"
    body = llm_server.chat_requests[0]["body"]
    assert body["tools"][0]["function"]["name"] == "add"


def test_structured_output(mode, llm_server):
    llm_server.push({"json": {"city": "Paris", "population": 2100000}})
    rt = make_runtime(mode, llm_server)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"]}
    _, state = run_flow(rt, one_call({"prompt": "Capital of France?", "response_schema": schema,
                                      "response_schema_name": "city info"}))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["out"]["data"] == {"city": "Paris", "population": 2100000}
    fmt = llm_server.chat_requests[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["properties"]["city"]["type"] == "string"


def test_server_error_fails_and_only_the_runtime_retries(mode, llm_server):
    llm_server.push({"error": 500, "message": "upstream exploded"}, {"error": 500, "message": "still broken"})
    rt = make_runtime(mode, llm_server, effect_policy=RetryPolicy(llm_max_attempts=2, backoff_base=0))
    run_id, state = run_flow(rt, one_call({"prompt": "hi"}))
    assert state.status is RunStatus.FAILED
    assert state.error.startswith("Effect failed after 2 attempts: ")
    assert "still broken" in state.error
    assert len(llm_server.chat_requests) == 2  # one request per runtime attempt: AbstractCore did not retry
    rows = effect_rows(rt, run_id, "call")
    assert [(r["status"], r["attempt"]) for r in rows] == [("started", 1), ("failed", 1), ("started", 2),
                                                           ("failed", 2)]
    keys = {r["idempotency_key"] for r in rows}
    assert len(keys) == 1
    assert [r["headers"]["idempotency-key"] for r in llm_server.chat_requests] == [keys.pop()] * 2


def test_slow_reply_times_out_then_the_runtime_retry_succeeds(mode, llm_server):
    llm_server.push({"content": "too late", "delay": 3}, {"content": "in time"})
    rt = make_runtime(mode, llm_server, timeout=0.5, effect_policy=RetryPolicy(llm_max_attempts=2, backoff_base=0))
    run_id, state = run_flow(rt, one_call({"prompt": "hi"}))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output["out"]["content"] == "in time"
    rows = effect_rows(rt, run_id, "call")
    assert [r["status"] for r in rows] == ["started", "failed", "started", "completed"]
    assert "time" in rows[1]["error"].lower()


@pytest.mark.parametrize("payload", [{}, {"prompt": "   "}, {"messages": []}, {"request": {"prompt": "hi"}}])
def test_prompt_or_messages_is_required(payload, llm_server):
    rt = make_runtime("local", llm_server)
    _, state = run_flow(rt, one_call(payload))
    assert state.status is RunStatus.FAILED
    assert state.error.endswith("llm_call requires payload.prompt or payload.messages")
    assert llm_server.chat_requests == []


def test_include_context_appends_the_turn(llm_server):
    llm_server.push({"content": "first"}, {"content": "second"})
    rt = make_runtime("local", llm_server)
    flow = WorkflowSpec(workflow_id="ctx", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL, {
            "prompt": "one", "include_context": True}, "r1"), next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", effect=Effect(EffectType.LLM_CALL, {
            "prompt": "two", "include_context": True, "grounding": False}, "r2"), next_node="c"),
        "c": lambda run, ctx: StepPlan(node_id="c", complete_output={}),
    })
    run_id, state = run_flow(rt, flow, context={"messages": []})
    assert state.status is RunStatus.COMPLETED, state.error
    contents = [m["content"] for m in state.vars["context"]["messages"]]
    assert contents[1:] == ["first", "two", "second"]  # the persisted user text is grounded (spec §2.2)
    assert contents[0].startswith("[") and contents[0].endswith("] one")
    assert [m["metadata"] for m in state.vars["context"]["messages"]] == [
        {"kind": "llm_turn", "node_id": n} for n in ("a", "a", "b", "b")]
    second = llm_server.chat_requests[1]["body"]["messages"]
    (user,) = [m["content"] for m in second if m["role"] != "system"]  # the handler does not prepend history
    assert user.endswith("two")


def test_media_is_rejected_by_the_remote_client(llm_server):
    client = RemoteAbstractCoreLLMClient(server_base_url=llm_server.root_url, model=MODEL)
    with pytest.raises(ValueError, match="media"):
        client.generate(prompt="x", media=["/tmp/a.png"])


def test_local_client_uses_a_single_attempt_retry_config(llm_server):
    client = LocalAbstractCoreLLMClient(provider="openai-compatible", model=MODEL,
                                        llm_kwargs={"base_url": llm_server.base_url})
    assert client.llm.retry_manager.config.max_attempts == 1
    llm_server.push({"content": json.dumps({"ok": True})})
    assert client.generate(prompt="x")["content"] == '{"ok": true}'
