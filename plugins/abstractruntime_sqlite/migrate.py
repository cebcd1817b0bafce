"""Upgrading, in place, a SQLite database written by AbstractRuntime 0.4.2 (the reference) to this store's schema.

**Detected** on open (:meth:`~abstractruntime_sqlite.connection.SqliteConnections._init_schema`): the file has no
``schema_version`` in ``meta`` and its ``runs`` table has the reference's ``run_json`` column.
:func:`upgrade_reference_layout` then runs inside the open's own ``BEGIN IMMEDIATE`` transaction, so the upgrade is
all or nothing (an error, a crash or a kill leaves the 0.4.2 file as it was) and a second process opening the file
at the same time waits for it and then finds the file upgraded. Steps:

1. ``runs`` is rebuilt with this schema's columns: each checkpoint's JSON is copied unchanged (by SQL) into ``data``,
   and the indexed columns are computed from it as a commit computes them (``revision`` 0, as the checkpoint decodes;
   ``wait_key`` of an EVENT wait; ``wait_until`` of an UNTIL wait as a sortable instant). A checkpoint that cannot be
   decoded keeps the reference's own columns; reading it reports it, as for any corrupt checkpoint.
2. ``ledger`` is rebuilt: every row keeps its ``(run_id, seq)`` and its JSON, copied byte for byte by SQL, in
   ``data``; ``status``, ``idempotency_key`` and ``effect_type`` (the idempotency index) are filled from it.
3. ``ledger_heads`` is rebuilt from the ledger: each run's highest ``seq``, so new rows follow the old ones.
4. ``commands.payload_json`` is renamed ``payload`` (rows and the AUTOINCREMENT counter stay); ``command_cursors``
   already has this layout.
5. ``wait_index`` (the reference's copy of the timers, replaced by ``runs.wait_until``) is dropped.
6. ``meta`` gets ``upgraded_from`` = ``abstractruntime 0.4.2`` and ``upgraded_at``; the caller records
   ``schema_version``.

A database this module cannot upgrade raises :class:`StoreUpgradeError` and is left untouched: a 0.4.2 file that
cannot be written (read-only file or directory; :func:`refuse_unwritable_reference`), a ``runs`` / ``ledger`` /
``commands`` table of a layout it does not know, or (raised by the schema check) a newer schema version.
See ``docs/upgrading.md``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import StoreError
from abstractruntime.logs import get_logger

from .schema import _SCHEMA, _run_columns

log = get_logger("abstractruntime.sqlite")

REFERENCE = "abstractruntime 0.4.2"
_BATCH = 500
_OLD_RUNS = "_upgrade_042_runs"
_OLD_LEDGER = "_upgrade_042_ledger"
#: reference columns a checkpoint that cannot be decoded keeps (in the order of _run_columns, without revision/data)
_FALLBACK = ("status", "workflow_id", "parent_run_id", "session_id", "wait_reason")
_NEW_RUN_COLUMNS = ("revision", "status", "workflow_id", "parent_run_id", "session_id", "wait_reason", "wait_key",
                    "wait_until", "created_at", "updated_at")


class StoreUpgradeError(StoreError):
    """A store written by another AbstractRuntime version cannot be opened or upgraded by this one (a read-only
    0.4.2 file, a layout this version does not know, a newer schema version). Nothing was changed."""


def _columns(conn: sqlite3.Connection, table: str) -> List[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def reference_layout(conn: sqlite3.Connection, path: Any) -> bool:
    """True when the database holds the 0.4.2 layout (``runs.run_json``); :class:`StoreUpgradeError` for a ``runs``,
    ``ledger`` or ``commands`` table this version does not know. Reads only."""
    runs = _columns(conn, "runs")
    if not runs or "data" in runs:
        return False
    expected = {"runs": ("run_id", "run_json"), "ledger": ("run_id", "seq", "record_json"),
                "commands": ("command_id", "payload_json")}
    for table, needed in expected.items():
        found = runs if table == "runs" else _columns(conn, table)
        if found and not set(needed) <= set(found) and not (table == "commands" and "payload" in found):
            raise StoreUpgradeError(
                f"SQLite store at {path}: table {table!r} has columns {found}, a layout neither this version nor "
                f"AbstractRuntime 0.4.2 writes; it cannot be opened or upgraded. Nothing was changed.")
    return True


def refuse_unwritable_reference(path: Path, exc: BaseException) -> None:
    """Raise :class:`StoreUpgradeError` if the database that could not be opened for writing (``exc``) is a 0.4.2
    store: upgrading it needs write access. Probed read-only (``immutable``: no lock, no ``-wal``/``-shm`` files)."""
    if not _unwritable(exc):
        return
    try:
        probe = sqlite3.connect(Path(path).resolve().as_uri() + "?immutable=1", uri=True)
    except (sqlite3.Error, OSError, ValueError):
        return
    try:
        is_reference = reference_layout(probe, path)
    except (sqlite3.Error, StoreUpgradeError):
        return
    finally:
        probe.close()
    if is_reference:
        raise StoreUpgradeError(
            f"SQLite store at {path} was written by AbstractRuntime 0.4.2 and is upgraded in place on first open, "
            f"which needs write access to the file and its directory ({exc}). Make both writable (back the file up "
            f"first, see docs/upgrading.md) and open it again. Nothing was changed.") from exc


def _unwritable(exc: BaseException) -> bool:
    """Whether ``exc`` (raised starting a write) comes from SQLite refusing to write the file or its directory."""
    cause = exc.__cause__
    if not isinstance(cause, sqlite3.Error):
        return False
    code = getattr(cause, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (3, 8, 14)  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN
    text = str(cause).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def upgrade_reference_layout(conn: sqlite3.Connection, path: Any) -> bool:
    """Upgrade a 0.4.2 database in the caller's write transaction (True), or do nothing (False: not that layout).
    On any error the caller rolls the whole transaction back."""
    if not reference_layout(conn, path):
        return False
    if sqlite3.sqlite_version_info < (3, 25, 0):
        raise StoreUpgradeError(
            f"SQLite store at {path} was written by AbstractRuntime 0.4.2; upgrading it needs SQLite 3.25 or later "
            f"(this Python has {sqlite3.sqlite_version}). Nothing was changed.")
    old_runs = set(_columns(conn, "runs"))
    has_ledger = bool(_columns(conn, "ledger"))
    conn.execute(f"ALTER TABLE runs RENAME TO {_OLD_RUNS}")
    if has_ledger:
        conn.execute(f"ALTER TABLE ledger RENAME TO {_OLD_LEDGER}")
    conn.execute("DROP TABLE IF EXISTS ledger_heads")  # recomputed from the ledger below
    for statement in _SCHEMA:  # this schema's tables and indexes
        conn.execute(statement)
    runs = _copy_runs(conn, old_runs)
    rows = _copy_ledger(conn) if has_ledger else 0
    conn.execute("INSERT INTO ledger_heads (run_id, last_seq) SELECT run_id, MAX(seq) FROM ledger GROUP BY run_id")
    if "payload_json" in _columns(conn, "commands"):
        conn.execute("ALTER TABLE commands RENAME COLUMN payload_json TO payload")
    conn.execute("DROP TABLE IF EXISTS wait_index")
    conn.execute(f"DROP TABLE {_OLD_RUNS}")
    if has_ledger:
        conn.execute(f"DROP TABLE {_OLD_LEDGER}")
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     [("upgraded_from", REFERENCE), ("upgraded_at", datetime.now(timezone.utc).isoformat())])
    log.info("sqlite_store_upgraded", path=str(path), upgraded_from=REFERENCE, runs=runs, ledger_rows=rows)
    return True


def _pages(conn: sqlite3.Connection, select: str) -> Any:
    """The rows of ``select`` (whose first column is the rowid, and which takes the last rowid seen) in batches."""
    last = -(1 << 63)
    while True:
        batch = conn.execute(f"{select} WHERE rowid > ? ORDER BY rowid LIMIT {_BATCH}", (last,)).fetchall()
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def _copy_runs(conn: sqlite3.Connection, old: set) -> int:
    fallback = ", ".join(c if c in old else "NULL" for c in _FALLBACK + ("created_at", "updated_at"))
    insert = (f"INSERT INTO runs ({', '.join(_NEW_RUN_COLUMNS)}, run_id, data) "
              f"SELECT {', '.join('?' * len(_NEW_RUN_COLUMNS))}, run_id, run_json FROM {_OLD_RUNS} WHERE rowid = ?")
    for batch in _pages(conn, f"SELECT rowid, CAST(run_json AS BLOB), {fallback} FROM {_OLD_RUNS}"):
        conn.executemany(insert, [_run_values(row) + (row[0],) for row in batch])
    return _same_count(conn, _OLD_RUNS, "runs")


def _run_values(row: Tuple[Any, ...]) -> Tuple[Any, ...]:
    raw, status, workflow_id, parent, session, wait_reason, created, updated = row[1:]
    try:
        return _run_columns(codec.decode_run(raw), "")[:-1]
    except Exception:  # not a checkpoint this version can decode: keep what the reference indexed
        return (0, status or "", workflow_id or "", parent or None, session, wait_reason, None, None, created,
                updated)


def _copy_ledger(conn: sqlite3.Connection) -> int:
    insert = ("INSERT INTO ledger (run_id, seq, status, idempotency_key, effect_type, data) "
              f"SELECT run_id, seq, ?, ?, ?, record_json FROM {_OLD_LEDGER} WHERE rowid = ?")
    for batch in _pages(conn, f"SELECT rowid, CAST(record_json AS BLOB) FROM {_OLD_LEDGER}"):
        conn.executemany(insert, [_record_values(raw) + (rowid,) for rowid, raw in batch])
    return _same_count(conn, _OLD_LEDGER, "ledger")


def _record_values(raw: Optional[bytes]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(status, idempotency_key, effect_type)`` of a ledger row, as a commit would index it ('' status when the
    row cannot be decoded: reading it reports it)."""
    try:
        row: Dict[str, Any] = codec.decode_record(raw or b"")
    except Exception:
        return "", None, None
    if not isinstance(row, dict):
        return "", None, None
    status, key, effect = row.get("status"), row.get("idempotency_key"), row.get("effect")
    effect_type = effect.get("type") if isinstance(effect, dict) else None
    return (status if isinstance(status, str) else "", key if isinstance(key, str) and key else None,
            effect_type if isinstance(effect_type, str) else None)


def _same_count(conn: sqlite3.Connection, old: str, new: str) -> int:
    before = conn.execute(f"SELECT COUNT(*) FROM {old}").fetchone()[0]
    after = conn.execute(f"SELECT COUNT(*) FROM {new}").fetchone()[0]
    if before != after:  # pragma: no cover - a guard: the caller rolls back
        raise StoreError(f"upgrading {new!r} copied {after} of {before} rows; nothing was changed")
    return int(after)


__all__ = ["StoreUpgradeError", "REFERENCE", "reference_layout", "refuse_unwritable_reference",
           "upgrade_reference_layout"]
