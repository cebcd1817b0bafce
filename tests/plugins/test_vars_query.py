"""VARS_QUERY (builtin ``vars`` plugin) and the path helpers ``parse_vars_path`` / ``resolve_vars_path``.

Reference §4 (VARS_QUERY row), §1.2 (``core.vars`` helpers) and §17 #18 (``target_run_id`` restricted to the
caller's run tree). Real stores, no mocks.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime_pluginkit.registry import WorkflowRegistry
from abstractruntime_vars.namespaces import parse_vars_path, resolve_vars_path
from abstractruntime_inmemory.store import MemoryBackend

SCRATCH = {"a": {"b": [10, 20], "c": {"z": 1, "y": 2}}, "n": 3, "s": "txt"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)


def query_wf(payload: Dict[str, Any], workflow_id: str = "q") -> WorkflowSpec:
    def query(run, ctx):
        return StepPlan(node_id="query", effect=Effect(EffectType.VARS_QUERY, payload, "r"), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"r": run.vars.get("r")})

    return WorkflowSpec(workflow_id=workflow_id, entry_node="query", nodes={"query": query, "done": done})


def memory_runtime(*specs: WorkflowSpec) -> Runtime:
    b = MemoryBackend()
    reg = WorkflowRegistry()
    for spec in specs:
        reg.register(spec)
    return Runtime(run_store=b.run_store, ledger_store=b.ledger_store, workflow_registry=reg)


def run_query(payload: Dict[str, Any], vars: Optional[Dict[str, Any]] = None):
    spec = query_wf(payload)
    rt = memory_runtime(spec)
    rid = rt.start(workflow=spec, vars={"scratchpad": SCRATCH} if vars is None else vars)
    state = rt.tick(workflow=spec, run_id=rid)
    assert state.status is RunStatus.COMPLETED, state.error  # VARS_QUERY never fails the run
    return state.vars["r"]


def single(result: Dict[str, Any]) -> Dict[str, Any]:
    assert result["mode"] == "executed"
    [entry] = result["results"]
    assert set(entry) == {"call_id", "name", "success", "output", "error"}
    return entry


# --- the effect -----------------------------------------------------------------------------------------------

def test_default_path_is_scratchpad_and_output_is_sorted_indented_json():
    entry = single(run_query({}))

    assert entry["call_id"] == "vars"
    assert entry["name"] == "inspect_vars"
    assert entry["success"] is True
    assert entry["error"] is None
    data = json.loads(entry["output"])
    assert set(data) == {"path", "type", "value"}
    assert data["path"] == "scratchpad"
    assert data["value"] == SCRATCH
    assert entry["output"] == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def test_type_field_uses_json_type_names():
    # The spec leaves the names open; we report JSON's (what a model reading the tool output expects).
    types = {path: json.loads(single(run_query({"path": path}))["output"])["type"]
             for path in ("scratchpad", "scratchpad.a.b", "scratchpad.n", "scratchpad.s")}
    assert types == {"scratchpad": "object", "scratchpad.a.b": "array", "scratchpad.n": "integer",
                     "scratchpad.s": "string"}


@pytest.mark.parametrize("key, path, expected", [
    ("path", "scratchpad.a.b[0]", 10),
    ("path", "scratchpad.a.b[1]", 20),
    ("path", "scratchpad.a.b.0", 10),
    ("path", "scratchpad.a.c.z", 1),
    ("path", "/scratchpad/a/b/0", 10),
    ("path", "/scratchpad/a/c", {"z": 1, "y": 2}),
    ("var_path", "scratchpad.n", 3),
])
def test_dot_bracket_and_json_pointer_paths(key, path, expected):
    entry = single(run_query({key: path}))

    assert entry["success"] is True, entry["error"]
    data = json.loads(entry["output"])
    assert data["path"] == path
    assert data["value"] == expected


def test_keys_only_for_dicts_and_lists():
    dict_entry = single(run_query({"path": "scratchpad.a.c", "keys_only": True}))
    data = json.loads(dict_entry["output"])
    assert set(data) == {"path", "type", "keys"}
    assert data["keys"] == ["y", "z"]
    assert dict_entry["output"] == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)

    list_data = json.loads(single(run_query({"path": "scratchpad.a.b", "keys_only": True}))["output"])
    assert set(list_data) == {"path", "type", "length"}
    assert list_data["length"] == 2

    scalar = json.loads(single(run_query({"path": "scratchpad.n", "keys_only": True}))["output"])
    assert scalar["value"] == 3


def test_tool_name_and_call_id_are_passed_through():
    entry = single(run_query({"tool_name": "peek", "call_id": "c9"}))
    assert (entry["name"], entry["call_id"]) == ("peek", "c9")


def test_missing_key_is_an_unsuccessful_result_not_a_failed_run():
    entry = single(run_query({"path": "scratchpad.x"}))

    assert entry["success"] is False
    assert entry["output"] is None
    assert entry["error"] == "Missing key 'x' at scratchpad"


def test_out_of_range_index_is_an_unsuccessful_result():
    entry = single(run_query({"path": "scratchpad.a.b[5]"}))
    assert entry["success"] is False and entry["error"]


# --- target_run_id: only the caller's run tree -----------------------------------------------------------------

def tree_workflows(unrelated_id_holder: Dict[str, str]):
    """parent -> child (sync subworkflow). The child reads its parent's scratchpad and an unrelated run's; the
    parent then reads its child's scratchpad."""

    def child_read_parent(run, ctx):
        return StepPlan(node_id="read_parent", effect=Effect(
            EffectType.VARS_QUERY, {"path": "scratchpad.secret", "target_run_id": run.parent_run_id},
            "from_parent"), next_node="read_unrelated")

    def child_read_unrelated(run, ctx):
        return StepPlan(node_id="read_unrelated", effect=Effect(
            EffectType.VARS_QUERY, {"path": "scratchpad", "target_run_id": unrelated_id_holder["id"]},
            "from_unrelated"), next_node="done")

    def child_done(run, ctx):
        return StepPlan(node_id="done", complete_output={"from_parent": run.vars["from_parent"],
                                                         "from_unrelated": run.vars["from_unrelated"]})

    child = WorkflowSpec(workflow_id="child", entry_node="read_parent", nodes={
        "read_parent": child_read_parent, "read_unrelated": child_read_unrelated, "done": child_done})

    def call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(
            EffectType.START_SUBWORKFLOW, {"workflow_id": "child", "vars": {"scratchpad": {"mine": "c"}}}, "sub"),
            next_node="read_child")

    def read_child(run, ctx):
        return StepPlan(node_id="read_child", effect=Effect(
            EffectType.VARS_QUERY, {"path": "scratchpad.mine", "target_run_id": run.vars["sub"]["sub_run_id"]},
            "from_child"), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"from_child": run.vars["from_child"]})

    parent = WorkflowSpec(workflow_id="parent", entry_node="call",
                          nodes={"call": call, "read_child": read_child, "done": done})
    return parent, child


