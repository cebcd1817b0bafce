"""The store conformance suite: every store backend must pass it unchanged.

Use it from a test module of your store plugin::

    from abstractruntime.testing import StoreConformance

    class TestMyStore(StoreConformance):
        persistent = True            # False for stores that do not survive close()

        def open_backend(self, path):  # path: a fresh directory (pathlib.Path) per test
            return MyBackend(path)

The suite needs pytest. A backend is the object a store plugin's factory returns: ``run_store``,
``ledger_store``, ``commit_step(StepCommit)``, ``close()``, and -- for the atomicity test -- a writable
``fault_injector`` attribute that the backend calls with a fault-point name *inside* ``commit_step``, after the
checkpoint has been written into the transaction and before the ledger records are (an exception raised by the
injector must abort the whole commit).
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, List, Optional

import pytest

from .. import codec
from ..errors import ConcurrentModificationError, EffectAlreadyStartedError, LedgerHeadMovedError
from ..models import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    utc_now_iso,
)
from ..storage.base import StepCommit


class InjectedFault(Exception):
    pass


def _iso(dt: datetime) -> str:
    return dt.isoformat()


class StoreConformance:
    """Subclass and implement :meth:`open_backend`."""

    persistent: bool = True

    def open_backend(self, path: Path) -> Any:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    # --- fixtures and helpers ---------------------------------------------------------------------------------
    @pytest.fixture
    def store_dir(self, tmp_path: Path) -> Path:
        d = tmp_path / "store"
        d.mkdir()
        return d

    @pytest.fixture
    def backend(self, store_dir: Path):
        b = self.open_backend(store_dir)
        yield b
        b.close()

    def reopen(self, backend: Any, store_dir: Path) -> Any:
        backend.close()
        return self.open_backend(store_dir)

    @staticmethod
    def new_run(**kw: Any) -> RunState:
        run = RunState.new(workflow_id=kw.pop("workflow_id", "wf"), entry_node=kw.pop("entry_node", "a"),
                           vars=kw.pop("vars", None), parent_run_id=kw.pop("parent_run_id", None),
                           session_id=kw.pop("session_id", None))
        for k, v in kw.items():
            setattr(run, k, v)
        return run

    @staticmethod
    def commit(backend: Any, run: Optional[RunState], records: List[StepRecord] = (), *,
               expected: Optional[int] = None, reservation: bool = False) -> None:
        if run is not None:
            run.revision = (expected if expected is not None else run.revision) + 1
            run.updated_at = utc_now_iso()
        backend.commit_step(StepCommit(
            run=run,
            run_json=codec.encode_run(run) if run is not None else None,
            records=tuple(records),
            record_jsons=tuple(codec.encode_record(r) for r in records),
            expected_revision=expected,
            reservation=reservation,
        ))

    @staticmethod
    def record(run: RunState, node: str = "a", *, status: StepStatus = StepStatus.COMPLETED,
               key: Optional[str] = None, result: Optional[dict] = None) -> StepRecord:
        rec = StepRecord.start(run=run, node_id=node, effect=Effect(type=EffectType.ANSWER_USER,
                                                                    payload={"message": "hi"}),
                               idempotency_key=key)
        if status is StepStatus.COMPLETED:
            return rec.finish_success(result if result is not None else {"n": 1})
        if status is StepStatus.FAILED:
            return rec.finish_failure("boom")
        return rec

    def wait_until(self, backend: Any, until: str, **kw: Any) -> RunState:
        run = self.new_run(**kw)
        run.status = RunStatus.WAITING
        run.waiting = WaitState(reason=WaitReason.UNTIL, until=until, resume_to_node="b")
        self.commit(backend, run)
        return run

    def test_backend_pairs_its_stores(self, backend: Any) -> None:
        # the kernel commits a step in one transaction only for stores whose .backend is the same object
        assert backend.run_store.backend is backend
        assert backend.ledger_store.backend is backend

    # --- save / load ------------------------------------------------------------------------------------------
    def test_save_load_roundtrip(self, backend: Any) -> None:
        run = self.new_run(vars={"text": "héllo ☃", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}},
                           session_id="s1")
        run.waiting = WaitState(reason=WaitReason.USER, wait_key="k", prompt="?", choices=["x", "y"],
                                details={"d": 1})
        run.status = RunStatus.WAITING
        backend.run_store.save(run)
        loaded = backend.run_store.load(run.run_id)
        assert loaded == run
        assert loaded is not run

    def test_load_unknown_returns_none(self, backend: Any) -> None:
        assert backend.run_store.load("no-such-run") is None

    def test_loaded_runs_are_copies(self, backend: Any) -> None:
        run = self.new_run(vars={"items": [1]})
        self.commit(backend, run)
        first = backend.run_store.load(run.run_id)
        first.vars["items"].append(2)
        assert backend.run_store.load(run.run_id).vars == {"items": [1]}

    def test_save_overwrites(self, backend: Any) -> None:
        run = self.new_run()
        backend.run_store.save(run)
        run.current_node = "b"
        backend.run_store.save(run)
        assert backend.run_store.load(run.run_id).current_node == "b"

    # --- ledger -----------------------------------------------------------------------------------------------
    def test_ledger_order_and_isolation(self, backend: Any) -> None:
        r1, r2 = self.new_run(), self.new_run()
        for i in range(25):
            backend.ledger_store.append(self.record(r1, node=f"n{i}"))
            if i % 5 == 0:
                backend.ledger_store.append(self.record(r2, node=f"m{i}"))
        rows = backend.ledger_store.list(r1.run_id)
        assert [r["node_id"] for r in rows] == [f"n{i}" for i in range(25)]
        assert [r["node_id"] for r in backend.ledger_store.list(r2.run_id)] == ["m0", "m5", "m10", "m15", "m20"]
        assert backend.ledger_store.list("unknown") == []

    def test_ledger_rows_are_reference_dicts(self, backend: Any) -> None:
        run = self.new_run()
        rec = self.record(run)
        backend.ledger_store.append(rec)
        (row,) = backend.ledger_store.list(run.run_id)
        assert row == codec.record_to_dict(rec)
        assert row["status"] == "completed" and row["effect"]["type"] == "answer_user"

    def test_count_and_list_after(self, backend: Any) -> None:
        run = self.new_run()
        for i in range(7):
            backend.ledger_store.append(self.record(run, node=f"n{i}"))
        assert backend.ledger_store.count(run.run_id) == 7
        page, cursor = backend.ledger_store.list_after(run_id=run.run_id, after=0, limit=3)
        assert [r["node_id"] for r in page] == ["n0", "n1", "n2"] and cursor == 3
        page, cursor = backend.ledger_store.list_after(run_id=run.run_id, after=cursor, limit=10)
        assert [r["node_id"] for r in page] == ["n3", "n4", "n5", "n6"] and cursor == 7
        page, cursor = backend.ledger_store.list_after(run_id=run.run_id, after=7, limit=10)
        assert page == [] and cursor == 7

    def test_last_record_when_provided(self, backend: Any) -> None:
        last = getattr(backend.ledger_store, "last_record", None)
        if last is None:  # optional: callers fall back to count + list_after
            assert backend.ledger_store.count("nothing") == 0
            return
        run = self.new_run()
        assert last(run.run_id) is None
        for i in range(3):
            backend.ledger_store.append(self.record(run, node=f"n{i}"))
        assert last(run.run_id)["node_id"] == "n2"
        assert last("other") is None

    def test_find_by_idempotency_key(self, backend: Any) -> None:
        run = self.new_run()
        assert backend.ledger_store.find_by_idempotency_key(run.run_id, "k1") is None
        started = self.record(run, status=StepStatus.STARTED, key="k1")
        backend.ledger_store.append(started)
        assert backend.ledger_store.find_by_idempotency_key(run.run_id, "k1")["status"] == "started"
        backend.ledger_store.append(started.finish_success({"v": 42}))
        hit = backend.ledger_store.find_by_idempotency_key(run.run_id, "k1")
        assert hit["status"] == "completed" and hit["result"] == {"v": 42}
        # a completed row stays the answer even if a later row carries the same key
        backend.ledger_store.append(self.record(run, status=StepStatus.STARTED, key="k1"))
        assert backend.ledger_store.find_by_idempotency_key(run.run_id, "k1")["status"] == "completed"
        assert backend.ledger_store.find_by_idempotency_key("other-run", "k1") is None

    # --- the step commit --------------------------------------------------------------------------------------
    def test_commit_writes_checkpoint_and_records_together(self, backend: Any) -> None:
        run = self.new_run()
        self.commit(backend, run)
        run.current_node = "b"
        run.vars["x"] = 1
        self.commit(backend, run, [self.record(run), self.record(run, node="b")], expected=run.revision)
        loaded = backend.run_store.load(run.run_id)
        assert loaded.current_node == "b" and loaded.vars == {"x": 1} and loaded.revision == 2
        assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["a", "b"]

    def test_ledger_only_commit(self, backend: Any) -> None:
        run = self.new_run()
        self.commit(backend, run)
        self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k")])
        assert backend.ledger_store.count(run.run_id) == 1
        assert backend.run_store.load(run.run_id).revision == 1

    def test_a_reservation_is_create_only_per_idempotency_key(self, backend: Any) -> None:
        """Two writers reserving the same effect: the second is refused (EffectAlreadyStartedError, a
        ConcurrentModificationError) and writes nothing. After a failed attempt the next attempt may reserve;
        after a completed one nobody may."""
        run = self.new_run()
        self.commit(backend, run)
        started = self.record(run, status=StepStatus.STARTED, key="k")
        self.commit(backend, None, [started], reservation=True)
        with pytest.raises(EffectAlreadyStartedError) as info:
            self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k")], reservation=True)
        assert isinstance(info.value, ConcurrentModificationError) and info.value.idempotency_key == "k"
        assert backend.ledger_store.count(run.run_id) == 1
        # the first attempt failed: the retry (its failure row and the next reservation in one commit) is allowed
        retry = self.record(run, status=StepStatus.STARTED, key="k")
        retry.attempt = 2
        self.commit(backend, None, [started.finish_failure("boom"), retry], reservation=True)
        assert backend.ledger_store.count(run.run_id) == 3
        self.commit(backend, None, [retry.finish_success({"v": 1})])
        with pytest.raises(EffectAlreadyStartedError, match="already completed"):
            self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k")], reservation=True)
        # other keys, and commits that are not reservations, are not affected
        self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k2")], reservation=True)
        self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k2")])
        assert backend.ledger_store.count(run.run_id) == 6

    def test_chained_records_must_extend_the_current_head(self, backend: Any) -> None:
        """A hash-chained record whose ``prev_hash`` is not the run's last ``record_hash`` (another writer appended
        first) is refused with LedgerHeadMovedError and nothing is written: the chain never forks."""
        run = self.new_run()
        self.commit(backend, run)

        def chained(prev: Optional[str], digest: str) -> StepRecord:
            rec = self.record(run)
            rec.prev_hash, rec.record_hash = prev, digest
            return rec

        self.commit(backend, None, [chained(None, "h1"), chained("h1", "h2")])
        with pytest.raises(LedgerHeadMovedError) as info:
            self.commit(backend, None, [chained("h1", "h3")])
        assert isinstance(info.value, ConcurrentModificationError) and info.value.head_hash == "h2"
        stale_run = backend.run_store.load(run.run_id)
        with pytest.raises(LedgerHeadMovedError):  # also with a checkpoint: the whole commit is refused
            self.commit(backend, stale_run, [chained(None, "h9")], expected=stale_run.revision)
        assert backend.ledger_store.count(run.run_id) == 2 and backend.run_store.load(run.run_id).revision == 1
        self.commit(backend, None, [chained("h2", "h3")])
        self.commit(backend, None, [self.record(run)])  # records without hashes are not checked
        assert [r.get("record_hash") for r in backend.ledger_store.list(run.run_id)] == ["h1", "h2", "h3", None]

    def test_stale_revision_is_refused_and_writes_nothing(self, backend: Any) -> None:
        run = self.new_run()
        self.commit(backend, run)
        winner = backend.run_store.load(run.run_id)
        winner.current_node = "winner"
        self.commit(backend, winner, [self.record(winner)], expected=1)
        loser = run
        loser.current_node = "loser"
        with pytest.raises(ConcurrentModificationError):
            self.commit(backend, loser, [self.record(loser, node="loser")], expected=1)
        loaded = backend.run_store.load(run.run_id)
        assert loaded.current_node == "winner" and loaded.revision == 2
        assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["a"]

    def test_failure_inside_commit_leaves_nothing_written(self, backend: Any, store_dir: Path) -> None:
        run = self.new_run(vars={"v": "before"})
        self.commit(backend, run, [self.record(run, node="first")])
        before_state = backend.run_store.load(run.run_id)

        def fail(point: str) -> None:
            raise InjectedFault(point)

        backend.fault_injector = fail
        run.vars["v"] = "after"
        run.status = RunStatus.WAITING
        run.waiting = WaitState(reason=WaitReason.UNTIL, until="2000-01-01T00:00:00+00:00", resume_to_node="b")
        with pytest.raises(InjectedFault):
            self.commit(backend, run, [self.record(run, node="second"), self.record(run, node="third")],
                        expected=1)
        backend.fault_injector = None
        assert backend.run_store.load(run.run_id) == before_state
        assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["first"]
        assert backend.run_store.list_due_wait_until(now_iso=_iso(datetime.now(timezone.utc))) == []
        if self.persistent:
            backend = self.reopen(backend, store_dir)
            try:
                assert backend.run_store.load(run.run_id) == before_state
                assert backend.ledger_store.count(run.run_id) == 1
            finally:
                backend.close()

    def test_concurrent_commits_from_threads(self, backend: Any) -> None:
        runs = [self.new_run() for _ in range(4)]
        for r in runs:
            self.commit(backend, r)
        errors: List[BaseException] = []

        def work(run: RunState) -> None:
            try:
                for i in range(30):
                    run.vars["i"] = i
                    self.commit(backend, run, [self.record(run, node=f"n{i}")], expected=run.revision)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for r in runs:
            assert backend.run_store.load(r.run_id).vars["i"] == 29
            assert [x["node_id"] for x in backend.ledger_store.list(r.run_id)] == [f"n{i}" for i in range(30)]

    # --- queries ----------------------------------------------------------------------------------------------
    def test_list_due_wait_until_compares_instants(self, backend: Any) -> None:
        now = datetime.now(timezone.utc)
        past_z = self.wait_until(backend, (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        # one hour ago written in +05:00: as a string it sorts *after* now, as an instant it is due
        past_offset = self.wait_until(backend, (now - timedelta(hours=1)).astimezone(
            timezone(timedelta(hours=5))).isoformat())
        future_offset = self.wait_until(backend, (now + timedelta(hours=1)).astimezone(
            timezone(timedelta(hours=-5))).isoformat())
        due = backend.run_store.list_due_wait_until(now_iso=now.isoformat())
        assert [r.run_id for r in due] == [past_z.run_id, past_offset.run_id]
        assert future_offset.run_id not in [r.run_id for r in due]
        assert len(backend.run_store.list_due_wait_until(now_iso=now.isoformat(), limit=1)) == 1

    def test_due_index_follows_status_changes(self, backend: Any) -> None:
        now = datetime.now(timezone.utc)
        run = self.wait_until(backend, _iso(now - timedelta(minutes=1)))
        assert [r.run_id for r in backend.run_store.list_due_wait_until(now_iso=_iso(now))] == [run.run_id]
        run.status = RunStatus.RUNNING
        run.waiting = None
        self.commit(backend, run, expected=run.revision)
        assert backend.run_store.list_due_wait_until(now_iso=_iso(now)) == []

    def test_list_waiting_for_event(self, backend: Any) -> None:
        runs = []
        for key in ("evt:session:s1:go", "evt:session:s1:go", "evt:session:s1:stop"):
            run = self.new_run()
            run.status = RunStatus.WAITING
            run.waiting = WaitState(reason=WaitReason.EVENT, wait_key=key, resume_to_node="b")
            self.commit(backend, run)
            runs.append(run)
        got = backend.run_store.list_waiting_for_event(wait_key="evt:session:s1:go")
        assert sorted(r.run_id for r in got) == sorted([runs[0].run_id, runs[1].run_id])
        assert backend.run_store.list_waiting_for_event(wait_key="evt:session:s1:none") == []
        runs[0].status = RunStatus.COMPLETED
        runs[0].waiting = None
        self.commit(backend, runs[0], expected=runs[0].revision)
        assert [r.run_id for r in backend.run_store.list_waiting_for_event(wait_key="evt:session:s1:go")] == [
            runs[1].run_id]

    def test_list_runs_filters_and_orders(self, backend: Any) -> None:
        a = self.new_run(workflow_id="wf-a")
        b = self.new_run(workflow_id="wf-b")
        c = self.wait_until(backend, "2999-01-01T00:00:00+00:00", workflow_id="wf-a")
        for r in (a, b):
            self.commit(backend, r)
        a.vars["touched"] = True
        self.commit(backend, a, expected=a.revision)  # a is now the most recently updated
        ids = [r.run_id for r in backend.run_store.list_runs()]
        assert set(ids) == {a.run_id, b.run_id, c.run_id} and ids[0] == a.run_id
        assert {r.run_id for r in backend.run_store.list_runs(workflow_id="wf-a")} == {a.run_id, c.run_id}
        assert [r.run_id for r in backend.run_store.list_runs(status=RunStatus.WAITING)] == [c.run_id]
        assert [r.run_id for r in backend.run_store.list_runs(wait_reason=WaitReason.UNTIL)] == [c.run_id]
        assert backend.run_store.list_runs(status=RunStatus.RUNNING, workflow_id="wf-b")[0].run_id == b.run_id
        assert len(backend.run_store.list_runs(limit=2)) == 2

    def test_list_children_and_run_index(self, backend: Any) -> None:
        parent = self.new_run(session_id="s")
        self.commit(backend, parent)
        kids = [self.new_run(parent_run_id=parent.run_id, workflow_id="child") for _ in range(3)]
        for k in kids:
            self.commit(backend, k)
        kids[0].status = RunStatus.COMPLETED
        self.commit(backend, kids[0], expected=kids[0].revision)
        got = backend.run_store.list_children(parent_run_id=parent.run_id)
        assert sorted(r.run_id for r in got) == sorted(k.run_id for k in kids)
        done = backend.run_store.list_children(parent_run_id=parent.run_id, status=RunStatus.COMPLETED)
        assert [r.run_id for r in done] == [kids[0].run_id]
        rows = backend.run_store.list_run_index(root_only=True)
        assert [r["run_id"] for r in rows] == [parent.run_id]
        assert set(rows[0]) == {"run_id", "workflow_id", "status", "wait_reason", "wait_until", "parent_run_id",
                                "actor_id", "session_id", "created_at", "updated_at"}
        assert len(backend.run_store.list_run_index(workflow_id="child")) == 3
        assert [r["run_id"] for r in backend.run_store.list_run_index(session_id="s")] == [parent.run_id]

    # --- reopen -----------------------------------------------------------------------------------------------
    def test_reopen_keeps_everything(self, backend: Any, store_dir: Path) -> None:
        if not self.persistent:  # the contract of a non-persistent store: a new one starts empty
            run = self.new_run()
            self.commit(backend, run, [self.record(run)])
            backend = self.reopen(backend, store_dir)
            try:
                assert backend.run_store.load(run.run_id) is None
                assert backend.ledger_store.list(run.run_id) == []
            finally:
                backend.close()
            return
        now = datetime.now(timezone.utc)
        run = self.wait_until(backend, _iso(now - timedelta(seconds=1)), vars={"k": "v"})
        evt = self.new_run()
        evt.status = RunStatus.WAITING
        evt.waiting = WaitState(reason=WaitReason.EVENT, wait_key="evt:global:global:x")
        self.commit(backend, evt)
        for i in range(3):
            backend.ledger_store.append(self.record(run, node=f"n{i}", key=f"k{i}"))
        backend = self.reopen(backend, store_dir)
        try:
            assert backend.run_store.load(run.run_id) == run
            assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["n0", "n1", "n2"]
            assert [r.run_id for r in backend.run_store.list_due_wait_until(now_iso=_iso(now))] == [run.run_id]
            assert [r.run_id for r in backend.run_store.list_waiting_for_event(wait_key="evt:global:global:x")] == [
                evt.run_id]
            assert backend.ledger_store.find_by_idempotency_key(run.run_id, "k1")["node_id"] == "n1"
            # appends continue after the existing records
            backend.ledger_store.append(self.record(run, node="n3"))
            assert backend.ledger_store.count(run.run_id) == 4
            # and stale writers are still refused after a reopen
            with pytest.raises(ConcurrentModificationError):
                self.commit(backend, self.new_run(run_id=run.run_id), expected=0)
        finally:
            backend.close()

    def test_many_runs(self, backend: Any) -> None:
        ids = []
        for i in range(300):
            run = self.new_run(vars={"i": i, "pad": "x" * 200}, run_id=f"run-{i:04d}-{uuid.uuid4().hex[:6]}")
            self.commit(backend, run, [self.record(run)])
            ids.append(run.run_id)
        assert backend.run_store.load(ids[150]).vars["i"] == 150
        assert len(backend.run_store.list_runs(limit=1000)) == 300
