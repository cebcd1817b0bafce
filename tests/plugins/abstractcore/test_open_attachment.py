"""The runtime-owned tool ``open_attachment``: session scope, text/binary output, errors as results, mixing with
executor calls (executing, passthrough, approval), the listed spec."""

from __future__ import annotations

import importlib.util

import pytest

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_abstractcore import ApprovalToolExecutor, MappingToolExecutor, PassthroughToolExecutor, attach
from abstractruntime_abstractcore.handlers import build_effect_handlers
from abstractruntime_artifacts import InMemoryArtifactStore
from abstractruntime_inmemory.store import MemoryBackend

TEXT = "line one\nline two\n" * 10
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def flow(calls):
    return WorkflowSpec(workflow_id="attach", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": calls},
                                                                        "res"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })


def opening(artifact_id="", **more):
    return {"name": "open_attachment", "arguments": {"artifact_id": artifact_id, **more}}


class Session:
    """A runtime with an in-memory artifact store and one run of session ``s1`` (not yet ticked)."""

    def __init__(self, tools=None, calls=(), *, artifact_store=True, **start):
        backend = MemoryBackend()
        self.store = InMemoryArtifactStore() if artifact_store else None
        self.rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store,
                          artifact_store=self.store, plugins=[plugin])
        attach(self.rt, tools=tools)
        self.calls = calls if isinstance(calls, list) else list(calls)
        self.flow = flow(self.calls)
        self.run_id = self.rt.start(workflow=self.flow, session_id=start.pop("session_id", "s1"), **start)

    def add(self, content, content_type="text/plain", *, run_id="<self>", **tags):
        run_id = self.run_id if run_id == "<self>" else run_id
        return self.store.store(content, content_type=content_type, run_id=run_id, tags=tags).artifact_id

    def tick(self):
        state = self.rt.tick(workflow=self.flow, run_id=self.run_id)
        return state, (state.output or {}).get("res")


