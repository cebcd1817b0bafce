"""Benchmarks of the provenance and scheduler plugins. Run: python benchmarks/provenance_scheduler.py [--quick]

S4     append N hash-chained records through the kernel's commit path on LMDB (fsync on commit; 100 records per
       commit so the figure is the chaining cost, not the disk) and verify them (records/s)
SCHED  N runs each with a WAIT_UNTIL that is due now, driven by the scheduler's worker pool: time until all
       complete (memory store and LMDB)
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from abstractruntime import (
    Effect,
    EffectType,
    Runtime,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    WorkflowRegistry,
    WorkflowSpec,
)
from abstractruntime.scheduler import Scheduler

logging.getLogger("abstractruntime").setLevel(logging.WARNING)


def s4(n: int, workdir: Path) -> tuple:
    from abstractruntime_provenance.chain import verify_ledger_chain

    rt = Runtime.from_config({"store": f"lmdb://{workdir}/s4?sync=true"})
    run = RunState.new(workflow_id="chain", entry_node="a")
    rt.commit(run)
    batch = 100
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        records = []
        for j in range(batch):
            rec = StepRecord.start(run=run, node_id=f"n{(i + j) % 20}",
                                   effect=Effect(EffectType.ANSWER_USER, {"message": f"m{i + j}"}),
                                   idempotency_key=f"k{i + j}")
            records.append(rec.finish_success({"i": i + j, "text": "lorem ipsum " * 4}))
        rt.commit(None, records, run_id=run.run_id)
    append_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = rt.get_ledger(run.run_id)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = verify_ledger_chain(rows)
    verify_s = time.perf_counter() - t0
    assert report["ok"] and report["count"] == n, report["errors"][:3]
    rt.close()
    return n / append_s, n / verify_s, n / (read_s + verify_s)


_DEADLINE = {"at": "2000-01-01T00:00:00+00:00"}


def _park(run, ctx):
    return StepPlan(node_id="park", effect=Effect(EffectType.WAIT_UNTIL, {"until": _DEADLINE["at"]}),
                    next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={})


PARK = WorkflowSpec(workflow_id="park", entry_node="park", nodes={"park": _park, "done": _done})


def sched(n: int, url: str, workers: int) -> float:
    """Park n runs on one deadline (setup without fsync), wait until it is due, then time the scheduler."""
    setup = Runtime.from_config({"store": url.replace("sync=true", "sync=false")})
    deadline = time.time() + 2 + n * 0.002
    _DEADLINE["at"] = datetime.fromtimestamp(deadline, timezone.utc).isoformat()
    for _ in range(n):
        run_id = setup.start(workflow=PARK)
        setup.tick(workflow=PARK, run_id=run_id)
    assert time.time() < deadline, "parking took longer than the deadline allows"
    if url.startswith("memory"):
        rt = setup
    else:
        setup.close()
        rt = Runtime.from_config({"store": url})
    reg = WorkflowRegistry()
    reg.register(PARK)
    time.sleep(max(0.0, deadline - time.time()) + 0.01)
    sched = Scheduler(runtime=rt, registry=reg, poll_interval_s=0.01, workers=workers, batch_size=1000)
    t0 = time.perf_counter()
    sched.start()
    while len(rt.run_store.list_runs(status=RunStatus.COMPLETED, limit=n + 1)) < n:
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    sched.stop()
    rt.close()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n4 = 10_000 if args.quick else 100_000
    ns = 1_000 if args.quick else 10_000
    workdir = Path(tempfile.mkdtemp(prefix="arbench_ps_"))
    try:
        append_rps, verify_rps, read_verify_rps = s4(n4, workdir)
        print(f"S4 {n4} records: append {append_rps:,.0f} rec/s; verify {verify_rps:,.0f} rec/s "
              f"(read + verify {read_verify_rps:,.0f} rec/s)")
        for label, url in (("memory", "memory://"), ("lmdb", "lmdb://{dir}/sched?sync=true")):
            for workers in (1, 4):
                secs = sched(ns, url.format(dir=workdir / f"w{workers}"), workers)
                print(f"SCHED {ns} due timers on {label}, {workers} worker(s): {secs:.2f} s "
                      f"({ns / secs:,.0f} runs/s)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
