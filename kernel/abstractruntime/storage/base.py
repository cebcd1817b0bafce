"""Store interfaces: the reference's ``RunStore`` / ``LedgerStore`` ABCs and query protocols, plus the kernel's
step-commit contract.

A store plugin provides a *backend*: one object with a ``run_store``, a ``ledger_store`` and ``commit_step``,
which writes a step's checkpoint and its ledger records in one transaction. The kernel commits every step
through it. Run and ledger stores that do not share a backend (e.g. a host mixing store classes, as the
reference allowed) are committed by :class:`SplitCommitter`: ledger records first, then the checkpoint -- two
writes, so such a pairing does not get the one-commit guarantee.
"""

from __future__ import annotations

import abc
import bisect
import hashlib
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from attrs import field, frozen

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from ..models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from ..timeutil import instant_micros


class RunStore(abc.ABC):
    """Run checkpoints (reference API)."""

    @abc.abstractmethod
    def save(self, run: RunState) -> None: ...

    @abc.abstractmethod
    def load(self, run_id: str) -> Optional[RunState]: ...


class LedgerStore(abc.ABC):
    """The append-only ledger (reference API). ``list`` returns dicts in append order.

    A store that numbers records with a per-run ``seq`` (1, 2, ...) raises
    :class:`~abstractruntime.errors.LedgerGapError` from ``list`` and ``list_after`` when the rows read skip a
    seq (:func:`check_contiguous`). The error carries the rows that are present (``records``) and the page
    cursor, so a tolerant reader (``verify_ledger``) catches it and reads on. ``count`` stays the sequence head.
    """

    @abc.abstractmethod
    def append(self, record: StepRecord) -> None: ...

    @abc.abstractmethod
    def list(self, run_id: str) -> List[Dict[str, Any]]: ...


@runtime_checkable
class QueryableRunStore(Protocol):
    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        wait_reason: Optional[WaitReason] = None,
        workflow_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[RunState]: ...

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]: ...

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]: ...


@runtime_checkable
class EventWaitIndexStore(Protocol):
    """Our addition: the runs waiting for an event key, from an index (never a scan of all runs)."""

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]: ...


@runtime_checkable
class QueryableRunIndexStore(Protocol):
    def list_run_index(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        session_id: Optional[str] = None,
        root_only: bool = False,
        limit: int = 100,
    ) -> List[Dict[str, Any]]: ...


@frozen
class StepCommit:
    """Everything one step writes, already checked and encoded (UTF-8 JSON bytes) by the kernel.

    ``run`` is None for a ledger-only commit (the reservation written before a side-effecting effect runs).
    ``expected_revision`` is the revision the stored checkpoint must still have (None: no check, e.g. a new run);
    a store that finds another revision raises :class:`~abstractruntime.errors.ConcurrentModificationError`
    and writes nothing.

    ``reservation`` marks the commit that reserves a side effect: its ``started`` rows are create-only per
    idempotency key. A store checks them with :func:`check_reservations` inside its write transaction, so of two
    processes ticking the same run only one starts the effect.
    """

    run: Optional[RunState]
    run_json: Optional[bytes]
    records: Tuple[StepRecord, ...] = field(converter=tuple, factory=tuple)
    record_jsons: Tuple[bytes, ...] = field(converter=tuple, factory=tuple)
    expected_revision: Optional[int] = None
    reservation: bool = False

    @property
    def run_id(self) -> str:
        if self.run is not None:
            return self.run.run_id
        return self.records[0].run_id


@runtime_checkable
class StoreBackend(Protocol):
    """What a store plugin's factory returns.

    ``run_store.backend`` and ``ledger_store.backend`` must both be the backend itself: that is how the kernel
    recognises a pair that can be committed in one transaction (see :func:`committer_for`). The conformance
    suite checks it.
    """

    run_store: RunStore
    ledger_store: LedgerStore

    def commit_step(self, commit: StepCommit) -> None: ...

    def close(self) -> None: ...


