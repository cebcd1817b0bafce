"""Scale-out benchmarks of the PostgreSQL store with `abstractruntime worker` processes.

Run: python benchmarks/scaleout.py [--runs 500] [--workers 1,2,4] [--trials 20] [--lease 1]

S2        N runs of start -> ASK_USER -> resume(max_steps=0) -> complete. The client starts the runs and answers
          the questions (resume with max_steps=0 only makes the run RUNNING); worker processes (--concurrency 2
          each) drive every step. Figure: N / (time from the first start to the last completion), per worker count.
TAKEOVER  a worker holding a busy run (a commit every 20 ms) is SIGKILLed while an idle worker is ready; time from
          the kill to the run's next committed step (by the other worker). Lease --lease s, poll interval 0.1 s.

The server: ABSTRACTRUNTIME_TEST_POSTGRES_DSN when set (a role with CREATEDB), else a throwaway one started with
.ci/postgres.sh in a temporary directory (stopped at the end). Each measurement uses its own database.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "tests" / "faults"
sys.path.insert(0, str(FLOWS))

import scaleout_flows  # noqa: E402

DSN_ENV = "ABSTRACTRUNTIME_TEST_POSTGRES_DSN"


@contextmanager
def server():
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        yield dsn
        return
    pg_dir = tempfile.mkdtemp(prefix="abstractruntime-bench-pg-")
    env = {**os.environ, "ABSTRACTRUNTIME_PG_DIR": pg_dir}
    out = subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh")], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f".ci/postgres.sh failed: {out.stderr.strip()}")
    dsn = out.stdout.strip().rsplit("=", 1)[1]
    try:
        yield dsn
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "stop"], env=env, capture_output=True)


@contextmanager
def database(admin_dsn: str):
    import psycopg

    name = "ar_bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_dsn)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _registry():
    from abstractruntime_pluginkit.registry import WorkflowRegistry

    reg = WorkflowRegistry()
    for spec in scaleout_flows.ALL:
        reg.register(spec)
    return reg


class Worker:
    """An `abstractruntime worker` process; ready once it printed its banner."""

    def __init__(self, dsn: str, lease: float, concurrency: int = 2, poll: float = 0.1) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
        env["PYTHONPATH"] = os.pathsep.join([str(FLOWS)] + [p for p in [env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "abstractruntime_cli", "--store", dsn, "worker", "--concurrency",
             str(concurrency), "--workflows", "scaleout_flows:ALL", "--lease", str(lease),
             "--poll-interval", str(poll)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env)
        self.pid = self.proc.pid

    def ready(self) -> "Worker":
        line = self.proc.stdout.readline()
        if "running with" not in line:
            raise RuntimeError(f"worker {self.pid} did not start: {line!r} (rc {self.proc.poll()})")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def s2(admin_dsn: str, n: int, workers: int, lease: float) -> float:
    from abstractruntime import Runtime, RunStatus, WaitReason
    from abstractruntime.errors import ConcurrentModificationError, RunNotWaitingError

    with database(admin_dsn) as dsn:
        rt = Runtime.from_config({"store": dsn}, workflow_registry=_registry())  # creates the schema
        procs = [Worker(dsn, lease) for _ in range(workers)]
        try:
            for w in procs:
                w.ready()
            store = rt.run_store
            started = threading.Event()

            def answer() -> None:
                while True:
                    batch = store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER, limit=200)
                    if not batch:
                        if started.is_set() and _count(dsn, "completed") >= n:
                            return
                        time.sleep(0.005)
                        continue
                    for run in batch:
                        try:
                            rt.resume(workflow=scaleout_flows.S2, run_id=run.run_id, wait_key=run.waiting.wait_key,
                                      payload={"text": "yes"}, max_steps=0)
                        except (ConcurrentModificationError, RunNotWaitingError):
                            pass  # raced with another answer: the list was a moment old

            t0 = time.perf_counter()
            answerer = threading.Thread(target=answer)
            answerer.start()
            for _ in range(n):
                rt.start(workflow=scaleout_flows.S2)
            started.set()
            answerer.join(600)
            elapsed = time.perf_counter() - t0
            assert _count(dsn, "completed") == n
            return n / elapsed
        finally:
            for w in procs:
                w.stop()
            rt.close()


def _count(dsn: str, status: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM abstractruntime.runs WHERE status = %s", (status,)).fetchone()[0]


def takeover(admin_dsn: str, trials: int, lease: float) -> list:
    import psycopg

    from abstractruntime import Runtime
    from abstractruntime.errors import ConcurrentModificationError

    times = []
    with database(admin_dsn) as dsn:
        rt = Runtime.from_config({"store": dsn}, workflow_registry=_registry())
        conn = psycopg.connect(dsn, autocommit=True)

        def row(run_id):
            return conn.execute("SELECT revision, lease_owner FROM abstractruntime.runs WHERE run_id = %s",
                                (run_id,)).fetchone()

        cur = Worker(dsn, lease).ready()
        try:
            for _ in range(trials):
                run_id = rt.start(workflow=scaleout_flows.BUSY, vars={"step_s": 0.02})
                deadline = time.monotonic() + 30
                while True:  # the current worker holds it and is committing steps
                    revision, owner = row(run_id)
                    if owner and f":{cur.pid}:" in owner and revision >= 3:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the worker never picked the run up")
                    time.sleep(0.005)
                nxt = Worker(dsn, lease).ready()  # idle, polling: the run is leased by `cur`
                cur.kill()
                t_kill = time.perf_counter()
                revision_at_kill = row(run_id)[0]
                while True:
                    revision, owner = row(run_id)
                    if revision > revision_at_kill:
                        times.append(time.perf_counter() - t_kill)
                        assert owner and f":{nxt.pid}:" in owner, owner
                        break
                    if time.perf_counter() - t_kill > 30:
                        raise RuntimeError("no takeover within 30 s")
                    time.sleep(0.002)
                for _attempt in range(100):  # the new owner commits every 20 ms: retry on the race
                    try:
                        rt.cancel_run(run_id, reason="benchmark trial over")
                        break
                    except ConcurrentModificationError:
                        time.sleep(0.001)
                cur = nxt
        finally:
            cur.stop()
            conn.close()
            rt.close()
    return times


def _p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--lease", type=float, default=1.0)
    args = ap.parse_args()
    with server() as admin:
        print(f"PostgreSQL scale-out, {os.cpu_count()} CPU(s); workers with --concurrency 2, --poll-interval 0.1")
        for w in [int(x) for x in args.workers.split(",")]:
            rate = s2(admin, args.runs, w, lease=30.0)
            print(f"S2 {args.runs} runs, {w} worker process(es): {rate:8.1f} runs/s", flush=True)
        times = takeover(admin, args.trials, args.lease)
        print(f"TAKEOVER after SIGKILL, lease {args.lease:g}s, {len(times)} trials: "
              f"p50 {_p(times, .5) * 1000:.0f} ms, p99 {_p(times, .99) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms, mean {statistics.mean(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
