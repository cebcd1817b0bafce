"""The LMDB batch writer checks each commit before it writes (no nested transaction per commit): a commit whose
writing fails midway is taken out and the batch written again without it, and the writer makes few py-lmdb calls
(each releases the GIL -- py-lmdb wraps every LMDB call in Py_BEGIN_ALLOW_THREADS -- and under many threads each
release may be a wait to get it back: docs/benchmarks.md)."""

from __future__ import annotations

import sys
from collections import Counter

from abstractruntime import Effect, EffectType, RunState, Runtime, RunStatus, StepPlan, StepRecord, WorkflowSpec, codec
from abstractruntime.models import StepStatus
from abstractruntime.storage.base import StepCommit
from abstractruntime_lmdb.store import FAULT_POINT, LmdbBackend
from abstractruntime_storekit import GroupEntry


def _stored_runs(backend, n):
    runs = []
    for _ in range(n):
        run = RunState.new(workflow_id="w", entry_node="a")
        run.revision = 1
        backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))
        runs.append(run)
    return runs


def _step(run, i, key):
    run.step, run.revision = 1, 2
    started = StepRecord(run_id=run.run_id, step_id=f"s{i}", node_id="a", status=StepStatus.STARTED,
                         idempotency_key=key)
    done = StepRecord(run_id=run.run_id, step_id=f"s{i}", node_id="a", status=StepStatus.COMPLETED,
                      idempotency_key=key)
    return StepCommit(run=run, run_json=codec.encode_run(run), records=[started, done],
                      record_jsons=[codec.encode_record(started), codec.encode_record(done)], expected_revision=1)


def test_a_commit_failing_midway_in_a_batch_leaves_no_trace_and_the_others_are_written(tmp_path):
    backend = LmdbBackend(tmp_path / "db")
    try:
        runs = _stored_runs(backend, 3)
        entries = [GroupEntry(_step(run, i, f"k{i}")) for i, run in enumerate(runs)]
        calls = []

        def fault(point):  # the second commit fails after its checkpoint was written, before its records
            calls.append(point)
            if len(calls) == 2:
                raise RuntimeError("disk on fire")

        backend.fault_injector = fault
        backend._write_batch(entries)
        backend.fault_injector = None
        assert calls[0] == FAULT_POINT and len(calls) == 4  # the batch was written again without the failed one
        assert [type(e.error) for e in entries] == [type(None), RuntimeError, type(None)]
        assert [backend.run_store.load(r.run_id).revision for r in runs] == [2, 1, 2]
        assert [len(backend.ledger_store.list(r.run_id)) for r in runs] == [2, 0, 2]
        assert backend.run_store.list_runs(status=RunStatus.RUNNING, limit=10)  # the index follows the checkpoints
        for i, run in enumerate(runs):
            found = backend.ledger_store.find_by_idempotency_key(run.run_id, f"k{i}")
            assert (found or {}).get("status") == (None if i == 1 else "completed")  # one entry, its final value
        assert backend.ledger_head_hint(runs[1].run_id) is None
        assert backend.ledger_head_hint(runs[0].run_id)[0] == 2
    finally:
        backend.close()


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "?"}, result_key="a"),
                    next_node="done")


ASK = WorkflowSpec(workflow_id="ask", entry_node="ask",
                   nodes={"ask": _ask, "done": lambda run, ctx: StepPlan(node_id="done", complete_output={})})


def test_a_human_in_the_loop_run_costs_the_writer_few_lmdb_calls(tmp_path):
    """start -> ask_user -> resume -> complete: three commits, three transactions, 43 calls of py-lmdb objects in
    the writer: each key read once and written once (18 puts, 6 gets, 5 index entries deleted), a run's last ledger
    seq looked up once per commit (a cursor: set_range, prev, key)."""
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false"})
    backend = rt.run_store.backend
    counts: Counter = Counter()

    def profile(frame, event, arg):
        if event == "c_call" and type(getattr(arg, "__self__", None)).__name__ in ("Transaction", "Cursor"):
            counts[f"{type(arg.__self__).__name__}.{arg.__name__}"] += 1

    write = backend.group._apply

    def counted(batch):
        sys.setprofile(profile)
        try:
            return write(batch)
        finally:
            sys.setprofile(None)

    backend.group._apply = counted
    try:
        run_id = rt.start(workflow=ASK)
        state = rt.tick(workflow=ASK, run_id=run_id)
        state = rt.resume(workflow=ASK, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
        assert state.status is RunStatus.COMPLETED
        assert backend.group.commits == 3
        assert counts["Transaction.__exit__"] == 3, counts  # one transaction per commit (single-threaded)
        assert counts["Transaction.put"] == 18 and counts["Transaction.get"] == 6, counts
        assert 30 <= sum(counts.values()) <= 43, counts  # (the lower bound: the profile does see the writer's calls)
    finally:
        rt.close()
