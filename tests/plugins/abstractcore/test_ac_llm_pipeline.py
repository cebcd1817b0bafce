"""The LLM_CALL handler pipeline (integration spec §2.1, §2.2, §2.7, §2.8, §8.1), one test per checklist line of
§10 (3-6, 8-28), with AbstractCore's real ``openai-compatible`` provider (or the remote client) talking HTTP to the
fake server. ``Client`` subclasses only fix the model capabilities or record what the handler gives the client;
generation is real."""

from __future__ import annotations

import json
import os
import re

import pytest

from abstractruntime import (
    Effect,
    EffectType,
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    RunStatus,
    Runtime,
    StepPlan,
    WorkflowSpec,
)
from abstractruntime_abstractcore import LocalAbstractCoreLLMClient, create_local_runtime, create_remote_runtime
from abstractruntime_abstractcore.llm_effect import make_llm_call_handler
from abstractruntime_abstractcore.structured_output import normalize_response_schema, response_model_for_schema

from fake_llm_server import MODEL

HEADER = r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]{2}\]"


class Client(LocalAbstractCoreLLMClient):
    """The real local client; ``caps`` fixes ``get_model_capabilities()``; every call's media paths are recorded
    with whether each file existed during the call."""

    def __init__(self, server, caps=None):
        super().__init__(provider="openai-compatible", model=MODEL,
                         llm_kwargs={"base_url": server.base_url, "timeout": 30})
        self.caps = caps
        self.media_seen = []

    def get_model_capabilities(self):
        return dict(self.caps) if self.caps is not None else super().get_model_capabilities()

    def generate(self, **kwargs):
        self.media_seen.append([(p, os.path.isfile(p)) for p in kwargs.get("media") or []])
        return super().generate(**kwargs)


def flow(payload, *, workflow_id="wf", node="n1"):
    return WorkflowSpec(workflow_id=workflow_id, entry_node=node, nodes={
        node: lambda run, ctx: StepPlan(node_id=node, effect=Effect(EffectType.LLM_CALL, payload, "out"),
                                        next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"out": run.vars.get("out")}),
    })


def run_ref(client, payload, *, vars=None, session_id="sess-1", store=None, workflow_id="wf", node="n1",
            actor_id=None, parent_run_id=None):
    """A reference-style runtime: ``Runtime(effect_handlers={LLM_CALL: make_llm_call_handler(...)})``."""
    store = store if store is not None else InMemoryArtifactStore()
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(), artifact_store=store,
                 effect_handlers={EffectType.LLM_CALL: make_llm_call_handler(llm=client, artifact_store=store)})
    wf = flow(payload, workflow_id=workflow_id, node=node)
    run_id = rt.start(workflow=wf, vars=vars, session_id=session_id, actor_id=actor_id, parent_run_id=parent_run_id)
    return rt, run_id, rt.tick(workflow=wf, run_id=run_id)


def run_local(server, payload, *, vars=None, session_id="sess-1", **kw):
    rt = create_local_runtime(provider="openai-compatible", model=MODEL,
                              llm_kwargs={"base_url": server.base_url, "timeout": 30}, **kw)
    wf = flow(payload)
    run_id = rt.start(workflow=wf, vars=vars, session_id=session_id)
    return rt, run_id, rt.tick(workflow=wf, run_id=run_id)


def rows(rt, run_id, node="n1"):
    return [r for r in rt.get_ledger(run_id) if r["node_id"] == node]


def sent(state):
    """What the handler gave the client (metadata._runtime_observability.llm_generate_kwargs)."""
    return state.vars["out"]["metadata"]["_runtime_observability"]["llm_generate_kwargs"]


def body(server, i=0):
    return server.chat_requests[i]["body"]


