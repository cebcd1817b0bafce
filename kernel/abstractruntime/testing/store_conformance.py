"""The store conformance suite: every store backend must pass it unchanged.

Use it from a test module of your store plugin::

    from abstractruntime.testing import StoreConformance

    class TestMyStore(StoreConformance):
        backend_class = MyBackend    # its ``capabilities`` decide which capability tests run
        persistent = True            # False for stores that do not survive close()

        def open_backend(self, path):  # path: a fresh directory (pathlib.Path) per test
            return MyBackend(path)

The suite needs pytest. A backend is a :class:`~abstractruntime.storage.base.StoreBackend`: ``run_store``,
``ledger_store``, ``commit_step(StepCommit)``, ``close()``, and -- for the atomicity test -- a writable
``fault_injector`` attribute that the backend calls with a fault-point name *inside* ``commit_step``, after the
checkpoint has been written into the transaction and before the ledger records are (an exception raised by the
injector must abort the whole commit).

The tests of the *required* contract always run. Each test of an optional ability is marked with its
:class:`~abstractruntime.storage.base.Capability` and runs exactly when the backend class declares it; the
others are not collected. ``test_declared_capabilities`` checks that the opened backend declares what its class
declares and has every method its capabilities promise; :func:`capability_report` says which tests ran.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, List, Optional

import pytest

from .. import codec
from ..errors import AbstractRuntimeError, ConcurrentModificationError, EffectAlreadyStartedError
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
from ..storage.base import Capability, CommitView, Precondition, StepCommit, StoreBackend
from .marks import capability
from .store_queries import QueryConformance


class InjectedFault(AbstractRuntimeError):
    """What the conformance suite's fault injector raises inside a commit."""

    def __init__(self, message: str = "injected fault") -> None:
        super().__init__(message)


#: what each capability promises, checked on every backend that declares it
PROMISES = {
    Capability.REVISION_PROBE: ("run_store.load_revision",),
    Capability.IDEMPOTENCY_INDEX: ("ledger_store.find_by_idempotency_key",),
    Capability.LEDGER_PAGING: ("ledger_store.count", "ledger_store.list_after", "ledger_store.last_record"),
    Capability.RUN_QUERIES: ("run_store.list_runs", "run_store.list_due_wait_until", "run_store.list_children",
                             "run_store.list_run_index"),
    Capability.EVENT_INDEX: ("run_store.list_waiting_for_event",),
    Capability.RUN_LOCKS: ("run_locks.acquire", "run_locks.release", "run_locks.close"),
    Capability.LEASES: ("claim_runnable", "fenced", "heartbeat", "release"),
}


def capability_report(cls: type) -> dict:
    """``{"declared": [...], "required_tests": [...], "capability_tests": {cap: [...]}, "not_run": [...]}`` for a
    conformance subclass: which tests of the suite it runs, by required contract and by declared capability."""
    declared = sorted(c.value for c in cls.declared())
    report: dict = {"declared": declared, "required_tests": [], "capability_tests": {}, "not_run": []}
    for name in sorted(dir(StoreConformance)):
        fn = getattr(StoreConformance, name)
        if not name.startswith("test_") or not callable(fn):
            continue
        cap = getattr(fn, "capability", None)
        if cap is None:
            report["required_tests"].append(name)
        elif cap.value in declared:
            report["capability_tests"].setdefault(cap.value, []).append(name)
        else:
            report["not_run"].append(name)
    return report


class HeadMoved(ConcurrentModificationError):
    """What :func:`precondition_like_provenance` raises (the provenance plugin has its own LedgerHeadMovedError)."""

    def __init__(self, *, run_id: str, head_hash: Optional[str]) -> None:
        super().__init__(run_id=run_id, expected=None, actual=None, message=f"head moved to {head_hash!r}")
        self.head_hash = head_hash


def precondition_like_provenance(run_id: str, prev_hash: Optional[str]) -> Precondition:
    """A commit precondition of the kind the provenance plugin supplies: the run's last stored record must have
    ``record_hash == prev_hash``."""

    def check(view: CommitView) -> None:
        last = view.last_record(run_id)
        head = last.get("record_hash") if last is not None else None
        if head != prev_hash:
            raise HeadMoved(run_id=run_id, head_hash=head)

    return check


def _iso(dt: datetime) -> str:
    return dt.isoformat()


