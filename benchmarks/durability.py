"""Durable throughput, ours beside the reference (abstractruntime==0.4.2 in a throwaway venv), in one run.

Run: python benchmarks/durability.py [--quick] [--trials 3] [--reference-venv DIR] [--cpus N]

S1e20 / S1e400  steps/s  linear workflow whose every node emits an already-due WAIT_UNTIL (every step ledgered):
                start + one tick per run, 20 and 400 nodes
S2              runs/s   start -> ASK_USER -> resume -> complete, one thread
S2x16           runs/s   the same from 16 threads on one Runtime
S5              steps/s  20-node linear workflow of pure transitions on the memory store

Ours: LMDB with durability "barrier" (the default) and "step" (a commit and its fsyncs per step), and the memory
store. The reference: its SqliteRunStore/SqliteLedgerStore (its shipped durability, synchronous=NORMAL) and its
in-memory stores. Figures are medians of --trials; this machine's disk latency varies between runs, so compare
the ratios printed at the end (both sides are measured in the same run, interleaved).

``--cpus N`` confines the run (ours and the reference's processes, every thread) to N of the CPUs it may use:
how the threaded rows move when the threads share one CPU instead of handing the GIL across CPUs
(docs/benchmarks.md, "Threads and CPUs").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

#: the workloads, written once against the API both versions share (Runtime, StepPlan, Effect, ...)
WORKLOADS = textwrap.dedent('''
    import json, sys, tempfile, threading, time
    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
    PAST = "2000-01-01T00:00:00+00:00"

    def linear(n, due_wait):
        nodes = {}
        for i in range(n):
            nid, nxt = f"n{i}", (f"n{i + 1}" if i + 1 < n else None)
            def node(run, ctx, nid=nid, nxt=nxt):
                if nxt is None:
                    return StepPlan(node_id=nid, complete_output={"done": True})
                if due_wait:
                    return StepPlan(node_id=nid, effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": PAST}),
                                    next_node=nxt)
                return StepPlan(node_id=nid, next_node=nxt)
            nodes[nid] = node
        return WorkflowSpec(workflow_id=f"linear{n}{'e' if due_wait else ''}", entry_node="n0", nodes=nodes)

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "?"},
                                                     result_key="a"), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"a": run.vars["a"]})

    ASK = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={"ask": ask, "done": done})

    def s1(rt, nodes, runs):
        wf = linear(nodes, True)
        t0 = time.perf_counter()
        for _ in range(runs):
            run_id = rt.start(workflow=wf)
            state = rt.tick(workflow=wf, run_id=run_id, max_steps=nodes + 10)
            assert state.status is RunStatus.COMPLETED, state.error
        return nodes * runs / (time.perf_counter() - t0)

    def s2_one(rt):
        run_id = rt.start(workflow=ASK)
        state = rt.tick(workflow=ASK, run_id=run_id)
        state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"x": 1})
        assert state.status is RunStatus.COMPLETED

    def s2(rt, runs, threads):
        per = max(1, runs // threads)
        def work():
            for _ in range(per):
                s2_one(rt)
        ts = [threading.Thread(target=work) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts: t.start()
        for t in ts: t.join()
        return per * threads / (time.perf_counter() - t0)

    def s5(rt, runs):
        wf = linear(20, False)
        for _ in range(20):
            rt.tick(workflow=wf, run_id=rt.start(workflow=wf), max_steps=30)
        t0 = time.perf_counter()
        for _ in range(runs):
            state = rt.tick(workflow=wf, run_id=rt.start(workflow=wf), max_steps=30)
            assert state.status is RunStatus.COMPLETED
        return 20 * runs / (time.perf_counter() - t0)
''')

OURS = WORKLOADS + textwrap.dedent('''
    def runtime(kind, durability="barrier"):
        d = tempfile.mkdtemp(prefix="ardur_")
        url = "memory://" if kind == "memory" else f"lmdb://{d}/db"
        return Runtime.from_config({"store": url, "durability": durability})
''')

REFERENCE = WORKLOADS + textwrap.dedent('''
    def runtime(kind, durability=None):
        if kind == "memory":
            from abstractruntime.storage.in_memory import InMemoryLedgerStore, InMemoryRunStore
            return Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())
        from abstractruntime.storage.sqlite import SqliteDatabase, SqliteLedgerStore, SqliteRunStore
        db = SqliteDatabase(tempfile.mkdtemp(prefix="arref_") + "/runs.sqlite")
        return Runtime(run_store=SqliteRunStore(db), ledger_store=SqliteLedgerStore(db))
''')

MEASURE = textwrap.dedent('''
    import logging
    logging.disable(logging.WARNING)
    spec = json.loads(sys.argv[1])
    kind, durability, scenario, n = spec["kind"], spec.get("durability"), spec["scenario"], spec["n"]
    rt = runtime(kind, durability)
    if scenario == "s1e20": v = s1(rt, 20, n)
    elif scenario == "s1e400": v = s1(rt, 400, max(2, n // 20))
    elif scenario == "s2": v = s2(rt, n, 1)
    elif scenario == "s2x16": v = s2(rt, n, 16)
    else: v = s5(rt, n)
    print(json.dumps(v))
''')

ROWS = [  # (label, side, kind, durability, scenario)
    ("S1e20  LMDB barrier", "ours", "lmdb", "barrier", "s1e20"),
    ("S1e20  LMDB step", "ours", "lmdb", "step", "s1e20"),
    ("S1e20  ref SQLite", "ref", "sqlite", None, "s1e20"),
    ("S1e400 LMDB barrier", "ours", "lmdb", "barrier", "s1e400"),
    ("S1e400 ref SQLite", "ref", "sqlite", None, "s1e400"),
    ("S2     LMDB barrier 1 thread", "ours", "lmdb", "barrier", "s2"),
    ("S2     LMDB step 1 thread", "ours", "lmdb", "step", "s2"),
    ("S2     ref SQLite 1 thread", "ref", "sqlite", None, "s2"),
    ("S2x16  LMDB barrier", "ours", "lmdb", "barrier", "s2x16"),
    ("S2x16  LMDB step", "ours", "lmdb", "step", "s2x16"),
    ("S2x16  memory", "ours", "memory", "barrier", "s2x16"),
    ("S5     memory", "ours", "memory", "barrier", "s5"),
    ("S5     ref memory", "ref", "memory", None, "s5"),
]
COUNTS = {"s1e20": 100, "s1e400": 100, "s2": 300, "s2x16": 800, "s5": 3000}


def reference_python(venv: Path) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "abstractruntime==0.4.2"], check=True)
    return str(python)


def measure(python: str, program: str, spec: dict) -> float:
    out = subprocess.run([python, "-c", program + MEASURE, json.dumps(spec)], capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"{spec}: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the runs, one trial")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--reference-venv", help="reuse this venv for abstractruntime==0.4.2 (default: a throwaway one)")
    ap.add_argument("--cpus", type=int, help="confine the run (both sides, every thread) to this many CPUs")
    args = ap.parse_args()
    if args.cpus and not hasattr(os, "sched_setaffinity"):
        ap.error("--cpus needs os.sched_setaffinity (Linux)")
    if args.cpus:
        cpus = sorted(os.sched_getaffinity(0))[:args.cpus]
        os.sched_setaffinity(0, cpus)  # inherited by the threads and processes started from here on
        print(f"confined to CPU {', '.join(map(str, cpus))} (--cpus {args.cpus})\n")
    trials = 1 if args.quick else args.trials
    scale = 0.1 if args.quick else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="ardur_ref_"))
    try:
        ref = reference_python(Path(args.reference_venv) if args.reference_venv else tmp / "venv")
        results = {label: [] for label, *_ in ROWS}
        for _ in range(trials):  # interleaved: each trial measures every row once
            for label, side, kind, durability, scenario in ROWS:
                spec = {"kind": kind, "durability": durability, "scenario": scenario,
                        "n": max(2, int(COUNTS[scenario] * scale))}
                python, program = (sys.executable, OURS) if side == "ours" else (ref, REFERENCE)
                results[label].append(measure(python, program, spec))
        med = {label: statistics.median(v) for label, v in results.items()}
        unit = {"s1e20": "steps/s", "s1e400": "steps/s", "s2": "runs/s", "s2x16": "runs/s", "s5": "steps/s"}
        for label, side, kind, durability, scenario in ROWS:
            print(f"{label:<30} {med[label]:>10,.0f} {unit[scenario]:<8} "
                  f"(min {min(results[label]):,.0f}, max {max(results[label]):,.0f})")
        print()
        ratios = [
            ("S1e20 LMDB barrier / ref SQLite (target >= 4)", med["S1e20  LMDB barrier"] / med["S1e20  ref SQLite"]),
            ("S1e400 / S1e20, LMDB barrier (target >= 0.8)", med["S1e400 LMDB barrier"] / med["S1e20  LMDB barrier"]),
            ("S2x16 / S2 1 thread, LMDB barrier (target >= 4)", med["S2x16  LMDB barrier"] / med["S2     LMDB barrier 1 thread"]),
            ("S2x16 LMDB barrier / memory (target >= 0.5)", med["S2x16  LMDB barrier"] / med["S2x16  memory"]),
            ("S2 LMDB barrier / ref SQLite (target >= 2)", med["S2     LMDB barrier 1 thread"] / med["S2     ref SQLite 1 thread"]),
            ("S5 memory / ref memory (target >= 1)", med["S5     memory"] / med["S5     ref memory"]),
            ("S1e20 barrier / step, LMDB", med["S1e20  LMDB barrier"] / med["S1e20  LMDB step"]),
        ]
        for text, value in ratios:
            print(f"{text:<52} {value:>6.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
