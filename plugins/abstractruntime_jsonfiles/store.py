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
import re
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import orjson

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError, StoreError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, StepRecord, StepStatus
from abstractruntime.storage.base import Capability, CommitView, LedgerStore, RunStore, StepCommit, StoreBackend
from abstractruntime_storekit import IndexedRunQueries, RunLocks, SortedRunIndex, index_entries

FAULT_POINT = "commit:after-checkpoint"
COMMITTED_KEY = "_ledger_committed"
MAX_RUN_ID_LENGTH = 200
LEDGER_CACHE_SIZE = 1024

_RUN_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_COUNT_HEAD = re.compile(rb'\A\s*\{\s*"_ledger_committed"\s*:\s*(\d+)\s*,')
_HEAD_BYTES = 128
_PRETTY_OPEN = b"{\n  "
_COMPLETED = StepStatus.COMPLETED.value

T = TypeVar("T")
log = get_logger("abstractruntime.jsonfiles")


def validate_run_id(run_id: Any) -> str:
    """Return ``run_id`` if it can be used in a file name, else raise ``ValueError``."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
        raise ValueError(
            f"run_id {run_id!r} cannot be used in a file name: the jsonfiles store accepts run ids made of "
            f"letters, digits and '_', '.', ':', '-' only (and not '.' or '..')"
        )
    if len(run_id) > MAX_RUN_ID_LENGTH:
        raise ValueError(
            f"run_id of {len(run_id)} characters is too long for the jsonfiles store (at most {MAX_RUN_ID_LENGTH})"
        )
    return run_id


def _is_valid_id(run_id: str) -> bool:
    try:
        validate_run_id(run_id)
    except ValueError:
        return False
    return True


# --- small file helpers -----------------------------------------------------------------------------------------
def _sig(st: os.stat_result) -> Tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, min(size, 1 << 30), offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _pretty(doc: Dict[str, Any]) -> bytes:
    """Reference formatting: ``json.dumps(doc, indent=2, ensure_ascii=False)`` (orjson produces the same bytes)."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    except (orjson.JSONEncodeError, TypeError):  # e.g. integers beyond 64 bits
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _with_count(body: bytes, count: int) -> bytes:
    """Put ``"_ledger_committed": count`` first into a pretty-printed, non-empty JSON object."""
    if body.startswith(_PRETTY_OPEN) and not body.startswith(b'{\n  "' + COMMITTED_KEY.encode()):
        return b'{\n  "%s": %d,\n  ' % (COMMITTED_KEY.encode(), count) + body[len(_PRETTY_OPEN):]
    doc = json.loads(body.decode("utf-8"))
    doc.pop(COMMITTED_KEY, None)
    return _pretty({COMMITTED_KEY: count, **doc})


def _count_of(doc: Dict[str, Any]) -> Optional[int]:
    value = doc.get(COMMITTED_KEY)
    return value if type(value) is int and value >= 0 else None