def check_tree(rt: Runtime, parent: WorkflowSpec, unrelated: Dict[str, str]) -> None:
    unrelated["id"] = rt.start(workflow=query_wf({}, "other"), vars={"scratchpad": {"private": 1}})
    pid = rt.start(workflow=parent, vars={"scratchpad": {"secret": "p"}})

    state = rt.tick(workflow=parent, run_id=pid)

    assert state.status is RunStatus.COMPLETED, state.error
    child_out = state.vars["sub"]["output"]
    from_parent = single(child_out["from_parent"])
    assert from_parent["success"] is True, from_parent["error"]
    assert json.loads(from_parent["output"])["value"] == "p"

    from_unrelated = single(child_out["from_unrelated"])
    assert from_unrelated["success"] is False
    assert from_unrelated["output"] is None
    assert from_unrelated["error"].startswith(f"Unknown target_run_id: {unrelated['id']}")

    from_child = single(state.output["from_child"])
    assert from_child["success"] is True, from_child["error"]
    assert json.loads(from_child["output"])["value"] == "c"


def test_target_run_id_parent_and_child_allowed_unrelated_refused():
    holder: Dict[str, str] = {}
    parent, child = tree_workflows(holder)
    rt = memory_runtime(parent, child)
    check_tree(rt, parent, holder)


def test_target_run_id_tree_rules_on_lmdb(tmp_path):
    holder: Dict[str, str] = {}
    parent, child = tree_workflows(holder)
    reg = WorkflowRegistry()
    reg.register(parent)
    reg.register(child)
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db"}, workflow_registry=reg)
    try:
        check_tree(rt, parent, holder)
    finally:
        rt.close()


