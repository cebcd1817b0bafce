"""SQLite store: one database file, one ``BEGIN IMMEDIATE`` transaction per step.

Tables (schema version 2, recorded in ``meta``):

================  ===============================================================================================
``meta``          ``key`` -> ``value`` (``schema_version``)
``runs``          one row per run: the checkpoint JSON (``data``) plus indexed columns -- ``revision`` (checked on
                  every commit), ``status``, ``workflow_id``, ``parent_run_id``, ``session_id``, ``wait_reason``,
                  ``wait_key`` (waiting EVENT runs only), ``wait_until`` (waiting UNTIL runs only, as the fixed-width
                  sortable instant of :func:`~abstractruntime.storage.base.timer_index_value`), ``created_at``,
                  ``updated_at``; ``checksum`` (CRC-32 of ``data``, verified on load; NULL before version 2:
                  :mod:`abstractruntime_sqlite.checksums`)
``ledger_heads``  ``run_id`` -> ``last_seq``: the per-run sequence counter
``ledger``        ``(run_id, seq)`` -> step record JSON (``data``), ``status``, ``idempotency_key``, ``effect_type``
================  ===============================================================================================

Appending a record reads and bumps the run's ``ledger_heads`` row inside the write transaction, never the earlier
ledger. Due timers, event waiters, children and ``list_runs`` filters are index lookups. Connections are
per-thread (WAL, ``busy_timeout=5000``, ``foreign_keys=ON``); ``durability="full"`` sets ``synchronous=FULL``
(fsync on every commit), ``"normal"`` (the default of ``SqliteDatabase(path)``, as in 0.4.2) ``synchronous=NORMAL``
(in WAL mode a commit survives a process crash, and the last commits may be lost on a power failure), ``"auto"``
(the store plugin's default) each commit as durable as the runtime asks (``StepCommit.durable``). Several threads and several processes may share one
file; a process that forks opens fresh connections in the child.

This module holds the reference API (:class:`SqliteDatabase`, the backend and its step commit, and the facades
:class:`SqliteRunStore` / :class:`SqliteLedgerStore`); connection handling is in
:mod:`abstractruntime_sqlite.connection`, the schema and row SQL in :mod:`abstractruntime_sqlite.schema`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError, StoreError, ValidationError
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from abstractruntime.storage.base import Capability, CommitView, LedgerStore, RunStore, StepCommit, StoreBackend
from abstractruntime_storekit import RunLocks, check_contiguous, run_index_row, timer_index_value, validate_run_id
from abstractruntime_storekit.files import FileSiblings
from abstractruntime_storekit.integrity import decode_skipping
from abstractruntime_storekit.opening import os_error, store_file

from .connection import BUSY_TIMEOUT_MS, CONNECT_TIMEOUT, DURABILITY, SqliteConnections
from .errors import LedgerSeqConflictError
from .checksums import INSERT_RUN as _INSERT_RUN
from .checksums import UPDATE_RUN as _UPDATE_RUN
from .checksums import UPDATE_RUN_AT_REVISION as _UPDATE_RUN_AT_REVISION
from .checksums import text_and_sum, verified
from .schema import SCHEMA_VERSION, _run_columns

FAULT_POINT = "commit:after-checkpoint"
_COMPLETED = StepStatus.COMPLETED.value
_IN_CHUNK = 500  # host parameters per IN (...) list; stays below SQLite's historic 999 limit
_NO_PARAM = object()  # a WHERE condition without a parameter
_SELECT_RUNS = "SELECT run_id, data, checksum FROM runs"  # the rows query_runs decodes


def _check_run_id(run_id: Any) -> str:
    return validate_run_id(run_id, store="the sqlite store")


def _text(data: Optional[bytes], fallback: Callable[[], bytes]) -> str:
    raw = data if data is not None else fallback()
    return raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else str(raw)


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


class SqliteDatabase(SqliteConnections, FileSiblings, StoreBackend):
    """A SQLite database file holding runs and ledger; it is also the store backend (``commit_step``)."""

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.RUN_LOCKS})

    def __init__(self, path: os.PathLike | str, *, durability: str = "normal", read_only: bool = False) -> None:
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file::memory:"):
            raise ValidationError("SqliteDatabase needs a file path (per-thread connections cannot share "
                                  "':memory:'); use the 'memory' store for an in-process store")
        mode = str(durability).strip().lower()
        if mode not in DURABILITY:
            raise ValidationError(f"durability must be one of {sorted(DURABILITY)}, got {durability!r}")
        # only a missing file may become a new store, and only when writing (a zero-length file is refused)
        self._init_connections(store_file(Path(text).expanduser(), store="sqlite", read_only=read_only), mode,
                               read_only=read_only)
        #: Test seam: called with a fault-point name inside ``commit_step`` (see the conformance suite).
        self.fault_injector: Optional[Callable[[str], None]] = None
        self.run_locks: Optional[RunLocks] = None
        if read_only:  # it never ticks a run: no run locks, no lock file
            self.capabilities = type(self).capabilities - {Capability.RUN_LOCKS}
        try:
            self._init_schema()
            if not read_only:
                self.run_locks = RunLocks(f"{self._path}.runlocks")
        except OSError as exc:
            self.close()
            raise os_error(exc, f"{self._path}.runlocks", "sqlite") from exc
        except BaseException:
            self.close()
            raise
        self.run_store = SqliteRunStore(self)
        self.ledger_store = SqliteLedgerStore(self)

    def __repr__(self) -> str:
        return f"SqliteDatabase({str(self._path)!r}, durability={self._durability!r})"

    def close(self) -> None:
        """Close the run locks and every connection this object opened (idempotent)."""
        if getattr(self, "run_locks", None) is not None:
            self.run_locks.close()
        self._close_connections()

    def __enter__(self) -> "SqliteDatabase":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the step commit ----------------------------------------------------------------------------------------
    def commit_step(self, commit: StepCommit) -> None:
        run = commit.run
        run_params: Optional[Tuple[Any, ...]] = None
        if run is not None:
            _check_run_id(run.run_id)
            text, crc = text_and_sum(commit.run_json, lambda: codec.encode_run(run))
            run_params = _run_columns(run, text) + (crc,)
        rows = []
        for i, record in enumerate(commit.records):
            _check_run_id(record.run_id)
            text = _text(commit.record_jsons[i] if i < len(commit.record_jsons) else None,
                         lambda r=record: codec.encode_record(r))
            effect_type = record.effect.get("type") if isinstance(record.effect, dict) else None
            rows.append((record.run_id, record.status.value, record.idempotency_key or None,
                         effect_type if isinstance(effect_type, str) else None, text))

        def tx(conn: sqlite3.Connection) -> None:
            commit.check(CommitView(last_record=lambda run_id: self._last_record(conn, run_id),
                                    latest_status=lambda run_id, key: _latest_status(conn, run_id, key)))
            if run is not None and run_params is not None:
                if commit.expected_revision is not None:
                    cur = conn.execute(_UPDATE_RUN_AT_REVISION, run_params + (run.run_id, commit.expected_revision))
                    if cur.rowcount != 1:
                        found = conn.execute("SELECT revision FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
                        raise ConcurrentModificationError(
                            run_id=run.run_id, expected=commit.expected_revision,
                            actual=found[0] if found is not None else None,
                        )
                else:
                    cur = conn.execute(_UPDATE_RUN, run_params + (run.run_id,))
                    if cur.rowcount == 0:
                        conn.execute(_INSERT_RUN, run_params + (run.run_id,))
            if self.fault_injector is not None:
                self.fault_injector(FAULT_POINT)
            if rows:
                self._append_rows(conn, rows)

        self.write(tx, durable=commit.durable)

    def _append_rows(self, conn: sqlite3.Connection, rows: List[Tuple[Any, ...]]) -> None:
        heads: Dict[str, int] = {}
        for run_id, status, key, effect_type, text in rows:
            seq = heads.get(run_id)
            if seq is None:
                found = conn.execute("SELECT last_seq FROM ledger_heads WHERE run_id = ?", (run_id,)).fetchone()
                seq = found[0] if found is not None else 0
            seq += 1
            heads[run_id] = seq
            try:
                conn.execute("INSERT INTO ledger (run_id, seq, status, idempotency_key, effect_type, data) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (run_id, seq, status, key, effect_type, text))
            except sqlite3.IntegrityError as exc:  # the (run_id, seq) key exists: ledger_heads is behind
                raise LedgerSeqConflictError(run_id=run_id, seq=seq, path=str(self._path), detail=str(exc)) from exc
        conn.executemany("INSERT OR REPLACE INTO ledger_heads (run_id, last_seq) VALUES (?, ?)", list(heads.items()))

    # --- decoding -----------------------------------------------------------------------------------------------
    def decode_run(self, run_id: str, text: Any, checksum: Optional[int] = None) -> RunState:
        """Decode a checkpoint, after checking it against its stored checksum (None: stored before checksums)."""
        verified(f"SQLite store at {self._path}", run_id, text, checksum)
        try:
            return codec.decode_run(text)
        except Exception as exc:
            raise CorruptStoreError(
                f"SQLite store at {self._path}: checkpoint of run {run_id} cannot be decoded ({exc})",
                run_id=run_id,
            ) from exc

    def _last_record(self, conn: sqlite3.Connection, run_id: str) -> Optional[Dict[str, Any]]:
        row = conn.execute("SELECT seq, data FROM ledger WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                           (run_id,)).fetchone()
        return self.decode_record(run_id, row[0], row[1]) if row is not None else None

    # --- sibling services (FileSiblings): files beside the database, the command inbox in it ------------------
    @property
    def sibling_dir(self) -> Path:
        return self._path.parent

    def command_store(self) -> Any:
        from abstractruntime_commands.store import SqliteCommandStore

        return SqliteCommandStore(self)

    def decode_record(self, run_id: str, seq: int, text: Any) -> Dict[str, Any]:
        try:
            row = codec.decode_record(text)
        except Exception as exc:
            raise CorruptStoreError(
                f"SQLite store at {self._path}: ledger record {seq} of run {run_id} cannot be decoded ({exc})",
                run_id=run_id,
            ) from exc
        if not isinstance(row, dict):
            raise CorruptStoreError(
                f"SQLite store at {self._path}: ledger record {seq} of run {run_id} is not a JSON object",
                run_id=run_id,
            )
        return row

    def query_runs(self, sql: str, params: Iterable[Any] = ()) -> List[RunState]:
        """Decode the ``(run_id, data)`` rows of a query, in query order."""
        rows = self.read(lambda conn: conn.execute(sql, tuple(params)).fetchall())
        return decode_skipping(f"SQLite store at {self._path}", rows, self.decode_run)  # a corrupt run is left out

    def iter_corrupt(self, stats: Optional[Dict[str, int]] = None) -> Iterator[Any]:
        """The damaged records of the store (``abstractruntime store check``; see :mod:`.checksums`)."""
        from .checksums import iter_corrupt

        return iter_corrupt(self, stats)



class SqliteRunStore(RunStore):
    """Run checkpoints in a :class:`SqliteDatabase` (reference API; queries are indexed SQL)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.backend = db

    def save(self, run: RunState) -> None:
        self.db.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        row = self.db.read(lambda c: c.execute("SELECT data, checksum FROM runs WHERE run_id = ?",
                                               (run_id,)).fetchone())
        return self.db.decode_run(run_id, row[0], row[1]) if row is not None else None

    def load_revision(self, run_id: str) -> Optional[int]:
        row = self.db.read(lambda c: c.execute("SELECT revision FROM runs WHERE run_id = ?", (run_id,)).fetchone())
        return row[0] if row is not None else None

    # --- queries ----------------------------------------------------------------------------------------------
    @staticmethod
    def _where(conditions: List[Tuple[str, Any]]) -> Tuple[str, List[Any]]:
        if not conditions:
            return "", []
        return " WHERE " + " AND ".join(c for c, _ in conditions), [v for _, v in conditions if v is not _NO_PARAM]

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        wait_reason: Optional[WaitReason] = None,
        workflow_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[RunState]:
        """Newest ``updated_at`` first."""
        if limit <= 0:
            return []
        conds: List[Tuple[str, Any]] = []
        if status is not None:
            conds.append(("status = ?", RunStatus(status).value))
        if wait_reason is not None:
            conds.append(("wait_reason = ?", WaitReason(wait_reason).value))
        if workflow_id is not None:
            conds.append(("workflow_id = ?", workflow_id))
        where, params = self._where(conds)
        return self.db.query_runs(
            f"{_SELECT_RUNS}{where} ORDER BY updated_at DESC, run_id LIMIT ?", params + [int(limit)])

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]:
        """Waiting UNTIL runs whose deadline (compared as an instant) is at or before ``now_iso``, earliest first."""
        if limit <= 0:
            return []
        return self.db.query_runs(
            f"{_SELECT_RUNS} WHERE wait_until IS NOT NULL AND wait_until <= ? "
            "ORDER BY wait_until, run_id LIMIT ?",
            (timer_index_value(now_iso), int(limit)),
        )

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]:
        if limit <= 0:
            return []
        return self.db.query_runs(
            f"{_SELECT_RUNS} WHERE wait_key = ? ORDER BY run_id LIMIT ?", (wait_key, int(limit)))

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]:
        if status is None:
            return self.db.query_runs(
                f"{_SELECT_RUNS} WHERE parent_run_id = ? ORDER BY created_at, run_id", (parent_run_id,))
        return self.db.query_runs(
            f"{_SELECT_RUNS} WHERE parent_run_id = ? AND status = ? ORDER BY created_at, run_id",
            (parent_run_id, RunStatus(status).value),
        )

    def list_run_index(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        session_id: Optional[str] = None,
        root_only: bool = False,
        limit: int = 100,
    ) -> List[Dict[str, Any]]:
        if limit <= 0:
            return []
        conds: List[Tuple[str, Any]] = []
        if status is not None:
            conds.append(("status = ?", RunStatus(status).value))
        if workflow_id is not None:
            conds.append(("workflow_id = ?", workflow_id))
        if session_id is not None:
            conds.append(("session_id = ?", session_id))
        if root_only:
            conds.append(("parent_run_id IS NULL", _NO_PARAM))
        where, params = self._where(conds)
        runs = self.db.query_runs(
            f"{_SELECT_RUNS}{where} ORDER BY updated_at DESC, run_id LIMIT ?", params + [int(limit)])
        return [run_index_row(r) for r in runs]