# --- grounding (§2.2) ---------------------------------------------------------------------------------------------
def test_checklist_3_grounded_prompt_in_started_row(llm_server, monkeypatch):
    monkeypatch.setenv("ABSTRACT_COUNTRY", "fr")
    llm_server.push({"content": "hi"}, {"content": "hi"})
    rt, run_id, state = run_local(llm_server, {"prompt": "hello"})
    assert state.status is RunStatus.COMPLETED, state.error
    started, completed = rows(rt, run_id)
    assert started["status"] == "started"
    assert re.fullmatch(r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} FR\] hello", started["effect"]["payload"]["prompt"])
    assert completed["effect"]["payload"]["prompt"] == started["effect"]["payload"]["prompt"]
    user = [m for m in body(llm_server)["messages"] if m["role"] == "user"][-1]["content"]
    assert user == started["effect"]["payload"]["prompt"]  # the client did not ground it twice
    # a reference-style handler (started row written after the call) records the same
    rt, run_id, state = run_ref(Client(llm_server), {"prompt": "hello"})
    prompt = rows(rt, run_id)[0]["effect"]["payload"]["prompt"]
    assert re.fullmatch(r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} FR\] hello", prompt)


def test_checklist_4_grounding_is_idempotent_and_rewrites_the_legacy_line(llm_server):
    llm_server.push({"content": "a"}, {"content": "b"})
    rt, run_id, _ = run_local(llm_server, {"prompt": "[2024-01-01 10:00:00 FR] hi"})
    assert rows(rt, run_id)[0]["effect"]["payload"]["prompt"] == "[2024-01-01 10:00:00 FR] hi"
    assert [m for m in body(llm_server)["messages"] if m["role"] == "user"][-1]["content"] == \
        "[2024-01-01 10:00:00 FR] hi"
    rt, run_id, _ = run_local(llm_server, {"prompt": "Grounding: 2024/01/01|10:00|FR\nhello"})
    assert rows(rt, run_id)[0]["effect"]["payload"]["prompt"] == "[2024-01-01 10:00:00 FR] hello"


def test_checklist_5_message_mode_grounds_only_the_last_user_message(llm_server):
    llm_server.push({"content": "a"}, {"content": "b"})
    msgs = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"}]
    rt, run_id, _ = run_local(llm_server, {"messages": msgs})
    logged = rows(rt, run_id)[0]["effect"]["payload"]["messages"]
    assert logged[0]["content"] == "first" and logged[1]["content"] == "ok"
    assert re.fullmatch(HEADER + " second", logged[2]["content"])
    assert msgs[2]["content"] == "second"  # the caller's message dicts are not changed
    assert [m["content"] for m in body(llm_server)["messages"]][:2] == ["first", "ok"]
    rt, run_id, _ = run_local(llm_server, {"messages": [{"role": "system", "content": "be brief"}]})
    logged = rows(rt, run_id)[0]["effect"]["payload"]["messages"]
    assert logged[0] == {"role": "system", "content": "be brief"}
    assert logged[1]["role"] == "user" and re.fullmatch(HEADER, logged[1]["content"])


def test_checklist_6_system_prompt_header_line_is_removed(llm_server):
    llm_server.push({"content": "a"})
    _, _, state = run_local(llm_server, {"prompt": "hi", "system_prompt": "[2024-01-01 10:00:00 FR]\nYou are terse."})
    assert state.status is RunStatus.COMPLETED, state.error
    system = [m["content"] for m in body(llm_server)["messages"] if m["role"] == "system"]
    assert system == ["You are terse."]


# --- validation, trace metadata, routing, prompt cache ------------------------------------------------------------
@pytest.mark.parametrize("payload", [{"prompt": "   "}, {"prompt": "", "messages": []}, {}])
def test_checklist_8_prompt_or_messages_required(llm_server, payload):
    _, _, state = run_ref(Client(llm_server), payload)
    assert state.status is RunStatus.FAILED
    assert state.error.endswith(": llm_call requires payload.prompt or payload.messages")
    assert llm_server.chat_requests == []


def test_checklist_9_trace_metadata_carries_the_run_context(llm_server):
    llm_server.push({"content": "a"})
    caller_trace = {"run_id": "bogus", "workflow_id": "bogus", "custom": 1}
    rt, run_id, state = run_ref(Client(llm_server), {"prompt": "hi", "params": {"trace_metadata": caller_trace}},
                                actor_id="actor-7", parent_run_id="parent-1")
    assert state.status is RunStatus.COMPLETED, state.error
    trace = sent(state)["params"]["trace_metadata"]
    assert {k: trace[k] for k in ("run_id", "workflow_id", "node_id", "actor_id", "session_id", "parent_run_id",
                                  "custom")} == {"run_id": run_id, "workflow_id": "wf", "node_id": "n1",
                                                 "actor_id": "actor-7", "session_id": "sess-1",
                                                 "parent_run_id": "parent-1", "custom": 1}
    assert caller_trace == {"run_id": "bogus", "workflow_id": "bogus", "custom": 1}  # not mutated (departure)
    assert llm_server.chat_requests[0]["headers"]["x-abstractruntime-run-id"] == run_id  # run -> client -> HTTP
    # without actor/session/parent the optional keys are absent
    llm_server.push({"content": "a"})
    _, _, state = run_ref(Client(llm_server), {"prompt": "hi"}, session_id=None)
    assert not {"actor_id", "session_id", "parent_run_id"} & set(sent(state)["params"]["trace_metadata"])


