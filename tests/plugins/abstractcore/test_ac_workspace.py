"""The run's workspace path policy on TOOL_CALLS (spec §15.3): path arguments of the default file and system tools
are resolved against ``workspace_root`` and refused outside the workspace, as error results (the tool never runs)."""

from __future__ import annotations

import os

import abstractruntime_abstractcore as plugin
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_abstractcore import MappingToolExecutor, attach
from abstractruntime_inmemory.store import MemoryBackend


def run_tools(calls, vars, seen):
    def read_file(file_path, **kw):
        seen.append(("read_file", file_path))
        return "text"

    def list_files(directory_path=".", **kw):
        seen.append(("list_files", directory_path))
        return []

    def skim_files(paths, **kw):
        seen.append(("skim_files", paths))
        return "skimmed"

    def add(a, b):
        seen.append(("add", a + b))
        return a + b

    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store, plugins=[plugin])
    attach(rt, tools=MappingToolExecutor({"read_file": read_file, "list_files": list_files,
                                          "skim_files": skim_files, "add": add}))
    flow = WorkflowSpec(workflow_id="ws", entry_node="call", nodes={
        "call": lambda run, ctx: StepPlan(node_id="call", effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": calls},
                                                                       "res"), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"res": run.vars.get("res")}),
    })
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow, vars=vars))
    assert state.status is RunStatus.COMPLETED, state.error
    return state.output["res"]["results"]


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


def test_paths_resolve_inside_the_workspace_and_escapes_are_refused(tmp_path):
    ws = tmp_path / "ws"
    (ws / "docs").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", ws / "sneaky.txt")
    seen: list = []
    results = run_tools([call("read_file", file_path="docs/a.txt"), call("read_file", file_path="../secret.txt"),
                         call("read_file", file_path=str(tmp_path / "secret.txt")),
                         call("read_file", file_path="sneaky.txt"), call("list_files"),
                         call("skim_files", paths=["docs", "/etc"]), call("add", a=1, b=2)],
                        {"workspace_root": str(ws)}, seen)
    assert [r["success"] for r in results] == [True, False, False, False, True, False, True]
    assert seen == [("read_file", str(ws / "docs" / "a.txt")), ("list_files", str(ws)), ("add", 3)]
    for r in (results[1], results[2], results[3]):
        assert "is outside this run's workspace" in r["error"] and r["error"].startswith("Tool 'read_file' refused")
    assert "'/etc' is outside" in results[5]["error"]


def test_access_modes_allowed_and_ignored_paths(tmp_path):
    ws, shared = tmp_path / "ws", tmp_path / "shared"
    seen: list = []
    results = run_tools([call("read_file", file_path=str(shared / "x")), call("read_file", file_path="build/out"),
                         call("read_file", file_path=str(tmp_path / "elsewhere"))],
                        {"workspace_root": str(ws), "workspace_access_mode": "workspace_or_allowed",
                         "workspace_allowed_paths": [str(shared)], "workspace_ignored_paths": ["build"]}, seen)
    assert [r["success"] for r in results] == [True, False, False]
    assert "ignored location" in results[1]["error"]
    seen.clear()
    results = run_tools([call("read_file", file_path="/anywhere/file"), call("read_file", file_path="build/out")],
                        {"workspace_root": str(ws), "workspace_access_mode": "all_except_ignored",
                         "workspace_ignored_paths": ["build"]}, seen)
    assert [r["success"] for r in results] == [True, False] and seen == [("read_file", "/anywhere/file")]


def test_no_policy_leaves_arguments_alone_and_a_bad_policy_refuses_only_path_tools(tmp_path):
    seen: list = []
    run_tools([call("read_file", file_path="rel.txt")], {}, seen)
    assert seen == [("read_file", "rel.txt")]
    seen.clear()
    results = run_tools([call("read_file", file_path="a"), call("add", a=2, b=2)],
                        {"workspace_root": str(tmp_path), "workspace_access_mode": "everything"}, seen)
    assert [r["success"] for r in results] == [False, True] and seen == [("add", 4)]
    assert "workspace_access_mode must be one of" in results[0]["error"]
