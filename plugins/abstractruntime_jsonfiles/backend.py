"""JSON-files store: the reference's directory layout, with one commit per step across two files.

Layout of a store directory (the reference's ``JsonFileRunStore`` / ``JsonlLedgerStore`` layout)::

    run_<run_id>.json      the checkpoint: the run dict, pretty JSON (indent 2, UTF-8, not ASCII-escaped), plus
                           ONE key of ours, written first: "_ledger_committed": <committed ledger lines>
    ledger_<run_id>.jsonl  the ledger: one record dict (compact JSON) per line, in append order
    .lock                  flock(2)-ed around every commit (several processes on one machine may share the dir)
    .run_<run_id>.json.tmp the next checkpoint while a commit is in flight (left behind only by a crash; ignored)
    .pending_<run_id>      "committed line count" marker of a run that has no counted run file (see below)

Run ids used in file names must match ``^[A-Za-z0-9_.:-]+$``, must not be ``.`` or ``..`` and are at most
200 characters; anything else raises ``ValueError`` (no path traversal, reference defect §17 #18).

**One step = one commit.** The commit point is the atomic ``os.replace`` of the run file; the ledger file may hold
lines beyond the count the run file names, and those lines do not exist. ``commit_step``, under the backend's
thread lock and the directory's ``flock``:

1. reads the current run file and checks ``expected_revision`` (``ConcurrentModificationError``, nothing written);
2. writes the new checkpoint, carrying the new committed line count, to the temp file (write + fsync);
3. calls ``fault_injector("commit:after-checkpoint")`` -- an exception there deletes the temp file: nothing of the
   commit is visible;
4. truncates the ledger file to its committed part (a tail left by a crashed commit), appends the record lines and
   fsyncs it;
5. ``os.replace``-s the temp file over the run file and fsyncs the directory: the step is committed.

A crash before 5 leaves the old checkpoint and its old line count, so readers return only the old lines and the
next commit truncates the extra ones. A ledger-only commit (``run`` is None: the reservation written before a
side-effecting effect) rewrites the run file with the same bytes and the new count (the count is spliced into the
existing text, the state is not re-encoded), so it is atomic the same way.

A run without a counted run file -- a ledger used on its own, reference style, or a run file written by the
reference -- is in *JSONL mode*: every line of the ledger file counts. A commit that appends to such a run first
writes (atomically) ``.pending_<run_id>`` holding the line count before the commit, appends, then commits by renaming
the run file (if the commit has one) or by deleting the marker. Readers of a run in JSONL mode honour a marker
they find, so a crash in the middle (or a commit in flight in another process) never exposes part of a commit.

**Reading.** ``load`` returns a fresh ``RunState`` decoded from the file every time (no shared objects); an
unreadable or corrupt run file raises :class:`~abstractruntime.errors.CorruptStoreError` naming the file. Ledger
reads take the committed count from the head of the run file (a few bytes; the full file only if the key is not
first), then the committed lines of the ledger. Corrupt lines (bad JSON, not an object, a torn last line) are
skipped, logged as ``ledger_line_corrupt`` warnings and listed by ``ledger_store.last_corrupt_lines(run_id)``;
blank lines are skipped silently. Sequence numbers (``count``, ``list_after``) number the valid records 1, 2, ...

**Caches.** Per run (LRU, 1024 runs) the backend keeps the byte offsets of the committed lines, which of them are
valid, and an index ``idempotency_key -> (completed?, seq)``, built lazily from the file on the first read and
updated by this process's appends, so ``find_by_idempotency_key`` never re-parses the file (§17 #4) and an append
never reads the earlier ledger. The cache is validated against the ledger file's ``stat`` signature and the
committed count: growth by another process is read incrementally from the last known offset; any other change
(another inode, a shrink, a same-count rewrite) rebuilds it.

**Queries** (``list_runs``, ``list_due_wait_until``, ``list_waiting_for_event``, ``list_children``,
``list_run_index``). JSON files have no native index: the backend keeps an in-process sorted
``(kind, value, run_id)`` list built from :func:`~abstractruntime.storage.base.index_entries`, filled by reading
every run file once (corrupt files are skipped, logged as ``run_file_corrupt`` and listed by
``run_store.corrupt_run_files()``) and kept up to date by this process's commits. Before answering, a query does an
``os.scandir`` pass and re-reads the run files whose ``stat`` signature changed (written by another process or by
hand) -- so **every query costs O(number of run files) stat calls** plus the reads of changed files and of the
runs returned. For large directories prefer the ``lmdb`` or ``sqlite`` store.

**Processes.** Commits from several processes on one machine are serialised by ``flock`` on ``.lock`` and each
re-checks the revision it reads from the file, so stale writers are refused across processes. Readers take no
lock. POSIX only (``flock``, ``pread``); a network filesystem whose ``flock`` or ``rename`` is not atomic is not
supported. The ``stat`` signatures that drive the caches assume files are changed by whole-file replacement or
appends; a hand edit is noticed by the next read unless another process commits to the same run in between.

**Reference construction.** ``JsonFileRunStore(base_dir)`` and ``JsonlLedgerStore(base_dir)`` built separately
on the same directory share one :class:`JsonFilesBackend` (a process-wide weak registry keyed by the resolved
path), so ``Runtime(run_store=JsonFileRunStore(d), ledger_store=JsonlLedgerStore(d))`` gets atomic commits.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

import orjson

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError, StoreError, ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, StepRecord
from abstractruntime.storage.base import Capability, CommitView, StepCommit, StoreBackend
from abstractruntime_storekit import RunLocks, SortedRunIndex
from abstractruntime_storekit.files import FileSiblings, fsync_dir, write_atomic
from abstractruntime_storekit.opening import os_error, store_directory

from .fileio import (
    COMMITTED_KEY,
    FAULT_POINT,
    _COUNT_HEAD,
    _count_of,
    _pretty,
    _pwrite_all,
    _sig,
    _unlink,
    _with_count,
    validate_run_id,
)
from .index import RunFileIndex
from .ledger import _COMPLETED, LedgerReads, _Ledger

log = get_logger("abstractruntime.jsonfiles")


class _Plan:
    __slots__ = ("run_id", "items", "ledger", "base", "data", "tmp", "marker", "stale_marker")

    def __init__(self, run_id: str, items: List[Tuple[StepRecord, bytes]], ledger: _Ledger, base: int,
                 data: Optional[bytes], marker: bool, stale_marker: bool) -> None:
        self.run_id = run_id
        self.items = items
        self.ledger = ledger
        self.base = base  # committed lines before this commit
        self.data = data  # the new run file, or None
        self.tmp: Optional[str] = None
        self.marker = marker  # JSONL mode before the commit: protect the append with a pending marker
        self.stale_marker = stale_marker


# --- the backend ------------------------------------------------------------------------------------------------
class JsonFilesBackend(LedgerReads, RunFileIndex, FileSiblings, StoreBackend):
    """A directory of ``run_<id>.json`` / ``ledger_<id>.jsonl`` files. ``fsync=True`` (default) fsyncs commits."""

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.RUN_LOCKS})

    def __init__(self, path: os.PathLike | str, *, fsync: bool = True, read_only: bool = False) -> None:
        p = store_directory(Path(path).expanduser(), store="jsonfiles", read_only=read_only,
                            markers=(".lock", "run_*.json", "ledger_*.jsonl"))
        self.read_only = read_only
        self.run_locks: Optional[RunLocks] = None
        self._lock_file: Any = None
        try:
            self.path = p.resolve()
            self._dir = str(self.path)
            if not read_only:  # read-only: no lock files (it never commits nor ticks a run)
                # a file object, so that a backend dropped without close() (reference-style stores) frees it
                self._lock_file = open(os.path.join(self._dir, ".lock"), "ab")
                self.run_locks = RunLocks(os.path.join(self._dir, ".runs.lock"))
        except OSError as exc:
            if self._lock_file is not None:
                self._lock_file.close()
            raise os_error(exc, p, "jsonfiles") from exc
        if read_only:
            self.capabilities = type(self).capabilities - {Capability.RUN_LOCKS}
        self.fsync = bool(fsync)
        self._lock = threading.RLock()
        self._closed = False
        self._ledgers: "OrderedDict[str, _Ledger]" = OrderedDict()
        # query index (built on the first query)
        self._index = SortedRunIndex()
        self._file_sigs: Dict[str, Optional[Tuple[int, ...]]] = {}
        self._corrupt_runs: Dict[str, str] = {}
        self._scanned = False
        #: Test seam: called with a fault-point name inside ``commit_step`` (see the conformance suite).
        self.fault_injector: Optional[Callable[[str], None]] = None
        from .store import JsonFileRunStore, JsonlLedgerStore  # the reference facades (their module imports this one)

        self.run_store = JsonFileRunStore(backend=self)
        self.ledger_store = JsonlLedgerStore(backend=self)

    def __repr__(self) -> str:
        return f"JsonFilesBackend({self._dir!r}, fsync={self.fsync})"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._lock_file is not None:
                self._lock_file.close()
            if self.run_locks is not None:
                self.run_locks.close()
            self._ledgers.clear()
            self._index, self._file_sigs, self._corrupt_runs = SortedRunIndex(), {}, {}
            self._scanned = False

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreError(f"jsonfiles store at {self._dir} is closed")

    # --- paths and low-level IO ---------------------------------------------------------------------------------
    def run_file(self, run_id: str) -> str:
        return os.path.join(self._dir, f"run_{run_id}.json")

    def ledger_file(self, run_id: str) -> str:
        return os.path.join(self._dir, f"ledger_{run_id}.jsonl")

    def _tmp_file(self, run_id: str) -> str:
        return os.path.join(self._dir, f".run_{run_id}.json.tmp")

    def _pending_file(self, run_id: str) -> str:
        return os.path.join(self._dir, f".pending_{run_id}")

    @contextmanager
    def _flock(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - not POSIX
            yield
            return
        fd = self._lock_file.fileno()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_file(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _pwrite_all(fd, data, 0)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_dir(self) -> None:
        if self.fsync:
            fsync_dir(self._dir)

    # --- run files ----------------------------------------------------------------------------------------------
    def _read_run_raw(self, run_id: str) -> Optional[bytes]:
        path = self.run_file(run_id)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"jsonfiles store: cannot read run file {path}: {exc}", run_id=run_id) from exc

    def _decode_doc(self, run_id: str, raw: bytes) -> Dict[str, Any]:
        try:
            doc = orjson.loads(raw)
            if type(doc) is not dict:
                raise ValidationError(f"a JSON {type(doc).__name__}, not an object")
        except ValueError as exc:
            raise CorruptStoreError(
                f"jsonfiles store: run file {self.run_file(run_id)} cannot be decoded ({exc})", run_id=run_id
            ) from exc
        return doc

    def _run_from_raw(self, run_id: str, raw: bytes) -> RunState:
        doc = self._decode_doc(run_id, raw)
        doc.pop(COMMITTED_KEY, None)
        try:
            run = codec.run_from_dict(doc)
        except Exception as exc:
            raise CorruptStoreError(
                f"jsonfiles store: run file {self.run_file(run_id)} is not a valid checkpoint ({exc})",
                run_id=run_id,
            ) from exc
        if run.run_id != run_id:
            raise CorruptStoreError(
                f"jsonfiles store: run file {self.run_file(run_id)} holds run {run.run_id!r}", run_id=run_id
            )
        return run

    def load_run(self, run_id: str) -> Optional[RunState]:
        validate_run_id(run_id)
        self._ensure_open()
        raw = self._read_run_raw(run_id)
        return self._run_from_raw(run_id, raw) if raw is not None else None

    def load_revision(self, run_id: str) -> Optional[int]:
        validate_run_id(run_id)
        self._ensure_open()
        raw = self._read_run_raw(run_id)
        if raw is None:
            return None
        revision = self._decode_doc(run_id, raw).get("revision", 0)
        if type(revision) is not int:
            raise CorruptStoreError(
                f"jsonfiles store: run file {self.run_file(run_id)} has revision {revision!r}", run_id=run_id
            )
        return revision

    # --- sibling services (FileSiblings): files in the same directory ----------------------------------------
    @property
    def sibling_dir(self) -> Path:
        return self.path

    # --- the step commit ----------------------------------------------------------------------------------------
    def _latest_status(self, run_id: str, led: "_Ledger", fd: int, key: str) -> Optional[str]:
        hit = led.idem.get(key)
        if hit is None:
            return None
        if hit[0]:
            return _COMPLETED
        return self.rows(run_id, led, fd, [led.valid[hit[1] - 1]])[0].get("status")

    def _commit_view(self, synced: Dict[str, "_Ledger"]) -> CommitView:
        """The committed ledgers of the commit's runs (synced under the store lock), read for its preconditions."""

        def read(run_id: str, pick: Callable[["_Ledger", Optional[int]], Any]) -> Any:
            led = synced.get(run_id)
            if led is None:  # not a run of this commit: its committed ledger, read as any reader does
                return self.read_ledger(run_id, pick)
            with self._open_ledger(run_id) as fd:
                return pick(led, fd)

        return CommitView(
            last_record=lambda rid: read(rid, lambda led, fd: self.rows(rid, led, fd, [led.valid[-1]])[0]
                                         if led.valid else None),
            latest_status=lambda rid, key: read(rid, lambda led, fd: self._latest_status(rid, led, fd, key)),
        )

    def commit_step(self, commit: StepCommit) -> None:
        if self.read_only:
            raise StoreError(f"jsonfiles store at {self._dir} is open read-only: nothing was written")
        run = commit.run
        groups: Dict[str, List[Tuple[StepRecord, bytes]]] = {}
        body: Optional[bytes] = None
        if run is not None:
            validate_run_id(run.run_id)
            groups[run.run_id] = []
            if commit.run_json is None:
                codec.check_run(run)
            body = _pretty(codec.run_to_dict(run))
        if len(commit.records) != len(commit.record_jsons):
            raise ValidationError("StepCommit.records and record_jsons differ in length")
        for record, text in zip(commit.records, commit.record_jsons):
            if not record.run_id:
                raise ValidationError("StepRecord.run_id must be a non-empty string")
            validate_run_id(record.run_id)
            text = text if isinstance(text, bytes) else str(text).encode("utf-8")
            if b"\n" in text:
                raise ValidationError("a ledger record's JSON must be one line")
            groups.setdefault(record.run_id, []).append((record, text))
        if not groups:
            return
        with self._lock:
            self._ensure_open()
            with self._flock():
                self._commit_locked(commit, groups, body)

    def _commit_locked(self, commit: StepCommit, groups: Dict[str, List[Tuple[StepRecord, bytes]]],
                       body: Optional[bytes]) -> None:
        run = commit.run
        plans: List[_Plan] = []
        synced: Dict[str, _Ledger] = {}
        # 1. check, and compute what to write
        for run_id, items in groups.items():
            is_main = run is not None and run_id == run.run_id
            raw = self._read_run_raw(run_id)
            doc = None
            if raw is not None:
                try:
                    doc = self._decode_doc(run_id, raw)
                except CorruptStoreError as exc:
                    if not is_main or commit.expected_revision is not None:
                        raise
                    log.warning("run_file_replaced", run_id=run_id, error=exc.message)
            if is_main and commit.expected_revision is not None:
                # a run file the reference wrote has no revision: it is revision 0, as load_revision says
                actual = doc.get("revision", 0) if doc is not None else None
                if actual != commit.expected_revision:
                    raise ConcurrentModificationError(run_id=run_id, expected=commit.expected_revision,
                                                      actual=actual)
            committed = _count_of(doc) if doc is not None else None
            stale_marker = os.path.exists(self._pending_file(run_id))
            target = committed if committed is not None else (self._read_pending(run_id) if stale_marker else None)
            led = self._ledger(run_id)
            with self._open_ledger(run_id) as fd:
                led.sync(fd, target)
            synced[run_id] = led
            base = len(led.starts)
            new_count = base + len(items)
            data = None
            if is_main:
                data = _with_count(body, new_count)
            elif raw is not None and items:
                data = self._recount(raw, new_count)
            plans.append(_Plan(run_id, items, led, base, data, marker=committed is None and bool(items),
                               stale_marker=stale_marker))
        if commit.reservation or commit.preconditions:
            commit.check(self._commit_view(synced))
        # 2. stage the checkpoints; 3. the fault seam: nothing is visible yet
        try:
            for p in plans:
                if p.data is not None:
                    p.tmp = self._tmp_file(p.run_id)
                    self._write_file(p.tmp, p.data)
            if self.fault_injector is not None:
                self.fault_injector(FAULT_POINT)
        except BaseException:
            for p in plans:
                if p.tmp is not None:
                    _unlink(p.tmp)
            raise
        # 4. append the records; 5. rename: the commit point
        try:
            for p in plans:
                if p.items:
                    if p.marker:
                        write_atomic(self._pending_file(p.run_id), b"%d\n" % p.base, fsync=self.fsync)
                    self._append(p)
            renamed = False
            for p in plans:
                if p.tmp is not None:
                    os.replace(p.tmp, self.run_file(p.run_id))
                    p.tmp = None
                    renamed = True
            if renamed:
                self._sync_dir()
            unlinked = False
            for p in plans:
                if p.marker or p.stale_marker:
                    unlinked = _unlink(self._pending_file(p.run_id)) or unlinked
            if unlinked:
                self._sync_dir()
        except BaseException as exc:
            for p in plans:
                if p.tmp is not None:
                    _unlink(p.tmp)
                self._ledgers.pop(p.run_id, None)  # re-read from the files next time
            if isinstance(exc, OSError):
                raise StoreError(f"jsonfiles store at {self._dir}: commit failed ({exc})") from exc
            raise
        for p in plans:
            p.ledger.claimed = len(p.ledger.starts) if p.data is not None else None
        if self._scanned:
            self._note_commit(run, plans)

    def _recount(self, raw: bytes, count: int) -> bytes:
        """The run file with a new committed count and otherwise the same bytes (state never re-encoded)."""
        m = _COUNT_HEAD.match(raw)
        if m:
            return raw[: m.start(1)] + b"%d" % count + raw[m.end(1):]
        doc = json.loads(raw.decode("utf-8"))  # a reference-written file: the stdlib keeps big integers exact
        doc.pop(COMMITTED_KEY, None)
        return _with_count(_pretty(doc), count)

    def _append(self, p: _Plan) -> None:
        led, path = p.ledger, self.ledger_file(p.run_id)
        created = not os.path.exists(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size > led.end:
                log.warning("ledger_uncommitted_tail_truncated", run_id=p.run_id, file=path, bytes=size - led.end)
                os.ftruncate(fd, led.end)
            payload = (b"\n" if led.torn else b"") + b"".join(text + b"\n" for _, text in p.items)
            _pwrite_all(fd, payload, led.end)
            if self.fsync:
                os.fsync(fd)
            sig = _sig(os.fstat(fd))
        except BaseException:
            try:
                os.ftruncate(fd, led.end)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)
        if created:
            self._sync_dir()
        led.appended(p.items, sig)


__all__ = ["JsonFilesBackend", "COMMITTED_KEY", "FAULT_POINT"]