def test_checklist_10_prompt_cache_key(llm_server):
    llm_server.push({"content": "a"}, {"content": "b"}, {"content": "c"})
    payload = {"prompt": "hi", "provider": "LMStudio", "model": "m1"}
    _, _, state = run_ref(Client(llm_server), dict(payload), vars={"_runtime": {"prompt_cache": True}},
                          session_id="sess9", workflow_id="wf", node="n1")
    assert state.status is RunStatus.COMPLETED, state.error
    params = sent(state)["params"]
    assert params["_provider"] == "LMStudio" and params["_model"] == "m1"  # routing keys (§2.7 step 3)
    assert params["prompt_cache_key"] == "session:f207e775c65609b2c892ab97"
    _, _, state = run_ref(Client(llm_server), {**payload, "params": {"prompt_cache_key": None}},
                          vars={"_runtime": {"prompt_cache": True}}, session_id="sess9")
    assert sent(state)["params"]["prompt_cache_key"] is None  # an explicit key (even null) disables derivation
    _, _, state = run_ref(Client(llm_server), dict(payload),
                          vars={"_runtime": {"prompt_cache": {"enabled": False, "key": " mine "}}}, session_id=None)
    assert sent(state)["params"]["prompt_cache_key"] == "mine"


# --- media, trimming, budgets -------------------------------------------------------------------------------------
def test_checklist_11_pending_media_merged_and_reset(llm_server, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("alpha")
    b = tmp_path / "b.txt"
    b.write_text("beta")
    llm_server.push({"content": "ok"})
    pending = [f" {a} ", {"path": str(b)}, str(b)]
    _, _, state = run_ref(Client(llm_server), {"prompt": "read", "media": [str(a)]},
                          vars={"_runtime": {"pending_media": pending}})
    assert state.status is RunStatus.COMPLETED, state.error
    assert sent(state)["media"] == [str(a), str(b)]  # de-duplicated; the keyless dict dropped
    assert state.vars["_runtime"]["pending_media"] == []


def _long_history(n=12):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "word " * 200}
            for i in range(n)] + [{"role": "user", "content": "last"}]


def test_checklist_12_input_trimming(llm_server):
    llm_server.push({"content": "a"}, {"content": "b"}, {"content": "c"})
    _, _, state = run_ref(Client(llm_server), {"messages": _long_history(), "max_input_tokens": 700})
    kept = sent(state)["messages"]
    assert 1 < len(kept) < 13 and kept[-1]["content"].endswith("last") and "message 11" in kept[-2]["content"]
    _, _, state = run_ref(Client(llm_server), {"messages": _long_history()},
                          vars={"_limits": {"max_input_tokens": 700}})
    assert len(sent(state)["messages"]) == len(kept)  # _limits when the payload has none
    _, _, state = run_ref(Client(llm_server), {"messages": _long_history(), "max_input_tokens": 700},
                          vars={"_runtime": {"disable_input_trimming": "false"}})  # Python-truthy string
    assert len(sent(state)["messages"]) == 13


