"""Durable functions: the per-call cost of a 400-call function against a 20-call one (goal: at most 2x).

Run: python benchmarks/functional.py [--quick] [--trials 5] [--store lmdb|memory|both]

F20 / F400    a functional workflow whose body calls a @step N times (each returns a small dict) -- start + ticks to
              completion; "us/call" is the wall time divided by N
G20 / G400    the same N ``function_step`` effects as a graph of N nodes whose results go to vars: what the kernel
              costs per step for the same growing state, without replay
replay        the node handler alone on the finished run (a full replay of N recorded calls), per recorded call

R20 / R400    F with the body replayed from the top at every step (continuation off): what a run costs whose steps
              each come in a tick of their own

The whole run is one tick, so its body is continued from step to step (docs/functional.md#how-it-runs); replayed,
a run of N calls replays 1 + 2 + ... + N recorded calls: O(N^2) in total, O(N) per call, at about a microsecond
per recorded call (two dict lookups, a digest of its arguments, the parse of its result). Figures are medians of
--trials, the workloads interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This directory is not an import root (a benchmark script named like a stdlib module would shadow it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from abstractruntime import Effect, Runtime, RunStatus, StepPlan, WorkflowSpec  # noqa: E402
from abstractruntime.functional import step, workflow  # noqa: E402


@step(name="bench:work")
def work(i: int) -> dict:
    return {"i": i, "ok": True}


def functional(n: int) -> WorkflowSpec:
    @workflow(f"fn{n}")
    def body(ctx, n: int = n):
        total = 0
        for i in range(n):
            total += work(i)["i"]
        return {"total": total}

    return body


def replayed(n: int) -> WorkflowSpec:
    spec = functional(n)
    spec.nodes["fn"]._bodies = None  # continuation off: every step replays from the top
    return spec


def graph(n: int) -> WorkflowSpec:
    nodes = {}
    for i in range(n + 1):
        def node(run, ctx, i=i):
            if i == n:
                return StepPlan(node_id=f"n{i}", complete_output={"total": sum(v["value"]["i"]
                                                                              for v in run.vars["r"].values())})
            effect = Effect("function_step", {"step": "bench:work", "args": [i], "kwargs": {},
                                              "functional_call": {"number": i, "name": "bench:work"}}, f"r.{i}")
            return StepPlan(node_id=f"n{i}", effect=effect, next_node=f"n{i + 1}")
        nodes[f"n{i}"] = node
    return WorkflowSpec(workflow_id=f"g{n}", entry_node="n0", nodes=nodes)


def one_run(rt: Runtime, spec: WorkflowSpec, n: int) -> float:
    t0 = time.perf_counter()
    run_id = rt.start(workflow=spec)
    state = rt.tick(workflow=spec, run_id=run_id, max_steps=10 * n + 10)
    elapsed = time.perf_counter() - t0
    assert state.status is RunStatus.COMPLETED, (state.status, state.error)
    assert state.output["total"] == n * (n - 1) // 2
    return elapsed


def replay_cost(rt: Runtime, spec: WorkflowSpec, n: int, repeat: int) -> float:
    """Seconds per recorded call of one full replay (the node on a finished run's state, its vars copied)."""
    run_id = rt.start(workflow=spec)
    state = rt.tick(workflow=spec, run_id=run_id, max_steps=10 * n + 10)
    node = spec.nodes["fn"]
    t0 = time.perf_counter()
    for _ in range(repeat):
        plan = node(state, None)
    elapsed = time.perf_counter() - t0
    assert plan.complete_output == {"total": n * (n - 1) // 2}
    return elapsed / repeat / n


def measure(url: str, trials: int, sizes: tuple) -> dict:
    """Per-call seconds of each workload, trials interleaved (a disk's latency drifts: every size sees the same)."""
    kinds = {"fn": functional, "replayed": replayed, "graph": graph}
    specs = {(n, kind): make(n) for n in sizes for kind, make in kinds.items()}
    times: dict = {key: [] for key in specs}
    with Runtime.from_config({"store": url}) as rt:
        for (n, _kind), spec in specs.items():  # warm-up
            one_run(rt, spec, n)
        for _ in range(trials):
            for (n, kind), spec in specs.items():
                times[n, kind].append(one_run(rt, spec, n) / n)
        return {n: {**{f"{kind}_us": statistics.median(times[n, kind]) * 1e6 for kind in kinds},
                    "replay_us": replay_cost(rt, specs[n, "fn"], n, 20) * 1e6} for n in sizes}


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one trial each")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--store", choices=("lmdb", "memory", "both"), default="both")
    args = parser.parse_args(argv)
    trials = 1 if args.quick else args.trials
    stores = ["lmdb", "memory"] if args.store == "both" else [args.store]
    sizes = (20, 400)
    ok = True
    for store in stores:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"lmdb://{tmp}/db" if store == "lmdb" else "memory://"
            res = measure(url, trials, sizes)
        small, big = res[sizes[0]], res[sizes[1]]
        ratio = big["fn_us"] / small["fn_us"]
        graph_ratio = big["graph_us"] / small["graph_us"]
        print(f"store {store} (durability barrier), median of {trials}:")
        for n in sizes:
            r = res[n]
            print(f"  F{n:<4} {r['fn_us']:8.1f} us/call   R{n:<4} {r['replayed_us']:8.1f} us/call   "
                  f"G{n:<4} {r['graph_us']:8.1f} us/call   replay {r['replay_us']:.2f} us per recorded call")
        print(f"  per-call cost F400/F20 = {ratio:.2f}x (goal <= 2x); replayed at every step R400/R20 = "
              f"{big['replayed_us'] / small['replayed_us']:.2f}x; the graph's G400/G20 = {graph_ratio:.2f}x")
        ok = ok and ratio <= 2.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
