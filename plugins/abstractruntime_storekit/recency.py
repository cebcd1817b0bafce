"""Newest-first queries and counts from a store's ordered index, without decoding every checkpoint.

:func:`~abstractruntime_storekit.indexing.index_entries` gives every run an ``updated`` entry (its ``updated_at``),
so "the newest N runs" -- ``list_runs``' order -- is a reverse range scan of that kind, and "how many runs per
status" is a walk over the ``status`` keys. A store opts in by implementing
:meth:`~abstractruntime_storekit.indexing.IndexedRunQueries._read_index`: it calls ``fn(reader)`` inside one
consistent view of its index (one read transaction, or under its lock) with a reader offering

* ``iter_index(kind, lo="", hi=None, reverse=False)``: ``(value, run_id)`` pairs of the entries ``(kind, value)``
  with ``lo <= value`` (and ``value <= hi``), in index order, or reversed;
* ``entries_of(run_id)``: the run's stored entries as a frozenset of ``(kind, value)`` (None: no such run, or its
  entries cannot be read), read without decoding the checkpoint where the store can;
* ``load(run_ids)``: the runs that exist, in order (a corrupt one left out and reported).

:class:`SortedIndexReader` is that reader for a :class:`~abstractruntime_storekit.indexing.SortedRunIndex`.
Ties (equal ``updated_at``) come in ascending run-id order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple

from abstractruntime.models import RunStatus, WaitReason

UPDATED = "updated"
#: a filter entry with at most this many runs is answered by ordering its runs (their stored entries only)
SMALL_SET = 2000
#: a newest-first walk that has looked at this many runs without filling the page orders the filter's runs instead
WALK_LIMIT = 20_000

Entry = Tuple[str, str]


class SortedIndexReader:
    """The reader (see the module doc) of an in-process :class:`SortedRunIndex`; ``load`` loads runs by id."""

    def __init__(self, index: Any, load: Callable[[List[str]], List[Any]]) -> None:
        self._index, self.load = index, load

    def iter_index(self, kind: str, lo: str = "", hi: Optional[str] = None,
                   reverse: bool = False) -> Iterator[Tuple[str, str]]:
        return self._index.iter_index(kind, lo, hi, reverse)

    def entries_of(self, run_id: str) -> Optional[FrozenSet[Entry]]:
        return self._index.entries_of(run_id)


def match_entries(*, status: Any = None, wait_reason: Any = None,
                  workflow_id: Optional[str] = None) -> Tuple[Entry, ...]:
    """The index entries a run must have to pass a ``list_runs`` filter."""
    out: List[Entry] = []
    if wait_reason is not None:
        out.append(("wait", WaitReason(wait_reason).value))
    if workflow_id is not None:
        out.append(("workflow", workflow_id))
    if status is not None:
        out.append(("status", RunStatus(status).value))
    return tuple(out)


def _ordered(picked: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """``(updated, run_id)`` pairs newest first, ties by ascending run id."""
    picked.sort(key=lambda p: p[1])
    picked.sort(key=lambda p: p[0], reverse=True)
    return picked


def _has(entries: Optional[FrozenSet[Entry]], match: Sequence[Entry]) -> bool:
    return entries is not None and all(m in entries for m in match)


def _walk_newest(reader: Any, match: Sequence[Entry], limit: int, max_steps: Optional[int]) -> Optional[List[str]]:
    picked: List[Tuple[str, str]] = []
    for steps, (value, run_id) in enumerate(reader.iter_index(UPDATED, reverse=True), 1):
        if len(picked) >= limit and value != picked[-1][0]:
            break  # the page is full and no run ties with its last one
        if max_steps is not None and steps > max_steps:
            return None
        if not match or _has(reader.entries_of(run_id), match):
            picked.append((value, run_id))
    return [run_id for _v, run_id in _ordered(picked)[:limit]]


def _newest_of(reader: Any, run_ids: Iterable[str], match: Sequence[Entry], limit: int) -> List[str]:
    keyed: List[Tuple[str, str]] = []
    for run_id in run_ids:
        entries = reader.entries_of(run_id)
        if _has(entries, match):
            keyed.append((dict(entries or ()).get(UPDATED, ""), run_id))
    return [run_id for _v, run_id in _ordered(keyed)[:limit]]


def _take(pairs: Iterator[Tuple[str, str]], n: int) -> List[str]:
    out: List[str] = []
    for _value, run_id in pairs:
        out.append(run_id)
        if len(out) >= n:
            break
    return out


def newest_run_ids(reader: Any, match: Sequence[Entry], limit: int) -> List[str]:
    """The ids of the newest ``limit`` runs (by ``updated_at``) whose entries include every ``match`` entry.

    No filter: a reverse scan of ``updated``. A filter entry with at most :data:`SMALL_SET` runs: those runs,
    ordered by their stored ``updated`` entry. Otherwise a reverse scan of ``updated`` keeping the runs that match
    (a broad filter fills the page quickly); if :data:`WALK_LIMIT` runs did not fill it, the first filter entry's
    runs are ordered instead. Never decodes a checkpoint.
    """
    if limit <= 0:
        return []
    match = tuple(match)
    if not match:
        return _walk_newest(reader, (), limit, None) or []
    smallest: Optional[List[str]] = None
    for kind, value in match:
        ids = _take(reader.iter_index(kind, value, value), SMALL_SET + 1)
        if len(ids) <= SMALL_SET and (smallest is None or len(ids) < len(smallest)):
            smallest = ids
    if smallest is None:
        walked = _walk_newest(reader, match, limit, WALK_LIMIT)
        if walked is not None:
            return walked
        kind, value = match[0]
        smallest = [run_id for _v, run_id in reader.iter_index(kind, value, value)]
    return _newest_of(reader, smallest, match, limit)


def count_by(reader: Any, kind: str, within: Optional[Entry] = None) -> Dict[str, int]:
    """How many runs have each value of ``kind`` (e.g. runs per status), among the runs with the entry ``within``
    if given: a walk over index keys, never a checkpoint decoded."""
    counts: Counter = Counter()
    if within is None:
        for value, _run_id in reader.iter_index(kind):
            counts[value] += 1
        return dict(counts)
    members = [run_id for _v, run_id in reader.iter_index(within[0], within[1], within[1])]
    if len(members) <= SMALL_SET:
        for run_id in members:
            for k, value in reader.entries_of(run_id) or ():
                if k == kind:
                    counts[value] += 1
        return dict(counts)
    member_set = set(members)
    for value, run_id in reader.iter_index(kind):
        if run_id in member_set:
            counts[value] += 1
    return dict(counts)


__all__ = ["UPDATED", "SMALL_SET", "WALK_LIMIT", "SortedIndexReader", "match_entries", "newest_run_ids", "count_by"]
