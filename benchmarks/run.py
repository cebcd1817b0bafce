"""Benchmarks: prints figures per store. Run: python benchmarks/run.py [--stores memory,lmdb] [--quick]

S1   steps/s  - 20-node linear workflow (pure transitions), 200 runs, checkpoint per step
S1e  steps/s  - same, every node emits an already-due WAIT_UNTIL (every step ledgered), at 20 and 400 nodes
S2   runs/s   - start -> ASK_USER -> resume -> complete; p50/p99 resume latency (ms)
S3   ms       - one due-timer poll (list_due_wait_until) with 10,000 / 100,000 runs parked, 1% due

Durable settings: LMDB sync=true (fsync on every commit, the default), SQLite durability=full
(synchronous=FULL), JSON files fsync=true.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from abstractruntime import Effect, EffectType, Runtime, RunState, RunStatus, StepPlan, WaitReason, WaitState, WorkflowSpec
from abstractruntime import codec
from abstractruntime.storage.base import StepCommit

logging.getLogger("abstractruntime").setLevel(logging.WARNING)

PAST = "2000-01-01T00:00:00+00:00"


def linear(n: int, *, due_wait: bool) -> WorkflowSpec:
    nodes = {}
    for i in range(n):
        node_id, nxt = f"n{i}", (f"n{i + 1}" if i + 1 < n else None)

        def node(run, ctx, node_id=node_id, nxt=nxt):
            if nxt is None:
                return StepPlan(node_id=node_id, complete_output={"done": True})
            if due_wait:
                return StepPlan(node_id=node_id, effect=Effect(type=EffectType.WAIT_UNTIL, payload={"until": PAST}),
                                next_node=nxt)
            return StepPlan(node_id=node_id, next_node=nxt)

        nodes[node_id] = node
    return WorkflowSpec(workflow_id=f"linear{n}{'e' if due_wait else ''}", entry_node="n0", nodes=nodes)


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "?"}, result_key="a"),
                    next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"a": run.vars["a"]})


ASK = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={"ask": _ask, "done": _done})


def store_url(store: str, workdir: Path, durable: bool = True) -> str:
    return {
        "memory": "memory://",
        "lmdb": f"lmdb://{workdir}/lmdb?sync={'true' if durable else 'false'}",
        "sqlite": f"sqlite://{workdir}/runs.sqlite?durability={'full' if durable else 'normal'}",
        "jsonfiles": f"jsonfiles://{workdir}/json?fsync={'true' if durable else 'false'}",
    }[store]


def open_runtime(store: str, workdir: Path, durable: bool = True) -> Runtime:
    return Runtime.from_config({"store": store_url(store, workdir, durable)})


def s1(rt: Runtime, nodes: int, runs: int, due_wait: bool) -> float:
    wf = linear(nodes, due_wait=due_wait)
    steps = 0
    t0 = time.perf_counter()
    for _ in range(runs):
        run_id = rt.start(workflow=wf)
        state = rt.tick(workflow=wf, run_id=run_id, max_steps=nodes + 10)
        assert state.status is RunStatus.COMPLETED, state.error
        steps += nodes
    return steps / (time.perf_counter() - t0)


def s2(rt: Runtime, runs: int):
    lat = []
    t0 = time.perf_counter()
    for _ in range(runs):
        run_id = rt.start(workflow=ASK)
        state = rt.tick(workflow=ASK, run_id=run_id)
        r0 = time.perf_counter()
        state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={"x": 1})
        lat.append((time.perf_counter() - r0) * 1000)
        assert state.status is RunStatus.COMPLETED
    elapsed = time.perf_counter() - t0
    lat.sort()
    return runs / elapsed, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


def s3(store: str, workdir: Path, parked: int) -> float:
    """Park runs directly through the backend (setup without fsync), then time a due-timer poll on a durable
    store reopened on the same files (median of 7 polls after a first, warming one)."""
    setup = open_runtime(store, workdir / f"s3_{parked}", durable=False)
    backend = setup.run_store.backend
    now = datetime.now(timezone.utc)
    commits = []
    for i in range(parked):
        run = RunState.new(workflow_id="parked", entry_node="n")
        run.status = RunStatus.WAITING
        due = i % 100 == 0
        until = now - timedelta(seconds=60) if due else now + timedelta(days=1 + i % 30)
        run.waiting = WaitState(reason=WaitReason.UNTIL, until=until.isoformat(), resume_to_node="n")
        run.revision = 1
        commits.append(StepCommit(run=run, run_json=codec.encode_run(run)))
    if hasattr(backend, "commit_in"):  # LMDB: one transaction for the setup (the step path is measured elsewhere)
        backend.write(lambda txn: [backend.commit_in(txn, c) for c in commits])
    else:
        for c in commits:
            backend.commit_step(c)
    if store == "memory":
        rt = setup
    else:
        setup.close()
        rt = open_runtime(store, workdir / f"s3_{parked}")
    rt.run_store.list_due_wait_until(now_iso=now.isoformat(), limit=parked)  # first poll (builds caches)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        due_runs = rt.run_store.list_due_wait_until(now_iso=now.isoformat(), limit=parked)
        times.append((time.perf_counter() - t0) * 1000)
    assert len(due_runs) == parked // 100, len(due_runs)
    rt.close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stores", default="memory,lmdb")
    ap.add_argument("--quick", action="store_true", help="smaller run counts (smoke test)")
    args = ap.parse_args()
    runs = 20 if args.quick else 200
    parked = [1000, 10000] if args.quick else [10_000, 100_000]
    print(f"{'store':<10} {'S1 st/s':>9} {'S1e20 st/s':>11} {'S1e400 st/s':>12} {'ratio':>6} "
          f"{'S2 runs/s':>10} {'p50 ms':>7} {'p99 ms':>7} " + " ".join(f"{'S3 ' + str(p // 1000) + 'k ms':>10}" for p in parked))
    for store in args.stores.split(","):
        workdir = Path(tempfile.mkdtemp(prefix=f"arbench_{store}_"))
        try:
            rt = open_runtime(store, workdir)
            a = s1(rt, 20, runs, False)
            b = s1(rt, 20, runs, True)
            c = s1(rt, 400, max(2, runs // 20), True)
            rps, p50, p99 = s2(rt, runs)
            rt.close()
            s3s = [s3(store, workdir, p) for p in parked]
            print(f"{store:<10} {a:>9.0f} {b:>11.0f} {c:>12.0f} {c / b:>6.2f} {rps:>10.0f} {p50:>7.2f} {p99:>7.2f} "
                  + " ".join(f"{x:>10.2f}" for x in s3s), flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
