"""VisualFlow benchmarks (LMDB store, ledger on).

1. Compile time of a generated 1,000-node flow (goal: < 200 ms).
2. Per-step cost of a compiled flow vs the same workflow written as Python nodes (goal: <= 1.5x): a loop over N
   items whose body updates a variable and sends a message (an ANSWER_USER effect, so every iteration writes ledger
   rows), run to completion on LMDB.

Run: ``python benchmarks/visualflow.py`` (prints the figures).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec
from abstractruntime_visualflow import compile_visualflow, load_node_types

X = "execution"


def _pin(pid: str, typ: str = "any") -> Dict[str, str]:
    return {"id": pid, "type": typ}


def generated_flow(n_nodes: int = 1000) -> Dict[str, Any]:
    """A chain of set_var execution nodes, each fed by a small pure add expression (half exec, half pure)."""
    nodes: List[Dict[str, Any]] = [{"id": "start", "type": "on_flow_start", "data": {"outputs": [_pin("exec-out", X)]}}]
    edges: List[Dict[str, str]] = []
    prev = "start"
    i = 0
    while len(nodes) < n_nodes - 1:
        nodes.append({"id": f"p{i}", "type": "add", "data": {"pinDefaults": {"a": i, "b": 1}}})
        nodes.append({"id": f"v{i}", "type": "set_var", "data": {
            "inputs": [_pin("exec-in", X), _pin("name", "string"), _pin("value", "number")],
            "outputs": [_pin("exec-out", X)], "pinDefaults": {"name": f"v{i % 10}"}}})
        edges.append({"source": prev, "sourceHandle": "exec-out", "target": f"v{i}", "targetHandle": "exec-in"})
        edges.append({"source": f"p{i}", "sourceHandle": "result", "target": f"v{i}", "targetHandle": "value"})
        prev = f"v{i}"
        i += 1
    nodes.append({"id": "end", "type": "on_flow_end", "data": {"inputs": [_pin("exec-in", X)]}})
    edges.append({"source": prev, "sourceHandle": "exec-out", "target": "end", "targetHandle": "exec-in"})
    return {"id": "generated", "entryNode": "start", "nodes": nodes, "edges": edges}


def bench_compile(repeats: int = 7) -> Dict[str, float]:
    raw = generated_flow(1000)
    types = load_node_types()
    t0 = time.perf_counter()
    load_node_types()
    catalogue_ms = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        spec = compile_visualflow(raw, node_types=types)
        times.append((time.perf_counter() - t0) * 1000)
    assert len(spec.nodes) >= 499, len(spec.nodes)
    full = []
    for _ in range(3):
        t0 = time.perf_counter()
        compile_visualflow(raw)  # including collecting node types from the installed plugins
        full.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "with_catalogue_ms": statistics.median(full),
            "catalogue_ms": catalogue_ms}


def loop_flow() -> Dict[str, Any]:
    return {"id": "vf_loop", "entryNode": "s", "nodes": [
        {"id": "s", "type": "on_flow_start", "data": {"outputs": [_pin("exec-out", X), _pin("items", "array")]}},
        {"id": "l", "type": "loop", "data": {"inputs": [_pin("exec-in", X), _pin("items", "array")],
                                             "outputs": [_pin("loop", X), _pin("done", X), _pin("item")]}},
        {"id": "cur", "type": "get_var", "data": {"pinDefaults": {"name": "total"}}},
        {"id": "plus", "type": "add", "data": {}},
        {"id": "acc", "type": "set_var", "data": {"inputs": [_pin("exec-in", X), _pin("name"), _pin("value", "number")],
                                                  "outputs": [_pin("exec-out", X)], "pinDefaults": {"name": "total"}}},
        {"id": "say", "type": "answer_user", "data": {"inputs": [_pin("exec-in", X), _pin("message")],
                                                      "outputs": [_pin("exec-out", X)]}},
        {"id": "e", "type": "on_flow_end", "data": {"inputs": [_pin("exec-in", X), _pin("total", "number")]}}],
        "edges": [
            {"source": "s", "sourceHandle": "exec-out", "target": "l", "targetHandle": "exec-in"},
            {"source": "s", "sourceHandle": "items", "target": "l", "targetHandle": "items"},
            {"source": "l", "sourceHandle": "loop", "target": "acc", "targetHandle": "exec-in"},
            {"source": "acc", "sourceHandle": "exec-out", "target": "say", "targetHandle": "exec-in"},
            {"source": "l", "sourceHandle": "done", "target": "e", "targetHandle": "exec-in"},
            {"source": "cur", "sourceHandle": "value", "target": "plus", "targetHandle": "a"},
            {"source": "l", "sourceHandle": "item", "target": "plus", "targetHandle": "b"},
            {"source": "plus", "sourceHandle": "result", "target": "acc", "targetHandle": "value"},
            {"source": "plus", "sourceHandle": "result", "target": "say", "targetHandle": "message"},
            {"source": "cur", "sourceHandle": "value", "target": "e", "targetHandle": "total"}]}


def python_loop() -> WorkflowSpec:
    """The same workflow as hand-written Python nodes (state in vars, same number of steps and effects)."""

    def s(run, ctx):
        run.vars["total"] = run.vars.get("total", 0)
        return StepPlan(node_id="s", next_node="l")

    def l(run, ctx):  # noqa: E741
        i = run.vars.get("i", -1) + 1
        run.vars["i"] = i
        if i < len(run.vars["items"]):
            run.vars["item"] = run.vars["items"][i]
            return StepPlan(node_id="l", next_node="acc")
        return StepPlan(node_id="l", next_node="e")

    def acc(run, ctx):
        run.vars["total"] = float(run.vars.get("total") or 0) + float(run.vars["item"])
        return StepPlan(node_id="acc", next_node="say")

    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": str(run.vars["total"])},
                                                     "_temp.effects.say"), next_node="l")

    def e(run, ctx):
        return StepPlan(node_id="e", complete_output={"total": run.vars["total"], "success": True})

    return WorkflowSpec(workflow_id="py_loop", entry_node="s", nodes={"s": s, "l": l, "acc": acc, "say": say, "e": e})


def _time_run(rt: Runtime, spec: WorkflowSpec, items: List[int]) -> Dict[str, float]:
    run_id = rt.start(workflow=spec, vars={"items": items})
    t0 = time.perf_counter()
    state = rt.tick(workflow=spec, run_id=run_id, max_steps=100_000)
    elapsed = time.perf_counter() - t0
    assert state.output["total"] == float(sum(items)), state.output
    return {"seconds": elapsed, "steps": state.step, "us_per_step": elapsed / state.step * 1e6}


def bench_steps(n_items: int = 300, repeats: int = 3, store: str = "lmdb") -> Dict[str, Any]:
    items = list(range(n_items))
    vf, py = compile_visualflow(loop_flow()), python_loop()
    out: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Runtime.from_config(
            {"store": f"lmdb://{tmp}/store" if store == "lmdb" else "memory://"}) as rt:
        _time_run(rt, vf, items[:20])
        _time_run(rt, py, items[:20])  # warm up
        vfs, pys = [], []
        for _ in range(repeats):
            vfs.append(_time_run(rt, vf, items))
            pys.append(_time_run(rt, py, items))
        out["visual"] = min(vfs, key=lambda r: r["us_per_step"])
        out["python"] = min(pys, key=lambda r: r["us_per_step"])
        out["ratio"] = out["visual"]["us_per_step"] / out["python"]["us_per_step"]
    return out


def main() -> int:
    c = bench_compile()
    print(f"compile 1,000-node flow: {c['median_ms']:.1f} ms median (min {c['min_ms']:.1f} ms; "
          f"{c['with_catalogue_ms']:.1f} ms including node-type collection) -- goal < 200 ms")
    s = bench_steps()
    v, p = s["visual"], s["python"]
    print(f"per step on LMDB, ledger on: visual {v['us_per_step']:.1f} us ({v['steps']} steps), "
          f"python {p['us_per_step']:.1f} us ({p['steps']} steps) -> ratio {s['ratio']:.2f}x -- goal <= 1.5x")
    m = bench_steps(store="memory")
    print(f"(CPU overhead alone, in-memory store: visual {m['visual']['us_per_step']:.1f} us, "
          f"python {m['python']['us_per_step']:.1f} us per step -> {m['ratio']:.2f}x)")
    ok = c["median_ms"] < 200 and s["ratio"] <= 1.5
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
