"""The in-process query index (storekit's ``SortedRunIndex``, used by the memory and JSON-files stores) applies a
run's entries when it is next read, not at every commit: whatever the interleaving of commits and queries, a query
sees exactly the entries of every run's last commit. And the memory store still refuses a bad run id on every
write, though it checks an id it has stored only once."""

from __future__ import annotations

import random

import pytest

from abstractruntime.errors import ValidationError
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason, WaitState
from abstractruntime.storage.base import StepCommit
from abstractruntime_inmemory.store import MemoryBackend
from abstractruntime_storekit import SortedRunIndex, index_entries
from abstractruntime_storekit.recency import SortedIndexReader


def _model_scan(model, kind, lo, hi):
    rows = sorted((v, rid) for rid, entries in model.items() for k, v in entries if k == kind)
    return [rid for v, rid in rows if v >= lo and (hi is None or v <= hi)]


def test_the_index_answers_as_if_every_set_had_been_applied_at_once():
    rng = random.Random(16)
    index, model = SortedRunIndex(), {}
    run_ids = [f"r{i}" for i in range(12)]
    kinds, values = ["status", "updated", "workflow", "event"], ["a", "b", "c", "d"]
    for _ in range(3000):
        op = rng.random()
        run_id = rng.choice(run_ids)
        if op < 0.55:  # a commit: the run's whole entry set replaced (sometimes unchanged, sometimes emptied)
            entries = tuple({(k, rng.choice(values)) for k in rng.sample(kinds, rng.randint(0, 3))})
            index.set(run_id, entries)
            if entries:
                model[run_id] = frozenset(entries)
            else:
                model.pop(run_id, None)
        elif op < 0.75:
            kind, lo = rng.choice(kinds), rng.choice(values)
            hi = rng.choice([None, lo, "z"])
            assert index.scan(kind, lo, hi) == _model_scan(model, kind, lo, hi)
        elif op < 0.9:
            kind = rng.choice(kinds)
            assert list(index.iter_index(kind, reverse=True)) == [
                (v, rid) for v, rid in reversed(sorted((v, rid) for rid, e in model.items() for k, v in e if k == kind))]
        else:
            assert index.entries_of(run_id) == model.get(run_id)


def _run(status=RunStatus.RUNNING, waiting=None, workflow_id="wf"):
    run = RunState.new(workflow_id=workflow_id, entry_node="a")
    run.status, run.waiting = status, waiting
    return run


def _commit(backend, run, expected=None, records=()):
    run.revision = (run.revision or 0) + 1 if expected is not None else run.revision
    backend.commit_step(StepCommit(run=run, run_json=None, expected_revision=expected, records=records,
                                   record_jsons=[b"{}" for _ in records]))


def test_a_run_committed_many_times_between_two_queries_is_found_by_its_last_state_only():
    backend = MemoryBackend()
    queries = backend.run_store
    waiting = _run(RunStatus.WAITING, WaitState(reason=WaitReason.EVENT, wait_key="evt:go"))
    timer = _run(RunStatus.WAITING, WaitState(reason=WaitReason.UNTIL, until="2000-01-01T00:00:00+00:00"))
    for run in (waiting, timer):
        _commit(backend, run)
    assert [r.run_id for r in queries.list_waiting_for_event(wait_key="evt:go")] == [waiting.run_id]
    # three status changes of each run, no query in between
    for status in (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.COMPLETED):
        for run in (waiting, timer):
            run.status = status
            run.waiting = WaitState(reason=WaitReason.USER, wait_key="ask") if status is RunStatus.WAITING else None
            _commit(backend, run, expected=run.revision)
    assert queries.list_waiting_for_event(wait_key="evt:go") == []
    assert queries.list_due_wait_until(now_iso="2030-01-01T00:00:00+00:00") == []
    assert queries.list_runs(status=RunStatus.WAITING) == []
    assert {r.run_id for r in queries.list_runs(status=RunStatus.COMPLETED)} == {waiting.run_id, timer.run_id}
    assert queries.count_by_status() == {"completed": 2}
    assert queries.list_runs(limit=1)[0].run_id == timer.run_id  # newest ``updated`` first
    reader = SortedIndexReader(backend._index, backend._load_many)
    assert reader.entries_of(timer.run_id) == frozenset(index_entries(queries.load(timer.run_id)))


def test_the_memory_store_refuses_bad_run_ids_on_every_write():
    backend = MemoryBackend()
    good = _run()
    _commit(backend, good)
    record = StepRecord(run_id=good.run_id, step_id="s", node_id="a", status=StepStatus.COMPLETED)
    _commit(backend, good, expected=good.revision, records=(record,))  # a stored id: fine
    for bad in ("../x", "", "a/b", None, 7, "x" * 201):
        bad_run = _run()
        bad_run.run_id = bad
        with pytest.raises(ValidationError):
            _commit(backend, bad_run)
        stray = StepRecord(run_id=bad, step_id="s", node_id="a", status=StepStatus.COMPLETED)
        with pytest.raises(ValidationError):  # beside a valid run: nothing of the commit is written
            backend.commit_step(StepCommit(run=None, run_json=None, records=(record, stray),
                                           record_jsons=(b"{}", b"{}")))
    assert backend.ledger_store.count(good.run_id) == 1
    assert set(backend._runs) == {good.run_id} and set(backend._ledger) == {good.run_id}


def test_the_memory_store_hints_the_chain_head_it_wrote():
    """``ledger_head_hint`` (what the provenance plugin chains a commit on, read without decoding a row) is the
    stored last record's hash, however the records were appended."""
    from abstractruntime import Runtime, StepPlan, WorkflowSpec

    backend = MemoryBackend()
    rt = Runtime(run_store=backend.run_store, ledger_store=backend.ledger_store)
    flow = WorkflowSpec(workflow_id="w", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", complete_output={"ok": 1.5})})
    run_id = rt.start(workflow=flow)
    assert backend.ledger_head_hint(run_id) == (0, None)
    rt.tick(workflow=flow, run_id=run_id)
    rows = rt.get_ledger(run_id)
    assert len(rows) >= 2 and backend.ledger_head_hint(run_id) == (len(rows), rows[-1]["record_hash"])
    backend.ledger_store.append(StepRecord(run_id=run_id, step_id="x", node_id="a", status=StepStatus.COMPLETED))
    assert backend.ledger_head_hint(run_id) == (len(rows) + 1, None)  # an unchained append: no hash
    assert backend.ledger_head_hint("unknown") == (0, None)