@pytest.mark.parametrize("payload_extra, params, limits, expected", [
    ({"max_out_tokens": 77}, {}, {}, {"max_output_tokens": 77}),
    ({"max_output_tokens": 88, "max_out_tokens": 77}, {}, {}, {"max_output_tokens": 88}),
    ({"max_output_tokens": 88}, {"max_tokens": 50}, {}, {"max_tokens": 50}),
    ({"max_output_tokens": 88}, {"max_output_tokens": 60}, {}, {"max_output_tokens": 60}),
    ({}, {}, {"max_output_tokens": 1000}, {"max_output_tokens": 1000}),
    ({"max_output_tokens": 0, "max_out_tokens": 500}, {}, {"max_output_tokens": 1000}, {"max_output_tokens": 1000}),
])
def test_checklist_13_output_budget(llm_server, payload_extra, params, limits, expected):
    llm_server.push({"content": "a"})
    _, _, state = run_ref(Client(llm_server), {"prompt": "hi", "params": params, **payload_extra},
                          vars={"_limits": limits})
    got = sent(state)["params"]
    assert {k: got[k] for k in ("max_output_tokens", "max_tokens") if k in got} == expected
    sent_max = body(llm_server).get("max_tokens") if "max_output_tokens" in expected else None
    if sent_max is not None:
        assert sent_max == expected["max_output_tokens"]


def test_checklist_14_active_attachments_message_and_glyph_compression(llm_server, tmp_path):
    doc = tmp_path / "report.txt"
    doc.write_text("quarterly numbers")
    llm_server.push({"content": "ok"})
    _, _, state = run_ref(Client(llm_server), {"prompt": "summarise", "media": [str(doc)]})
    assert state.status is RunStatus.COMPLETED, state.error
    first = sent(state)["messages"][0]
    assert first["role"] == "system" and first["content"].startswith("Active attachments")
    assert "report.txt" in first["content"]
    assert sent(state)["params"]["glyph_compression"] == "never"
    assert body(llm_server)["messages"][0]["content"].startswith("Active attachments")


def test_checklist_15_stored_session_attachments_message(llm_server):
    store = InMemoryArtifactStore()
    for i in range(3):
        store.store(f"file {i}".encode(), content_type="text/plain", run_id="session_memory_sess-1",
                    tags={"kind": "attachment", "path": f"docs/f{i}.txt", "filename": f"f{i}.txt",
                          "session_id": "sess-1"})
    tools = [{"name": "open_attachment", "description": "Open an attachment",
              "parameters": {"type": "object", "properties": {"artifact_id": {"type": "string"}}}}]
    old = {"role": "system", "content": "Session attachments (old list)"}
    llm_server.push({"content": "ok"})
    _, _, state = run_ref(Client(llm_server), {"messages": [old, {"role": "user", "content": "hi"}], "tools": tools},
                          store=store)
    assert state.status is RunStatus.COMPLETED, state.error
    msgs = sent(state)["messages"]
    assert msgs[0]["content"].startswith("Stored session attachments") and len(msgs[0]["content"]) <= 4000
    assert "f2.txt" in msgs[0]["content"] and "open_attachment(" in msgs[0]["content"]
    assert [m for m in msgs if m["content"] == old["content"]] == []  # older injected messages removed
    assert [m["role"] for m in msgs] == ["system", "user"]


def test_checklist_16_artifact_media_materialised_then_removed(llm_server):
    store = InMemoryArtifactStore()
    meta = store.store(b"col\n1\n" * 50000, content_type="text/plain")  # too big to inline
    client = Client(llm_server)
    llm_server.push({"content": "ok"})
    _, _, state = run_ref(client, {"prompt": "look", "media": [
        {"$artifact": meta.artifact_id, "source_path": "/home/u/pics/My Notes!.txt"}]}, store=store)
    assert state.status is RunStatus.COMPLETED, state.error
    ((path, existed),) = client.media_seen[0]
    assert os.path.basename(path) == f"My_Notes___{meta.artifact_id[:8]}.txt" and existed
    assert os.path.basename(os.path.dirname(path)).startswith("abstractruntime_media_")
    assert not os.path.exists(os.path.dirname(path))  # the per-call directory is gone
    assert sent(state)["media"] == [{"$artifact": meta.artifact_id, "source_path": "/home/u/pics/My Notes!.txt"}]
    _, _, state = run_ref(client, {"prompt": "look", "media": [{"$artifact": "nope"}]}, store=store)
    assert state.status is RunStatus.FAILED and state.error.endswith("Artifact 'nope' not found")