class StoreConformance(QueryConformance):
    """Subclass, set ``backend_class`` (or ``capabilities``) and implement :meth:`open_backend`."""

    persistent: bool = True
    #: the StoreBackend subclass under test; its ``capabilities`` choose the capability tests
    backend_class: Optional[type] = None
    #: or the declared capabilities themselves (default: ``backend_class.capabilities``)
    capabilities: Optional[frozenset] = None

    @classmethod
    def declared(cls) -> frozenset:
        if cls.capabilities is not None:
            return frozenset(cls.capabilities)
        if cls.backend_class is not None:
            return frozenset(cls.backend_class.capabilities)
        return frozenset(Capability)  # undeclared: every test runs, and test_declared_capabilities says why

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.declared()
        for name in dir(StoreConformance):
            cap = getattr(getattr(StoreConformance, name), "capability", None)
            if name.startswith("test_") and cap is not None and cap not in declared:
                setattr(cls, name, None)  # not collected: the backend does not declare this ability

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
               expected: Optional[int] = None, reservation: bool = False,
               preconditions: List[Precondition] = ()) -> None:
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
            preconditions=tuple(preconditions),
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
        assert isinstance(backend, StoreBackend), "a store backend must subclass abstractruntime.StoreBackend"
        assert backend.run_store.backend is backend
        assert backend.ledger_store.backend is backend

    def test_declared_capabilities(self, backend: Any) -> None:
        """The backend declares what its class declares, and every capability's methods exist."""
        assert frozenset(backend.capabilities) == type(self).declared(), (
            f"set backend_class (or capabilities) on {type(self).__name__}: the backend declares "
            f"{sorted(c.value for c in backend.capabilities)}")
        for cap in backend.capabilities:
            assert backend.supports(cap)
            for dotted in PROMISES[cap]:
                owner, _, attr = dotted.rpartition(".")
                target = getattr(backend, owner) if owner else backend
                assert callable(getattr(target, attr, None)), f"{cap.value} promises {dotted}"

    def test_sibling_services(self, backend: Any) -> None:
        """``artifact_store()`` / ``snapshot_store()`` / ``command_store()``: None, or a store of that kind."""
        artifacts, snapshots, commands = backend.artifact_store(), backend.snapshot_store(), backend.command_store()
        assert artifacts is None or all(callable(getattr(artifacts, m, None)) for m in ("store", "load", "exists"))
        assert snapshots is None or all(callable(getattr(snapshots, m, None)) for m in ("save", "load", "list"))
        assert commands is None or all(callable(getattr(commands, m, None)) for m in ("append", "list_after"))

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

    @pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "x\x00y", "", ".", "..", "caf\u00e9", "r" * 201])
    def test_run_ids_are_validated(self, backend: Any, bad: str) -> None:
        """The run-id rule of every store (the storekit library has it: ``validate_run_id``): letters, digits and
        ``_ . : -``, not ``.``/``..``, at most 200 characters. A refused id writes nothing; reading one raises
        ``ValueError`` or finds nothing."""
        run = self.new_run()
        run.run_id = bad
        with pytest.raises(ValueError):
            self.commit(backend, run)
        record = StepRecord(run_id=bad, step_id="s", node_id="a", status=StepStatus.COMPLETED,
                            started_at=utc_now_iso())
        with pytest.raises(ValueError):
            backend.commit_step(StepCommit(run=None, run_json=None, records=(record,),
                                           record_jsons=(codec.encode_record(record),)))
        try:
            assert backend.run_store.load(bad) is None and backend.ledger_store.list(bad) == []
        except ValueError:
            pass
        good = self.new_run()
        good.run_id = "Run:1.a_b-" + "c" * 190
        self.commit(backend, good)
        assert backend.run_store.load(good.run_id).run_id == good.run_id

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

    @capability(Capability.LEDGER_PAGING)
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

    @capability(Capability.LEDGER_PAGING)
    def test_last_record(self, backend: Any) -> None:
        run = self.new_run()
        assert backend.ledger_store.last_record(run.run_id) is None
        for i in range(3):
            backend.ledger_store.append(self.record(run, node=f"n{i}"))
        assert backend.ledger_store.last_record(run.run_id)["node_id"] == "n2"
        assert backend.ledger_store.last_record("other") is None

    @capability(Capability.IDEMPOTENCY_INDEX)
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

    @capability(Capability.REVISION_PROBE)
    def test_load_revision(self, backend: Any) -> None:
        run = self.new_run()
        assert backend.run_store.load_revision(run.run_id) is None
        self.commit(backend, run)
        self.commit(backend, run, [self.record(run)], expected=1)
        assert backend.run_store.load_revision(run.run_id) == 2 == backend.run_store.load(run.run_id).revision

    @capability(Capability.RUN_LOCKS)
    def test_run_locks_exclude_other_threads(self, backend: Any) -> None:
        """One thread drives a run: another thread's non-blocking acquire fails until the holder releases;
        the holder may re-acquire (nested ticks)."""
        locks = backend.run_locks
        assert locks.acquire("r1") and locks.acquire("r1")  # re-entrant for the holder
        other: List[bool] = []
        worker = threading.Thread(target=lambda: other.append(locks.acquire("r1")))
        worker.start()
        worker.join()
        assert other == [False]
        locks.release("r1")
        locks.release("r1")
        worker = threading.Thread(target=lambda: other.append(locks.acquire("r1") and locks.acquire("r2")))
        worker.start()
        worker.join()
        assert other == [False, True]

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
        assert len(backend.ledger_store.list(run.run_id)) == 1
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
        assert len(backend.ledger_store.list(run.run_id)) == 1
        # the first attempt failed: the retry (its failure row and the next reservation in one commit) is allowed
        retry = self.record(run, status=StepStatus.STARTED, key="k")
        retry.attempt = 2
        self.commit(backend, None, [started.finish_failure("boom"), retry], reservation=True)
        assert len(backend.ledger_store.list(run.run_id)) == 3
        self.commit(backend, None, [retry.finish_success({"v": 1})])
        with pytest.raises(EffectAlreadyStartedError, match="already completed"):
            self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k")], reservation=True)
        # other keys, and commits that are not reservations, are not affected
        self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k2")], reservation=True)
        self.commit(backend, None, [self.record(run, status=StepStatus.STARTED, key="k2")])
        assert len(backend.ledger_store.list(run.run_id)) == 6

    def test_preconditions_read_the_committed_state_and_refuse_the_whole_commit(self, backend: Any) -> None:
        """A commit's preconditions run inside the store's write transaction: ``view.last_record`` is the run's last
        committed record (the provenance plugin's chain-head check uses it), ``view.latest_status`` what
        ``find_by_idempotency_key`` would say. A precondition that raises refuses the whole commit: nothing is
        written, checkpoint included."""
        run = self.new_run()
        self.commit(backend, run)
        seen: List[Any] = []

        def peek(view: CommitView) -> None:
            last = view.last_record(run.run_id)
            if view.last_hash is not None:  # optional; when offered it agrees with last_record
                assert view.last_hash(run.run_id) == (last or {}).get("record_hash")
            seen.append((last, view.latest_status(run.run_id, "k1")))

        def chained(prev: Optional[str], digest: str) -> StepRecord:
            rec = self.record(run, key="k1")
            rec.prev_hash, rec.record_hash = prev, digest
            return rec

        self.commit(backend, None, [chained(None, "h1"), chained("h1", "h2")], preconditions=[peek])
        assert seen == [(None, None)]
        self.commit(backend, None, [chained("h2", "h3")], preconditions=[peek, precondition_like_provenance(
            run.run_id, "h2")])
        assert seen[1][0]["record_hash"] == "h2" and seen[1][1] == "completed"
        with pytest.raises(HeadMoved) as info:  # a writer that read a stale head
            self.commit(backend, None, [chained("h1", "h9")],
                        preconditions=[precondition_like_provenance(run.run_id, "h1")])
        assert isinstance(info.value, ConcurrentModificationError) and info.value.head_hash == "h3"
        stale_run = backend.run_store.load(run.run_id)
        with pytest.raises(HeadMoved):  # also with a checkpoint: the whole commit is refused
            self.commit(backend, stale_run, [chained("h1", "h9")], expected=stale_run.revision,
                        preconditions=[precondition_like_provenance(run.run_id, "h1")])
        assert len(backend.ledger_store.list(run.run_id)) == 3
        assert backend.run_store.load(run.run_id).revision == 1
        self.commit(backend, None, [self.record(run)])  # without preconditions nothing is checked
        self.commit(backend, None, [self.record(run)], preconditions=[peek])  # a last row without a hash
        assert seen[-1][0]["record_hash"] is None
        assert [r.get("record_hash") for r in backend.ledger_store.list(run.run_id)] == ["h1", "h2", "h3", None, None]

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
                assert len(backend.ledger_store.list(run.run_id)) == 1
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
            assert len(backend.ledger_store.list(run.run_id)) == 4
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
