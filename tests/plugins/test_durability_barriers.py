"""Durability barriers and group commit, measured on real files with the system calls counted by ``strace``.

* Every barrier (``start``, ``tick``, ``resume`` returning) is preceded by an fsync of the store (LMDB: fdatasync of
  ``data.mdb``; SQLite: fsync/fdatasync of the WAL), issued after the previous barrier returned.
* With durability "barrier" the steps between two barriers share those syncs; with "step" every step pays its own.
* Concurrent callers share syncs: 16 threads commit more steps than the store makes transactions (and syncs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None and not os.environ.get("CI"),
                                reason="strace is not installed (CI installs it)")
SYNC = re.compile(r"\b(fsync|fdatasync|msync)\(")
MARK = re.compile(r'write\(2, "BARRIER (\w+)')

CHILD = textwrap.dedent('''
    import os, sys
    from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
    url, durability, nodes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    PAST = "2000-01-01T00:00:00+00:00"
    def node(i):
        def fn(run, ctx):
            if i == nodes - 1:
                return StepPlan(node_id=f"n{i}", complete_output={"done": True})
            return StepPlan(node_id=f"n{i}", effect=Effect(EffectType.WAIT_UNTIL, {"until": PAST}), next_node=f"n{i+1}")
        return fn
    wf = WorkflowSpec(workflow_id="lin", entry_node="n0", nodes={f"n{i}": node(i) for i in range(nodes)})
    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="done")
    ASK = WorkflowSpec(workflow_id="ask", entry_node="ask",
                       nodes={"ask": ask, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
    def mark(name):
        os.write(2, f"BARRIER {name}\\n".encode())
    with Runtime.from_config({"store": url, "durability": durability}) as rt:
        mark("open")
        run_id = rt.start(workflow=wf); mark("start")
        assert rt.tick(workflow=wf, run_id=run_id, max_steps=nodes + 5).status is RunStatus.COMPLETED; mark("tick")
        run_id = rt.start(workflow=ASK); mark("start")
        state = rt.tick(workflow=ASK, run_id=run_id); mark("tick")
        state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={}); mark("resume")
        assert state.status is RunStatus.COMPLETED
''')


def _syncs_between_barriers(url: str, durability: str, nodes: int, tmp_path: Path):
    trace = tmp_path / f"trace-{durability}"
    out = subprocess.run([STRACE, "-f", "-qq", "-e", "trace=fsync,fdatasync,msync,write", "-o", str(trace),
                          sys.executable, "-c", CHILD, url, durability, str(nodes)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    segments, current = [], 0
    for line in trace.read_text().splitlines():
        if SYNC.search(line):
            current += 1
        m = MARK.search(line)
        if m:
            segments.append((m.group(1), current))
            current = 0
    return segments[1:]  # what each API call synced before it returned (opening the store is not a barrier)


@pytest.mark.parametrize("store", ["lmdb", "sqlite"])
def test_every_barrier_is_preceded_by_a_sync_and_barrier_mode_shares_them(store, tmp_path):
    nodes = 20
    counts = {}
    for durability in ("barrier", "step"):
        url = (f"lmdb://{tmp_path}/{durability}-db" if store == "lmdb"
               else f"sqlite://{tmp_path}/{durability}.sqlite")
        segments = _syncs_between_barriers(url, durability, nodes, tmp_path)
        assert [name for name, _ in segments] == ["start", "tick", "start", "tick", "resume"]
        assert all(n >= 1 for _, n in segments), segments  # nothing returns before its commit is on disk
        counts[durability] = segments
    # the 20-step tick: one transaction's syncs with barriers, one per step (at least) without
    barrier_tick, step_tick = counts["barrier"][1][1], counts["step"][1][1]
    assert barrier_tick <= 3, counts
    assert step_tick >= nodes, counts


def test_sixteen_threads_share_transactions_and_syncs_on_lmdb(tmp_path):
    """Group commit: the commits of 16 threads (human-in-the-loop runs on one Runtime) need fewer LMDB write
    transactions -- each one fsync'd -- than there are commits; counted by the store and by strace."""
    child = textwrap.dedent('''
        import sys, threading
        from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
        def ask(run, ctx):
            return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="done")
        ASK = WorkflowSpec(workflow_id="ask", entry_node="ask",
                           nodes={"ask": ask, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})
        rt = Runtime.from_config({"store": sys.argv[1]})
        def work():
            for _ in range(15):
                run_id = rt.start(workflow=ASK)
                state = rt.tick(workflow=ASK, run_id=run_id)
                state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
                assert state.status is RunStatus.COMPLETED
        threads = [threading.Thread(target=work) for _ in range(16)]
        [t.start() for t in threads]; [t.join() for t in threads]
        group = rt.backend.group
        print(group.commits, group.transactions)
        rt.close()
    ''')
    trace = tmp_path / "trace"
    out = subprocess.run([STRACE, "-f", "-qq", "-e", "trace=fsync,fdatasync,msync", "-o", str(trace),
                          sys.executable, "-c", child, f"lmdb://{tmp_path}/db"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    commits, transactions = map(int, out.stdout.split())
    assert commits == 16 * 15 * 3  # start, tick, resume: one commit each
    syncs = sum(1 for line in trace.read_text().splitlines() if SYNC.search(line))
    assert transactions < commits, (transactions, commits)
    assert syncs < commits, (syncs, commits)  # LMDB syncs data then meta: 2 per transaction


def test_a_refused_commit_in_a_batch_fails_alone_and_writes_nothing(tmp_path):
    """One LMDB transaction holding three commits, the middle one stale (wrong revision): the other two are
    written, the stale one gets its own ConcurrentModificationError and leaves no trace (checked before writing)."""
    from abstractruntime import RunState, StepRecord, codec
    from abstractruntime.errors import ConcurrentModificationError
    from abstractruntime.models import StepStatus
    from abstractruntime.storage.base import StepCommit
    from abstractruntime_lmdb.store import LmdbBackend
    from abstractruntime_storekit import GroupEntry

    backend = LmdbBackend(tmp_path / "db")
    try:
        runs = []
        for i in range(3):
            run = RunState.new(workflow_id="w", entry_node="a")
            run.revision = 1
            backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))
            runs.append(run)
        entries = []
        for i, run in enumerate(runs):
            run.step, run.revision = 1, 2
            record = StepRecord(run_id=run.run_id, step_id=f"s{i}", node_id="a", status=StepStatus.COMPLETED)
            entries.append(GroupEntry(StepCommit(run=run, run_json=codec.encode_run(run), records=[record],
                                                 record_jsons=[codec.encode_record(record)],
                                                 expected_revision=7 if i == 1 else 1)))
        backend._write_batch(entries)
        assert [type(e.error) for e in entries] == [type(None), ConcurrentModificationError, type(None)]
        assert [backend.run_store.load(r.run_id).revision for r in runs] == [2, 1, 2]
        assert [len(backend.ledger_store.list(r.run_id)) for r in runs] == [1, 0, 1]
    finally:
        backend.close()
