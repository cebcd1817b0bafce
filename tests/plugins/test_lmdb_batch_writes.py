"""The LMDB batch writer checks each commit before it writes (no nested transaction per commit): a commit whose
writing fails midway is taken out and the batch written again without it, and the writer makes no py-lmdb call
that releases the GIL but its transactions' (under many threads each release is a wait to get it back:
docs/benchmarks.md)."""

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
#: py-lmdb calls that release the GIL (what the batch writer pays for under many threads), by their type: beside one
#: busy thread, Transaction.get / put / delete cost 100-400 us each (waiting to get the GIL back), cursor calls
#: 1-2 us -- except putmulti, which releases it once per item
RELEASING = {"Transaction": {"get", "put", "delete", "replace", "pop", "__exit__", "commit", "abort"},
             "Cursor": {"putmulti"}}


def test_a_human_in_the_loop_run_costs_the_writer_no_gil_release_but_its_transactions(tmp_path):
    """start -> ask_user -> resume -> complete: three commits, three transactions. The writer reads and writes
    through a cursor (store.CursorTxn): 41 GIL-releasing calls before the batch writer, 35 after it, none now
    but the three transactions' commits (each fsyncs: it must release the GIL)."""
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false"})
    backend = rt.run_store.backend
    counts: Counter = Counter()
    kept: Counter = Counter()  # the cursor calls it makes instead (that the test sees the writer's calls at all)

    def profile(frame, event, arg):
        if event == "c_call":
            kind = type(getattr(arg, "__self__", None)).__name__
            if arg.__name__ in RELEASING.get(kind, ()):
                counts[f"{kind}.{arg.__name__}"] += 1
            elif kind == "Cursor":
                kept[arg.__name__] += 1

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
        assert counts == Counter({"Transaction.__exit__": 3}), counts  # one per transaction, nothing else
        assert kept["put"] >= 15 and kept["get"] >= 3, kept
    finally:
        rt.close()
