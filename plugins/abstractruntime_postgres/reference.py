"""The reference-style facades of the PostgreSQL store: :class:`PostgresRunStore` (checkpoints and indexed
queries) and :class:`PostgresLedgerStore` (the append-only ledger, per-run ``seq`` from 1), both over a
:class:`~abstractruntime_postgres.store.PostgresBackend` that commits every write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import ValidationError
from abstractruntime.models import RunState, RunStatus, StepRecord, WaitReason
from abstractruntime.storage.base import LedgerStore, RunStore, StepCommit
from abstractruntime.timeutil import parse_instant
from abstractruntime_storekit import check_contiguous, run_index_row

from .commit import LIST_SLACK_S
from .sql import _COMPLETED, _check_run_id

if TYPE_CHECKING:  # pragma: no cover
    from .store import PostgresBackend


class PostgresRunStore(RunStore):
    """Run checkpoints in a :class:`PostgresBackend` (reference API; queries are indexed SQL)."""

    def __init__(self, backend: "PostgresBackend") -> None:
        self.backend = backend
        self._s = backend.schema

    def save(self, run: RunState) -> None:
        self.backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        """The checkpoint; the same statement reads the run's ledger ``last_seq``, which keeps the backend's chain
        head hint honest (a run someone else appended to is read again before it is chained)."""
        _check_run_id(run_id)
        row = self.backend.fetchone(f"SELECT data, (SELECT last_seq FROM {self._s}.ledger_heads h WHERE "
                                    f"h.run_id = r.run_id) FROM {self._s}.runs r WHERE run_id = %s", (run_id,))
        if row is None:
            return None
        self.backend._stored_head(run_id, row[1])
        return self.backend.decode_run(run_id, row[0])

    def load_revision(self, run_id: str) -> Optional[int]:
        row = self.backend.fetchone(f"SELECT revision FROM {self._s}.runs WHERE run_id = %s", (run_id,))
        return int(row[0]) if row is not None else None

    # --- queries ----------------------------------------------------------------------------------------------
    def _select(self, conds: List[Tuple[str, Tuple[Any, ...]]], order: str, limit: Optional[int]) -> List[RunState]:
        where = (" WHERE " + " AND ".join(c for c, _ in conds)) if conds else ""
        params: List[Any] = [p for _, ps in conds for p in ps]
        tail = ""
        if limit is not None:
            tail = " LIMIT %s"
            params.append(int(limit))
        return self.backend.query_runs(f"SELECT run_id, data FROM {self._s}.runs{where} ORDER BY {order}{tail}",
                                       params)

    def _newest(self, conds: List[Tuple[str, Tuple[Any, ...]]], limit: int) -> List[RunState]:
        """The ``limit`` runs with the newest ``updated_at`` (then ``run_id``) among those matching ``conds``.

        ``updated_at`` is not indexed (every step changes it); ``listed_at`` is, and is never more than
        :data:`~abstractruntime_postgres.commit.LIST_SLACK_S` behind ``updated_at`` (nor ahead of it). So the
        answer lies among the runs whose ``listed_at`` is at least the ``limit``-th newest ``listed_at`` minus the
        slack: an index range, sorted by ``updated_at``."""
        where = " AND ".join(c for c, _ in conds) or "TRUE"
        params: List[Any] = [p for _, ps in conds for p in ps]
        return self.backend.query_runs(
            f"SELECT run_id, data FROM {self._s}.runs WHERE {where} AND listed_at >= COALESCE((SELECT listed_at "
            f"FROM {self._s}.runs WHERE {where} ORDER BY listed_at DESC OFFSET %s LIMIT 1) - make_interval(secs => "
            f"%s), '-infinity') ORDER BY updated_at DESC, run_id LIMIT %s",
            params + params + [int(limit) - 1, LIST_SLACK_S, int(limit)])

    def list_runs(self, *, status: Optional[RunStatus] = None, wait_reason: Optional[WaitReason] = None,
                  workflow_id: Optional[str] = None, limit: int = 100) -> List[RunState]:
        """Newest ``updated_at`` first."""
        if limit <= 0:
            return []
        conds: List[Tuple[str, Tuple[Any, ...]]] = []
        if status is not None:
            conds.append(("status = %s", (RunStatus(status).value,)))
        if wait_reason is not None:
            conds.append(("wait_reason = %s", (WaitReason(wait_reason).value,)))
        if workflow_id is not None:
            conds.append(("workflow_id = %s", (workflow_id,)))
        return self._newest(conds, limit)

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]:
        """Waiting UNTIL runs whose deadline (an instant) is at or before ``now_iso``, earliest first."""
        if limit <= 0:
            return []
        return self._select([("wait_until <= %s", (parse_instant(now_iso),))], "wait_until, run_id", limit)

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]:
        if limit <= 0:
            return []
        return self._select([("wait_key = %s", (wait_key,))], "run_id", limit)

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]:
        conds: List[Tuple[str, Tuple[Any, ...]]] = [("parent_run_id = %s", (parent_run_id,))]
        if status is not None:
            conds.append(("status = %s", (RunStatus(status).value,)))
        return self._select(conds, "created_at, run_id", None)

    def list_run_index(self, *, status: Optional[RunStatus] = None, workflow_id: Optional[str] = None,
                       session_id: Optional[str] = None, root_only: bool = False,
                       limit: int = 100) -> List[Dict[str, Any]]:
        if limit <= 0:
            return []
        conds: List[Tuple[str, Tuple[Any, ...]]] = []
        if status is not None:
            conds.append(("status = %s", (RunStatus(status).value,)))
        if workflow_id is not None:
            conds.append(("workflow_id = %s", (workflow_id,)))
        if session_id is not None:
            conds.append(("session_id = %s", (session_id,)))
        if root_only:
            conds.append(("parent_run_id IS NULL", ()))
        return [run_index_row(r) for r in self._newest(conds, limit)]


class PostgresLedgerStore(LedgerStore):
    """The append-only ledger in a :class:`PostgresBackend` (per-run ``seq`` from 1, allocated transactionally)."""

    def __init__(self, backend: "PostgresBackend") -> None:
        self.backend = backend
        self._s = backend.schema

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValidationError("StepRecord.run_id must be a non-empty string")
        self.backend.commit_step(
            StepCommit(run=None, run_json=None, records=(record,), record_jsons=(codec.encode_record(record),)))

    def _decode(self, run_id: str, rows: List[Tuple[Any, ...]], after: int) -> List[Dict[str, Any]]:
        """Decode ``(seq, data)`` rows; ``LedgerGapError`` if they skip a seq after ``after``."""
        records = [self.backend.decode_record(run_id, seq, data) for seq, data in rows]
        return check_contiguous(run_id, [int(seq) for seq, _ in rows], records, after=after,
                                store=f"PostgreSQL store {self.backend._where}")

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        _check_run_id(run_id)
        return self._decode(run_id, self.backend.fetchall(
            f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s ORDER BY seq", (run_id,)), 0)

    def count(self, run_id: str) -> int:
        row = self.backend.fetchone(f"SELECT last_seq FROM {self._s}.ledger_heads WHERE run_id = %s", (run_id,))
        return int(row[0]) if row is not None else 0

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        row = self.backend.fetchone(f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s ORDER BY seq DESC "
                                    f"LIMIT 1", (run_id,))
        return self.backend.decode_record(run_id, row[0], row[1]) if row is not None else None

    def count_many(self, run_ids: Iterable[str]) -> Dict[str, int]:
        """``{run_id: count}`` of the given runs that have ledger records (others are omitted, as in 0.4.2)."""
        ids = list(dict.fromkeys(run_ids))
        found: Dict[str, int] = {}
        if ids:
            for rid, last in self.backend.fetchall(
                    f"SELECT run_id, last_seq FROM {self._s}.ledger_heads WHERE run_id = ANY(%s)", (ids,)):
                found[rid] = int(last)
        return {rid: found[rid] for rid in ids if found.get(rid)}

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        """Records with 1-based ``seq`` > ``after``; returns ``(records, last seq returned or after)``."""
        after = max(0, int(after))
        if limit <= 0:
            return [], after
        rows = self.backend.fetchall(
            f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (run_id, after, int(limit)))
        return self._decode(run_id, rows, after), (int(rows[-1][0]) if rows else after)

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The (first) completed row with this key if any, else the latest row with it, else None."""
        row = self.backend.fetchone(
            f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s AND idempotency_key = %s "
            f"ORDER BY (status = %s) DESC, CASE WHEN status = %s THEN seq ELSE -seq END LIMIT 1",
            (run_id, key, _COMPLETED, _COMPLETED))
        return self.backend.decode_record(run_id, row[0], row[1]) if row is not None else None

    def metrics_many(self, run_ids: Iterable[str]) -> Dict[str, Dict[str, int]]:
        """``{run_id: {steps, llm_calls, tool_calls, tokens_total}}`` over completed rows (same rules as the
        SQLite store: only LLM_CALL and TOOL_CALLS rows are decoded; a run without completed rows is omitted)."""
        from abstractruntime_abstractcore.metrics import add_call_metrics

        ids = list(dict.fromkeys(run_ids))
        out = {rid: {"steps": 0, "llm_calls": 0, "tool_calls": 0, "tokens_total": 0} for rid in ids}
        if not ids:
            return out
        for rid, n in self.backend.fetchall(
                f"SELECT run_id, count(*) FROM {self._s}.ledger WHERE status = %s AND run_id = ANY(%s) "
                f"GROUP BY run_id", (_COMPLETED, ids)):
            out[rid]["steps"] = int(n)
        detail = self.backend.fetchall(
            f"SELECT run_id, seq, effect_type, data FROM {self._s}.ledger WHERE status = %s AND run_id = ANY(%s) "
            f"AND effect_type IN ('llm_call', 'tool_calls')", (_COMPLETED, ids))
        for rid, seq, effect_type, data in detail:
            row = self.backend.decode_record(rid, seq, data)
            add_call_metrics(out[rid], effect_type, row)
        return {rid: metrics for rid, metrics in out.items() if metrics["steps"]}


__all__ = ["PostgresRunStore", "PostgresLedgerStore"]