def test_checklist_17_small_text_artifact_inlined(llm_server):
    store = InMemoryArtifactStore()
    meta = store.store(b"hello notes", content_type="text/plain")
    llm_server.push({"content": "ok"})
    client = Client(llm_server)
    _, _, state = run_ref(client, {"messages": [{"role": "user", "content": "read this"}],
                                   "media": [{"$artifact": meta.artifact_id, "filename": "notes.txt"}]}, store=store)
    assert state.status is RunStatus.COMPLETED, state.error
    user = [m for m in sent(state)["messages"] if m["role"] == "user"][-1]["content"]
    assert user.endswith("read this\n\n--- Content from notes.txt ---\nhello notes\n--- End of notes.txt ---")
    assert sent(state)["media"] == [] and client.media_seen == [[]]
    assert "hello notes" in [m for m in body(llm_server)["messages"] if m["role"] == "user"][-1]["content"]


# --- structured output --------------------------------------------------------------------------------------------
def test_checklist_18_field_map_response_model(llm_server):
    schema = normalize_response_schema({"choice": "which option", "score": 0})
    model = response_model_for_schema(schema, "Pick")
    assert model.__name__ == "Pick"
    assert {n: (f.annotation, f.is_required()) for n, f in model.model_fields.items()} == {
        "choice": (str, True), "score": (int, True)}
    llm_server.push({"json": {"choice": "b", "score": 3}})
    _, _, state = run_ref(Client(llm_server), {"prompt": "pick", "response_schema": {"choice": "which", "score": 0},
                                               "response_schema_name": "Pick"})
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["out"]["data"] == {"choice": "b", "score": 3}
    assert "Pick" in sent(state)["params"]["response_model"]
    fmt = body(llm_server)["response_format"]["json_schema"]["schema"]
    assert sorted(fmt["required"]) == ["choice", "score"]


def test_checklist_19_enum_is_enforced(llm_server):
    from pydantic import ValidationError

    schema = {"type": "object", "properties": {"color": {"enum": ["red", "blue"]}}, "required": ["color"]}
    model = response_model_for_schema(normalize_response_schema(schema))
    assert model(color="red").color == "red"
    with pytest.raises(ValidationError):
        model(color="green")
    llm_server.push(*[{"json": {"color": "green"}}] * 3)
    _, _, state = run_ref(Client(llm_server), {"prompt": "color?", "response_schema": schema})
    assert state.status is RunStatus.FAILED


def test_checklist_20_invalid_property_name_fails(llm_server):
    schema = {"type": "object", "properties": {"bad-name": {"type": "string"}}}
    _, _, state = run_ref(Client(llm_server), {"prompt": "x", "response_schema": schema})
    assert state.status is RunStatus.FAILED
    assert ": Invalid property name 'bad-name'. " in state.error
    assert llm_server.chat_requests == []


def test_checklist_21_data_parsed_from_json_text(llm_server):
    rt = create_remote_runtime(server_base_url=llm_server.root_url, model=MODEL, timeout_s=30)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    llm_server.push({"content": "Here you go:\n```json\n{\"city\": \"Paris\"}\n```"}, {"content": "no json here"})
    wf = flow({"prompt": "city?", "response_schema": schema})
    state = rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["out"]["data"] == {"city": "Paris"}
    wf = flow({"prompt": "city?", "response_schema": schema})
    state = rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.vars["out"]["data"] is None
    assert state.vars["out"]["metadata"]["_structured_output_parse_error"]


def test_checklist_22_structured_output_fallback(llm_server):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    llm_server.push(*[{"json": {"wrong": "shape"}}] * 6)  # never valid: AbstractCore raises a ValidationError
    _, _, state = run_ref(Client(llm_server), {"prompt": "n?", "response_schema": schema,
                                               "structured_output_fallback": True})
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.vars["out"]
    fallback = out["metadata"]["_structured_output_fallback"]
    assert fallback["used"] is True and "validation error" in fallback["error"]
    assert json.loads(out["content"]) == {"wrong": "shape"}  # the answer of the call without response_model
    assert "response_format" not in llm_server.chat_requests[-1]["body"]
    llm_server.push(*[{"json": {"wrong": "shape"}}] * 6)
    _, _, state = run_ref(Client(llm_server), {"prompt": "n?", "response_schema": schema})
    assert state.status is RunStatus.FAILED and "validation error" in state.error


# --- truncation contract ------------------------------------------------------------------------------------------
def _length(n):
    return [{"content": "cut", "finish_reason": "length"}] * n


