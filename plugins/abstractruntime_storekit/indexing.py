"""Secondary indexes of checkpoints, shared by the builtin stores and open to third-party ones.

:func:`index_entries` gives the ``(kind, value)`` entries of a checkpoint; a store keeps ``(kind, value, run_id)``
ordered (natively, or with :class:`SortedRunIndex` in process) and gets the reference's query methods from
:class:`IndexedRunQueries` by providing two primitives.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple

from sortedcontainers import SortedList

from abstractruntime.models import RunState, RunStatus, WaitReason
from abstractruntime.timeutil import instant_micros

from .recency import count_by, match_entries, newest_run_ids


#: Added to epoch microseconds so that timestamps before 1970 still sort correctly as fixed-width decimals.
_TIMER_OFFSET = 62_135_596_800 * 1_000_000


def timer_index_value(until_iso: str) -> str:
    return f"{instant_micros(until_iso) + _TIMER_OFFSET:020d}"


def index_entries(run: RunState) -> Tuple[Tuple[str, str], ...]:
    """The ``(kind, value)`` index entries of a checkpoint (each kind at most once).

    Kinds: ``status``, ``workflow``, ``updated`` (``updated_at``), ``parent``, ``wait`` (wait reason of a waiting
    run), ``timer`` (a waiting ``UNTIL`` run, value = fixed-width sortable instant) and ``event`` (a waiting
    ``EVENT`` run, value = wait key). Stores keep ``(kind, value, run_id)`` ordered so that "due timers", "runs
    waiting for key K" and "the newest N runs" (a reverse scan of ``updated``) are range scans, never a scan of
    all runs.
    """
    status = run.status
    waiting = run.waiting
    if run.parent_run_id:
        if status is not RunStatus.WAITING or waiting is None:  # the common cases first: one tuple, no list
            return (("status", status._value_), ("updated", run.updated_at or ""), ("workflow", run.workflow_id),
                    ("parent", run.parent_run_id))
    elif status is not RunStatus.WAITING or waiting is None:
        return (("status", status._value_), ("updated", run.updated_at or ""), ("workflow", run.workflow_id))
    out = [("status", status._value_), ("updated", run.updated_at or ""), ("workflow", run.workflow_id)]
    if run.parent_run_id:
        out.append(("parent", run.parent_run_id))
    out.append(("wait", waiting.reason._value_))
    if waiting.reason is WaitReason.UNTIL and waiting.until:
        try:
            out.append(("timer", timer_index_value(waiting.until)))
        except ValueError:
            pass  # an unparsable deadline never becomes due; tick reports it
    elif waiting.reason is WaitReason.EVENT and waiting.wait_key:
        out.append(("event", waiting.wait_key))
    return tuple(out)


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
    a native one (memory, JSON files): :meth:`set` replaces a run's entries, :meth:`scan` is a range scan. A
    ``SortedList`` keeps an update O(log n) as runs pile up (a plain sorted list moved every entry after the
    insertion point). :meth:`set` only notes the run's new entries: they are applied by the next read (a store
    commits far more often than it is queried, and a run committed several times between two queries is re-sorted
    once). Not thread-safe: the store calls it under its own lock."""

    def __init__(self) -> None:
        self._items: SortedList = SortedList()
        self._of: Dict[str, FrozenSet[Tuple[str, str]]] = {}
        self._pending: Dict[str, Iterable[Tuple[str, str]]] = {}

    def set(self, run_id: str, entries: Iterable[Tuple[str, str]]) -> None:
        """Replace the run's entries (any order; a tuple or another collection the caller no longer changes);
        ``()`` removes the run."""
        self._pending[run_id] = entries

    def _apply(self) -> None:
        """Bring ``_items`` up to date with the entries noted by :meth:`set` since the last read."""
        pending, self._pending = self._pending, {}
        items, of = self._items, self._of
        for run_id, entries in pending.items():
            new = frozenset(entries)
            old = of.get(run_id, frozenset())
            if old == new:
                continue
            for kind, value in old - new:
                items.discard((kind, value, run_id))
            for kind, value in new - old:
                items.add((kind, value, run_id))
            if new:
                of[run_id] = new
            else:
                of.pop(run_id, None)

    def scan(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        """Run ids with entries ``(kind, v)`` for ``lo <= v`` (and ``v <= hi`` if given), in index order."""
        if self._pending:
            self._apply()
        out: List[str] = []
        for k, v, run_id in self._items.irange((kind, lo, "")):
            if k != kind or (hi is not None and v > hi):
                break
            out.append(run_id)
            if limit is not None and len(out) >= limit:
                break
        return out

    def iter_index(self, kind: str, lo: str = "", hi: Optional[str] = None,
                   reverse: bool = False) -> Iterator[Tuple[str, str]]:
        """``(value, run_id)`` of the entries ``(kind, v)``, ``lo <= v`` (and ``v <= hi``), in index order or
        reversed (storekit.recency's reader; the index must not change while it is iterated)."""
        if self._pending:
            self._apply()
        maximum = (kind, hi + "\x00") if hi is not None else (kind + "\x00",)
        for _k, v, run_id in self._items.irange((kind, lo), maximum, inclusive=(True, False), reverse=reverse):
            yield v, run_id

    def entries_of(self, run_id: str) -> Optional[FrozenSet[Tuple[str, str]]]:
        if self._pending:
            self._apply()
        return self._of.get(run_id)


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

    def _read_index(self, fn: Callable[[Any], Any]) -> Any:
        """Optional primitive: ``fn(reader)`` inside one consistent view of the index (the reader is described in
        :mod:`abstractruntime_storekit.recency`). Then ``list_runs``, ``list_run_index`` (without session or root
        filters) and :meth:`count_by_status` read only the runs they return. Default: NotImplementedError, and
        the queries load every candidate run as before."""
        raise NotImplementedError

    def _newest(self, status: Any, wait_reason: Any, workflow_id: Optional[str],
                limit: int) -> Optional[List[RunState]]:
        """The newest ``limit`` matching runs from the ``updated`` index, or None when the store cannot say."""
        match = match_entries(status=status, wait_reason=wait_reason, workflow_id=workflow_id)

        def read(reader: Any) -> Tuple[List[str], List[RunState]]:
            ids = newest_run_ids(reader, match, limit)
            return ids, reader.load(ids)

        try:
            ids, runs = self._read_index(read)
        except NotImplementedError:
            return None
        kept = filter_runs(runs, status=status, wait_reason=wait_reason, workflow_id=workflow_id)
        # a run that could not be loaded, or changed behind a lagging index: read the candidates as before
        return kept if len(kept) == len(ids) else None

    def count_by_status(self, *, workflow_id: Optional[str] = None) -> Optional[Dict[str, int]]:
        """How many runs have each status (of the workflow, if given), from the index keys without loading a run;
        None when the store cannot answer from its index (no ``_read_index``)."""
        within = ("workflow", workflow_id) if workflow_id is not None else None
        try:
            return self._read_index(lambda reader: count_by(reader, "status", within))
        except NotImplementedError:
            return None

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
        runs = self._newest(status, wait_reason, workflow_id, limit)
        if runs is None:
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
        runs = self._newest(status, None, workflow_id, limit) if session_id is None and not root_only else None
        if runs is None:
            runs = filter_runs(self._candidates(status, None, workflow_id), status=status, workflow_id=workflow_id,
                               session_id=session_id, root_only=root_only)
        return [run_index_row(r) for r in runs[: max(0, limit)]]


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
    "index_entries", "timer_index_value", "run_index_row", "filter_runs", "best_index_query", "SortedRunIndex",
    "IndexedRunQueries",
]
