"""What one operation costs the PostgreSQL server: statements, transactions and WAL, measured on a real server.

Run: python benchmarks/pg_statements.py [--runs 20] [--detail] [--dsn ADMIN_DSN] [--durability barrier]
                                        [--throughput-runs 800] [--threads 8] [--no-throughput]

Operations (provenance on, the default plugins, durability ``barrier`` unless --durability says otherwise):

start                   ``rt.start(...)`` of a run (nothing executed)
side-effecting step     one step whose handler has ``side_effects=True`` inside a tick of many such steps: the
                        difference between ticking a 12-step and a 2-step workflow to completion, divided by 10
                        (the effect's payload and result are about 70 and 100 bytes of words, stored in the vars)
step without an effect  the same with ``next_node``-only steps (staged: written at the tick's barrier)
resume                  ``rt.resume(...)`` of a run waiting on ASK_USER, which then completes (one more step)
8-step HITL run         start + tick (3 side-effecting steps, then ASK_USER) + resume (3 side-effecting steps and
                        the completion): one whole human-in-the-loop run
S2 run driven by a worker  benchmarks/scaleout.py's S2 in one process: start; a ``PostgresWorker`` claims the run,
                        ticks it to ASK_USER and releases it; the host reads it and resumes it with ``max_steps=0``;
                        the worker claims it again and completes it (claims, leases and releases included; the
                        host's ``get_state`` too)

Each figure is the total over ``--runs`` operations on a fresh database, minus opening and closing the runtime
(measured alone), divided by the number of operations. Statements are ``pg_stat_statements`` calls of the
database (``BEGIN`` and ``COMMIT`` included); transactions are ``pg_stat_database`` commits and rollbacks of the
database (read-only ones included) and, in parentheses, write transactions (transaction ids assigned, from
``pg_current_snapshot()``); WAL is the ``pg_current_wal_insert_lsn()`` difference (byte-exact; the write position
``pg_current_wal_lsn()`` moves in whole pages when commits are asynchronous). The transaction-id and WAL counters
are cluster-wide, so the figures are exact only on a server nothing else uses: by default the script starts its
own throwaway server with ``.ci/postgres.sh`` (``shared_preload_libraries=pg_stat_statements``,
``full_page_writes=off``: WAL without full-page images, i.e. between checkpoints) in a temporary directory.
``--dsn`` takes a superuser (or ``pg_read_all_stats``) DSN of a server that preloads pg_stat_statements instead.

NOTIFY: ``--threads`` threads call ``rt.start`` for ``--throughput-runs`` runs per block while another process
listens (``backend.wait_for_work``, as an idle worker does): four runtimes on one database, two with the store option
``notify = true`` and two with ``notify = false``, a block on each per round, in rotating order, ``--trials`` rounds
(see :func:`throughput`). What waking workers costs is the difference of the medians of the two settings; the
difference between two runtimes of one setting is the noise of the measurement.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]

CALL = "bench_call"


def _with_db(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def server(dsn: str) -> Iterator[str]:
    """An admin DSN: ``dsn`` if given, else a throwaway server started with .ci/postgres.sh (superuser ``postgres``)."""
    if dsn:
        yield dsn
        return
    pg_dir = tempfile.mkdtemp(prefix="abstractruntime-pgstat-")
    env = {**os.environ, "ABSTRACTRUNTIME_PG_DIR": pg_dir}
    out = subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh")], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f".ci/postgres.sh failed: {out.stderr.strip()}")
    parts = urlsplit(out.stdout.strip().rsplit("=", 1)[1])
    try:
        yield urlunsplit((parts.scheme, f"postgres@{parts.hostname}:{parts.port}", "/postgres", "", ""))
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "stop"], env=env, capture_output=True)


# --- workflows ----------------------------------------------------------------------------------------------------
def _workflows() -> Dict[str, Any]:
    from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec

    def chain(name: str, n: int, effect: bool, then: str = "end") -> Dict[str, Any]:
        nodes = {}
        for i in range(n):
            def node(run, ctx, i=i):
                nxt = f"{name}{i + 1}" if i + 1 < n else then
                if effect:
                    return StepPlan(node_id=f"{name}{i}", effect=Effect(CALL, {"i": i, "query": _text(i, 60)},
                                                                        f"r_{name}{i}"), next_node=nxt)
                return StepPlan(node_id=f"{name}{i}", next_node=nxt)
            nodes[f"{name}{i}"] = node
        return nodes

    def end(run, ctx):
        return StepPlan(node_id="end", complete_output={"ok": True})

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "go on?"}, "answer"),
                        next_node="b0")

    out = {}
    for n in (2, 12):
        out[f"calls{n}"] = WorkflowSpec(workflow_id=f"calls{n}", entry_node="a0", nodes={**chain("a", n, True),
                                                                                          "end": end})
    for n in (2, 42):
        out[f"pure{n}"] = WorkflowSpec(workflow_id=f"pure{n}", entry_node="a0", nodes={**chain("a", n, False),
                                                                                        "end": end})
    out["ask"] = WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"),
                                         next_node="end"), "end": end})
    out["hitl"] = WorkflowSpec(workflow_id="hitl", entry_node="a0", nodes={
        **chain("a", 3, True, then="ask"), "ask": ask, **chain("b", 3, True), "end": end})
    return out


WORDS = ("order", "shipped", "customer", "invoice", "the", "refund", "status", "of", "parcel", "address", "is",
         "pending", "review", "account", "payment", "was", "received", "on", "for", "total")


def _text(seed: int, length: int) -> str:
    """``length`` characters of words (as compressible as prose, unlike a repeated letter)."""
    rng = random.Random(seed)
    out = ""
    while len(out) < length:
        out += rng.choice(WORDS) + " "
    return out[:length]


def _call(run, effect, default_next_node):
    """The side-effecting handler: a tool-call-sized answer (about 100 bytes)."""
    from abstractruntime import EffectOutcome

    i = effect.payload["i"]
    return EffectOutcome.completed({"i": i, "answer": _text(1000 + i, 80)})


# --- measuring ----------------------------------------------------------------------------------------------------
class Meter:
    """Counters of one database (statements per query, transactions) and of the cluster (WAL, transaction ids)."""

    def __init__(self, admin_dsn: str, dbname: str) -> None:
        import psycopg

        self.dbname = dbname
        self.meter_db = "ar_meter_" + uuid.uuid4().hex[:10]
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.meter_db}"')
        self.conn = psycopg.connect(_with_db(admin_dsn, self.meter_db), autocommit=True)
        if self.conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() is None:
            try:
                self.conn.execute("CREATE EXTENSION pg_stat_statements")
            except psycopg.Error as exc:
                raise SystemExit(f"pg_stat_statements is not available ({exc}); the server must preload it "
                                 f"(shared_preload_libraries) and the DSN be a superuser's") from None
        self.oid = self.conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,)).fetchone()[0]
        self.admin_dsn = admin_dsn

    def close(self) -> None:
        import psycopg

        self.conn.close()
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.meter_db}" WITH (FORCE)')

    def _settled(self) -> None:
        """Wait until no session is connected to the database and its transaction count stopped moving (a backend
        reports its counts as it exits)."""
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            self.conn.execute("SELECT pg_stat_clear_snapshot()")
            n, xacts = self.conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datid = %s), "
                "(SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datid = %s)",
                (self.oid, self.oid)).fetchone()
            if n == 0 and xacts == last:
                return
            last = xacts if n == 0 else None
            time.sleep(0.15)
        raise SystemExit("the database's sessions did not end within 30 s")

    def snapshot(self) -> Dict[str, Any]:
        self._settled()
        stmts = {(row[0], row[1]): int(row[2]) for row in self.conn.execute(
            "SELECT queryid, query, calls FROM pg_stat_statements WHERE dbid = %s", (self.oid,)).fetchall()}
        xacts, wal, xid = self.conn.execute(
            "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datid = %s), "
            "pg_current_wal_insert_lsn(), pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            (self.oid,)).fetchone()
        wal_bytes = int(self.conn.execute("SELECT %s::pg_lsn - '0/0'::pg_lsn", (wal,)).fetchone()[0])
        return {"stmts": stmts, "xacts": int(xacts), "wal": wal_bytes, "xids": int(xid)}

    @staticmethod
    def diff(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
        stmts = {k: v - a["stmts"].get(k, 0) for k, v in b["stmts"].items() if v - a["stmts"].get(k, 0)}
        return {"stmts": stmts, "xacts": b["xacts"] - a["xacts"], "wal": b["wal"] - a["wal"],
                "xids": b["xids"] - a["xids"]}


def _runtime(dsn: str, durability: str, notify: bool = True):
    from abstractruntime import Runtime

    return Runtime.from_config({"store": dsn, "durability": durability,
                                "store_options": {"notify": notify}}, effect_handlers={CALL: _call})


def measure(meter: Meter, dsn: str, durability: str, prepare: Callable[[Any], Any],
            op: Callable[[Any, Any], None]) -> Dict[str, Any]:
    """Counters of ``op(rt, prepared)`` on a runtime opened and closed around it (``prepare(rt)`` runs before, on
    a runtime of its own)."""
    with _runtime(dsn, durability) as rt:
        prepared = prepare(rt)
    before = meter.snapshot()
    with _runtime(dsn, durability) as rt:
        op(rt, prepared)
    return Meter.diff(before, meter.snapshot())


def _minus(a: Dict[str, Any], b: Dict[str, Any], n: float) -> Dict[str, Any]:
    stmts = {k: (v - b["stmts"].get(k, 0)) / n for k, v in a["stmts"].items()}
    stmts.update({k: -v / n for k, v in b["stmts"].items() if k not in a["stmts"]})
    return {"stmts": {k: v for k, v in stmts.items() if abs(v) > 1e-9}, "xacts": (a["xacts"] - b["xacts"]) / n,
            "wal": (a["wal"] - b["wal"]) / n, "xids": (a["xids"] - b["xids"]) / n}


def operations(admin_dsn: str, runs: int, durability: str) -> List[Tuple[str, Dict[str, Any]]]:
    import psycopg

    from abstractruntime import RunStatus

    wf = _workflows()
    name = "ar_pgstat_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(admin_dsn, name)
    meter = Meter(admin_dsn, name)
    try:
        with _runtime(dsn, durability):  # creates the schema
            pass
        with psycopg.connect(dsn, autocommit=True) as conn:  # no autovacuum/analyze in the middle of a figure
            for table in ("runs", "ledger", "ledger_heads"):
                conn.execute(f"ALTER TABLE abstractruntime.{table} SET (autovacuum_enabled = false, "
                             f"toast.autovacuum_enabled = false)")

        def started(workflow, tick=False):
            def prep(rt):
                ids = [rt.start(workflow=workflow) for _ in range(runs)]
                if tick:
                    for rid in ids:
                        rt.tick(workflow=workflow, run_id=rid)
                return ids
            return prep

        def ticks(workflow):
            def op(rt, ids):
                for rid in ids:
                    assert rt.tick(workflow=workflow, run_id=rid, max_steps=1000).status is RunStatus.COMPLETED
            return op

        def resumes(workflow):
            def op(rt, ids):
                for rid in ids:
                    state = rt.get_state(rid)
                    # get_state is the host's read of the wait key: not part of the resume, subtracted below
                    rt.resume(workflow=workflow, run_id=rid, wait_key=state.waiting.wait_key, payload={"x": 1})
            return op

        def gets(rt, ids):
            for rid in ids:
                rt.get_state(rid)

        def hitl(rt, _):
            for _ in range(runs):
                rid = rt.start(workflow=wf["hitl"])
                state = rt.tick(workflow=wf["hitl"], run_id=rid)
                state = rt.resume(workflow=wf["hitl"], run_id=rid, wait_key=state.waiting.wait_key,
                                  payload={"text": "yes"})
                assert state.status is RunStatus.COMPLETED, state.error

        def via_worker(rt, _):
            from abstractruntime_pluginkit import WorkflowRegistry
            from abstractruntime_postgres.worker import PostgresWorker

            registry = WorkflowRegistry()
            registry.register(wf["ask"])
            worker = PostgresWorker(rt, registry, worker_id="bench", listen=False, batch_size=runs, wait_reasons=())
            ids = [rt.start(workflow=wf["ask"]) for _ in range(runs)]
            while worker.run_once():
                pass
            for rid in ids:
                state = rt.get_state(rid)
                rt.resume(workflow=wf["ask"], run_id=rid, wait_key=state.waiting.wait_key, payload={"x": 1},
                          max_steps=0)
            while worker.run_once():
                pass
            assert all(rt.get_state(rid).status is RunStatus.COMPLETED for rid in ids)

        def nothing(rt, _):
            pass

        base = measure(meter, dsn, durability, lambda rt: None, nothing)
        out: List[Tuple[str, Dict[str, Any]]] = []
        m = measure(meter, dsn, durability, lambda rt: None, lambda rt, _: [rt.start(workflow=wf["calls2"])
                                                                            for _ in range(runs)])
        out.append(("start", _minus(m, base, runs)))
        few = measure(meter, dsn, durability, started(wf["calls2"]), ticks(wf["calls2"]))
        many = measure(meter, dsn, durability, started(wf["calls12"]), ticks(wf["calls12"]))
        out.append(("side-effecting step", _minus(many, few, runs * 10)))
        few = measure(meter, dsn, durability, started(wf["pure2"]), ticks(wf["pure2"]))
        many = measure(meter, dsn, durability, started(wf["pure42"]), ticks(wf["pure42"]))
        out.append(("step without an effect", _minus(many, few, runs * 40)))
        m = measure(meter, dsn, durability, started(wf["ask"], tick=True), resumes(wf["ask"]))
        g = measure(meter, dsn, durability, started(wf["ask"], tick=True), gets)
        out.append(("resume (+1 step to completion)", _minus(m, g, runs)))
        m = measure(meter, dsn, durability, lambda rt: None, hitl)
        out.append(("8-step HITL run", _minus(m, base, runs)))
        def quiet(rt):  # the runs the operations above left RUNNING must not be claimed by the worker
            for run in rt.run_store.list_runs(status=RunStatus.RUNNING, limit=100_000):
                rt.cancel_run(run.run_id, reason="benchmark: out of the worker's way")

        m = measure(meter, dsn, durability, quiet, via_worker)
        out.append(("S2 run driven by a worker", _minus(m, base, runs)))
        return out
    finally:
        meter.close()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


LISTENER = """
import sys, time
from abstractruntime_postgres.store import PostgresBackend
heard = 0
with PostgresBackend(sys.argv[1], min_size=0, max_size=1) as backend:
    backend.wait_for_work(0.01)
    print("listening", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        heard += len(backend.wait_for_work(0.2))
print(heard, flush=True)
"""


def throughput(admin_dsn: str, runs: int, threads: int, rounds: int, durability: str) -> Dict[str, List[float]]:
    """Starts per second from ``threads`` threads, while a worker process listens, with and without notify.

    One database and four runtimes on it, each with its own pool: two with the store option ``notify = true``
    ("on", "on2") and two with ``notify = false`` ("off", "off2"), so the difference between two runtimes of the same
    setting shows the noise. Each round starts ``runs`` runs on each runtime in turn, in the next of the 24 orders
    (no runtime keeps a position). A block's time ends when its last ``start`` returned; the waker's statements that
    block asked for are sent during it (at most one every 50 ms) and the last one right after it."""
    import itertools

    import psycopg

    wf = _workflows()["calls2"]
    name = "ar_pgstat_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(admin_dsn, name)
    per = runs // threads

    def block(rt: Any) -> float:
        def work() -> None:
            for _ in range(per):
                rt.start(workflow=wf)

        ts = [threading.Thread(target=work) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rate = per * threads / (time.perf_counter() - t0)
        rt.run_store.backend.waker.flush()  # the host does not wait for it: a wake-up is sent after the commit
        return rate

    try:
        rts = {key: _runtime(dsn, durability, notify=key.startswith("on")) for key in ("on", "off", "on2", "off2")}
        rates: Dict[str, List[float]] = {key: [] for key in rts}
        try:
            listener = subprocess.Popen([sys.executable, "-c", LISTENER, dsn, "3600"], stdout=subprocess.PIPE,
                                        text=True)
            try:
                assert listener.stdout.readline().strip() == "listening"
                for rt in rts.values():  # warm the pools
                    block(rt)
                orders = list(itertools.permutations(rts))
                for i in range(rounds):
                    for key in orders[i % len(orders)]:
                        rates[key].append(block(rts[key]))
            finally:
                listener.terminate()
                listener.wait(30)
            sent = sum(rts[k].run_store.backend.waker.statements for k in ("on", "on2"))
            heard = sum(rts[k].run_store.backend.waker.notified for k in ("on", "on2"))
            print(f"(the notifying runtimes sent {sent} NOTIFY statements, {heard} notifications)")
            return rates
        finally:
            for rt in rts.values():
                rt.close()
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _print(results: List[Tuple[str, Dict[str, Any]]], detail: bool) -> None:
    print(f"| {'operation':<31} | statements | transactions (writes) | WAL bytes |")
    print(f"|{'-' * 33}|-----------:|----------------------:|----------:|")
    for name, r in results:
        n = sum(r["stmts"].values())
        print(f"| {name:<31} | {n:10.1f} | {r['xacts']:9.1f} ({r['xids']:5.2f})     | {r['wal']:9.0f} |")
    if detail:
        for name, r in results:
            print(f"\n{name}:")
            for (_qid, query), calls in sorted(r["stmts"].items(), key=lambda kv: -kv[1]):
                print(f"  {calls:6.2f}  {' '.join(query.split())[:150]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--durability", default="barrier", choices=("barrier", "step", "none"))
    ap.add_argument("--dsn", default="", help="an admin DSN of a server that preloads pg_stat_statements")
    ap.add_argument("--detail", action="store_true", help="print the statements of each operation")
    ap.add_argument("--throughput-runs", type=int, default=800)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--trials", type=int, default=24, help="NOTIFY rounds (a block on each of the four runtimes per round)")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args()
    with server(args.dsn) as admin:
        import psycopg

        with psycopg.connect(admin) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            fpw = conn.execute("SHOW full_page_writes").fetchone()[0]
        print(f"PostgreSQL {version} (full_page_writes={fpw}), durability {args.durability!r}, provenance on, "
              f"{args.runs} operations each")
        _print(operations(admin, args.runs, args.durability), args.detail)
        if not args.no_throughput:
            rates = throughput(admin, args.throughput_runs, args.threads, args.trials, args.durability)
            med = {key: statistics.median(r) for key, r in rates.items()}
            on, off = statistics.median(rates["on"] + rates["on2"]), statistics.median(rates["off"] + rates["off2"])
            print(f"\nNOTIFY: {args.threads} threads start {args.throughput_runs} runs per block, a worker process "
                  f"listening, {args.trials} rounds; starts/s, medians: "
                  + ", ".join(f"{key} {v:.0f}" for key, v in med.items())
                  + f"\n  notify costs {(1 - on / off) * 100:.1f}% ({on:.0f} with, {off:.0f} without); noise (same "
                  f"setting, two runtimes): {abs(1 - med['on2'] / med['on']) * 100:.1f}% on, "
                  f"{abs(1 - med['off2'] / med['off']) * 100:.1f}% off")

if __name__ == "__main__":
    main()