def test_target_run_id_reaches_grandparent_and_grandchild():
    def leaf_query(run, ctx):
        root_id = run.vars["root_id"]
        return StepPlan(node_id="query", effect=Effect(
            EffectType.VARS_QUERY, {"path": "scratchpad.secret", "target_run_id": root_id}, "r"), next_node="done")

    leaf = WorkflowSpec(workflow_id="leaf", entry_node="query", nodes={
        "query": leaf_query, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"r": run.vars["r"]})})

    def mid_call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW, {
            "workflow_id": "leaf", "vars": {"root_id": run.parent_run_id, "scratchpad": {"deep": "g"}}}, "sub"),
            next_node="done")

    mid = WorkflowSpec(workflow_id="mid", entry_node="call", nodes={
        "call": mid_call, "done": lambda run, ctx: StepPlan(node_id="done", complete_output=run.vars["sub"])})

    def root_call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": "mid"}, "sub"),
                        next_node="read")

    def root_read(run, ctx):
        leaf_id = run.vars["sub"]["output"]["sub_run_id"]
        return StepPlan(node_id="read", effect=Effect(
            EffectType.VARS_QUERY, {"path": "scratchpad.deep", "target_run_id": leaf_id}, "r"), next_node="done")

    root = WorkflowSpec(workflow_id="root", entry_node="call", nodes={
        "call": root_call, "read": root_read,
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"r": run.vars["r"]})})
    rt = memory_runtime(root, mid, leaf)
    rid = rt.start(workflow=root, vars={"scratchpad": {"secret": "s"}})

    state = rt.tick(workflow=root, run_id=rid)

    assert state.status is RunStatus.COMPLETED, state.error
    from_root = single(state.vars["sub"]["output"]["output"]["r"])
    assert from_root["success"] is True, from_root["error"]
    assert json.loads(from_root["output"])["value"] == "s"
    from_leaf = single(state.output["r"])
    assert from_leaf["success"] is True, from_leaf["error"]
    assert json.loads(from_leaf["output"])["value"] == "g"


def test_unknown_and_self_target_run_id():
    unknown = single(run_query({"target_run_id": "no-such-run"}))
    assert unknown["success"] is False
    assert unknown["error"].startswith("Unknown target_run_id: no-such-run")

    def query(run, ctx):
        return StepPlan(node_id="query", effect=Effect(
            EffectType.VARS_QUERY, {"path": "scratchpad.n", "target_run_id": run.run_id}, "r"), next_node="done")

    spec = WorkflowSpec(workflow_id="self", entry_node="query", nodes={
        "query": query, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    rt = memory_runtime(spec)
    rid = rt.start(workflow=spec, vars={"scratchpad": SCRATCH})
    state = rt.tick(workflow=spec, run_id=rid)
    assert json.loads(single(state.vars["r"])["output"])["value"] == 3


# --- parse_vars_path / resolve_vars_path --------------------------------------------------------------------------

@pytest.mark.parametrize("path, tokens", [
    ("scratchpad", ["scratchpad"]),
    ("scratchpad.a.b[0]", ["scratchpad", "a", "b", 0]),
    ("a[0][1].c", ["a", 0, 1, "c"]),
    ("  a.b  ", ["a", "b"]),
    ("", []),
    ("/a/b~1c/d~0e", ["a", "b/c", "d~e"]),
])
def test_parse_vars_path(path, tokens):
    assert parse_vars_path(path) == tokens


def test_parse_vars_path_digit_segments_are_int_tokens():
    # A bare digit segment (dotted or JSON pointer) is an int token, like a bracket index; dict lookups accept it.
    assert parse_vars_path("a.0") == ["a", 0]
    assert parse_vars_path("a.b.1.c") == ["a", "b", 1, "c"]
    assert parse_vars_path("/a/b/0") == ["a", "b", 0]


@pytest.mark.parametrize("path", ["a..b", ".a", "a[", "a[x]", "a[0", "a[]"])
def test_parse_vars_path_malformed_raises_value_error(path):
    with pytest.raises(ValueError):
        parse_vars_path(path)


def test_parse_vars_path_non_string_raises_value_error():
    with pytest.raises(ValueError):
        parse_vars_path(123)  # type: ignore[arg-type]


VARS = {"scratchpad": SCRATCH}


@pytest.mark.parametrize("path, expected", [
    ("scratchpad.a.b[1]", 20),
    ("scratchpad.a.b.0", 10),
    ("/scratchpad/a/b/1", 20),
    ("scratchpad.a.c", {"z": 1, "y": 2}),
    ("", VARS),
])
def test_resolve_vars_path_with_path_strings(path, expected):
    assert resolve_vars_path(VARS, path) == expected


def test_resolve_vars_path_missing_key_message():
    with pytest.raises((KeyError, ValueError)) as info:
        resolve_vars_path(VARS, "scratchpad.x")
    assert info.value.args[0] == "Missing key 'x' at scratchpad"


@pytest.mark.parametrize("path", ["scratchpad.a.b[2]", "scratchpad.n.x", "scratchpad.a.b.k"])
def test_resolve_vars_path_bad_lookups_raise(path):
    with pytest.raises((KeyError, ValueError)):
        resolve_vars_path(VARS, path)


def test_resolve_vars_path_accepts_tokens_and_its_errors_are_key_and_value_errors():
    # resolve_vars_path(root, tokens) with tokens from parse_vars_path; a lookup error is both KeyError and ValueError.
    assert resolve_vars_path(VARS, ["scratchpad", "a", "b", 1]) == 20
    assert resolve_vars_path(VARS, parse_vars_path("scratchpad.a.b[0]")) == 10
    with pytest.raises(ValueError, match="Missing key 'x' at scratchpad"):
        resolve_vars_path(VARS, ["scratchpad", "x"])