def test_checklist_23_truncation_budgets(llm_server):
    llm_server.push(*_length(3))
    _, _, state = run_ref(Client(llm_server, caps={"max_output_tokens": 5000}), {"prompt": "long"})
    assert state.status is RunStatus.FAILED
    assert state.error.endswith(
        "LLM_CALL output was truncated (finish_reason=length). Attempted max_output_tokens: 4096, 5000. "
        "Increase max_output_tokens/max_out_tokens (or set allow_truncation=true).")
    assert [r["body"].get("max_tokens") for r in llm_server.chat_requests][1:] == [4096, 5000]


def test_checklist_24_allow_truncation(llm_server):
    llm_server.push(*_length(1))
    _, _, state = run_ref(Client(llm_server), {"prompt": "long", "allow_truncation": True})
    assert state.status is RunStatus.COMPLETED, state.error
    trunc = state.vars["out"]["metadata"]["_truncation"]
    assert trunc["resolved"] is False and len(trunc["attempts"]) == 1
    assert len(llm_server.chat_requests) == 1


def test_checklist_25_max_output_tokens_cap(llm_server):
    llm_server.push(*_length(2), {"content": "complete"})
    _, _, state = run_ref(Client(llm_server), {"prompt": "long", "max_output_tokens_cap": 3000},
                          vars={"_limits": {"max_output_tokens": 1000}})
    assert state.status is RunStatus.COMPLETED, state.error
    trunc = state.vars["out"]["metadata"]["_truncation"]
    assert [a["max_output_tokens"] for a in trunc["attempts"]] == [1000, 2000, 3000] and trunc["resolved"] is True
    assert [r["body"]["max_tokens"] for r in llm_server.chat_requests] == [1000, 2000, 3000]
    assert [a["max_output_tokens"] for a in sent(state)["truncation_attempts"]] == [1000, 2000, 3000]


# --- observability and context ------------------------------------------------------------------------------------
def test_checklist_26_observability_mirrors_client_kwargs(llm_server):
    store = InMemoryArtifactStore()
    meta = store.store(b"\x89PNG" + b"0" * 200_000, content_type="application/octet-stream")
    client = Client(llm_server)
    llm_server.push({"content": "ok"})
    payload = {"prompt": "hi", "system_prompt": "sys", "media": [{"$artifact": meta.artifact_id}],
               "params": {"temperature": 0.1}}
    _, run_id, state = run_ref(client, payload, store=store)
    assert state.status is RunStatus.COMPLETED, state.error
    snap = sent(state)
    assert set(snap) == {"prompt", "messages", "system_prompt", "media", "tools", "params",
                         "structured_output_fallback"}
    assert snap["prompt"].endswith("] hi") and snap["system_prompt"] == "sys"
    assert snap["media"] == [{"$artifact": meta.artifact_id}]  # the ref, not the temp path
    assert client.media_seen[0][0][0] != meta.artifact_id  # the client got a path
    assert snap["params"]["temperature"] == 0.1 and snap["params"]["trace_metadata"]["run_id"] == run_id
    json.dumps(state.vars["out"])  # JSON-safe


def test_checklist_27_include_context_appends_turns(llm_server):
    llm_server.push({"content": " the answer "})
    _, _, state = run_local(llm_server, {"prompt": "the question", "include_context": True})
    assert state.status is RunStatus.COMPLETED, state.error
    user, assistant = state.vars["context"]["messages"]
    assert user["role"] == "user" and re.fullmatch(HEADER + " the question", user["content"])
    assert assistant == {"role": "assistant", "content": "the answer", "metadata": {"kind": "llm_turn",
                                                                                    "node_id": "n1"}}
    assert user["metadata"] == {"kind": "llm_turn", "node_id": "n1"}


def test_checklist_28_structured_data_persisted_as_indented_json(llm_server):
    llm_server.push({"json": {"city": "Paris", "n": 2}})
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["city", "n"]}
    _, _, state = run_local(llm_server, {"prompt": "city?", "response_schema": schema, "use_context": "yes"})
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.vars["out"]
    assert out["data"] == {"city": "Paris", "n": 2}
    assistant = state.vars["context"]["messages"][-1]
    if not (isinstance(out["content"], str) and out["content"].strip()):
        assert assistant["content"] == json.dumps({"city": "Paris", "n": 2}, ensure_ascii=False, indent=2)
    else:  # the provider also returned the JSON text: the content is persisted
        assert assistant["content"] == out["content"].strip()
