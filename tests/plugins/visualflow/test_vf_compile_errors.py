"""Malformed graphs fail at compile time with typed errors that say what and where; unknown node types."""

from __future__ import annotations

import pytest

from abstractruntime_visualflow import (
    CodeExecutionError,
    DataCycleError,
    UnknownNodeTypeError,
    VisualFlowCompileError,
    compile_visualflow,
    load_visualflow_json,
    visual_to_flow,
)

from vf_support import E, N, chain, flow, load, memory_runtime, run

START = N("s", "on_flow_start", outs="exec-out")
END = N("e", "on_flow_end", ins="exec-in")


def test_edge_to_a_missing_node_names_the_edge_and_the_node():
    with pytest.raises(VisualFlowCompileError) as info:
        compile_visualflow(flow("f", [START, END], chain("s", "e") + [E("s.exec-out", "ghost.exec-in")]))
    err = info.value
    assert isinstance(err, ValueError) and err.code == "missing_node"
    assert err.node_id == "ghost" and err.edge == 1 and err.flow_id == "f"
    assert "ghost" in str(err) and "edge #1" in str(err)


def test_missing_entry_node_and_flow_without_execution_nodes():
    with pytest.raises(VisualFlowCompileError) as info:
        compile_visualflow(flow("f", [START, END], chain("s", "e"), entry="nope"))
    assert info.value.code == "missing_entry" and info.value.node_id == "nope"
    with pytest.raises(VisualFlowCompileError, match="Invalid flow: Flow must have an entry node") as info:
        compile_visualflow(flow("f", [N("a", "add")], []))
    assert info.value.code == "no_entry"


def test_data_cycle_between_pure_nodes():
    nodes = [START, N("a", "add"), N("b", "add"), N("e", "on_flow_end", ins="exec-in x")]
    edges = chain("s", "e") + [E("a.result", "b.a"), E("b.result", "a.a"), E("b.result", "e.x")]
    with pytest.raises(DataCycleError, match="Data edge cycle detected at") as info:
        compile_visualflow(flow("f", nodes, edges))
    assert info.value.code == "data_cycle" and info.value.node_id in ("a", "b")


def test_a_cycle_through_an_execution_node_is_fine():
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("l", "loop", ins="exec-in items", outs="loop done item"),
             N("v", "set_var", ins="exec-in name value", outs="exec-out", pinDefaults={"name": "x"}), END]
    edges = [E("s.exec-out", "l.exec-in"), E("l.loop", "v.exec-in"), E("l.done", "e.exec-in"),
             E("l.item", "v.value"), E("v.value", "l.items")]
    compile_visualflow(flow("f", nodes, edges))


def test_duplicate_node_ids():
    with pytest.raises(VisualFlowCompileError, match="duplicate node id 's'"):
        compile_visualflow(flow("f", [START, START, END], chain("s", "e")))


@pytest.mark.parametrize("nodes,edges,message", [
    ([START, END, N("x", "on_flow_end", ins="exec-in")],
     [E("s.exec-out", "e.exec-in"), E("s.true", "x.exec-in")], "multiple outgoing edges"),
    ([N("s", "on_flow_start", outs="exec-out weird"), END], [E("s.weird", "e.exec-in")],
     "unsupported branching output 'weird'"),
    ([START, N("l", "loop", ins="exec-in", outs="loop done"), END],
     chain("s", "l") + [E("l.exec-out", "e.exec-in")], "only 'loop' and 'done'"),
    ([START, N("q", "sequence", ins="exec-in", outs="then:0"), END],
     chain("s", "q") + [E("q.then:1", "e.exec-in")], "not one of its declared execution outputs"),
])
def test_branching_rules(nodes, edges, message):
    with pytest.raises(VisualFlowCompileError, match=message) as info:
        compile_visualflow(flow("f", nodes, edges))
    assert info.value.code == "branching"


def test_unknown_node_type_passes_through_with_a_warning():
    from structlog.testing import capture_logs

    nodes = [START, N("m", "made_up_type", ins="exec-in", outs="exec-out", pinDefaults={"k": 1}),
             N("e", "on_flow_end", ins="exec-in")]
    with capture_logs() as logs:
        spec = compile_visualflow(flow("f", nodes, chain("s", "m", "e")))
    assert {"event": "visualflow_unknown_node_type", "flow_id": "f", "node_id": "m", "node_type": "made_up_type",
            "log_level": "warning", "behaviour": "pass-through (output = input)"} in logs
    state = run(memory_runtime(), spec, vars={"a": 1})
    assert state.output == {"a": 1, "k": 1, "success": True}


