"""The SQLite store's schema and the SQL of a checkpoint row: the tables (described in
:mod:`abstractruntime_sqlite.store`), the statements that write a run row and the indexed column values of a
checkpoint."""

from __future__ import annotations

from typing import Any, Tuple

from abstractruntime.models import RunState
from abstractruntime_storekit import index_entries

SCHEMA_VERSION = 2  # 2: runs.checksum (abstractruntime_sqlite.checksums)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        status TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        parent_run_id TEXT,
        session_id TEXT,
        wait_reason TEXT,
        wait_key TEXT,
        wait_until TEXT,
        created_at TEXT,
        updated_at TEXT,
        data TEXT NOT NULL,
        checksum INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS runs_updated ON runs (updated_at)",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status, updated_at)",
    "CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow_id, updated_at)",
    "CREATE INDEX IF NOT EXISTS runs_session ON runs (session_id, updated_at) WHERE session_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_wait_reason ON runs (wait_reason, updated_at) WHERE wait_reason IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_wait_key ON runs (wait_key, run_id) WHERE wait_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_wait_until ON runs (wait_until, run_id) WHERE wait_until IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS ledger_heads (run_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ledger (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        idempotency_key TEXT,
        effect_type TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_idem ON ledger (run_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
)

_RUN_COLUMNS = ("revision", "status", "workflow_id", "parent_run_id", "session_id", "wait_reason", "wait_key",
                "wait_until", "created_at", "updated_at", "data")
_UPDATE_RUN = f"UPDATE runs SET {', '.join(c + ' = ?' for c in _RUN_COLUMNS)} WHERE run_id = ?"
_UPDATE_RUN_AT_REVISION = _UPDATE_RUN + " AND revision = ?"
_INSERT_RUN = f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}, run_id) VALUES ({', '.join('?' * (len(_RUN_COLUMNS) + 1))})"


def _run_columns(run: RunState, text: str) -> Tuple[Any, ...]:
    """The indexed column values of a checkpoint (same rules as :func:`index_entries`)."""
    entries = dict(index_entries(run))
    waiting = run.waiting
    return (
        run.revision,
        run.status.value,
        run.workflow_id,
        run.parent_run_id or None,
        run.session_id,
        waiting.reason.value if waiting is not None else None,
        entries.get("event"),
        entries.get("timer"),
        run.created_at,
        run.updated_at,
        text,
    )


__all__ = ["SCHEMA_VERSION"]
