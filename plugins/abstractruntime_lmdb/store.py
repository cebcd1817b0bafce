"""LMDB store: one environment directory, one B-tree; concurrent step commits share one write transaction
(group commit: storekit's ``GroupCommit``; each commit is checked before it writes, so a refused one writes
nothing: commit.py).

Everything lives in LMDB's main database under key prefixes (integers are 8-byte big-endian so they sort
numerically; ``\\0`` separates parts). One tree means a step dirties few pages -- the checkpoint's and the new
ledger records' -- which is what an fsync-per-commit costs.

======================================  ============================================================
``m:schema_version``                    ``3`` (``SCHEMA_VERSION``)
``d:`` run_id ``\\x00``                    magic + CRC-32 + revision (u64) + index length (u32) + index entries (JSON) +
                                        checkpoint JSON
``d:`` run_id ``\\x01`` seq                step record JSON (seq is 1-based, per run)
``d:`` run_id ``\\x02`` idempotency key    status byte + seq of the answering record
``x:`` kind ``\\0`` value ``\\0`` run_id       (empty) -- status, workflow, updated, parent, wait, timer, event
======================================  ============================================================

A run's checkpoint, ledger and idempotency entries are adjacent keys, so a step usually dirties one or two leaf
pages.

Appending a record finds the run's last sequence number with one cursor step, never reading the earlier ledger.
Due timers, event waiters and the newest runs (``list_runs``, a reverse scan of ``updated``: indexread.py) are
range scans of ``x:``. The revision is checked inside the write transaction, so
a stale writer is refused. The map grows automatically (doubling) when full, and a map grown by another process
is adopted. Several processes on one machine may open the same directory (LMDB's lock file coordinates them); do
not carry an open backend across ``fork()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import lmdb

from abstractruntime import codec
from abstractruntime.errors import AbstractRuntimeError, CorruptStoreError, StoreError, ValidationError
from abstractruntime.models import RunState, StepRecord
from abstractruntime.storage.base import Capability, LedgerStore, RunStore, StepCommit, StoreBackend
from abstractruntime_storekit import (GroupCommit, GroupEntry, HeadHints, IndexedRunQueries, RunLocks,
                                      check_contiguous)
from abstractruntime_storekit.opening import os_error, store_directory
from abstractruntime_storekit.files import FileSiblings
from abstractruntime_storekit.integrity import load_skipping

from . import DEFAULT_MAP_SIZE, check
from .commit import FAULT_POINT, Heads, plan  # noqa: F401  (FAULT_POINT: the fault point's name, for tests)
from .growth import DEFAULT_ZERO_FILL, ZeroFill
from .guards import SharedExclusiveLock, check_data_file, file_size
from .keys import (_DATA, _IDEM_TAG, _INDEX, _LEDGER_TAG, _META, _RUN_TAG, _SEP, _TAGS, _U64,  # noqa: F401
                   _idem_key, _ledger_prefix, _rid, _run_key, last_seq)
from .values import driver_error, revision_of, split_value

SCHEMA_VERSION = 3  # 2: checkpoints carry a checksum (values.py); version-1 values are read without one
# 3: every run has an ``updated`` index entry (added on a writable open of an older store, indexread.py)


class LmdbBackend(FileSiblings, StoreBackend):
    """An LMDB environment holding runs, ledger and indexes. ``sync=True`` (default) fsyncs every commit: the
    data pages, then the meta page (``metasync``, default ``sync``). ``metasync=False`` saves the second fsync; an
    OS crash or power loss may then undo the last commit (never corrupt the store, per LMDB's documentation).
    ``zero_fill``: bytes of zero-filled room kept past the data while commits are synced (growth.py; 0: none)."""

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.RUN_LOCKS})
    updated_index = True  # every run has its ``updated`` index entry (schema 3; see _check_schema)

    def __init__(
        self,
        path: os.PathLike | str,
        *,
        sync: bool = True,
        metasync: Optional[bool] = None,
        map_size: int = DEFAULT_MAP_SIZE,
        max_readers: int = 256,
        read_only: bool = False,
        zero_fill: int = DEFAULT_ZERO_FILL,
    ) -> None:
        self.path = store_directory(Path(path).expanduser(), store="lmdb", read_only=read_only, markers=("data.mdb",))
        check_data_file(self.path / "data.mdb")
        self.sync = sync
        self.metasync = sync if metasync is None else bool(metasync)
        self.read_only = read_only
        # Read-only, LMDB still takes reader slots in lock.mdb; without write access to it (another user's store,
        # read-only media) it reads without them: safe when no process writes meanwhile (docs/stores.md).
        lock = not read_only or os.access(self.path / "lock.mdb", os.W_OK)
        self._users = 1  # runtimes sharing this backend (open_lmdb hands one backend per path to a process)
        for _ in range(8):
            try:
                self.env = lmdb.open(
                    str(self.path), map_size=int(map_size), max_dbs=0, subdir=True, sync=sync,
                    metasync=self.metasync, lock=lock, max_readers=int(max_readers), readahead=False,
                    readonly=read_only, create=not read_only,
                )
                break
            except lmdb.MapResizedError:  # another process grew the map while we opened it: take its size
                map_size = max(int(map_size) * 2, file_size(self.path / "data.mdb"))
            except lmdb.Error as exc:
                reason = ("permission denied: run as a user who may write it (read-only commands such as `runs "
                          "list` need no write access), or fix its permissions"
                          if "Permission denied" in str(exc) else str(exc))
                raise StoreError(f"Cannot open LMDB store at {self.path}: {reason}") from exc
        else:
            raise StoreError(f"Cannot open LMDB store at {self.path}: its map kept growing while it was opened")
        self._rw = SharedExclusiveLock()
        self._closed = False
        try:
            # a read-only backend takes no run locks (it never ticks a run): no lock file is created
            self.run_locks = RunLocks(self.path / "runs.lock") if not read_only else None
        except OSError as exc:
            self.env.close()
            raise os_error(exc, self.path, "lmdb") from exc
        if read_only:
            self.capabilities = type(self).capabilities - {Capability.RUN_LOCKS}
        try:
            self._check_schema()
        except BaseException:
            self.env.close()  # one process must never hold an environment twice; leave nothing open
            if self.run_locks is not None:
                self.run_locks.close()
            raise
        #: Test seam: called with a fault-point name inside ``commit_step`` (see the conformance suite).
        self.fault_injector: Optional[Callable[[str], None]] = None
        self.group = GroupCommit(self._write_batch)
        self._room: Optional[ZeroFill] = None  # fsync'd commits only: room for the data to grow into
        if sync and not read_only and zero_fill > 0 and hasattr(os, "pwrite"):
            try:
                self._room = ZeroFill(self.path / "data.mdb", zero_fill, self.env.stat()["psize"])
            except OSError:
                pass  # (not writable by this user: LMDB itself would have refused to open it for writing)
        self.heads = HeadHints()  # ledger_head_hint: the provenance chain needs no read before a commit
        self.run_store = LmdbRunStore(self)
        self.ledger_store = LmdbLedgerStore(self)

    # --- transactions -----------------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        def check(txn: Any) -> None:
            raw = txn.get(_META)
            if raw is None:
                if not self.read_only:
                    txn.put(_META, str(SCHEMA_VERSION).encode())
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
            if version < SCHEMA_VERSION and not self.read_only:  # older values stay readable as they are
                if version < 3:
                    from .indexread import add_updated_entries
                    add_updated_entries(self, txn)
                txn.put(_META, str(SCHEMA_VERSION).encode())
            self.updated_index = version >= 3 or not self.read_only  # else list_runs reads every run

        (self.read if self.read_only else self.write)(check)

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
        if self.read_only:
            raise StoreError(f"LMDB store at {self.path} is open read-only: nothing was written")
        for _ in range(64):
            try:
                with self._rw.shared():
                    with self.env.begin(write=True) as txn:
                        return fn(txn)
            except lmdb.MapFullError:
                self._grow()
            except lmdb.MapResizedError:
                self._adopt_resize()
            except lmdb.Error as exc:
                raise driver_error(f"LMDB store at {self.path}", exc) from exc
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
            except lmdb.Error as exc:
                raise driver_error(f"LMDB store at {self.path}", exc) from exc
        raise StoreError(f"LMDB store at {self.path}: map kept being resized by another process")

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreError(f"LMDB store at {self.path} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def retain(self) -> "LmdbBackend":
        """One more user of this open backend (see :func:`abstractruntime_lmdb.open_lmdb`); each calls close()."""
        with self._rw.exclusive():
            self._ensure_open()
            self._users += 1
        return self

    def close(self) -> None:
        """Release this user; the environment closes when the last one has."""
        with self._rw.exclusive():
            if self._closed:
                return
            self._users -= 1
            if self._users > 0:
                return
            self._closed = True
            if self.run_locks is not None:
                self.run_locks.close()
            if self._room is not None:
                self._room.close()
            self.env.close()

    # --- the step commit ----------------------------------------------------------------------------------------
    def commit_step(self, commit: StepCommit) -> None:
        """Group commit: concurrent callers' steps share one write transaction (and its fsync)."""
        self.group.submit(commit)

    def ledger_head_hint(self, run_id: str) -> Optional[Tuple[int, Optional[str]]]:
        """``(seq, record_hash)`` of the run's last ledger record as this backend last wrote it, or None (a hint:
        the provenance precondition checks the head again inside the commit's transaction; storekit.heads)."""
        return self.heads.get(run_id)

    def _write_batch(self, batch: List[GroupEntry]) -> None:
        """One transaction for the batch. Each commit is checked, then written (commit.py): a refused one fails its
        own caller and has written nothing; one whose writing fails midway (the fault point, an unexpected error)
        is taken out and the batch written again without it. No nested transaction per commit: beginning and
        ending one releases the GIL, and the writer would wait to get it back behind every other thread."""
        heads: Heads = {}
        failed: Dict[int, Exception] = {}  # batch index -> what its writing raised

        def tx(txn: Any) -> None:  # re-run from the start if the map had to grow
            if self._room is not None:  # (the writer lock is held; nothing is dirtied yet)
                self._room.ensure(self.env)
            heads.clear()
            for i, entry in enumerate(batch):
                entry.error = failed.get(i)
                if entry.error is not None:
                    continue
                mine: Heads = {}
                try:
                    todo = plan(self, txn, entry.commit, mine)
                except lmdb.Error:
                    raise
                except Exception as exc:  # refused (revision, reservation, chain head): only this caller fails
                    entry.error = exc
                    continue
                try:
                    todo.apply(self, txn)
                except lmdb.Error:
                    raise
                except Exception as exc:  # part of it may be written: abort, write the batch again without it
                    failed[i] = exc
                    raise _Rewrite(f"{self.where}: a commit failed while it was written") from exc
                heads.update(mine)

        try:
            while True:
                try:
                    self.write(tx)
                    break
                except _Rewrite:
                    if len(failed) == len(batch):
                        break
        except BaseException:
            for entry in batch:
                self._forget_heads(entry.commit)
            raise
        for i, exc in failed.items():
            batch[i].error = exc
        for entry in batch:
            if entry.error is not None:
                self._forget_heads(entry.commit)  # a refused chain head: the next attempt reads the head
        for run_id, (seq, record_hash) in heads.items():  # durable now
            self.heads.remember(run_id, seq, record_hash)

    def _forget_heads(self, commit: StepCommit) -> None:
        for record in commit.records:
            self.heads.forget(record.run_id)

    def commit_in(self, txn: Any, commit: StepCommit, heads: Optional[Heads] = None) -> None:
        """Apply one step commit inside an open write transaction (``commit_step`` batches them); ``heads`` gets
        each run's new last ``(seq, record_hash)``. A refused commit raises having written nothing."""
        plan(self, txn, commit, heads).apply(self, txn)

    # --- sibling services (FileSiblings): files beside the environment -------------------------------------------
    @property
    def sibling_dir(self) -> Path:
        return self.path

    last_seq = staticmethod(last_seq)  # the run's last ledger seq: one cursor step back from its key range's end

    # --- index scans ------------------------------------------------------------------------------------------
    def scan_index(self, txn: Any, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        """Run ids with entries ``(kind, v)``, ``lo <= v`` (and ``v <= hi``), in index order."""
        out: List[str] = []
        cur = txn.cursor()
        prefix = _INDEX + kind.encode("utf-8") + _SEP
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

    @property
    def where(self) -> str:
        return f"LMDB store at {self.path}"

    def load_in(self, txn: Any, run_id: str) -> Optional[RunState]:
        rid = _rid(run_id)
        raw = txn.get(_run_key(rid))
        if raw is None:
            return None
        if self.heads.knows(run_id):  # another process may have appended since this one did
            self.heads.seen(run_id, self.last_seq(txn, rid))
        checkpoint = split_value(raw, self.where, run_id)[2]
        try:
            return codec.decode_run(checkpoint)
        except Exception as exc:
            raise CorruptStoreError(
                f"LMDB store at {self.path}: checkpoint of run {run_id} cannot be decoded ({exc})",
                run_id=run_id,
            ) from exc

    def load_many_in(self, txn: Any, run_ids: List[str]) -> List[RunState]:
        """The runs (in order) that exist; a corrupt one is left out and reported (storekit.integrity)."""
        return load_skipping(self.where, run_ids, lambda run_id: self.load_in(txn, run_id))

    iter_corrupt = check.iter_corrupt  # the damaged records (``abstractruntime store check``)

    def all_run_ids(self, txn: Any) -> List[str]:
        out: List[str] = []
        cur = txn.cursor()
        if not cur.set_range(_DATA):
            return out
        for key in cur.iternext(keys=True, values=False):
            if not key.startswith(_DATA):
                break
            # run ids hold no control characters, so the first byte below 0x03 is the tag
            if key.endswith(_RUN_TAG) and not _TAGS.search(key, len(_DATA), len(key) - 1):
                out.append(key[len(_DATA):-1].decode("utf-8"))
        return out


class _Rewrite(AbstractRuntimeError):
    """A commit's writing failed midway: the batch's transaction is aborted and written again without it (never
    leaves ``_write_batch``)."""


class LmdbRunStore(IndexedRunQueries, RunStore):
    def __init__(self, backend: LmdbBackend) -> None:
        self.backend = backend

    def save(self, run: RunState) -> None:
        self.backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        _rid(run_id)
        return self.backend.read(lambda txn: self.backend.load_in(txn, run_id))

    def load_revision(self, run_id: str) -> Optional[int]:
        key = _run_key(_rid(run_id))

        def tx(txn: Any) -> Optional[int]:
            cur = txn.cursor()
            if not cur.set_key(key):
                return None
            return revision_of(cur.value(), self.backend.where, run_id)

        return self.backend.read(tx)

    # --- queries (IndexedRunQueries): each is one read transaction ------------------------------------------
    INDEX_MAY_LAG = False  # index entries and checkpoints are read in the same transaction

    def _runs_by_index(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int]) -> List[RunState]:
        b = self.backend
        return b.read(lambda txn: b.load_many_in(txn, b.scan_index(txn, kind, lo, hi, limit)))

    def _all_runs(self) -> List[RunState]:
        b = self.backend
        return b.read(lambda txn: b.load_many_in(txn, b.all_run_ids(txn)))

    def _read_index(self, fn: Callable[[Any], Any]) -> Any:
        from .indexread import LmdbIndexReader

        b = self.backend
        if not b.updated_index:  # an older store opened read-only: no ``updated`` entries
            raise NotImplementedError
        return b.read(lambda txn: fn(LmdbIndexReader(b, txn)))


class LmdbLedgerStore(LedgerStore):
    def __init__(self, backend: LmdbBackend) -> None:
        self.backend = backend

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValidationError("StepRecord.run_id must be a non-empty string")
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

    def _range(self, run_id: str, after: int, limit: Optional[int]) -> Tuple[List[Dict[str, Any]], int]:
        """Records with seq > ``after`` (at most ``limit``) and the last seq read (``after`` if none); a page
        that skips a seq raises ``LedgerGapError``."""
        prefix = _ledger_prefix(_rid(run_id))
        b = self.backend

        def tx(txn: Any) -> Tuple[List[Dict[str, Any]], List[int]]:
            out: List[Dict[str, Any]] = []
            seqs: List[int] = []
            cur = txn.cursor()
            if not cur.set_range(prefix + _U64.pack(after + 1)):
                return out, seqs
            for key, raw in cur:
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    break
                out.append(self._decode(run_id, key, raw))
                seqs.append(_U64.unpack(key[-8:])[0])
                if limit is not None and len(out) >= limit:
                    break
            return out, seqs

        out, seqs = b.read(tx)
        check_contiguous(run_id, seqs, out, after=after, store=f"LMDB store at {b.path}")
        return out, (seqs[-1] if seqs else after)

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._range(run_id, 0, None)[0]

    def count(self, run_id: str) -> int:
        rid = _rid(run_id)
        return self.backend.read(lambda txn: LmdbBackend.last_seq(txn, rid))

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        after = max(0, int(after))
        if limit <= 0:
            return [], after
        return self._range(run_id, after, limit)

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        """The run's last ledger record (one cursor step in one read transaction), or None."""
        rid = _rid(run_id)
        b = self.backend

        def tx(txn: Any) -> Optional[Dict[str, Any]]:
            seq = LmdbBackend.last_seq(txn, rid)
            if seq == 0:
                return None
            key = _ledger_prefix(rid) + _U64.pack(seq)
            return self._decode(run_id, key, txn.get(key))

        return b.read(tx)

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The completed row with this key if any, else the latest row with it, else None."""
        b = self.backend
        rid = _rid(run_id)

        def tx(txn: Any) -> Optional[Dict[str, Any]]:
            hit = txn.get(_idem_key(rid, key))
            if hit is None:
                return None
            lkey = _ledger_prefix(rid) + hit[1:9]
            raw = txn.get(lkey)
            return self._decode(run_id, lkey, raw) if raw is not None else None

        return b.read(tx)
