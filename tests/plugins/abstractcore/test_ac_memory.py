"""MEMORY_COMPACT summarising through LLM_CALL: the active_memory plugin calls the abstractcore plugin's LLM_CALL
handler in-process (Runtime.execute_effect), against the fake OpenAI-compatible server."""

from __future__ import annotations

from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.memory import ActiveContextPolicy
from abstractruntime_abstractcore import create_local_runtime
from abstractruntime_artifacts.store import InMemoryArtifactStore

from fake_llm_server import MODEL


def compact_flow(payload):
    return WorkflowSpec(workflow_id="compact", entry_node="compact", nodes={
        "compact": lambda run, ctx: StepPlan(node_id="compact", effect=Effect(EffectType.MEMORY_COMPACT, payload, "c"),
                                             next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"c": run.vars.get("c")}),
    })


def chat(n):
    return [{"role": "system", "content": "You plan trips."}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: we pick Kyoto" if i == 2 else f"turn {i}"}
        for i in range(n)]


def start(rt, payload, n=8):
    flow = compact_flow(payload)
    run_id = rt.start(workflow=flow, vars={"context": {"messages": chat(n)}})
    return run_id, rt.tick(workflow=flow, run_id=run_id)


def test_compaction_summarises_through_llm_call(llm_server):
    llm_server.push({"content": "They chose Kyoto for the trip.", "usage": {"prompt_tokens": 40, "completion_tokens": 7}})
    rt = create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": llm_server.base_url},
                              artifact_store=InMemoryArtifactStore())
    run_id, state = start(rt, {"preserve_recent": 3, "compression_mode": "light", "focus": "destinations"})
    assert state.status is RunStatus.COMPLETED, state.error
    result = state.output["c"]
    assert result["results"][0]["success"] is True, result
    assert result["compacted"] == 5 and result["summary"] == "They chose Kyoto for the trip."
    assert result["summarizer"]["via"] == "llm_call" and result["summarizer"]["usage"]["input_tokens"] == 40
    (request,) = llm_server.chat_requests
    system = [m["content"] for m in request["body"]["messages"] if m["role"] == "system"][0]
    assert "Light compression" in system and "destinations" in system
    user = request["body"]["messages"][-1]["content"]
    assert "user: turn 0" in user and "user: turn 2: we pick Kyoto" in user and "turn 5" not in user
    rows = [r for r in rt.get_ledger(run_id) if r["node_id"] == "compact"]
    assert [r["status"] for r in rows] == ["started", "completed"]  # reserved: a compaction calls an LLM
    assert request["headers"]["idempotency-key"] == rows[0]["idempotency_key"] + ":compact"
    messages = state.vars["context"]["messages"]
    assert [m["content"] for m in messages[2:]] == ["turn 5", "turn 6", "turn 7"]
    assert messages[1]["content"].endswith("They chose Kyoto for the trip.")
    assert [s["kind"] for s in ActiveContextPolicy.spans(state.vars)] == ["conversation_span"]


def test_a_failing_summary_call_changes_nothing(llm_server):
    llm_server.push({"error": 500, "message": "model overloaded"})
    rt = create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": llm_server.base_url},
                              artifact_store=InMemoryArtifactStore())
    run_id, state = start(rt, {"preserve_recent": 2})
    assert state.status is RunStatus.COMPLETED
    entry = state.output["c"]["results"][0]
    assert entry["success"] is False and "the summarising LLM_CALL failed" in entry["error"]
    assert state.vars["context"]["messages"] == chat(8)
    assert ActiveContextPolicy.spans(state.vars) == []


def test_factories_pass_a_chat_summarizer_to_the_runtime(llm_server):
    from abstractruntime_abstractcore import create_hybrid_runtime, create_remote_runtime

    def summarize(messages, *, focus=None, compression_mode="standard"):
        return "host summary"

    for make in (lambda: create_local_runtime(provider="openai-compatible", model=MODEL,
                                              llm_kwargs={"base_url": llm_server.base_url}, chat_summarizer=summarize),
                 lambda: create_remote_runtime(server_base_url=llm_server.root_url, model=MODEL,
                                               chat_summarizer=summarize),
                 lambda: create_hybrid_runtime(server_base_url=llm_server.root_url, model=MODEL,
                                               chat_summarizer=summarize)):
        rt = make()
        assert rt.chat_summarizer is summarize
        run_id, state = start(rt, {"preserve_recent": 2})
        assert state.output["c"]["summary"] == "host summary" and state.output["c"]["summarizer"]["via"] == \
            "chat_summarizer"
    assert llm_server.chat_requests == []  # the host's summariser was used, no LLM call