def test_text_and_binary_attachments_mixed_with_an_executor_call_in_order():
    calls = []
    s = Session(MappingToolExecutor({"add": lambda a, b: a + b}), calls)
    text_id = s.add(TEXT.encode(), "text/markdown; charset=utf-8", filename="notes.md")
    png_id = s.add(PNG, "image/png", filename="chart.png")
    json_id = s.add(b'{"k": 1}', "application/json")
    calls += [opening(text_id, max_chars=10), {"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "c2"},
              opening(png_id), {"name": "open_attachment", "arguments": '{"filename": "NOTES.md"}'}, opening(json_id)]
    state, res = s.tick()
    assert state.status is RunStatus.COMPLETED, state.error
    r = res["results"]
    assert [x["name"] for x in r] == ["open_attachment", "add", "open_attachment", "open_attachment",
                                      "open_attachment"]
    assert all(x["success"] for x in r) and r[1]["output"] == 3 and r[1]["call_id"] == "c2"
    first = r[0]["output"]  # the reference's output: a bounded, line-numbered rendering
    assert (first["artifact_id"], first["handle"], first["content_type"], first["size_bytes"], first["truncated"]) \
        == (text_id, "notes.md", "text/markdown; charset=utf-8", len(TEXT), True)
    assert first["rendered"].startswith(f"Attachment: notes.md (id={text_id}, lines 1-")
    assert r[0]["runtime_call_id"].startswith("rtcall_") and r[0]["call_id"] == r[0]["runtime_call_id"]
    binary = r[2]["output"]
    assert "content_text" not in binary and binary["size_bytes"] == len(PNG) and binary["handle"] == "chart.png"
    assert binary["media"] == [{"$artifact": png_id, "filename": "chart.png", "content_type": "image/png"}]
    assert "binary/media attachment" in binary["rendered"]
    assert r[3]["output"]["artifact_id"] == text_id  # by file name (case-insensitive)
    assert r[3]["output"]["content_text"] == TEXT.rstrip("\n") and r[3]["output"]["truncated"] is False
    assert r[4]["output"]["content_text"] == '{"k": 1}' and r[4]["output"]["handle"] == ""
    assert state.vars["_runtime"]["pending_media"] == binary["media"]  # for the next LLM call


def test_errors_are_results_and_the_run_completes():
    calls = []
    s = Session(MappingToolExecutor({}), calls)
    other = s.add(b"secret", run_id="someone-elses-run", filename="secret.txt")
    other_session = s.add(b"theirs", run_id=None, kind="attachment", session_id="s2")
    calls += [opening("nope"), opening(other), opening(other_session), opening(),
              {"name": "open_attachment", "arguments": {"filename": "secret.txt"}}, opening("../../etc/passwd")]
    state, res = s.tick()
    assert state.status is RunStatus.COMPLETED, state.error
    errors = [x["error"] for x in res["results"]]
    assert errors == ["attachment not found", "attachment not found", "attachment not found",
                      "missing artifact_id/handle", "attachment not found", "attachment not found"]
    assert not any(x["success"] for x in res["results"])
    assert all(x["output"]["rendered"].startswith("Error: ") for x in res["results"])


def test_the_runtimes_own_artifacts_of_the_run_are_not_attachments():
    calls = []
    s = Session(MappingToolExecutor({}), calls)
    internal = [s.add(b'{"span": {}}', "application/json", kind="memory_span", scope="run"),
                s.add(b'{"r": 1}', "application/json", kind="tool_result", idempotency_key="k"),
                s.add(b"big value", source="run_store_offload", path="vars.x", kind="text")]
    mine = s.add(b"user file", kind="report", filename="report.txt")
    calls += [opening(a) for a in internal] + [opening(mine)]
    state, res = s.tick()
    r = res["results"]
    assert [x["success"] for x in r] == [False, False, False, True]
    assert all(x["error"] == "attachment not found" for x in r[:3])
    assert r[3]["output"]["content_text"] == "user file"


def test_session_scope_tags_context_references_and_ancestor_runs():
    s = Session(MappingToolExecutor({}))
    earlier_turn = s.add(b"from turn 1", run_id="turn-1", kind="attachment", session_id="s1")
    referenced = s.add(b"# doc", "text/markdown", run_id=None)
    parent_file = s.add(b"parent's", run_id=s.run_id)
    child_calls = [opening(earlier_turn), {"name": "open_attachment", "arguments": {"filename": "doc.md"}},
                   opening(parent_file)]
    child_flow = flow(child_calls)
    child = s.rt.start(workflow=child_flow, parent_run_id=s.run_id,
                       vars={"context": {"attachments": [{"$artifact": referenced, "filename": "doc.md"},
                                                         "/a/media/path.png"]}})
    state = s.rt.tick(workflow=child_flow, run_id=child)
    r = state.output["res"]["results"]
    assert [x["success"] for x in r] == [True, True, True], [x["error"] for x in r]
    assert r[0]["output"]["content_text"] == "from turn 1"  # tagged for the session (session id found on the parent)
    assert r[1]["output"]["artifact_id"] == referenced and r[1]["output"]["handle"] == "doc.md"
    assert r[2]["output"]["content_text"] == "parent's"  # the parent run is the session root


def test_passthrough_waits_only_for_the_other_calls_and_the_resume_merges_in_order():
    calls = []
    s = Session(PassthroughToolExecutor(), calls)
    text_id = s.add(b"hello")
    calls += [{"name": "search", "arguments": {"q": 1}, "id": "c1"}, opening(text_id)]
    state, _ = s.tick()
    assert state.status is RunStatus.WAITING
    details = state.waiting.details
    assert [c["name"] for c in details["tool_calls"]] == ["search"]
    assert details["pre_results_by_index"]["1"]["output"]["content_text"] == "hello"
    state = s.rt.resume(workflow=s.flow, run_id=s.run_id, wait_key=state.waiting.wait_key, payload={
        "mode": "executed", "results": [{"call_id": "c1", "name": "search", "success": True, "output": "found"}]})
    assert state.status is RunStatus.COMPLETED
    results = state.output["res"]["results"]
    assert [x["name"] for x in results] == ["search", "open_attachment"]
    assert results[0]["output"] == "found" and results[1]["output"]["content_text"] == "hello"


@pytest.mark.parametrize("tools", [PassthroughToolExecutor(), ApprovalToolExecutor(MappingToolExecutor({})), None])
def test_only_runtime_owned_calls_never_wait_and_need_no_executor(tools):
    calls = []
    s = Session(tools, calls)
    calls.append(opening(s.add(b"hi")))
    state, res = s.tick()
    assert state.status is RunStatus.COMPLETED, state.error
    assert res["results"][0]["output"]["content_text"] == "hi"


def test_without_an_artifact_store_the_call_is_an_error_result():
    s = Session(MappingToolExecutor({}), [opening("abc")], artifact_store=False)
    state, res = s.tick()
    assert state.status is RunStatus.COMPLETED
    assert res["results"][0]["error"] == "ArtifactStore is not available"


def test_reference_style_handlers_read_the_given_artifact_store():
    store = InMemoryArtifactStore()
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store,
                 effect_handlers=build_effect_handlers(llm=None, tools=MappingToolExecutor({}), artifact_store=store,
                                                       run_store=backend.run_store))
    calls = []
    f = flow(calls)
    run_id = rt.start(workflow=f)
    calls.append(opening(store.store(b"legacy", content_type="text/plain", run_id=run_id).artifact_id))
    state = rt.tick(workflow=f, run_id=run_id)
    assert state.output["res"]["results"][0]["output"]["content_text"] == "legacy"


@pytest.mark.skipif(importlib.util.find_spec("abstractcore") is None, reason="abstractcore is not installed")
def test_the_spec_is_listed_with_the_default_tools():
    from abstractruntime_abstractcore.default_tools import list_default_tool_specs

    specs = list_default_tool_specs(["web"])
    spec = specs[-1]
    assert spec["name"] == "open_attachment" and spec["toolset"] == "files"
    assert set(spec["parameters"]["properties"]) == {"artifact_id", "handle", "expected_sha256", "start_line",
                                                    "end_line", "max_chars"}
    assert spec["parameters"]["properties"]["max_chars"]["default"] == 8000
    spec["parameters"]["properties"].clear()  # callers get a copy
    assert list_default_tool_specs(["web"])[-1]["parameters"]["properties"]
