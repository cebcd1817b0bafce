"""The step commit of the PostgreSQL store (:class:`StepCommits`, a part of
:class:`~abstractruntime_postgres.store.PostgresBackend`): one transaction of at most one statement for the run row
(plus one locking read when the run exists) and one statement per run whose ledger it appends to.

1. The run row. A new run (no expected revision, no claim) is inserted by ``INSERT ... ON CONFLICT DO NOTHING``;
   otherwise ``SELECT ... FOR UPDATE`` reads what the checks need -- the revision (``ConcurrentModificationError``)
   and, under a claim, the fencing epoch and lease (:class:`~abstractruntime_postgres.errors.LeaseLostError`) --
   and one ``UPDATE`` writes the checkpoint. No column that an ordinary step changes is indexed (``listed_at`` and
   ``ready_at`` keep their values while a run stays RUNNING), so a step's update stays on its page (HOT) and writes
   no index entry.
2. The records of each run: one statement bumps the run's ``ledger_heads`` row (a row lock held to the commit),
   inserts the records under the ``seq`` numbers it allocated and, when the commit carries preconditions (a
   ``started`` reservation, the provenance chain), reads in the same statement what they check: the run's last
   record before this commit and the latest status of each idempotency key in it. The preconditions then run in
   Python, inside the transaction; one that fails rolls everything back.

The read in 2 sees the statement's snapshot. When the statement had to wait for the head row's lock (another
ledger-only commit of the run was writing), that snapshot may miss the rows the other commit wrote; the allocated
``seq`` tells (the last visible record is not the one just before ours), and the precondition reads again, with a
fresh statement, everything up to our first ``seq``.

Chain head hints: after a commit the backend remembers each run's last ``(seq, record_hash)``
(:meth:`StepCommits.ledger_head_hint`); a run loaded with another ``last_seq`` forgets it. The provenance plugin
chains new records on that hint instead of reading the head before the commit; the in-transaction precondition still
checks it, and a refused commit leaves the hint at the head it read.

Wake-ups: a commit that makes a run claimable by others (it becomes RUNNING outside a claim, or gets a timer) asks
the backend's :class:`~abstractruntime_postgres.wake.Waker` to announce it after the commit, outside the
transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

import psycopg

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, StoreError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState
from abstractruntime.storage.base import CommitView, StepCommit
from abstractruntime.timeutil import parse_instant
from abstractruntime_storekit import HeadHints

from .errors import CommitOutcomeUnknownError, RunLeasedError
from .leases import _FENCES, Fence
from .sql import _COMPLETED, _RUN_COLUMNS, _RUNNING, _WAITING, _bytes, _check_run_id, _run_params

log = get_logger("abstractruntime.postgres")

FAULT_POINT = "commit:after-checkpoint"
#: ``listed_at`` may lag ``updated_at`` by this much before a commit refreshes it (the list queries widen their
#: window by it): a run that stays RUNNING rewrites that index entry at most once per LIST_SLACK_S
LIST_SLACK_S = 10.0
_SLACK = timedelta(seconds=LIST_SLACK_S)
_FAR_PAST = datetime(1, 1, 1, tzinfo=timezone.utc)
#: chain head hints kept per backend (least recently written dropped first)
HEADS_KEPT = 50_000


def _instant(text: Any) -> datetime:
    try:
        return parse_instant(text)
    except (ValueError, TypeError, OverflowError):
        return _FAR_PAST  # never parsed: listed after every run with a real timestamp


def _listed(row: Optional[Tuple[Any, ...]], status: str, updated: datetime) -> datetime:
    """``listed_at`` for a commit: kept while the status holds and ``updated_at`` stays within the slack."""
    if row is None or row[6] is None or row[1] != status:
        return updated
    return row[6] if row[6] <= updated <= row[6] + _SLACK else updated


def _ready(row: Optional[Tuple[Any, ...]], params: Tuple[Any, ...]) -> Tuple[bool, Optional[datetime]]:
    """``ready_at`` for a commit as ``(now?, value)``: now (the server clock) when the run becomes RUNNING or starts
    waiting, its deadline for a timer, kept while the run stays RUNNING (or waiting the same way), else None."""
    status, wait_until = params[1], params[9]
    if status == _RUNNING:
        if row is not None and row[1] == _RUNNING and row[7] is not None:
            return False, row[7]
        return True, None
    if status == _WAITING:
        if wait_until is not None:
            return False, wait_until
        if row is not None and row[1] == _WAITING and row[5] is None and row[7] is not None:
            return False, row[7]
        return True, None
    return False, None


class _Appended:
    """What one run's append statement returned: its new ``last_seq`` and, for a checked commit, the last record
    before this commit and the latest status of each key (valid when ``fresh``)."""

    __slots__ = ("last_seq", "before", "head_seq", "head_data", "keys", "statuses", "fresh")

    def __init__(self, row: Tuple[Any, ...], n: int, keys: List[str]) -> None:
        self.last_seq = int(row[0])
        self.before = self.last_seq - n
        self.head_seq = int(row[1]) if row[1] is not None else None
        self.head_data = row[2]
        self.keys = frozenset(keys)
        self.statuses = dict(zip(row[3] or (), row[4] or ()))
        self.fresh = (self.head_seq or 0) == self.before


class StepCommits:
    """The step commit and the chain head hints (the backend provides the rest)."""

    _sql: Any
    _schema: str
    _notify: bool
    _pack: Any
    fault_injector: Any

    def _init_commits(self) -> None:
        self._heads = HeadHints(HEADS_KEPT)

    # --- chain head hints (storekit.heads) --------------------------------------------------------------------
    def ledger_head_hint(self, run_id: str) -> Optional[Tuple[int, Optional[str]]]:
        """``(seq, record_hash)`` of the run's last ledger record as this backend last wrote it, or None when it
        does not know. A hint: whatever is chained on it is checked again inside the commit's transaction."""
        return self._heads.get(run_id)

    def _remember_head(self, run_id: str, seq: int, record_hash: Optional[str]) -> None:
        self._heads.remember(run_id, seq, record_hash)

    def _stored_head(self, run_id: str, last_seq: Optional[int]) -> None:
        """A load saw the run's ``last_seq``: forget a hint it contradicts (someone else appended)."""
        self._heads.seen(run_id, last_seq or 0)

    # --- the step commit --------------------------------------------------------------------------------------
    def commit_step(self, commit: StepCommit) -> None:
        run = commit.run
        run_params: Optional[Tuple[Any, ...]] = None
        if run is not None:
            _check_run_id(run.run_id)
            run_params = _run_params(run, self._pack(_bytes(commit.run_json, lambda: codec.encode_run(run))))
        columns: Dict[str, Tuple[List[Any], List[Any], List[Any], List[bytes]]] = {}
        last_hash: Dict[str, Optional[str]] = {}
        for i, record in enumerate(commit.records):
            _check_run_id(record.run_id)
            data = self._pack(_bytes(commit.record_jsons[i] if i < len(commit.record_jsons) else None,
                               lambda r=record: codec.encode_record(r)))
            effect_type = record.effect.get("type") if isinstance(record.effect, dict) else None
            status, keys, types, datas = columns.setdefault(record.run_id, ([], [], [], []))
            status.append(record.status.value)
            keys.append(record.idempotency_key or None)
            types.append(effect_type if isinstance(effect_type, str) else None)
            datas.append(data)
            last_hash[record.run_id] = record.record_hash
        checked = commit.reservation or bool(commit.preconditions)
        sql = self._sql
        root = self._root_fence()  # type: ignore[attr-defined]
        out: Dict[str, Any] = {}
        appended: Dict[str, _Appended] = {}
        seen: Dict[str, Tuple[int, Optional[str]]] = {}

        def tx(cur: psycopg.Cursor) -> None:
            out.clear()
            appended.clear()
            seen.clear()
            if not commit.durable:  # the runtime's durability "none": return before the WAL is flushed
                cur.execute("SET LOCAL synchronous_commit = off")
            if run is not None and run_params is not None:
                self._write_run(cur, commit, run, run_params, root, out)
            if self.fault_injector is not None:
                self.fault_injector(FAULT_POINT)
            for run_id in sorted(columns):
                if run is None or run_id != run.run_id:  # records only: whose run is it?
                    self._check_unclaimed(cur, run_id, root)
                status, keys, types, datas = columns[run_id]
                distinct = sorted({k for k in keys if k})
                cur.execute(sql.append_checked if checked else sql.append,
                            {"run": run_id, "n": len(datas), "status": status, "key": keys, "etype": types,
                             "data": datas, "keys": distinct})
                appended[run_id] = _Appended(cur.fetchone(), len(datas), distinct)
            if checked:
                commit.check(CommitView(last_record=lambda rid: self._checked_last(cur, appended, seen, rid),
                                        latest_status=lambda rid, key: self._checked_status(cur, appended, rid,
                                                                                            key)))

        try:
            self._write_resolving(tx, commit, run_params[-1] if run_params is not None else None, columns)
        except BaseException:
            for run_id, (seq, record_hash) in seen.items():  # refused: the head it read is the one to chain on
                self._remember_head(run_id, seq, record_hash)
            raise
        for run_id, done in appended.items():
            self._remember_head(run_id, done.last_seq, last_hash[run_id])
        if run is None:
            return
        if out.get("empty") and run.run_id not in appended:
            self._remember_head(run.run_id, 0, None)
        if out.get("wake"):
            self.waker.wake(run.run_id)  # type: ignore[attr-defined]
        if out.get("adopted") is not None and root is not None:
            claim = Fence(backend_id=id(self), run_id=run.run_id, epoch=out["adopted"], worker_id=root.worker_id,
                          lease_s=root.lease_s)
            root.adopted.append(claim)
            _FENCES.set(_FENCES.get() + (claim,))  # this thread now drives it under the claim

    def _write_resolving(self, tx: Any, commit: StepCommit, run_data: Optional[bytes],
                         columns: Dict[str, Tuple[List[Any], List[Any], List[Any], List[bytes]]]) -> None:
        """``write(tx)``. When the connection was lost during ``COMMIT``, look whether the commit landed (its
        checkpoint bytes, or its last record, are stored): if so, done; if it surely did not, write it once more (it
        is checked again); if that cannot be told, :class:`CommitOutcomeUnknownError`."""
        try:
            self.write(tx)  # type: ignore[attr-defined]
            return
        except CommitOutcomeUnknownError as lost:
            try:
                landed = self._landed(commit, run_data, columns)
            except StoreError:
                raise lost from None
            if landed is None:
                raise
            log.info("postgres_commit_outcome_resolved", landed=landed, run_id=commit.run_id)
            if landed:
                return
        self.write(tx)  # type: ignore[attr-defined]

    def _landed(self, commit: StepCommit, run_data: Optional[bytes],
                columns: Dict[str, Tuple[List[Any], List[Any], List[Any], List[bytes]]]) -> Optional[bool]:
        """Did ``commit`` land? None: cannot tell (a commit without a revision check whose run holds other bytes)."""
        s = self._schema
        if commit.run is not None:
            row = self.fetchone(f"SELECT data = %s FROM {s}.runs WHERE run_id = %s",  # type: ignore[attr-defined]
                                (run_data, commit.run.run_id))
            if row is not None and row[0]:
                return True
            return False if row is None or commit.expected_revision is not None else None
        for run_id, (_status, _keys, _types, datas) in columns.items():
            if self.fetchone(f"SELECT 1 FROM {s}.ledger WHERE run_id = %s AND data = %s LIMIT 1",  # type: ignore
                             (run_id, datas[-1])) is None:
                return False
        return True

    def _write_run(self, cur: psycopg.Cursor, commit: StepCommit, run: RunState, params: Tuple[Any, ...],
                   root: Optional[Fence], out: Dict[str, Any]) -> None:
        sql = self._sql
        fence = self._fence_for(run.run_id)  # type: ignore[attr-defined]
        updated = _instant(run.updated_at)
        before: Optional[Tuple[Any, ...]] = None  # (status, wait_until, lease free?) of the row replaced
        if commit.expected_revision is not None:  # a step: checked and written by one UPDATE
            values = dict(zip(_RUN_COLUMNS, params))
            values.update(run_id=run.run_id, expected=commit.expected_revision, listed=updated, slack=LIST_SLACK_S,
                          epoch=fence.epoch if fence is not None else None,
                          owner=fence.worker_id if fence is not None else None)
            cur.execute(sql.update_checked, values)
            before = cur.fetchone()
            if before is None:  # a check failed: say which (nothing was written)
                cur.execute(sql.lock_run, (run.run_id,))
                row = cur.fetchone()
                if fence is not None:
                    self._check_fence(fence, row)  # type: ignore[attr-defined]
                raise ConcurrentModificationError(run_id=run.run_id, expected=commit.expected_revision,
                                                  actual=row[0] if row is not None else None)
        else:
            if fence is None:  # most likely a new run: insert it if it is
                cur.execute(sql.insert_new, params + (run.run_id, updated) + _ready(None, params) + (run.run_id,))
                new = cur.fetchone()
                if new is not None:
                    before = (None, None, True)
                    out["empty"] = new[0] is None  # a new run with an empty ledger: chains on nothing
            if before is None:
                cur.execute(sql.lock_run + " FOR UPDATE", (run.run_id,))
                row = cur.fetchone()
                if fence is not None:
                    self._check_fence(fence, row)  # type: ignore[attr-defined]
                listed = _listed(row, params[1], updated)
                if row is None:
                    cur.execute(sql.upsert_run, params + (run.run_id, listed) + _ready(row, params))
                    before = (None, None, True)
                else:
                    cur.execute(sql.update_run, params + (listed,) + _ready(row, params) + (run.run_id,))
                    before = (row[1], row[5], row[4])
        wakes = self._wakes_workers(before, params)
        if fence is None and root is not None and wakes and params[1] == _RUNNING and before[2]:
            cur.execute(sql.adopt, (root.worker_id, root.lease_s, run.run_id))
            out["adopted"] = int(cur.fetchone()[0])
        elif self._notify and fence is None and wakes:
            out["wake"] = True

    def _check_unclaimed(self, cur: psycopg.Cursor, run_id: str, root: Optional[Fence]) -> None:
        """A ledger-only commit: fenced like a step under a claim; without one, refused on a run another worker
        holds (:class:`~abstractruntime_postgres.errors.RunLeasedError`)."""
        cur.execute(self._sql.lock_run + " FOR SHARE", (run_id,))
        row = cur.fetchone()
        fence = self._fence_for(run_id)  # type: ignore[attr-defined]
        if fence is not None:
            self._check_fence(fence, row)  # type: ignore[attr-defined]
        elif row is not None and row[3] is not None and not row[4] and (root is None or row[3] != root.worker_id):
            raise RunLeasedError(run_id=run_id, owner=row[3])

    def _checked_last(self, cur: psycopg.Cursor, appended: Dict[str, _Appended],
                      seen: Dict[str, Tuple[int, Optional[str]]], run_id: str) -> Optional[Dict[str, Any]]:
        done = appended.get(run_id)
        if done is None:  # a run this commit writes nothing to
            return self._last_record(cur, run_id)
        if done.fresh:
            last = self.decode_record(run_id, done.head_seq, done.head_data) \
                if done.head_seq is not None else None  # type: ignore[attr-defined]
        else:
            last = self._last_record(cur, run_id, upto=done.before)
        seen[run_id] = (done.before, last.get("record_hash") if last is not None else None)
        return last

    def _checked_status(self, cur: psycopg.Cursor, appended: Dict[str, _Appended], run_id: str,
                        key: str) -> Optional[str]:
        done = appended.get(run_id)
        if done is not None and done.fresh and key in done.keys:
            return done.statuses.get(key)
        return self._latest_status(cur, run_id, key, done.before if done is not None else None)

    def _last_record(self, cur: psycopg.Cursor, run_id: str, upto: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """The run's last record (up to ``seq`` ``upto``), read with a fresh statement in the transaction."""
        bound, params = ("", (run_id,)) if upto is None else (" AND seq <= %s", (run_id, upto))
        cur.execute(f"SELECT seq, data FROM {self._schema}.ledger WHERE run_id = %s{bound} ORDER BY seq DESC "
                    f"LIMIT 1", params)
        row = cur.fetchone()
        return self.decode_record(run_id, row[0], row[1]) if row is not None else None  # type: ignore[attr-defined]

    def _latest_status(self, cur: psycopg.Cursor, run_id: str, key: str, upto: Optional[int] = None) -> Optional[str]:
        """The status of the row ``find_by_idempotency_key`` would return (a completed row first, else the
        latest), up to ``seq`` ``upto``; the caller holds the run's head row lock."""
        bound, params = ("", (run_id, key)) if upto is None else (" AND seq <= %s", (run_id, key, upto))
        cur.execute(f"SELECT status FROM {self._schema}.ledger WHERE run_id = %s AND idempotency_key = %s{bound} "
                    f"ORDER BY (status = '{_COMPLETED}') DESC, seq DESC LIMIT 1", params)
        row = cur.fetchone()
        return row[0] if row is not None else None

    @staticmethod
    def _wakes_workers(before: Tuple[Any, ...], params: Tuple[Any, ...]) -> bool:
        """Does this commit make the run claimable (newly RUNNING, or a new timer)? ``before``: the status and
        wait_until of the row it replaced (None for a new run)."""
        status, wait_until = params[1], params[9]
        if status == _RUNNING:
            return before[0] != _RUNNING
        return wait_until is not None and before[1] != wait_until


__all__ = ["StepCommits", "FAULT_POINT", "LIST_SLACK_S", "HEADS_KEPT"]
