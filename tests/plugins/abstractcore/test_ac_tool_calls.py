"""TOOL_CALLS: executors (mapping, passthrough, approval), allowlists, error results, durable waits, the journal."""

from __future__ import annotations

import pytest

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime_abstractcore import (
    ApprovalToolExecutor,
    MappingToolExecutor,
    MemoryToolResultJournal,
    PassthroughToolExecutor,
    attach,
)
from abstractruntime_abstractcore.handlers import tool_calls as tool_calls_handler
from abstractruntime_inmemory.store import MemoryBackend

from ac_flows import LoggedTools


def tools_flow(calls, *, allowed=None, wait_key=None):
    payload = {"tool_calls": calls}
    if allowed is not None:
        payload["allowed_tools"] = allowed
    if wait_key:
        payload["wait_key"] = wait_key
    return WorkflowSpec(workflow_id="tools", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, payload, "res"),
                                          next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })


def memory_runtime(tools):
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=[plugin])
    attach(rt, tools=tools)
    return rt


def store_runtime(url, tools):
    rt = Runtime.from_config({"store": url}, plugins=[plugin])
    attach(rt, tools=tools)
    return rt


@pytest.fixture
def logged(tmp_path):
    return LoggedTools(str(tmp_path / "executions.log"))


def boom():
    raise RuntimeError("kaput")