class SplitCommitter:
    """Commits a step to a run store and a ledger store that share no transaction (records first).

    The revision is checked before writing when the run store can report it (``load_revision``), which refuses
    most stale writers but, unlike a backend's transaction, not a writer that races in between.
    """

    def __init__(self, run_store: RunStore, ledger_store: LedgerStore) -> None:
        self.run_store = run_store
        self.ledger_store = ledger_store

    def commit_step(self, commit: StepCommit) -> None:
        probe = getattr(self.run_store, "load_revision", None)
        if commit.run is not None and commit.expected_revision is not None and probe is not None:
            actual = probe(commit.run.run_id)
            if actual != commit.expected_revision:
                from ..errors import ConcurrentModificationError

                raise ConcurrentModificationError(
                    run_id=commit.run.run_id, expected=commit.expected_revision, actual=actual
                )
        finder = getattr(self.ledger_store, "find_by_idempotency_key", None)
        if finder is not None:  # best effort: these stores share no transaction
            check_reservations(commit, lambda run_id, key: (finder(run_id, key) or {}).get("status"))
        for record in commit.records:
            self.ledger_store.append(record)
        if commit.run is not None:
            self.run_store.save(commit.run)


_TAKEN = (StepStatus.STARTED.value, StepStatus.COMPLETED.value)


def check_reservations(commit: StepCommit, latest_status: Callable[[str, str], Optional[str]]) -> None:
    """Refuse a reservation whose effect was already started (or completed) by someone else.

    ``latest_status(run_id, key)`` is the store's view, inside its write transaction, of the status of the latest
    row with that idempotency key (a ``completed`` row stays the answer), or None. For a ``reservation`` commit, a
    ``started`` row whose key is already ``started`` or ``completed`` raises
    :class:`~abstractruntime.errors.EffectAlreadyStartedError`; the commit's own earlier rows count (a ``failed``
    attempt followed by the next attempt's reservation is a retry, allowed). Other commits are not checked.
    """
    if not commit.reservation:
        return
    seen: Dict[Tuple[str, str], Optional[str]] = {}
    for record in commit.records:
        key = record.idempotency_key
        if not key:
            continue
        k = (record.run_id, key)
        status = seen[k] if k in seen else latest_status(record.run_id, key)
        if record.status is StepStatus.STARTED and status in _TAKEN:
            from ..errors import EffectAlreadyStartedError

            raise EffectAlreadyStartedError(run_id=record.run_id, idempotency_key=key, status=status)
        if status != StepStatus.COMPLETED.value:
            seen[k] = record.status.value


class _LockFile:
    """One lock file's state in this process, shared by every :class:`RunLocks` on that file: POSIX locks belong
    to the process, and closing *any* descriptor of the file drops them all, so there must be one."""

    def __init__(self, path: str) -> None:
        self.guard = threading.Lock()
        self.held: Dict[int, Tuple[int, int]] = {}  # offset -> (owning thread, count)
        self.users = 0
        self.file: Any = open(path, "ab") if fcntl is not None else None


_LOCK_FILES: Dict[str, _LockFile] = {}
_LOCK_FILES_GUARD = threading.Lock()


