"""A flow cannot lift its own workspace confinement (issue 14, item 1): the VisualFlow file nodes take the policy
the host sealed when the run started, variable nodes refuse to write ``workspace_*``, and a node that writes those
variables directly gets every path refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abstractruntime import RunStatus, StepPlan, WorkflowSpec
from abstractruntime_visualflow import compile_visualflow

from vf_support import E, N, chain, flow, memory_runtime, run

HOSTNAME = "/etc/hostname"
ATTACKS = [
    ("set_var", {"name": "workspace_access_mode", "value": "all_except_ignored"}),
    ("set_var", {"name": "workspace_root", "value": "/"}),
    ("set_vars", {"updates": {"workspace_root": "/", "workspace_access_mode": "all_except_ignored"}}),
    ("set_var_property", {"name": "workspace_allowed_paths", "key": "0", "value": "/etc"}),
    ("set_var", {"name": "/workspace_root", "value": "/"}),  # a JSON pointer names the same variable
]


def _attack_node(kind, values):
    pins = " ".join(values)
    return N("a", kind, ins=f"exec-in {pins}", outs="exec-out", pinDefaults=dict(values))


def _file_node(kind, path):
    if kind == "read_file":
        return N("f", "read_file", ins="exec-in file_path", outs="exec-out content", pinDefaults={"file_path": path})
    return N("f", "write_file", ins="exec-in file_path content", outs="exec-out bytes file_path",
             pinDefaults={"file_path": path, "content": "pwned"})


def _flow(attack, kind, path):
    nodes = [N("s", "on_flow_start", outs="exec-out"), attack, _file_node(kind, path),
             N("e", "on_flow_end", ins="exec-in content")]
    edges = chain("s", "a", "f", "e")
    if kind == "read_file":
        edges.append(E("f.content", "e.content"))
    return compile_visualflow(flow(f"attack_{kind}", nodes, edges))


@pytest.mark.parametrize("kind, target", [("read_file", HOSTNAME), ("write_file", "outside.txt")])
@pytest.mark.parametrize("attack", ATTACKS, ids=["mode", "root", "set_vars", "set_var_property", "pointer"])
def test_a_variable_node_cannot_widen_the_workspace(tmp_path, attack, kind, target):
    ws = tmp_path / "ws"
    ws.mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    spec = _flow(_attack_node(*attack), kind, path)
    state = run(memory_runtime(), spec, vars={"workspace_root": str(ws)})
    assert state.status is RunStatus.COMPLETED and state.output["success"] is False
    assert state.output["node"] == "a" and "is set by the host when the run starts" in state.output["error"]
    assert state.vars["workspace_root"] == str(ws) and "workspace_access_mode" not in state.vars
    assert "content" not in (state.output or {}) and not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize("key", ["_runtime.workspace", "_runtime", "workspace_root", "/workspace_access_mode"])
def test_an_output_key_cannot_write_the_seal_or_the_policy(key):
    from abstractruntime_visualflow import VisualFlowCompileError

    forged = {"version": 1, "layers": [], "given": {}}
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("o", "parse_json", ins="exec-in text", outs="exec-out", outputKey=key,
               pinDefaults={"text": json.dumps(forged)}),
             _file_node("read_file", HOSTNAME), N("e", "on_flow_end", ins="exec-in")]
    with pytest.raises(VisualFlowCompileError, match="is reserved") as info:
        compile_visualflow(flow("out_key", nodes, chain("s", "o", "f", "e")))
    assert info.value.code == "reserved_output_key" and info.value.node_id == "o"


def _with_python_node_first(spec, write):
    """``spec`` with a plain Python node in front of its entry node that writes run variables directly."""
    entry = spec.nodes[spec.entry_node]

    def tamper(run, ctx):
        write(run.vars)
        return entry(run, ctx)

    return WorkflowSpec(workflow_id=spec.workflow_id, entry_node=spec.entry_node,
                        nodes={**spec.nodes, spec.entry_node: tamper})


PYTHON_WRITES = [
    lambda v: v.update(workspace_access_mode="all_except_ignored"),
    lambda v: v.update(workspace_root="/"),
    lambda v: v.update(workspace_allowed_paths=["/etc"], workspace_access_mode="workspace_or_allowed"),
    lambda v: v.pop("workspace_root"),
]


@pytest.mark.parametrize("kind, target", [("read_file", HOSTNAME), ("write_file", "outside.txt")])
@pytest.mark.parametrize("write", PYTHON_WRITES, ids=["mode", "root", "allowed", "removed"])
def test_a_python_node_writing_workspace_vars_gets_every_path_refused(tmp_path, write, kind, target):
    ws = tmp_path / "ws"
    ws.mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    nodes = [N("s", "on_flow_start", outs="exec-out"), _file_node(kind, path),
             N("e", "on_flow_end", ins="exec-in")]
    spec = _with_python_node_first(compile_visualflow(flow("direct", nodes, chain("s", "f", "e"))), write)
    state = run(memory_runtime(), spec, vars={"workspace_root": str(ws)})
    assert state.status is RunStatus.COMPLETED and state.output["success"] is False
    assert state.output["node"] == "f" and "was changed after the run started" in state.output["error"]
    assert not (tmp_path / "outside.txt").exists()
    # even a path inside the workspace is refused while the variable differs: the run is told, not silently widened
    inside = compile_visualflow(flow("direct2", [N("s", "on_flow_start", outs="exec-out"),
                                                 _file_node("write_file", "in.txt"),
                                                 N("e", "on_flow_end", ins="exec-in")], chain("s", "f", "e")))
    state = run(memory_runtime(), _with_python_node_first(inside, write), vars={"workspace_root": str(ws)})
    assert state.output["success"] is False and not (ws / "in.txt").exists()


def test_a_forged_seal_in_the_start_vars_is_replaced(tmp_path):
    forged = {"version": 1, "layers": [], "given": {}}
    nodes = [N("s", "on_flow_start", outs="exec-out"), _file_node("read_file", HOSTNAME),
             N("e", "on_flow_end", ins="exec-in")]
    spec = compile_visualflow(flow("forged", nodes, chain("s", "f", "e")))
    state = run(memory_runtime(), spec, vars={"workspace_root": str(tmp_path),
                                              "_runtime": {"workspace": forged}})
    assert state.output["success"] is False and "is outside this run's workspace" in state.output["error"]
    seal = state.vars["_runtime"]["workspace"]
    assert seal["layers"][0]["root"] == str(tmp_path.resolve())


def test_untouched_runs_read_and_write_inside_their_workspace(tmp_path):
    (tmp_path / "in.txt").write_text("hello")
    nodes = [N("s", "on_flow_start", outs="exec-out"), _file_node("read_file", "in.txt"),
             N("v", "set_var", ins="exec-in name value", outs="exec-out", pinDefaults={"name": "other",
                                                                                     "value": 1}),
             N("e", "on_flow_end", ins="exec-in content")]
    spec = compile_visualflow(flow("ok", nodes, chain("s", "f", "v", "e") + [E("f.content", "e.content")]))
    state = run(memory_runtime(), spec, vars={"workspace_root": str(tmp_path)})
    assert state.output == {"content": "hello", "success": True}
    assert Path(state.vars["_runtime"]["workspace"]["layers"][0]["root"]) == tmp_path.resolve()


# --- child runs, runtime configuration, restarts ----------------------------------------------------------------
def _reader(flow_id, path):
    nodes = [N("s", "on_flow_start", outs="exec-out"), _file_node("read_file", path),
             N("e", "on_flow_end", ins="exec-in content")]
    return compile_visualflow(flow(flow_id, nodes, chain("s", "f", "e") + [E("f.content", "e.content")]))


def _parent(child_vars):
    from abstractruntime import Effect, EffectType

    def call(run, ctx):
        return StepPlan(node_id="call", effect=Effect(EffectType.START_SUBWORKFLOW,
                                                      {"workflow_id": "child", "vars": child_vars}, "sub"),
                        next_node="done")

    return WorkflowSpec(workflow_id="parent", entry_node="call", nodes={
        "call": call, "done": lambda run, ctx: StepPlan(node_id="done", complete_output=run.vars["sub"])})


@pytest.mark.parametrize("child_vars", [{"workspace_root": "/"}, {"workspace_access_mode": "all_except_ignored"},
                                        {"workspace_root": "/etc", "workspace_access_mode": "all_except_ignored",
                                         "_runtime": {"workspace": {"version": 1, "layers": [], "given": {}}}}])
def test_a_child_run_cannot_widen_its_parents_workspace(tmp_path, child_vars):
    rt = memory_runtime()
    rt.workflow_registry.register(_reader("child", HOSTNAME))
    state = run(rt, _parent(child_vars), vars={"workspace_root": str(tmp_path)})
    assert state.status is RunStatus.COMPLETED, state.error
    out = state.output["output"]
    assert out["success"] is False and "is outside this run's workspace" in out["error"] and "content" not in out


def test_a_child_may_narrow_its_workspace_and_resolves_against_its_own_root(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("inner")
    (tmp_path / "a.txt").write_text("outer")
    rt = memory_runtime()
    rt.workflow_registry.register(_reader("child", "a.txt"))
    state = run(rt, _parent({"workspace_root": str(tmp_path / "sub")}), vars={"workspace_root": str(tmp_path)})
    assert state.output["output"] == {"content": "inner", "success": True}
    rt = memory_runtime()
    rt.workflow_registry.register(_reader("child", str(tmp_path / "a.txt")))  # inside the parent, not the child
    state = run(rt, _parent({"workspace_root": str(tmp_path / "sub")}), vars={"workspace_root": str(tmp_path)})
    assert state.output["output"]["success"] is False


def test_the_runtime_configuration_confines_every_run(tmp_path):
    from abstractruntime.errors import ConfigurationError

    (tmp_path / "a.txt").write_text("configured")
    rt = memory_runtime(settings={"plugin_options": {"workspace": {"root": str(tmp_path)}}})
    assert run(rt, _reader("r1", "a.txt")).output == {"content": "configured", "success": True}
    state = run(rt, _reader("r2", HOSTNAME), vars={"workspace_root": "/", "workspace_access_mode":
                                                   "all_except_ignored"})
    assert state.output["success"] is False and "is outside this run's workspace" in state.output["error"]
    with pytest.raises(ConfigurationError, match="plugin_options.workspace"):
        memory_runtime(settings={"plugin_options": {"workspace": {"access_mode": "everywhere"}}})
    with pytest.raises(ConfigurationError, match="Unknown option"):
        memory_runtime(settings={"plugin_options": {"workspace": {"workspace_root": "/"}}})


def test_the_seal_survives_a_restart(tmp_path):
    from abstractruntime import Runtime, WorkflowRegistry

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("kept")
    url = f"sqlite://{tmp_path / 'db' / 'rt.sqlite'}"
    plain, tampered = _reader("plain", "a.txt"), _with_python_node_first(
        _reader("tampered", HOSTNAME), PYTHON_WRITES[0])
    with Runtime(settings={"store": url}) as rt:
        ids = [rt.start(workflow=spec, vars={"workspace_root": str(ws)}) for spec in (plain, tampered)]
    with Runtime(settings={"store": url}, workflow_registry=WorkflowRegistry()) as rt:
        assert rt.tick(workflow=plain, run_id=ids[0]).output == {"content": "kept", "success": True}
        state = rt.tick(workflow=tampered, run_id=ids[1])
    assert state.output["success"] is False and "was changed after the run started" in state.output["error"]
