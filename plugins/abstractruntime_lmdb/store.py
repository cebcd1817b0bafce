"""LMDB store: one environment directory, named databases, one write transaction per step.

Databases (keys are UTF-8; ``\\0`` separates parts; integers are 8-byte big-endian so they sort numerically):

==============  ======================================  ==============================================
``runs``        run_id                                  checkpoint JSON
``revs``        run_id                                  revision (u64) -- checked on every commit
``heads``       run_id                                  last ledger sequence number (u64)
``ledger``      run_id \\0 seq                          step record JSON (seq is 1-based)
``idem``        run_id \\0 idempotency_key              status byte + seq of the answering record
``index``       kind \\0 value \\0 run_id                 (empty) -- status, workflow, parent, wait, timer, event
``index_of``    run_id                                  the run's current index entries (JSON)
``meta``        ``schema_version``                      ``1``
==============  ======================================  ==============================================

Appending a record reads only the run's head, never the earlier ledger. Due timers and event waiters are range
scans of ``index``. The map grows automatically (doubling) when full, and a map grown by another process is
adopted. Several processes on one machine may open the same directory (LMDB's lock file coordinates them);
do not carry an open backend across ``fork()``.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import lmdb

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError, StoreError
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from abstractruntime.storage.base import (
    LedgerStore,
    RunStore,
    StepCommit,
    best_index_query,
    filter_runs,
    index_entries,
    run_index_row,
    timer_index_value,
)

SCHEMA_VERSION = 1
FAULT_POINT = "commit:after-checkpoint"
DEFAULT_MAP_SIZE = 64 * 1024 * 1024
_U64 = struct.Struct(">Q")
_SEP = b"\x00"
_STATUS_BYTE = {s.value: s.value[0].encode() for s in StepStatus}  # s, c, w, f
_COMPLETED = _STATUS_BYTE[StepStatus.COMPLETED.value]


def _rid(run_id: str) -> bytes:
    if not isinstance(run_id, str) or not run_id or "\x00" in run_id:
        raise ValueError(f"run_id must be a non-empty string without NUL characters, got {run_id!r}")
    return run_id.encode("utf-8")


def _index_key(kind: str, value: str, run_id: str) -> bytes:
    return f"{kind}\x00{value}\x00{run_id}".encode("utf-8")


class _SharedExclusiveLock:
    """Many readers or one map resizer (LMDB requires no live transaction in this process during a resize)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class LmdbBackend:
    """An LMDB environment holding runs, ledger and indexes. ``sync=True`` (default) fsyncs every commit."""

    def __init__(
        self,
        path: os.PathLike | str,
        *,
        sync: bool = True,
        map_size: int = DEFAULT_MAP_SIZE,
        max_readers: int = 256,
    ) -> None:
        self.path = Path(path).expanduser()
        self.path.mkdir(parents=True, exist_ok=True)
        self.sync = sync
        try:
            self.env = lmdb.open(
                str(self.path), map_size=int(map_size), max_dbs=16, subdir=True, sync=sync, metasync=sync,
                lock=True, max_readers=int(max_readers), readahead=False,
            )
        except lmdb.Error as exc:
            raise StoreError(f"Cannot open LMDB store at {self.path}: {exc}") from exc
        self._rw = _SharedExclusiveLock()
        self._closed = False
        self._dbs: Dict[str, Any] = {}
        try:
            for name in ("runs", "revs", "heads", "ledger", "idem", "index", "index_of", "meta"):
                for _ in range(8):
                    try:
                        self._dbs[name] = self.env.open_db(name.encode())
                        break
                    except lmdb.MapResizedError:
                        self.env.set_mapsize(0)  # another process grew the map: adopt its size
            self._check_schema()
        except BaseException:
            self.env.close()  # one process must never hold an environment twice; leave nothing open
            raise
        #: Test seam: called with a fault-point name inside ``commit_step`` (see the conformance suite).
        self.fault_injector: Optional[Callable[[str], None]] = None
        self.run_store = LmdbRunStore(self)
        self.ledger_store = LmdbLedgerStore(self)

    # --- transactions -----------------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        def check(txn: Any) -> None:
            raw = txn.get(b"schema_version", db=self._dbs["meta"])
            if raw is None:
                txn.put(b"schema_version", str(SCHEMA_VERSION).encode(), db=self._dbs["meta"])
                return
            try:
                version = int(raw)
            except ValueError:
                raise CorruptStoreError(f"LMDB store at {self.path}: unreadable schema version {raw!r}") from None
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"LMDB store at {self.path} has schema version {version}, newer than this AbstractRuntime "
                    f"supports ({SCHEMA_VERSION}); upgrade abstractruntime to open it. Nothing was changed."
                )

        self.write(check)

    def _grow(self) -> None:
        with self._rw.exclusive():
            new_size = self.env.info()["map_size"] * 2
            self.env.set_mapsize(new_size)

    def _adopt_resize(self) -> None:
        with self._rw.exclusive():
            self.env.set_mapsize(0)  # take the size another process set

    def write(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(txn)`` in one write transaction, growing the map and retrying if it is full."""
        self._ensure_open()
        for _ in range(64):
            try:
                with self._rw.shared():
                    with self.env.begin(write=True) as txn:
                        return fn(txn)
            except lmdb.MapFullError:
                self._grow()
            except lmdb.MapResizedError:
                self._adopt_resize()
        raise StoreError(f"LMDB store at {self.path}: could not complete a write after growing the map")

    def read(self, fn: Callable[[Any], Any]) -> Any:
        self._ensure_open()
        for _ in range(8):
            try:
                with self._rw.shared():
                    with self.env.begin(write=False) as txn:
                        return fn(txn)
            except lmdb.MapResizedError:
                self._adopt_resize()
        raise StoreError(f"LMDB store at {self.path}: map kept being resized by another process")

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreError(f"LMDB store at {self.path} is closed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._rw.exclusive():
                self.env.close()

    # --- the step commit ----------------------------------------------------------------------------------------
    def commit_step(self, commit: StepCommit) -> None:
        def tx(txn: Any) -> None:
            run = commit.run
            if run is not None:
                rid = _rid(run.run_id)
                if commit.expected_revision is not None:
                    raw = txn.get(rid, db=self._dbs["revs"])
                    actual = _U64.unpack(raw)[0] if raw is not None else None
                    if actual != commit.expected_revision:
                        raise ConcurrentModificationError(
                            run_id=run.run_id, expected=commit.expected_revision, actual=actual
                        )
                txn.put(rid, commit.run_json or codec.encode_run(run), db=self._dbs["runs"])
                txn.put(rid, _U64.pack(run.revision), db=self._dbs["revs"])
                self._reindex(txn, run)
            if self.fault_injector is not None:
                self.fault_injector(FAULT_POINT)
            self._append_records(txn, commit.records, commit.record_jsons)

        self.write(tx)

    def _reindex(self, txn: Any, run: RunState) -> None:
        rid = run.run_id.encode("utf-8")
        new = sorted(set(index_entries(run)))
        raw = txn.get(rid, db=self._dbs["index_of"])
        old = [tuple(e) for e in json.loads(raw)] if raw is not None else []
        if old == new:
            return
        index = self._dbs["index"]
        for kind, value in set(old) - set(new):
            txn.delete(_index_key(kind, value, run.run_id), db=index)
        for kind, value in set(new) - set(old):
            txn.put(_index_key(kind, value, run.run_id), b"", db=index)
        txn.put(rid, json.dumps(new).encode("utf-8"), db=self._dbs["index_of"])

    def _append_records(self, txn: Any, records: Tuple[StepRecord, ...], texts: Tuple[bytes, ...]) -> None:
        heads: Dict[bytes, int] = {}
        for record, text in zip(records, texts):
            rid = _rid(record.run_id)
            seq = heads.get(rid)
            if seq is None:
                raw = txn.get(rid, db=self._dbs["heads"])
                seq = _U64.unpack(raw)[0] if raw is not None else 0
            seq += 1
            heads[rid] = seq
            txn.put(rid + _SEP + _U64.pack(seq), text, db=self._dbs["ledger"])
            if record.idempotency_key:
                ikey = rid + _SEP + record.idempotency_key.encode("utf-8")
                prev = txn.get(ikey, db=self._dbs["idem"])
                if prev is None or prev[:1] != _COMPLETED:
                    txn.put(ikey, _STATUS_BYTE[record.status.value] + _U64.pack(seq), db=self._dbs["idem"])
        for rid, seq in heads.items():
            txn.put(rid, _U64.pack(seq), db=self._dbs["heads"])

    # --- index scans ------------------------------------------------------------------------------------------
    def scan_index(self, txn: Any, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        """Run ids with entries ``(kind, v)``, ``lo <= v`` (and ``v <= hi``), in index order."""
        out: List[str] = []
        cur = txn.cursor(db=self._dbs["index"])
        prefix = kind.encode("utf-8") + _SEP
        if not cur.set_range(prefix + lo.encode("utf-8")):
            return out
        hi_b = hi.encode("utf-8") if hi is not None else None
        for key in cur.iternext(keys=True, values=False):
            if not key.startswith(prefix):
                break
            value, run_id = key[len(prefix):].rsplit(_SEP, 1)
            if hi_b is not None and value > hi_b:
                break
            out.append(run_id.decode("utf-8"))
            if limit is not None and len(out) >= limit:
                break
        return out

    def load_in(self, txn: Any, run_id: str) -> Optional[RunState]:
        raw = txn.get(run_id.encode("utf-8"), db=self._dbs["runs"])
        if raw is None:
            return None
        try:
            return codec.decode_run(raw)
        except Exception as exc:
            raise CorruptStoreError(
                f"LMDB store at {self.path}: checkpoint of run {run_id} cannot be decoded ({exc})",
                run_id=run_id,
            ) from exc

    def load_many_in(self, txn: Any, run_ids: List[str]) -> List[RunState]:
        out = []
        for run_id in run_ids:
            run = self.load_in(txn, run_id)
            if run is not None:
                out.append(run)
        return out

    def all_run_ids(self, txn: Any) -> List[str]:
        cur = txn.cursor(db=self._dbs["runs"])
        return [k.decode("utf-8") for k in cur.iternext(keys=True, values=False)]


class LmdbRunStore(RunStore):
    def __init__(self, backend: LmdbBackend) -> None:
        self.backend = backend

    def save(self, run: RunState) -> None:
        self.backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        _rid(run_id)
        return self.backend.read(lambda txn: self.backend.load_in(txn, run_id))

    def load_revision(self, run_id: str) -> Optional[int]:
        raw = self.backend.read(lambda txn: txn.get(_rid(run_id), db=self.backend._dbs["revs"]))
        return _U64.unpack(raw)[0] if raw is not None else None

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        wait_reason: Optional[WaitReason] = None,
        workflow_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[RunState]:
        b = self.backend
        q = best_index_query(status=status, wait_reason=wait_reason, workflow_id=workflow_id)

        def tx(txn: Any) -> List[RunState]:
            ids = b.scan_index(txn, q[0], q[1], q[1]) if q else b.all_run_ids(txn)
            return b.load_many_in(txn, ids)

        runs = b.read(tx)
        return filter_runs(runs, status=status, wait_reason=wait_reason, workflow_id=workflow_id)[: max(0, limit)]

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]:
        b = self.backend
        hi = timer_index_value(now_iso)
        return b.read(lambda txn: b.load_many_in(txn, b.scan_index(txn, "timer", "", hi, limit)))

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]:
        b = self.backend
        return b.read(lambda txn: b.load_many_in(txn, b.scan_index(txn, "event", wait_key, wait_key, limit)))

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]:
        b = self.backend
        runs = b.read(lambda txn: b.load_many_in(txn, b.scan_index(txn, "parent", parent_run_id, parent_run_id)))
        return [r for r in runs if status is None or r.status is RunStatus(status)]

    def list_run_index(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        session_id: Optional[str] = None,
        root_only: bool = False,
        limit: int = 100,
    ) -> List[Dict[str, Any]]:
        b = self.backend
        q = best_index_query(status=status, wait_reason=None, workflow_id=workflow_id)

        def tx(txn: Any) -> List[RunState]:
            ids = b.scan_index(txn, q[0], q[1], q[1]) if q else b.all_run_ids(txn)
            return b.load_many_in(txn, ids)

        runs = filter_runs(b.read(tx), status=status, workflow_id=workflow_id, session_id=session_id,
                           root_only=root_only)
        return [run_index_row(r) for r in runs[: max(0, limit)]]


class LmdbLedgerStore(LedgerStore):
    def __init__(self, backend: LmdbBackend) -> None:
        self.backend = backend

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValueError("StepRecord.run_id must be a non-empty string")
        self.backend.commit_step(
            StepCommit(run=None, run_json=None, records=(record,), record_jsons=(codec.encode_record(record),))
        )

    def _decode(self, run_id: str, key: bytes, raw: bytes) -> Dict[str, Any]:
        try:
            return codec.decode_record(raw)
        except Exception as exc:
            seq = _U64.unpack(key[-8:])[0]
            raise CorruptStoreError(
                f"LMDB store at {self.backend.path}: ledger record {seq} of run {run_id} cannot be decoded ({exc})",
                run_id=run_id,
            ) from exc

    def _range(self, run_id: str, after: int, limit: Optional[int]) -> List[Dict[str, Any]]:
        prefix = _rid(run_id) + _SEP
        b = self.backend

        def tx(txn: Any) -> List[Dict[str, Any]]:
            out: List[Dict[str, Any]] = []
            cur = txn.cursor(db=b._dbs["ledger"])
            if not cur.set_range(prefix + _U64.pack(after + 1)):
                return out
            for key, raw in cur:
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    break
                out.append(self._decode(run_id, key, raw))
                if limit is not None and len(out) >= limit:
                    break
            return out

        return b.read(tx)

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._range(run_id, 0, None)

    def count(self, run_id: str) -> int:
        raw = self.backend.read(lambda txn: txn.get(_rid(run_id), db=self.backend._dbs["heads"]))
        return _U64.unpack(raw)[0] if raw is not None else 0

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        after = max(0, int(after))
        rows = self._range(run_id, after, max(0, limit)) if limit > 0 else []
        return rows, after + len(rows)

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The completed row with this key if any, else the latest row with it, else None."""
        b = self.backend
        rid = _rid(run_id)

        def tx(txn: Any) -> Optional[Dict[str, Any]]:
            hit = txn.get(rid + _SEP + key.encode("utf-8"), db=b._dbs["idem"])
            if hit is None:
                return None
            lkey = rid + _SEP + hit[1:9]
            raw = txn.get(lkey, db=b._dbs["ledger"])
            return self._decode(run_id, lkey, raw) if raw is not None else None

        return b.read(tx)
