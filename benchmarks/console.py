"""Benchmark: the web console's first page (GET /) with 100,000 runs in an LMDB store.

Run: python benchmarks/console.py [--runs 100000]

The runs (a quarter each completed / waiting for a person / running / failed, five workflows) are written directly
through the LMDB backend in one transaction (setup without fsync, as benchmarks/run.py s3 does); the store is
reopened durable, then GET / (the first page of 50 with the counts per status) and GET /?status=waiting are timed
with Starlette's TestClient: median of 5 after a warm-up request. The counts are cached for 5 s by the console,
so the figure "first page, counts cached" is what the 2-second polling costs; "cold" includes the count scan.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from abstractruntime import Runtime, RunState, RunStatus, WaitReason, WaitState, codec
from abstractruntime.storage.base import StepCommit

logging.getLogger("abstractruntime").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*httpx.*")


def populate(path: Path, n: int) -> None:
    rt = Runtime.from_config({"store": f"lmdb://{path}", "store_options": {"sync": False}})
    backend = rt.run_store.backend
    statuses = [RunStatus.COMPLETED, RunStatus.WAITING, RunStatus.RUNNING, RunStatus.FAILED]
    commits = []
    for i in range(n):
        run = RunState.new(workflow_id=f"workflow-{i % 5}", entry_node="n", vars={"i": i, "note": "x" * 40})
        run.status = statuses[i % 4]
        if run.status is RunStatus.WAITING:
            run.waiting = WaitState(reason=WaitReason.USER, wait_key=f"user:{run.run_id}:n", prompt="Approve?",
                                    choices=["yes", "no"], resume_to_node="n")
        elif run.status is RunStatus.FAILED:
            run.error = "boom"
        run.revision = 1
        commits.append(StepCommit(run=run, run_json=codec.encode_run(run)))
    backend.write(lambda txn: [backend.commit_in(txn, c) for c in commits])
    rt.close()


def timed(client, path: str, *, fresh_counts=None) -> float:
    times = []
    for _ in range(5):
        if fresh_counts is not None:
            fresh_counts()
        t0 = time.perf_counter()
        res = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert res.status_code == 200, res.text[:300]
    return statistics.median(times)


def main() -> int:
    from starlette.testclient import TestClient

    import abstractruntime_web

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="arbench_console_"))
    try:
        t0 = time.perf_counter()
        populate(workdir / "store", args.runs)
        print(f"setup: {args.runs} runs in {time.perf_counter() - t0:.1f} s")
        rt = Runtime.from_config({"store": f"lmdb://{workdir / 'store'}"})
        asgi = abstractruntime_web.app(rt)
        client = TestClient(asgi)
        client.get("/")  # warm-up
        clear = asgi.console.counts.clear
        print(f"GET /  first page, cold (counts scanned): {timed(client, '/', fresh_counts=clear):8.1f} ms (median of 5)")
        print(f"GET /  first page, counts cached:         {timed(client, '/'):8.1f} ms (median of 5)")
        print(f"GET /?status=waiting, counts cached:      {timed(client, '/?status=waiting'):8.1f} ms (median of 5)")
        print(f"GET /api/runs?limit=50, counts cached:    {timed(client, '/api/runs?limit=50'):8.1f} ms (median of 5)")
        rt.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