# --- per-run ledger cache ---------------------------------------------------------------------------------------
class _Ledger:
    """This process's view of one ledger file: committed line offsets, valid lines, idempotency index."""

    __slots__ = ("sig", "claimed", "starts", "end", "torn", "parsed", "valid", "corrupt", "idem")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sig: Optional[Tuple[int, ...]] = None  # stat signature of the file when last read or written
        self.claimed: Optional[int] = None  # committed line count it was synced to (None: every line)
        self.starts: List[int] = []  # byte offset of each committed physical line
        self.end = 0  # byte offset just after the last committed line
        self.torn = False  # the last committed line has no newline (the file ended there)
        self.parsed = 0  # lines whose validity is known
        self.valid: List[int] = []  # seq - 1 -> physical line index
        self.corrupt: List[int] = []  # 1-based physical line numbers
        self.idem: Dict[str, Tuple[bool, int]] = {}  # key -> (completed, seq)

    def line_end(self, i: int) -> int:
        return self.starts[i + 1] if i + 1 < len(self.starts) else self.end

    def sync(self, fd: Optional[int], target: Optional[int]) -> None:
        """Bring the committed lines up to date with the file (``target`` committed lines; None: all lines)."""
        if fd is None:
            self.reset()
            self.claimed = target
            return
        st = os.fstat(fd)
        sig = _sig(st)
        old = self.sig
        if sig == old and target == self.claimed:
            return
        full = (
            old is None
            or old[:2] != sig[:2]  # another file (device, inode)
            or st.st_size < self.end
            or self.torn
            or (target is not None and target < len(self.starts))
            or (sig != old and target is not None and target == self.claimed)  # changed, but nothing committed
            or (sig != old and target is None and st.st_size == self.end)
        )
        if not full and self.end > 0 and os.pread(fd, 1, self.end - 1) != b"\n":
            full = True
        if full:
            self.reset()
        if (target is None or len(self.starts) < target) and st.st_size > self.end:
            data = _pread_all(fd, st.st_size - self.end, self.end)
            base, pos, n, starts = self.end, 0, len(data), self.starts
            while pos < n and (target is None or len(starts) < target):
                starts.append(base + pos)
                nl = data.find(b"\n", pos)
                if nl < 0:
                    pos = n
                    self.torn = True
                    break
                pos = nl + 1
            self.end = base + pos
        self.sig = sig
        self.claimed = target

    def parse(self, fd: int, run_id: str, path: str) -> None:
        n = len(self.starts)
        if self.parsed >= n:
            return
        lo = self.starts[self.parsed]
        data = _pread_all(fd, self.end - lo, lo)
        for i in range(self.parsed, n):
            line = data[self.starts[i] - lo: self.line_end(i) - lo]
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                if type(row) is not dict:
                    raise ValueError(f"a JSON {type(row).__name__}, not an object")
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                self.corrupt.append(i + 1)
                log.warning("ledger_line_corrupt", run_id=run_id, file=path, line=i + 1, error=str(exc)[:200])
                continue
            self.valid.append(i)
            self._note(row.get("idempotency_key"), row.get("status") == _COMPLETED)
        self.parsed = n

    def _note(self, key: Any, completed: bool) -> None:
        if isinstance(key, str) and key:
            prev = self.idem.get(key)
            if prev is None or not prev[0]:
                self.idem[key] = (completed, len(self.valid))

    def appended(self, items: Sequence[Tuple[StepRecord, bytes]], sig: Tuple[int, ...]) -> None:
        if self.torn:  # the append started with a newline that ends the torn line
            self.end += 1
            self.torn = False
        known = self.parsed == len(self.starts)
        for record, text in items:
            self.starts.append(self.end)
            self.end += len(text) + 1
            if known:
                self.valid.append(len(self.starts) - 1)
                self._note(record.idempotency_key, record.status is StepStatus.COMPLETED)
        if known:
            self.parsed = len(self.starts)
        self.sig = sig


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
class JsonFilesBackend(StoreBackend):
    """A directory of ``run_<id>.json`` / ``ledger_<id>.jsonl`` files. ``fsync=True`` (default) fsyncs commits."""

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.RUN_LOCKS})

    def __init__(self, path: os.PathLike | str, *, fsync: bool = True) -> None:
        p = Path(path).expanduser()
        try:
            p.mkdir(parents=True, exist_ok=True)
            self.path = p.resolve()
            self._dir = str(self.path)
            # a file object, so that a backend dropped without close() (reference-style stores) frees it
            self._lock_file = open(os.path.join(self._dir, ".lock"), "ab")
            self.run_locks = RunLocks(os.path.join(self._dir, ".runs.lock"))
        except OSError as exc:
            raise StoreError(f"Cannot open the jsonfiles store directory {p}: {exc}") from exc
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
            self._lock_file.close()
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
        if not self.fsync:
            return
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_atomic(self, path: str, data: bytes) -> None:
        tmp = path + ".tmp"
        self._write_file(tmp, data)
        os.replace(tmp, path)
        self._sync_dir()

    @contextmanager
    def _open_ledger(self, run_id: str) -> Iterator[Optional[int]]:
        try:
            fd = os.open(self.ledger_file(run_id), os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

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
                raise ValueError(f"a JSON {type(doc).__name__}, not an object")
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

    def _read_pending(self, run_id: str) -> Optional[int]:
        path = self._pending_file(run_id)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            count = int(text.strip())
            if count < 0:
                raise ValueError(count)
        except ValueError:
            log.warning("ledger_pending_marker_unreadable", run_id=run_id, file=path)
            return None
        return count

    def _reader_target(self, run_id: str) -> Optional[int]:
        """The committed line count of a run's ledger for a reader (None: every line counts)."""
        path = self.run_file(run_id)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return self._read_pending(run_id)
        with f:
            head = f.read(_HEAD_BYTES)
            m = _COUNT_HEAD.match(head)
            if m:
                return int(m.group(1))
            raw = head + f.read()
        try:
            count = _count_of(self._decode_doc(run_id, raw))
        except CorruptStoreError as exc:
            log.warning("run_file_corrupt", run_id=run_id, file=path, error=exc.message)
            count = None
        return count if count is not None else self._read_pending(run_id)

    # --- ledger reads -------------------------------------------------------------------------------------------
    def _ledger(self, run_id: str) -> _Ledger:
        led = self._ledgers.get(run_id)
        if led is None:
            led = self._ledgers[run_id] = _Ledger()
            if len(self._ledgers) > LEDGER_CACHE_SIZE:
                self._ledgers.popitem(last=False)
        else:
            self._ledgers.move_to_end(run_id)
        return led

    def read_ledger(self, run_id: str, fn: Callable[[_Ledger, Optional[int]], T]) -> T:
        """Call ``fn(ledger_cache, fd)`` with the run's committed lines parsed (fd None: no ledger file)."""
        validate_run_id(run_id)
        with self._lock:
            self._ensure_open()
            target = self._reader_target(run_id)  # first the count, then the lines it counts
            with self._open_ledger(run_id) as fd:
                if fd is None:
                    self._ledgers.pop(run_id, None)
                    return fn(_Ledger(), None)
                led = self._ledger(run_id)
                led.sync(fd, target)
                led.parse(fd, run_id, self.ledger_file(run_id))
                return fn(led, fd)

    def rows(self, run_id: str, led: _Ledger, fd: Optional[int], lines: Sequence[int]) -> List[Dict[str, Any]]:
        if fd is None or not lines:
            return []
        lo, hi = led.starts[lines[0]], led.line_end(lines[-1])
        data = _pread_all(fd, hi - lo, lo)
        try:
            return [orjson.loads(data[led.starts[i] - lo: led.line_end(i) - lo]) for i in lines]
        except ValueError as exc:  # the committed part was rewritten under us (by hand)
            self._ledgers.pop(run_id, None)
            raise CorruptStoreError(
                f"jsonfiles store: ledger file {self.ledger_file(run_id)} changed while it was read ({exc}); retry",
                run_id=run_id,
            ) from exc

    # --- sibling services: files in the same directory --------------------------------------------------------
    def artifact_store(self) -> Any:
        from abstractruntime_artifacts.store import FileArtifactStore

        return FileArtifactStore(self.path)

    def snapshot_store(self) -> Any:
        from abstractruntime_snapshots.store import JsonSnapshotStore

        return JsonSnapshotStore(self.path / "snapshots")

    def command_store(self) -> Any:
        from abstractruntime_commands.store import JsonlCommandStore

        return JsonlCommandStore(self.path)

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
            raise ValueError("StepCommit.records and record_jsons differ in length")
        for record, text in zip(commit.records, commit.record_jsons):
            if not record.run_id:
                raise ValueError("StepRecord.run_id must be a non-empty string")
            validate_run_id(record.run_id)
            text = text if isinstance(text, bytes) else str(text).encode("utf-8")
            if b"\n" in text:
                raise ValueError("a ledger record's JSON must be one line")
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
                actual = doc.get("revision") if doc is not None else None
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
                        self._write_atomic(self._pending_file(p.run_id), b"%d\n" % p.base)
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

    # --- query index --------------------------------------------------------------------------------------------
    def _set_entries(self, run_id: str, entries: Tuple[Tuple[str, str], ...]) -> None:
        self._index.set(run_id, entries)

    def _forget(self, run_id: str) -> None:
        self._set_entries(run_id, ())
        self._file_sigs.pop(run_id, None)
        self._corrupt_runs.pop(run_id, None)

    def _note_commit(self, run: Optional[RunState], plans: List[_Plan]) -> None:
        for p in plans:
            if p.data is None:
                continue
            if run is not None and p.run_id == run.run_id:
                try:
                    sig: Optional[Tuple[int, ...]] = _sig(os.stat(self.run_file(p.run_id)))
                except OSError:
                    sig = None
                self._file_sigs[p.run_id] = sig
                self._corrupt_runs.pop(p.run_id, None)
                self._set_entries(p.run_id, tuple(sorted(set(index_entries(run)))))
            else:
                self._file_sigs[p.run_id] = None  # same state, new bytes: re-read by the next refresh

    def _index_file(self, run_id: str) -> None:
        path = self.run_file(run_id)
        try:
            with open(path, "rb") as f:
                sig = _sig(os.fstat(f.fileno()))
                raw = f.read()
        except FileNotFoundError:
            self._forget(run_id)
            return
        self._file_sigs[run_id] = sig
        try:
            run = self._run_from_raw(run_id, raw)
        except CorruptStoreError as exc:
            self._corrupt_runs[run_id] = exc.message
            self._set_entries(run_id, ())
            log.warning("run_file_corrupt", run_id=run_id, file=path, error=exc.message)
            return
        self._corrupt_runs.pop(run_id, None)
        self._set_entries(run_id, tuple(sorted(set(index_entries(run)))))

    def refresh_index(self) -> None:
        """Bring the query index up to date: one ``stat`` per run file, a read per changed file."""
        with self._lock:
            self._ensure_open()
            seen = set()
            with os.scandir(self._dir) as entries:
                for entry in entries:
                    name = entry.name
                    if not (name.startswith("run_") and name.endswith(".json")):
                        continue
                    run_id = name[4:-5]
                    if not _is_valid_id(run_id):
                        continue
                    try:
                        sig = _sig(entry.stat())
                    except FileNotFoundError:
                        continue
                    seen.add(run_id)
                    if self._file_sigs.get(run_id) != sig:
                        self._index_file(run_id)
            for run_id in [r for r in self._file_sigs if r not in seen]:
                self._forget(run_id)
            self._scanned = True

    def query(self, fn: Callable[[], List[str]]) -> List[str]:
        """Run ids answered by ``fn`` on a freshly refreshed index."""
        with self._lock:
            self.refresh_index()
            return fn()

    def scan(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        return self._index.scan(kind, lo, hi, limit)

    def all_run_ids(self) -> List[str]:
        return [r for r in self._file_sigs if r not in self._corrupt_runs]

    def load_many(self, run_ids: Sequence[str]) -> List[RunState]:
        out = []
        for run_id in run_ids:
            try:
                run = self.load_run(run_id)
            except CorruptStoreError as exc:  # changed since the index pass
                log.warning("run_file_corrupt", run_id=run_id, error=exc.message)
                continue
            if run is not None:
                out.append(run)
        return out

    def corrupt_run_files(self) -> List[str]:
        with self._lock:
            self.refresh_index()
            return sorted(os.path.basename(self.run_file(r)) for r in self._corrupt_runs)


# --- reference-style construction -------------------------------------------------------------------------------
_SHARED: "weakref.WeakValueDictionary[str, JsonFilesBackend]" = weakref.WeakValueDictionary()
_SHARED_GUARD = threading.Lock()


def shared_backend(base_dir: os.PathLike | str) -> JsonFilesBackend:
    """The process-wide backend of a directory (created on first use), shared by the reference-style stores."""
    path = Path(base_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _SHARED_GUARD:
        backend = _SHARED.get(key)
        if backend is None or backend.closed:
            backend = JsonFilesBackend(key)
            _SHARED[key] = backend
        return backend


class JsonFileRunStore(IndexedRunQueries, RunStore):
    """Reference ``JsonFileRunStore(base_dir)``: ``run_<run_id>.json`` files; queryable (see the module docstring)."""

    def __init__(self, base_dir: Optional[os.PathLike | str] = None, *,
                 backend: Optional[JsonFilesBackend] = None) -> None:
        if backend is None:
            if base_dir is None:
                raise TypeError("JsonFileRunStore needs base_dir (or backend=)")
            backend = shared_backend(base_dir)
        self.backend = backend
        self.base_dir = backend.path

    def save(self, run: RunState) -> None:
        self.backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        return self.backend.load_run(run_id)

    def load_revision(self, run_id: str) -> Optional[int]:
        return self.backend.load_revision(run_id)

    def corrupt_run_files(self) -> List[str]:
        """Names of run files the query index skipped because they cannot be decoded."""
        return self.backend.corrupt_run_files()

    # --- queries ----------------------------------------------------------------------------------------------
    # --- queries (IndexedRunQueries over the in-process index, refreshed from file mtimes) ---------------------
    def _runs_by_index(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int]) -> List[RunState]:
        b = self.backend
        return b.load_many(b.query(lambda: b.scan(kind, lo, hi, limit)))

    def _all_runs(self) -> List[RunState]:
        b = self.backend
        return b.load_many(b.query(lambda: b.all_run_ids()))


class JsonlLedgerStore(LedgerStore):
    """Reference ``JsonlLedgerStore(base_dir)``: ``ledger_<run_id>.jsonl``, one record dict per line."""

    def __init__(self, base_dir: Optional[os.PathLike | str] = None, *,
                 backend: Optional[JsonFilesBackend] = None) -> None:
        if backend is None:
            if base_dir is None:
                raise TypeError("JsonlLedgerStore needs base_dir (or backend=)")
            backend = shared_backend(base_dir)
        self.backend = backend
        self.base_dir = backend.path

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValueError("StepRecord.run_id must be a non-empty string")
        self.backend.commit_step(
            StepCommit(run=None, run_json=None, records=(record,), record_jsons=(codec.encode_record(record),))
        )

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        """The committed records in append order (corrupt lines skipped and reported; unknown run: [])."""
        b = self.backend
        return b.read_ledger(run_id, lambda led, fd: b.rows(run_id, led, fd, led.valid))

    def count(self, run_id: str) -> int:
        return self.backend.read_ledger(run_id, lambda led, fd: len(led.valid))

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        """Records with 1-based sequence number > ``after``; returns ``(records, last_seq_returned or after)``."""
        b = self.backend
        after = max(0, int(after))
        limit = max(0, int(limit))
        rows = b.read_ledger(run_id, lambda led, fd: b.rows(run_id, led, fd, led.valid[after: after + limit]))
        return rows, after + len(rows)

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The completed row with this key if any, else the latest row with it, else None."""
        b = self.backend

        def find(led: _Ledger, fd: Optional[int]) -> Optional[Dict[str, Any]]:
            hit = led.idem.get(key)
            if hit is None:
                return None
            return b.rows(run_id, led, fd, [led.valid[hit[1] - 1]])[0]

        return b.read_ledger(run_id, find)

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        """The run's last committed (valid) row, or None."""
        b = self.backend
        return b.read_ledger(run_id, lambda led, fd: b.rows(run_id, led, fd, [led.valid[-1]])[0] if led.valid
                             else None)

    def last_corrupt_lines(self, run_id: str) -> List[int]:
        """1-based line numbers of the committed lines of the run's ledger file that were skipped as corrupt."""
        return self.backend.read_ledger(run_id, lambda led, fd: list(led.corrupt))


__all__ = [
    "JsonFilesBackend",
    "JsonFileRunStore",
    "JsonlLedgerStore",
    "shared_backend",
    "validate_run_id",
    "COMMITTED_KEY",
    "FAULT_POINT",
]