def test_mapping_executor_results_errors_and_allowlist(logged):
    tools = MappingToolExecutor({"add": logged.add, "boom": boom, "grumpy": lambda: "Error: not today",
                                 "secret": lambda: "should never run"})
    calls = [
        {"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "prov-1"},
        {"name": "add", "arguments": '{"A": 5, "b": 5, "extra": 1}'},  # JSON string, case alias, unexpected kwarg
        {"name": "nope", "arguments": {}},
        {"name": "secret", "arguments": {"x": "private"}},
        "not a call",
        {"arguments": {}},
        {"name": "boom", "arguments": {}},
        {"name": "grumpy"},
    ]
    rt = memory_runtime(tools)
    flow = tools_flow(calls, allowed=["grumpy", "boom", "nope", "add"])
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    res = state.output["res"]
    assert res["mode"] == "executed" and len(res["results"]) == len(calls)
    key = rt.get_ledger(run_id)[0]["idempotency_key"]
    r = res["results"]
    assert r[0] == {"call_id": "prov-1", "runtime_call_id": f"rtcall_{key}_1", "name": "add", "success": True,
                    "output": 3, "error": None}
    assert r[1]["output"] == 10 and r[1]["call_id"] == f"rtcall_{key}_2"
    assert not r[2]["success"] and r[2]["error"].startswith("Unknown tool 'nope'")
    assert not r[3]["success"] and "not allowed" in r[3]["error"] and r[3]["output"] is None
    assert not r[4]["success"] and "expected an object" in r[4]["error"]
    assert not r[5]["success"] and r[5]["error"] == "Tool call missing a valid name"
    assert not r[6]["success"] and r[6]["error"] == "RuntimeError: kaput"
    assert not r[7]["success"] and r[7]["error"] == "not today"  # the reference strips the prefix
    assert [e["args"] for e in logged.executions()] == [{"a": 1, "b": 2}, {"a": 5, "b": 5}]


def test_failures_of_the_effect_itself():
    rt = memory_runtime(None)
    flow = tools_flow([{"name": "x"}])
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    assert state.status is RunStatus.FAILED and "has no tool executor" in state.error
    rt = memory_runtime(MappingToolExecutor({}))
    bad = WorkflowSpec(workflow_id="bad", entry_node="a", nodes={"a": lambda run, ctx: StepPlan(
        node_id="a", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": "add"}), next_node=None)})
    state = rt.tick(workflow=bad, run_id=rt.start(workflow=bad))
    assert state.status is RunStatus.FAILED
    assert state.error.endswith("tool_calls requires payload.tool_calls (list)")


def test_passthrough_waits_and_the_resume_merges_blocked_calls():
    rt = memory_runtime(PassthroughToolExecutor())
    calls = [{"name": "forbidden", "arguments": {"password": "hunter2"}}, {"name": "search", "arguments": {"q": 1}}]
    flow = tools_flow(calls, allowed=["search"])
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.WAITING
    wait = state.waiting
    assert wait.reason is WaitReason.EVENT and wait.wait_key == f"tool_calls:{run_id}:call"
    assert wait.resume_to_node == "done" and wait.result_key == "res"
    details = wait.details
    assert details["mode"] == "passthrough"
    assert [c["name"] for c in details["tool_calls"]] == ["search"]
    assert details["original_call_count"] == 2 and set(details["blocked_by_index"]) == {"0"}
    assert "hunter2" not in str(details["tool_calls"])  # a disallowed call's arguments are not handed out
    host = {"mode": "executed", "results": [{"call_id": details["tool_calls"][0]["call_id"], "name": "search",
                                             "success": True, "output": "found", "error": None}]}
    state = rt.resume(workflow=flow, run_id=run_id, wait_key=wait.wait_key, payload=host)
    assert state.status is RunStatus.COMPLETED
    results = state.output["res"]["results"]
    assert [x["name"] for x in results] == ["forbidden", "search"]
    assert not results[0]["success"] and results[1]["output"] == "found"


@pytest.mark.parametrize("scheme", ["lmdb", "sqlite"])
def test_passthrough_wait_survives_a_restart(tmp_path, scheme):
    url = f"lmdb://{tmp_path}/db" if scheme == "lmdb" else f"sqlite://{tmp_path}/db.sqlite"
    flow = tools_flow([{"name": "search", "arguments": {"q": "x"}, "id": "c1"}])
    with store_runtime(url, PassthroughToolExecutor()) as rt:
        run_id = rt.start(workflow=flow)
        wait = rt.tick(workflow=flow, run_id=run_id).waiting
    with store_runtime(url, PassthroughToolExecutor()) as rt:  # a new process would do exactly this
        state = rt.get_state(run_id)
        assert state.status is RunStatus.WAITING and state.waiting.details == wait.details
        state = rt.resume(workflow=flow, run_id=run_id, wait_key=wait.wait_key, payload={
            "mode": "executed", "results": [{"call_id": "c1", "name": "search", "success": True, "output": 1}]})
        assert state.status is RunStatus.COMPLETED and state.output["res"]["results"][0]["output"] == 1


def test_approval_approve_one_deny_one_and_auto_approve(logged):
    tools = ApprovalToolExecutor(MappingToolExecutor({"add": logged.add, "peek": lambda: "ok"}),
                                 auto_approve=["peek"])
    rt = memory_runtime(tools)
    calls = [{"name": "add", "arguments": {"a": 1, "b": 1}, "id": "c1"}, {"name": "peek", "id": "c2"},
             {"name": "add", "arguments": {"a": 40, "b": 2}, "id": "c3"}]
    flow = tools_flow(calls)
    run_id = rt.start(workflow=flow)
    state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.WAITING
    wait = state.waiting
    assert wait.reason is WaitReason.USER and wait.choices == ["approve", "deny"]
    assert "add" in wait.prompt and wait.details["mode"] == "approval_required"
    assert [c["call_id"] for c in wait.details["tool_calls"]] == ["c1", "c3"]
    assert wait.details["pre_results_by_index"]["1"]["output"] == "ok"  # auto-approved ran already
    assert logged.executions() == []
    state = rt.resolve_tool_approval(workflow=flow, run_id=run_id, approver="alice",
                                     decisions={"c1": {"approved": False, "reason": "no side effects today"},
                                                "c3": "approve"})
    assert state.status is RunStatus.COMPLETED, state.error
    results = state.output["res"]["results"]
    assert [r["call_id"] for r in results] == ["c1", "c2", "c3"]
    assert results[0]["success"] is False
    assert results[0]["error"] == "Tool call denied by alice: no side effects today"
    assert results[1]["output"] == "ok" and results[2]["output"] == 42
    assert [e["args"] for e in logged.executions()] == [{"a": 40, "b": 2}]
    resume_row = next(r for r in rt.get_ledger(run_id) if r["effect"] and r["effect"]["type"] == "resume")
    approvals = resume_row["effect"]["payload"]["payload"]["approvals"]
    assert [(a["call_id"], a["approved"], a["approver"]) for a in approvals] == [("c1", False, "alice"),
                                                                                  ("c3", True, "alice")]


def test_approval_wait_survives_a_restart_and_needs_explicit_decisions(tmp_path, logged):
    url = f"lmdb://{tmp_path}/db"
    flow = tools_flow([{"name": "add", "arguments": {"a": 2, "b": 2}, "id": "c1"}])
    with store_runtime(url, ApprovalToolExecutor(MappingToolExecutor({"add": logged.add}))) as rt:
        run_id = rt.start(workflow=flow)
        assert rt.tick(workflow=flow, run_id=run_id).status is RunStatus.WAITING
    with store_runtime(url, ApprovalToolExecutor(MappingToolExecutor({"add": logged.add}))) as rt:
        with pytest.raises(ValueError, match="No decision"):
            rt.resolve_tool_approval(workflow=flow, run_id=run_id, decisions={"other": True})
        wait = rt.get_state(run_id).waiting
        with pytest.raises(ValueError, match="resolve_tool_approval"):  # resume() cannot run approved calls
            rt.resume(workflow=flow, run_id=run_id, wait_key=wait.wait_key, payload={"approved": True})
        assert rt.get_state(run_id).status is RunStatus.WAITING
        state = rt.resolve_tool_approval(workflow=flow, run_id=run_id, decisions=True)
        assert state.status is RunStatus.COMPLETED and state.output["res"]["results"][0]["output"] == 4
    assert len(logged.executions()) == 1


def test_deny_all_through_plain_resume(logged):
    rt = memory_runtime(ApprovalToolExecutor(MappingToolExecutor({"add": logged.add})))
    flow = tools_flow([{"name": "add", "arguments": {"a": 1, "b": 2}}])
    run_id = rt.start(workflow=flow)
    wait = rt.tick(workflow=flow, run_id=run_id).waiting
    state = rt.resume(workflow=flow, run_id=run_id, wait_key=wait.wait_key,
                      payload={"approved": False, "reason": "nope", "approver": "bob"})
    assert state.status is RunStatus.COMPLETED
    (result,) = state.output["res"]["results"]
    assert result["success"] is False and result["error"] == "Tool call denied by bob: nope"
    assert logged.executions() == []


class _Call:
    """A minimal EffectCall stand-in to re-run one step under the same key (what the kernel does after a crash)."""

    def __init__(self, effect, key="k" * 32):
        from abstractruntime.models import RunState

        self.run = RunState.new(workflow_id="w", entry_node="call")
        self.effect = effect
        self.node_id = "call"
        self.default_next_node = "done"
        self.idempotency_key = key
        self.attempt = 1
        self.runtime = None


def test_journal_serves_completed_calls_when_a_step_is_re_executed(logged):
    journal = MemoryToolResultJournal()
    effect = Effect(EffectType.TOOL_CALLS, {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}},
                                                           {"name": "add", "arguments": {"a": 3, "b": 4}}]})
    first = tool_calls_handler(_Call(effect), MappingToolExecutor({"add": logged.add}), journal=journal)
    again = tool_calls_handler(_Call(effect), MappingToolExecutor({"add": logged.add}), journal=journal)
    assert first.result == again.result
    assert len(logged.executions()) == 2  # not 4
    other_key = tool_calls_handler(_Call(effect, key="z" * 32), MappingToolExecutor({"add": logged.add}),
                                   journal=journal)
    assert other_key.status == "completed" and len(logged.executions()) == 4  # a new step is a new execution


def test_from_tools_names_and_duplicates():
    def alpha():
        return 1

    ex = MappingToolExecutor.from_tools([alpha])
    assert ex.tool_names == ["alpha"]
    with pytest.raises(ValueError, match="Duplicate"):
        MappingToolExecutor.from_tools([alpha, alpha])


def test_timeouts_are_reported_as_error_results():
    import time

    ex = MappingToolExecutor({"slow": lambda: time.sleep(2) or "late"}, timeout_s=0.2)
    (result,) = ex.execute(tool_calls=[{"name": "slow", "arguments": {}}])["results"]
    assert result["success"] is False and "timed out" in result["error"]


def test_tool_calls_reissued_with_drifting_provider_ids_after_a_crash_do_not_run_again(logged):
    """The step is re-executed after a crash (reservation committed, outcome lost) and the node re-derives its calls
    the way an LLM re-run would: new provider ids, arguments as a JSON string. The key is the same (spec §6
    normalisation), so the journalled result is served and the tool does not run twice."""
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=[plugin])
    attach(rt, tools=MappingToolExecutor({"add": logged.add}))
    issued = iter([{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "call_abc"},
                   {"name": " add", "arguments": '{"a": 1, "b": 2}', "id": "call_xyz"}])
    flow = WorkflowSpec(workflow_id="drift", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(
            EffectType.TOOL_CALLS, {"tool_calls": [next(issued)], "allowed_tools": ["add"]}, "res"),
            next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })
    run_id = rt.start(workflow=flow)
    commits = []

    def crash_on_second_commit(point):
        commits.append(point)
        if len(commits) == 2:
            raise OSError("power loss")

    backend.fault_injector = crash_on_second_commit
    with pytest.raises(OSError):
        rt.tick(workflow=flow, run_id=run_id)
    backend.fault_injector = None
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started"]

    state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.COMPLETED, state.error
    assert len(logged.executions()) == 1
    (result,) = state.output["res"]["results"]
    assert result["output"] == 3 and result["call_id"] == "call_abc"  # served from the journal
    rows = [r for r in rt.get_ledger(run_id) if r["node_id"] == "call"]
    assert [r["status"] for r in rows] == ["started", "completed"] and rows[0]["step_id"] == rows[1]["step_id"]
