"""The default file and system tools take the workspace policy the host sealed when the run started (issue 14,
item 1): a node that writes ``workspace_*`` variables, or a VisualFlow ``set_var``, cannot widen it, for every
path-taking tool; a ``paths`` string cannot smuggle a second path past the check."""

from __future__ import annotations

import pytest

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowRegistry, WorkflowSpec
from abstractruntime_abstractcore import MappingToolExecutor, attach
from abstractruntime_abstractcore.tool_effect import PATH_ARGUMENTS
from abstractruntime_inmemory.store import MemoryBackend

HOSTNAME = "/etc/hostname"


def _recording_tools(seen):
    def make(name):
        def tool(**kwargs):
            seen.append((name, kwargs))
            return f"{name} ran"
        return tool
    return MappingToolExecutor({name: make(name) for name in PATH_ARGUMENTS})


def _runtime(seen, **kwargs):
    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=[plugin], **kwargs)
    attach(rt, tools=_recording_tools(seen))
    return rt


def _escaping_calls():
    """One call per path-taking tool, each naming /etc/hostname (or /etc)."""
    calls = []
    for name, keys in PATH_ARGUMENTS.items():
        args = {key: ([HOSTNAME] if key == "paths" else ("/etc" if name in ("list_files", "search_files",
                                                                             "execute_command") else HOSTNAME))
                for key in keys}
        if name == "search_files":
            args["pattern"] = "x"
        if name == "execute_command":
            args["command"] = "true"
        calls.append({"name": name, "arguments": args})
    return calls


def _tool_flow(calls, write=None):
    def tamper(run, ctx):
        if write is not None:
            write(run.vars)
        return StepPlan(node_id="tamper", next_node="call")

    return WorkflowSpec(workflow_id="ws_seal", entry_node="tamper", nodes={
        "tamper": tamper,
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": calls},
                                                                       "res"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })


PYTHON_WRITES = {
    "mode": lambda v: v.update(workspace_access_mode="all_except_ignored"),
    "root": lambda v: v.update(workspace_root="/"),
    "allowed": lambda v: v.update(workspace_access_mode="workspace_or_allowed", workspace_allowed_paths=["/etc"]),
    "ignored_cleared": lambda v: v.update(workspace_ignored_paths=[]),
}


@pytest.mark.parametrize("write", list(PYTHON_WRITES.values()), ids=list(PYTHON_WRITES))
def test_every_path_tool_is_refused_after_a_node_writes_workspace_vars(tmp_path, write):
    seen: list = []
    rt = _runtime(seen)
    flow = _tool_flow(_escaping_calls(), write)
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow, vars={
        "workspace_root": str(tmp_path), "workspace_ignored_paths": ["secret"]}))
    assert state.status is RunStatus.COMPLETED, state.error
    results = state.output["res"]["results"]
    assert len(results) == len(PATH_ARGUMENTS) and seen == []
    for result in results:
        assert result["success"] is False and "was changed after the run started" in result["error"], result


def test_without_tampering_the_same_calls_are_refused_as_outside_the_workspace(tmp_path):
    seen: list = []
    rt = _runtime(seen)
    flow = _tool_flow(_escaping_calls())
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow, vars={"workspace_root": str(tmp_path)}))
    results = state.output["res"]["results"]
    assert seen == [] and all("is outside this run's workspace" in r["error"] for r in results), results


@pytest.mark.parametrize("paths", ["docs|/etc", "docs\n/etc/hostname", "docs,/etc", '["docs", "/etc"]'])
@pytest.mark.parametrize("tool", ["skim_files", "skim_folders"])
def test_a_paths_string_is_split_before_it_is_checked(tmp_path, tool, paths):
    seen: list = []
    rt = _runtime(seen)
    flow = _tool_flow([{"name": tool, "arguments": {"paths": paths}}])
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow, vars={"workspace_root": str(tmp_path)}))
    result = state.output["res"]["results"][0]
    assert result["success"] is False and "is outside this run's workspace" in result["error"] and seen == []
    flow = _tool_flow([{"name": tool, "arguments": {"paths": "docs|notes"}}])
    rt.tick(workflow=flow, run_id=rt.start(workflow=flow, vars={"workspace_root": str(tmp_path)}))
    assert seen == [(tool, {"paths": [str(tmp_path / "docs"), str(tmp_path / "notes")]})]


@pytest.mark.parametrize("name, value", [("workspace_access_mode", "all_except_ignored"), ("workspace_root", "/")])
def test_a_visualflow_set_var_cannot_widen_the_tools_workspace(tmp_path, name, value):
    from abstractruntime_visualflow import compile_visualflow

    seen: list = []
    rt = _runtime(seen, workflow_registry=WorkflowRegistry())
    nodes = [{"id": "s", "type": "on_flow_start", "data": {"outputs": [{"id": "exec-out", "type": "execution"}]}},
             {"id": "v", "type": "set_var", "data": {
                 "inputs": [{"id": "exec-in", "type": "execution"}, {"id": "name", "type": "string"},
                            {"id": "value", "type": "any"}],
                 "outputs": [{"id": "exec-out", "type": "execution"}],
                 "pinDefaults": {"name": name, "value": value}}},
             {"id": "t", "type": "tool_calls", "data": {
                 "inputs": [{"id": "exec-in", "type": "execution"}, {"id": "tool_calls", "type": "array"}],
                 "outputs": [{"id": "exec-out", "type": "execution"}, {"id": "results", "type": "array"}],
                 "pinDefaults": {"tool_calls": [{"name": "read_file", "arguments": {"file_path": HOSTNAME}}]}}},
             {"id": "e", "type": "on_flow_end", "data": {"inputs": [{"id": "exec-in", "type": "execution"}]}}]
    edges = [{"source": a, "sourceHandle": "exec-out", "target": b, "targetHandle": "exec-in"}
             for a, b in (("s", "v"), ("v", "t"), ("t", "e"))]
    spec = compile_visualflow({"id": "vf_tools", "nodes": nodes, "edges": edges}, runtime=rt)
    rt.workflow_registry.register(spec)
    state = rt.tick(workflow=spec, run_id=rt.start(workflow=spec, vars={"workspace_root": str(tmp_path)}))
    assert state.status is RunStatus.COMPLETED and state.output["success"] is False
    assert state.output["node"] == "v" and "is set by the host when the run starts" in state.output["error"]
    assert seen == []
