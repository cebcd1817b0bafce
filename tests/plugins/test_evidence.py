"""Evidence capture: a wrapper around TOOL_CALLS execution, artifact-backed records, never fails the run."""

from __future__ import annotations

from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_artifacts.store import InMemoryArtifactStore
from abstractruntime_inmemory.store import MemoryBackend


def fake_tools(run, effect, next_node):
    results = []
    for call in effect.payload["tool_calls"]:
        name = call["name"]
        output = {
            "fetch_url": {"url": call["arguments"].get("url"), "raw_text": "<html>big page</html>",
                          "normalized_text": "big page"},
            "execute_command": {"stdout": "hello\n", "stderr": "", "return_code": 0},
            "web_search": [{"title": "AbstractRuntime", "url": "https://example.invalid"}],
            "add": 3,
        }[name]
        results.append({"call_id": call["call_id"], "name": name, "success": True, "output": output, "error": None})
    return EffectOutcome.completed({"mode": "executed", "results": results})


CALLS = [
    {"call_id": "c1", "name": "fetch_url", "arguments": {"url": "https://example.invalid/page"}},
    {"call_id": "c2", "name": "execute_command", "arguments": {"command": "echo hello"}},
    {"call_id": "c3", "name": "web_search", "arguments": {"query": "durable workflows"}},
    {"call_id": "c4", "name": "add", "arguments": {"a": 1, "b": 2}},
]

FLOW = WorkflowSpec(workflow_id="tools", entry_node="call", nodes={
    "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": CALLS},
                                                                    "tools"), next_node="done"),
    "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"n": len(run.vars["tools"]["results"])}),
})


def runtime(artifact_store, **kw):
    b = MemoryBackend()
    return Runtime(run_store=b.run_store, ledger_store=b.ledger_store, artifact_store=artifact_store,
                   effect_handlers={EffectType.TOOL_CALLS: fake_tools}, **kw)


def test_evidence_for_configured_tools_is_recorded_with_artifact_refs():
    store = InMemoryArtifactStore()
    rt = runtime(store)
    run_id = rt.start(workflow=FLOW)
    state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.COMPLETED
    spans = rt.list_evidence(run_id)
    assert [s["tool_name"] for s in spans] == ["fetch_url", "execute_command", "web_search"]
    results = {r["call_id"]: r for r in state.vars["tools"]["results"]}
    assert "evidence_id" not in (results["c4"].get("meta") or {})  # not a configured tool
    fetch = results["c1"]
    record = rt.load_evidence(fetch["meta"]["evidence_id"])
    assert record["tool_name"] == "fetch_url" and record["node_id"] == "call" and record["run_id"] == run_id
    assert record["arguments"] == {"url": "https://example.invalid/page"}
    raw_ref = record["artifacts"]["raw_text"]
    assert fetch["output"]["raw_text"] == raw_ref  # the result in vars carries the ref, not the page
    assert store.load(raw_ref["$artifact"]).content == b"<html>big page</html>"
    stdout_ref = rt.load_evidence(results["c2"]["meta"]["evidence_id"])["artifacts"]["stdout"]
    assert store.load_text(stdout_ref["$artifact"]) == "hello\n"
    search_ref = results["c3"]["output"]
    assert store.load_json(search_ref["$artifact"])[0]["title"] == "AbstractRuntime"


def test_tool_names_are_configurable():
    rt = runtime(InMemoryArtifactStore(), settings={"plugin_options": {"evidence": {"tool_names": ["add"]}}})
    run_id = rt.start(workflow=FLOW)
    rt.tick(workflow=FLOW, run_id=run_id)
    assert [s["tool_name"] for s in rt.list_evidence(run_id)] == ["add"]


class BrokenStore(InMemoryArtifactStore):
    def store(self, *args, **kwargs):
        raise OSError("disk full")


def test_a_failing_recorder_adds_a_warning_and_never_fails_the_run():
    rt = runtime(BrokenStore())
    run_id = rt.start(workflow=FLOW)
    state = rt.tick(workflow=FLOW, run_id=run_id)
    assert state.status is RunStatus.COMPLETED and state.output == {"n": 4}
    warnings = state.vars["_runtime"]["evidence_warnings"]
    assert len(warnings) == 1 and "disk full" in warnings[0]["error"] and warnings[0]["node_id"] == "call"
    assert rt.list_evidence(run_id) == []


def test_default_store_artifacts_are_used_when_none_is_given(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/db"},
                             effect_handlers={EffectType.TOOL_CALLS: fake_tools}) as rt:
        run_id = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=run_id)
        spans = rt.list_evidence(run_id)
        assert len(spans) == 3
        assert rt.load_evidence(spans[0]["evidence_id"])["tool_name"] == "fetch_url"
    assert any((tmp_path / "db").rglob("*.meta"))  # files beside the LMDB store


def test_tool_results_delivered_by_resume_get_evidence():
    from abstractruntime import WaitReason, WaitState

    def passthrough(run, effect, next_node):
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.EVENT, wait_key="tools:1", resume_to_node=next_node, result_key="tools",
            details={"mode": "passthrough", "tool_calls": effect.payload["tool_calls"]}))

    store = InMemoryArtifactStore()
    b = MemoryBackend()
    rt = Runtime(run_store=b.run_store, ledger_store=b.ledger_store, artifact_store=store,
                 effect_handlers={EffectType.TOOL_CALLS: passthrough})
    run_id = rt.start(workflow=FLOW)
    assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.WAITING
    host_results = fake_tools(None, Effect(EffectType.TOOL_CALLS, {"tool_calls": CALLS}), None).result
    state = rt.resume(workflow=FLOW, run_id=run_id, wait_key="tools:1", payload=host_results)
    assert state.status is RunStatus.COMPLETED
    assert [s["tool_name"] for s in rt.list_evidence(run_id)] == ["fetch_url", "execute_command", "web_search"]
    fetch = next(r for r in state.vars["tools"]["results"] if r["call_id"] == "c1")
    assert rt.load_evidence(fetch["meta"]["evidence_id"])["node_id"] == "call"
    # the resume row carries the refs, not the page
    resume_row = next(r for r in rt.get_ledger(run_id) if (r["effect"] or {}).get("type") == "resume")
    assert "$artifact" in str(resume_row["effect"]["payload"]["payload"]["results"][0]["output"]["raw_text"])