class RunLocks:
    """Cross-process "who drives this run" locks for an embedded store: one byte-range lock (POSIX ``lockf``) per
    run id in one lock file beside the store.

    The kernel holds a run's lock while it ticks the run (:meth:`acquire` is non-blocking: a run another process
    -- or another thread of this process, e.g. a second runtime on the same store -- is driving is left alone).
    The operating system drops the locks of a process that dies, so a ``started`` reservation without a live
    holder is a crash leftover (in doubt), never a step in flight elsewhere. The holding thread may re-acquire
    (counted), so a tick nested in a tick of the same run keeps the lock. Every ``RunLocks`` of this process on one
    file shares that file's state. On a platform without ``fcntl`` only the in-process exclusion applies.
    """

    def __init__(self, path: Any) -> None:
        self.path = os.path.realpath(str(path))
        with _LOCK_FILES_GUARD:
            shared = _LOCK_FILES.get(self.path)
            if shared is None:
                shared = _LOCK_FILES[self.path] = _LockFile(self.path)
            shared.users += 1
        self._shared: Optional[_LockFile] = shared

    @staticmethod
    def _offset(run_id: str) -> int:
        return int.from_bytes(hashlib.blake2b(run_id.encode("utf-8"), digest_size=7).digest(), "big")

    def acquire(self, run_id: str) -> bool:
        """Take the run's lock without waiting; False if another process or thread holds it."""
        shared = self._shared
        if shared is None:
            return True  # closed: the store refuses the commit anyway
        offset, me = self._offset(run_id), threading.get_ident()
        with shared.guard:
            owner, count = shared.held.get(offset, (me, 0))
            if owner != me:
                return False
            if count == 0 and shared.file is not None:
                try:
                    fcntl.lockf(shared.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                except OSError:
                    return False
            shared.held[offset] = (me, count + 1)
            return True

    def release(self, run_id: str) -> None:
        shared = self._shared
        if shared is None:
            return
        offset = self._offset(run_id)
        with shared.guard:
            owner, count = shared.held.get(offset, (None, 0))
            if count > 1:
                shared.held[offset] = (owner, count - 1)
                return
            shared.held.pop(offset, None)
            if count == 1 and shared.file is not None:
                fcntl.lockf(shared.file.fileno(), fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        """Stop using the lock file; the last user in this process closes it (dropping this process's locks)."""
        with _LOCK_FILES_GUARD:
            shared, self._shared = self._shared, None
            if shared is None:
                return
            shared.users -= 1
            if shared.users == 0:
                _LOCK_FILES.pop(self.path, None)
                with shared.guard:
                    if shared.file is not None:
                        shared.file.close()
                    shared.held.clear()


def check_chain_heads(commit: StepCommit, head_hash: Callable[[str], Optional[str]]) -> None:
    """Refuse hash-chained records computed against a stale ledger head, so the chain never forks.

    ``head_hash(run_id)`` is the ``record_hash`` of the run's last stored record (None for an empty ledger), read
    inside the store's write transaction. For each run in the commit whose first record is chained (it has a
    ``record_hash`` or a ``prev_hash``), that record's ``prev_hash`` must equal the head, else
    :class:`~abstractruntime.errors.LedgerHeadMovedError` (a ``ConcurrentModificationError``) is raised and the
    store writes nothing. Records of a runtime without hash chaining are not checked.
    """
    seen = set()
    for record in commit.records:
        if record.run_id in seen:
            continue
        seen.add(record.run_id)
        if record.record_hash is None and record.prev_hash is None:
            continue
        head = head_hash(record.run_id)
        if record.prev_hash != head:
            from ..errors import LedgerHeadMovedError

            raise LedgerHeadMovedError(run_id=record.run_id, expected_prev_hash=record.prev_hash, head_hash=head)


def committer_for(run_store: Any, ledger_store: Any) -> Callable[[StepCommit], None]:
    """The ``commit_step`` callable for a pair of stores: their shared backend's, else a split commit."""
    backend = getattr(run_store, "backend", None)
    if backend is not None and backend is getattr(ledger_store, "backend", None):
        return backend.commit_step
    return SplitCommitter(run_store, ledger_store).commit_step


# --- secondary indexes shared by the builtin stores -------------------------------------------------------------

#: Added to epoch microseconds so that timestamps before 1970 still sort correctly as fixed-width decimals.
_TIMER_OFFSET = 62_135_596_800 * 1_000_000


def timer_index_value(until_iso: str) -> str:
    return f"{instant_micros(until_iso) + _TIMER_OFFSET:020d}"


def index_entries(run: RunState) -> Iterable[Tuple[str, str]]:
    """The ``(kind, value)`` index entries of a checkpoint.

    Kinds: ``status``, ``workflow``, ``parent``, ``wait`` (wait reason of a waiting run), ``timer`` (a waiting
    ``UNTIL`` run, value = fixed-width sortable instant) and ``event`` (a waiting ``EVENT`` run, value = wait key).
    Stores keep ``(kind, value, run_id)`` ordered so that "due timers" and "runs waiting for key K" are range
    scans, never a scan of all runs.
    """
    status = run.status.value
    yield ("status", status)
    yield ("workflow", run.workflow_id)
    if run.parent_run_id:
        yield ("parent", run.parent_run_id)
    waiting = run.waiting
    if run.status is RunStatus.WAITING and waiting is not None:
        yield ("wait", waiting.reason.value)
        if waiting.reason is WaitReason.UNTIL and waiting.until:
            try:
                yield ("timer", timer_index_value(waiting.until))
            except ValueError:
                pass  # an unparsable deadline never becomes due; tick reports it
        elif waiting.reason is WaitReason.EVENT and waiting.wait_key:
            yield ("event", waiting.wait_key)


def run_index_row(run: RunState) -> Dict[str, Any]:
    """One row of ``list_run_index`` (reference shape)."""
    waiting = run.waiting
    return {
        "run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "status": run.status.value,
        "wait_reason": waiting.reason.value if waiting is not None else None,
        "wait_until": waiting.until if waiting is not None else None,
        "parent_run_id": run.parent_run_id,
        "actor_id": run.actor_id,
        "session_id": run.session_id,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }


def filter_runs(
    runs: Iterable[RunState],
    *,
    status: Optional[RunStatus] = None,
    wait_reason: Optional[WaitReason] = None,
    workflow_id: Optional[str] = None,
    session_id: Optional[str] = None,
    root_only: bool = False,
) -> List[RunState]:
    """Filter and order runs as the reference's ``list_runs`` does (newest ``updated_at`` first)."""
    status_v = RunStatus(status) if status is not None else None
    reason_v = WaitReason(wait_reason) if wait_reason is not None else None
    out = []
    for run in runs:
        if status_v is not None and run.status is not status_v:
            continue
        if reason_v is not None and (run.waiting is None or run.waiting.reason is not reason_v):
            continue
        if workflow_id is not None and run.workflow_id != workflow_id:
            continue
        if session_id is not None and run.session_id != session_id:
            continue
        if root_only and run.parent_run_id:
            continue
        out.append(run)
    out.sort(key=lambda r: r.updated_at, reverse=True)
    return out


class SortedRunIndex:
    """An in-process ordered index of ``(kind, value, run_id)`` entries (:func:`index_entries`), for stores without
    a native one (memory, JSON files): :meth:`set` replaces a run's entries, :meth:`scan` is a range scan. Not
    thread-safe: the store calls it under its own lock."""

    def __init__(self) -> None:
        self._items: List[Tuple[str, str, str]] = []  # sorted
        self._of: Dict[str, Tuple[Tuple[str, str], ...]] = {}

    def set(self, run_id: str, entries: Tuple[Tuple[str, str], ...]) -> None:
        """Replace the run's entries (sorted, unique); ``()`` removes the run."""
        old = self._of.get(run_id, ())
        if old == entries:
            return
        for kind, value in old:
            item = (kind, value, run_id)
            i = bisect.bisect_left(self._items, item)
            if i < len(self._items) and self._items[i] == item:
                del self._items[i]
        for kind, value in entries:
            bisect.insort(self._items, (kind, value, run_id))
        if entries:
            self._of[run_id] = entries
        else:
            self._of.pop(run_id, None)

    def scan(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        """Run ids with entries ``(kind, v)`` for ``lo <= v`` (and ``v <= hi`` if given), in index order."""
        out: List[str] = []
        items = self._items
        i = bisect.bisect_left(items, (kind, lo, ""))
        while i < len(items):
            k, v, run_id = items[i]
            if k != kind or (hi is not None and v > hi):
                break
            out.append(run_id)
            if limit is not None and len(out) >= limit:
                break
            i += 1
        return out


class IndexedRunQueries:
    """The reference's query methods for a run store that keeps :func:`index_entries` ordered as
    ``(kind, value, run_id)`` (the memory, LMDB and JSON-files stores; a third-party store may use it too).

    Subclasses provide two primitives: ``_runs_by_index(kind, lo, hi, limit)`` -- the runs whose entry ``(kind, v)``
    has ``lo <= v <= hi`` (``hi`` None: no upper bound), in index order, at most ``limit`` (None: all) -- and
    ``_all_runs()``. When the index may lag behind the checkpoints (``INDEX_MAY_LAG``: another process's write
    seen by a per-process index), results are re-checked against each loaded run, so a run that no longer
    matches is never returned. A store that reads index and checkpoints in one snapshot sets it to False.
    """

    INDEX_MAY_LAG = True

    def _runs_by_index(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int]) -> List[RunState]:
        raise NotImplementedError

    def _all_runs(self) -> List[RunState]:
        raise NotImplementedError

    def _candidates(self, status: Any, wait_reason: Any, workflow_id: Optional[str]) -> List[RunState]:
        q = best_index_query(status=status, wait_reason=wait_reason, workflow_id=workflow_id)
        return self._runs_by_index(q[0], q[1], q[1], None) if q else self._all_runs()

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        wait_reason: Optional[WaitReason] = None,
        workflow_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[RunState]:
        runs = filter_runs(self._candidates(status, wait_reason, workflow_id), status=status,
                           wait_reason=wait_reason, workflow_id=workflow_id)
        return runs[: max(0, limit)]

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]:
        hi = timer_index_value(now_iso)
        runs = self._runs_by_index("timer", "", hi, limit)
        if not self.INDEX_MAY_LAG:
            return runs
        return [r for r in runs if any(k == "timer" and v <= hi for k, v in index_entries(r))]

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]:
        runs = self._runs_by_index("event", wait_key, wait_key, limit)
        if not self.INDEX_MAY_LAG:
            return runs
        return [r for r in runs if ("event", wait_key) in set(index_entries(r))]

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]:
        status_v = RunStatus(status) if status is not None else None
        return [r for r in self._runs_by_index("parent", parent_run_id, parent_run_id, None)
                if r.parent_run_id == parent_run_id and (status_v is None or r.status is status_v)]

    def list_run_index(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        session_id: Optional[str] = None,
        root_only: bool = False,
        limit: int = 100,
    ) -> List[Dict[str, Any]]:
        runs = filter_runs(self._candidates(status, None, workflow_id), status=status, workflow_id=workflow_id,
                           session_id=session_id, root_only=root_only)
        return [run_index_row(r) for r in runs[: max(0, limit)]]