def test_strict_mode_refuses_unknown_node_types_naming_id_and_type():
    nodes = [START, N("m", "made_up_type", ins="exec-in", outs="exec-out"), END]
    with pytest.raises(UnknownNodeTypeError) as info:
        compile_visualflow(flow("f", nodes, chain("s", "m", "e")), strict=True)
    assert info.value.node_id == "m" and "made_up_type" in str(info.value) and "'m'" in str(info.value)


def test_subflow_node_without_a_flow_id():
    nodes = [START, N("c", "subflow", ins="exec-in", outs="exec-out"), END]
    with pytest.raises(VisualFlowCompileError, match="names no flow") as info:
        compile_visualflow(flow("f", nodes, chain("s", "c", "e")))
    assert info.value.code == "missing_subflow_id"


def test_code_node_with_rejected_code_fails_compilation():
    nodes = [START, N("c", "code", ins="exec-in", outs="exec-out", code="import os\ndef transform(input):\n  return 1"),
             END]
    with pytest.raises(CodeExecutionError, match="imports are not allowed"):
        compile_visualflow(flow("f", nodes, chain("s", "c", "e")))
    nodes[1] = N("c", "code", ins="exec-in", outs="exec-out", code="def transform(input):\n  return ().__class__")
    with pytest.raises(CodeExecutionError, match="__class__"):
        compile_visualflow(flow("f", nodes, chain("s", "c", "e")))


def test_load_visualflow_json_validation_and_normalisation():
    with pytest.raises(ValueError, match="VisualFlow missing required 'id'"):
        load_visualflow_json({"nodes": []})
    with pytest.raises(TypeError):
        load_visualflow_json(42)
    vf = load_visualflow_json({
        "flow_id": "x", "interfaces": [" a ", "", 3],
        "nodes": [{"id": "n", "type": "NodeType.ASK_USER"}, {"id": "m", "type": {"value": "if"}}, "junk", {"type": "x"}],
        "edges": [{"source": "n", "target": "m"}, {"source": "n", "target": "m", "sourceHandle": "exec-out",
                                                     "targetHandle": "exec-in"}, 7],
    })
    assert vf.id == "x" and vf.interfaces == ["a"]
    assert [(n.id, n.type) for n in vf.nodes] == [("n", "ask_user"), ("m", "if")]
    assert len(vf.edges) == 1


def test_entry_selection_and_ignored_nodes():
    nodes = [N("x", "on_flow_end", ins="exec-in"), START, END, N("orphan", "answer_user", ins="exec-in")]
    f = visual_to_flow(flow("f", nodes, chain("s", "e")))
    assert f.entry_node == "x"  # first execution node without an incoming exec edge, document order
    f = visual_to_flow(flow("f", nodes, chain("s", "e"), entry="s"))
    assert f.entry_node == "s" and set(f._ignored_exec_nodes) == {"x", "orphan"}
    spec = compile_visualflow(flow("f", nodes, chain("s", "e"), entry="s"))
    assert set(spec.nodes) == {"s", "e"}


def test_reference_submodule_import_paths():
    from abstractruntime.visualflow_compiler import compile_visualflow_tree
    from abstractruntime.visualflow_compiler.compiler import compile_visualflow as cv
    from abstractruntime.visualflow_compiler.visual.agent_ids import visual_react_workflow_id
    from abstractruntime.visualflow_compiler.visual.builtins import get_builtin_handler
    from abstractruntime.visualflow_compiler.visual.executor import visual_to_flow as v2f
    from abstractruntime.visualflow_compiler.visual.models import load_visualflow_json as lvj

    assert cv(load("example_a_greet")).workflow_id == "greet"
    assert set(compile_visualflow_tree(root_id="greet", flows_by_id={"greet": load("example_a_greet")})) == {"greet"}
    assert lvj(load("example_a_greet")).id == "greet"
    assert get_builtin_handler("add")({"a": 1, "b": 2}) == 3.0 and get_builtin_handler("nope") is None
    assert get_builtin_handler("uppercase")("abc") == "ABC"
    assert visual_react_workflow_id(flow_id="my flow", node_id="n.1") == "visual_react_agent_my_flow_n_1"
    f = v2f(load("example_a_greet"))
    pending = f.nodes["ask"].handler({})["_pending_effect"]
    assert pending["type"] == "ask_user" and pending["prompt"] == "What is your name?"
    assert pending["resume_to_node"] == "say"