def _latest_status(conn: sqlite3.Connection, run_id: str, key: str) -> Optional[str]:
    """The status of the row ``find_by_idempotency_key`` would return (a completed row first, else the latest)."""
    row = conn.execute(
        "SELECT status FROM ledger WHERE run_id = ? AND idempotency_key = ? "
        "ORDER BY CASE WHEN status = ? THEN 0 ELSE 1 END, seq DESC LIMIT 1", (run_id, key, _COMPLETED)).fetchone()
    return row[0] if row is not None else None


class SqliteLedgerStore(LedgerStore):
    """The append-only ledger in a :class:`SqliteDatabase` (per-run ``seq`` from 1, allocated transactionally)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.backend = db

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValidationError("StepRecord.run_id must be a non-empty string")
        self.db.commit_step(
            StepCommit(run=None, run_json=None, records=(record,), record_jsons=(codec.encode_record(record),)))

    def _rows(self, sql: str, params: Tuple[Any, ...], run_id: str) -> List[Tuple[int, Any]]:
        return self.db.read(lambda c: c.execute(sql, params).fetchall())

    def _checked(self, run_id: str, rows: List[Tuple[int, Any]], after: int) -> List[Dict[str, Any]]:
        """Decode ``(seq, data)`` rows; ``LedgerGapError`` if they skip a seq after ``after``."""
        records = [self.db.decode_record(run_id, seq, data) for seq, data in rows]
        return check_contiguous(run_id, [seq for seq, _ in rows], records, after=after,
                                store=f"SQLite store at {self.db.path}")

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        rows = self._rows("SELECT seq, data FROM ledger WHERE run_id = ? ORDER BY seq", (run_id,), run_id)
        return self._checked(run_id, rows, 0)

    def count(self, run_id: str) -> int:
        row = self.db.read(lambda c: c.execute(
            "SELECT last_seq FROM ledger_heads WHERE run_id = ?", (run_id,)).fetchone())
        return int(row[0]) if row is not None else 0

    def count_many(self, run_ids: Iterable[str]) -> Dict[str, int]:
        """``{run_id: count}`` of the given runs that have ledger records (others are omitted, as in 0.4.2)."""
        ids = list(dict.fromkeys(run_ids))
        found: Dict[str, int] = {}

        def tx(c: sqlite3.Connection) -> None:
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                for rid, last in c.execute(
                        f"SELECT run_id, last_seq FROM ledger_heads WHERE run_id IN ({marks})", tuple(chunk)):
                    found[rid] = int(last)

        self.db.read(tx)
        return {rid: found[rid] for rid in ids if found.get(rid)}

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        """Records with 1-based ``seq`` > ``after``; returns ``(records, last seq returned or after)``."""
        after = max(0, int(after))
        if limit <= 0:
            return [], after
        rows = self._rows("SELECT seq, data FROM ledger WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                          (run_id, after, int(limit)), run_id)
        return self._checked(run_id, rows, after), (rows[-1][0] if rows else after)

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        """The run's last ledger record (one indexed read), or None for an empty ledger."""
        row = self.db.read(lambda c: c.execute(
            "SELECT seq, data FROM ledger WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)).fetchone())
        return self.db.decode_record(run_id, row[0], row[1]) if row is not None else None

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The (first) completed row with this key if any, else the latest row with it, else None."""
        row = self.db.read(lambda c: c.execute(
            "SELECT seq, data FROM ledger WHERE run_id = ? AND idempotency_key = ? "
            "ORDER BY CASE WHEN status = ? THEN 0 ELSE 1 END, CASE WHEN status = ? THEN seq ELSE -seq END LIMIT 1",
            (run_id, key, _COMPLETED, _COMPLETED),
        ).fetchone())
        return self.db.decode_record(run_id, row[0], row[1]) if row is not None else None

    def metrics_many(self, run_ids: Iterable[str]) -> Dict[str, Dict[str, int]]:
        """``{run_id: {steps, llm_calls, tool_calls, tokens_total}}`` over completed rows (a run without completed
        rows is omitted, as in 0.4.2).

        ``tool_calls`` counts the calls in TOOL_CALLS payloads, ``tokens_total`` sums LLM ``usage.total_tokens``.
        Only LLM_CALL and TOOL_CALLS rows are decoded; what they add is the abstractcore plugin's helper.
        """
        from abstractruntime_abstractcore.metrics import add_call_metrics

        ids = list(dict.fromkeys(run_ids))
        out = {rid: {"steps": 0, "llm_calls": 0, "tool_calls": 0, "tokens_total": 0} for rid in ids}

        def tx(c: sqlite3.Connection) -> List[Tuple[str, int, str, Any]]:
            detail: List[Tuple[str, int, str, Any]] = []
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                for rid, n in c.execute(
                        f"SELECT run_id, COUNT(*) FROM ledger WHERE status = ? AND run_id IN ({marks}) GROUP BY run_id",
                        (_COMPLETED, *chunk)):
                    out[rid]["steps"] = int(n)
                detail.extend(c.execute(
                    f"SELECT run_id, seq, effect_type, data FROM ledger WHERE status = ? AND run_id IN ({marks}) "
                    f"AND effect_type IN ('llm_call', 'tool_calls')",
                    (_COMPLETED, *chunk)).fetchall())
            return detail

        for rid, seq, effect_type, data in self.db.read(tx):
            row = self.db.decode_record(rid, seq, data)
            add_call_metrics(out[rid], effect_type, row)
        return {rid: metrics for rid, metrics in out.items() if metrics["steps"]}


__all__ = ["SqliteDatabase", "SqliteRunStore", "SqliteLedgerStore", "SCHEMA_VERSION", "FAULT_POINT", "CONNECT_TIMEOUT",
           "BUSY_TIMEOUT_MS", "DURABILITY"]