def add_call_metrics(metrics: Dict[str, int], effect_type: str, row: Dict[str, Any]) -> None:
    """Add one completed ``llm_call`` / ``tool_calls`` ledger row to a ``metrics_many`` entry (reference §10.1:
    ``llm_calls``, ``tool_calls`` = calls in the payload, ``tokens_total`` = LLM ``usage.total_tokens``)."""
    if effect_type == "llm_call":
        metrics["llm_calls"] += 1
        result = row.get("result")
        usage = result.get("usage") if isinstance(result, dict) else None
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, (int, float)) and not isinstance(total, bool):
            metrics["tokens_total"] += int(total)
    elif effect_type == "tool_calls":
        effect = row.get("effect")
        payload = effect.get("payload") if isinstance(effect, dict) else None
        calls = payload.get("tool_calls") if isinstance(payload, dict) else None
        if isinstance(calls, list):
            metrics["tool_calls"] += len(calls)


def check_contiguous(run_id: str, seqs: Sequence[int], records: List[Dict[str, Any]], *, after: int = 0,
                     store: str = "") -> List[Dict[str, Any]]:
    """Return ``records`` (the rows with sequence numbers ``seqs``, read in increasing seq order) if the seqs are
    ``after + 1, after + 2, ...``; else raise :class:`~abstractruntime.errors.LedgerGapError` naming the first
    missing seq, with ``records`` and the last seq read as its cursor. ``store`` prefixes the message.

    The seqs of one run are unique and increasing, so the check costs O(1) on an intact ledger (first and last
    seq) and one pass over the seqs already read when it is not. A missing *last* record is not a gap here.
    """
    n = len(seqs)
    if not n or (seqs[0] == after + 1 and seqs[-1] == after + n):
        return records
    missing = after + 1
    for seq in seqs:
        if seq != missing:
            break
        missing += 1
    from ..errors import LedgerGapError

    raise LedgerGapError(run_id=run_id, missing_seq=missing, found_seq=seq, records=records, cursor=seqs[-1],
                         store=store)


def best_index_query(
    *, status: Optional[RunStatus], wait_reason: Optional[WaitReason], workflow_id: Optional[str]
) -> Optional[Tuple[str, str]]:
    """The most selective single index entry for a ``list_runs`` query (None: the query needs every run)."""
    if wait_reason is not None:
        return ("wait", WaitReason(wait_reason).value)
    if workflow_id is not None:
        return ("workflow", workflow_id)
    if status is not None:
        return ("status", RunStatus(status).value)
    return None


__all__ = [
    "RunStore",
    "LedgerStore",
    "QueryableRunStore",
    "QueryableRunIndexStore",
    "EventWaitIndexStore",
    "StepCommit",
    "StoreBackend",
    "SplitCommitter",
    "committer_for",
    "index_entries",
    "run_index_row",
    "filter_runs",
    "best_index_query",
    "IndexedRunQueries",
    "SortedRunIndex",
    "add_call_metrics",
    "check_contiguous",
    "check_reservations",
    "check_chain_heads",
    "RunLocks",
    "timer_index_value",
]
