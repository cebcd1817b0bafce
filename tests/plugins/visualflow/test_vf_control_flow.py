"""Control flow (if/switch/sequence/parallel/loop/for/while), all control state in run.vars."""

from __future__ import annotations

import json

from abstractruntime import RunStatus
from abstractruntime_visualflow import compile_visualflow

from vf_support import E, N, flow, memory_runtime, run


def appender(node_id, tag):
    """Two nodes: a pure array_append over get_var trace, and an exec set_var writing it back."""
    return [
        N(f"{node_id}_cur", "get_var", pinDefaults={"name": "trace"}),
        N(f"{node_id}_app", "array_append", ins="array item", outs="result", pinDefaults={"item": tag}),
        N(node_id, "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "trace"}),
    ], [E(f"{node_id}_cur.value", f"{node_id}_app.array"), E(f"{node_id}_app.result", f"{node_id}.value")]


def build(nodes_edges, edges, entry="s", extra=()):
    nodes, es = [N("s", "on_flow_start", outs="exec-out")], list(edges)
    for n, e in nodes_edges:
        nodes += n
        es += e
    nodes += list(extra)
    return flow("f", nodes, es, entry=entry)


def test_if_branches_and_an_unconnected_branch_completes():
    nodes = [N("s", "on_flow_start", outs="exec-out flag/boolean"),
             N("c", "if", ins="exec-in condition", outs="true false"),
             N("yes", "on_flow_end", ins="exec-in r", pinDefaults={"r": "yes"})]
    edges = [E("s.exec-out", "c.exec-in"), E("s.flag", "c.condition"), E("c.true", "yes.exec-in")]
    spec = compile_visualflow(flow("f", nodes, edges))
    rt = memory_runtime()
    assert run(rt, spec, {"flag": True}).output == {"r": "yes", "success": True}
    out = run(rt, spec, {"flag": False}).output
    assert out == {"branch": "false", "condition": False, "success": True}


def test_switch_matches_cases_by_string_form():
    nodes = [N("s", "on_flow_start", outs="exec-out v"),
             N("w", "switch", ins="exec-in value", outs="case:a case:b default",
               switchConfig={"cases": [{"id": "a", "value": 1}, {"id": "b", "value": "two"}, {"id": "", "value": 3}]}),
             N("ea", "on_flow_end", ins="exec-in r", pinDefaults={"r": "A"}),
             N("eb", "on_flow_end", ins="exec-in r", pinDefaults={"r": "B"}),
             N("ed", "on_flow_end", ins="exec-in r", pinDefaults={"r": "D"})]
    edges = [E("s.exec-out", "w.exec-in"), E("s.v", "w.value"), E("w.case:a", "ea.exec-in"),
             E("w.case:b", "eb.exec-in"), E("w.default", "ed.exec-in")]
    spec = compile_visualflow(flow("f", nodes, edges))
    rt = memory_runtime()
    assert [run(rt, spec, {"v": v}).output["r"] for v in (1, "1", "two", 3, None)] == ["A", "A", "B", "D", "D"]


def test_sequence_runs_each_branch_in_order_then_completes():
    a, b, c = appender("a", "A"), appender("b", "B"), appender("c", "C")
    seq = N("q", "sequence", ins="exec-in", outs="then:0 then:1 then:2")
    init = N("i", "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "trace", "value": []})
    edges = [E("s.exec-out", "i.exec-in"), E("i.exec-out", "q.exec-in"), E("q.then:2", "c.exec-in"),
             E("q.then:0", "a.exec-in"), E("q.then:1", "b.exec-in")]
    spec = compile_visualflow(build([a, b, c], edges, extra=[seq, init]))
    state = run(memory_runtime(), spec)
    assert state.status is RunStatus.COMPLETED and state.vars["trace"] == ["A", "B", "C"]
    assert state.output["success"] is True


def test_parallel_is_sequential_then_follows_completed():
    a, b, d = appender("a", "A"), appender("b", "B"), appender("d", "DONE")
    par = N("p", "parallel", ins="exec-in", outs="then:0 then:1 completed")
    init = N("i", "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "trace", "value": []})
    end = N("e", "on_flow_end", ins="exec-in")
    edges = [E("s.exec-out", "i.exec-in"), E("i.exec-out", "p.exec-in"), E("p.then:0", "a.exec-in"),
             E("p.then:1", "b.exec-in"), E("p.completed", "d.exec-in"), E("d.exec-out", "e.exec-in")]
    state = run(memory_runtime(), compile_visualflow(build([a, b, d], edges, extra=[par, init, end])))
    assert state.vars["trace"] == ["A", "B", "DONE"]


def test_nested_loops_and_iteration_outputs():
    outer = N("o", "loop", ins="exec-in items", outs="loop done item index total")
    inner = N("n", "loop", ins="exec-in items", outs="loop done item index total")
    cur = N("cur", "get_var", pinDefaults={"name": "pairs"})
    mk = N("mk", "make_array", ins="a b", outs="result")
    app = N("app", "array_append", ins="array item", outs="result")
    put = N("put", "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "pairs"})
    init = N("i", "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "pairs", "value": []})
    end = N("e", "on_flow_end", ins="exec-in pairs")
    allp = N("all", "get_var", pinDefaults={"name": "pairs"})
    nodes = [N("s", "on_flow_start", outs="exec-out"), init, outer, inner, cur, mk, app, put, end, allp]
    edges = [E("s.exec-out", "i.exec-in"), E("i.exec-out", "o.exec-in"), E("o.loop", "n.exec-in"),
             E("n.loop", "put.exec-in"), E("o.done", "e.exec-in"),
             E("cur.value", "app.array"), E("mk.result", "app.item"), E("app.result", "put.value"),
             E("o.item", "mk.a"), E("n.item", "mk.b"), E("all.value", "e.pairs")]
    nodes[2]["data"]["pinDefaults"] = {"items": [1, 2]}
    nodes[3]["data"]["pinDefaults"] = {"items": ["x", "y", "z"]}
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, edges)))
    assert state.output["pairs"] == [[1, "x"], [1, "y"], [1, "z"], [2, "x"], [2, "y"], [2, "z"]]
    assert state.vars["_temp"]["_control"] == {"stack": [], "frames": {}}


def test_loop_items_normalisation_and_empty_list_goes_to_done():
    nodes = [N("s", "on_flow_start", outs="exec-out xs"), N("l", "loop", ins="exec-in items", outs="loop done item"),
             N("v", "set_var", ins="exec-in name value", outs="exec-out", pinDefaults={"name": "last"}),
             N("e", "on_flow_end", ins="exec-in last")]
    edges = [E("s.exec-out", "l.exec-in"), E("s.xs", "l.items"), E("l.loop", "v.exec-in"),
             E("l.item", "v.value"), E("l.done", "e.exec-in"), E("v.value", "e.last")]
    spec = compile_visualflow(flow("f", nodes, edges))
    rt = memory_runtime()
    assert run(rt, spec, {"xs": "solo"}).vars["last"] == "solo"  # non-list -> [x]
    state = run(rt, spec, {"xs": []})
    assert state.output == {"last": None, "success": True} and "last" not in state.vars


def _for_flow(**defaults):
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("f", "for", ins="exec-in start end step", outs="loop done i index total", pinDefaults=defaults),
             N("cur", "get_var", pinDefaults={"name": "seen"}), N("app", "array_append", ins="array item"),
             N("v", "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "seen"}),
             N("init", "set_var", ins="exec-in name value/array", outs="exec-out", pinDefaults={"name": "seen", "value": []}),
             N("e", "on_flow_end", ins="exec-in")]
    edges = [E("s.exec-out", "init.exec-in"), E("init.exec-out", "f.exec-in"), E("f.loop", "v.exec-in"),
             E("f.done", "e.exec-in"), E("cur.value", "app.array"), E("f.i", "app.item"), E("app.result", "v.value")]
    return compile_visualflow(flow("fl", nodes, edges))


def test_for_range_semantics_and_errors():
    rt = memory_runtime()
    assert run(rt, _for_flow(start=0, end=3)).vars["seen"] == [0.0, 1.0, 2.0]
    assert run(rt, _for_flow(start="5", end=0, step=-2)).vars["seen"] == [5.0, 3.0, 1.0]
    bad = run(rt, _for_flow(start=0, end=3, step=0))
    assert bad.output["success"] is False and "step" in bad.output["error"] and bad.output["node"] == "f"
    assert bad.vars["_flow_error_node"] == "f"
    assert run(rt, _for_flow(end=3)).output["success"] is False  # start missing
    assert "cap" in run(rt, _for_flow(start=0, end=20_000)).output["error"]


def test_while_re_evaluates_its_condition_every_time():
    nodes = [N("s", "on_flow_start", outs="exec-out"),
             N("init", "set_var", ins="exec-in name value/number", outs="exec-out", pinDefaults={"name": "n", "value": 0}),
             N("w", "while", ins="exec-in condition", outs="loop done index"),
             N("cur", "get_var", pinDefaults={"name": "n"}),
             N("lt", "compare", ins="a b op", pinDefaults={"b": 4, "op": "<"}),
             N("inc", "add", ins="a b", pinDefaults={"b": 1}),
             N("v", "set_var", ins="exec-in name value/number", outs="exec-out", pinDefaults={"name": "n"}),
             N("e", "on_flow_end", ins="exec-in n index")]
    edges = [E("s.exec-out", "init.exec-in"), E("init.exec-out", "w.exec-in"), E("w.loop", "v.exec-in"),
             E("w.done", "e.exec-in"), E("cur.value", "lt.a"), E("lt.result", "w.condition"),
             E("cur.value", "inc.a"), E("inc.result", "v.value"), E("cur.value", "e.n"), E("w.index", "e.index")]
    state = run(memory_runtime(), compile_visualflow(flow("f", nodes, edges)))
    assert state.output == {"n": 4.0, "index": 3, "success": True}


def test_two_runs_of_one_compiled_spec_interleave_without_sharing_state():
    spec = compile_visualflow(json.loads(json.dumps({
        "id": "sum", "nodes": [
            N("s", "on_flow_start", outs="exec-out xs"), N("l", "loop", ins="exec-in items", outs="loop done item"),
            N("cur", "get_var", pinDefaults={"name": "t"}), N("p", "add", ins="a b"),
            N("v", "set_var", ins="exec-in name value/number", outs="exec-out", pinDefaults={"name": "t"}),
            N("e", "on_flow_end", ins="exec-in t")],
        "edges": [E("s.exec-out", "l.exec-in"), E("s.xs", "l.items"), E("l.loop", "v.exec-in"),
                  E("l.done", "e.exec-in"), E("cur.value", "p.a"), E("l.item", "p.b"), E("p.result", "v.value"),
                  E("cur.value", "e.t")]})))
    rt = memory_runtime()
    a = rt.start(workflow=spec, vars={"xs": [1, 2, 3]})
    b = rt.start(workflow=spec, vars={"xs": [100, 200]})
    for _ in range(30):  # alternate single steps of the two runs
        for rid in (a, b):
            if rt.get_state(rid).status is RunStatus.RUNNING:
                rt.tick(workflow=spec, run_id=rid, max_steps=1)
    assert rt.get_state(a).output == {"t": 6.0, "success": True}
    assert rt.get_state(b).output == {"t": 300.0, "success": True}
