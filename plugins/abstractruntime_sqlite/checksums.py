"""Checkpoint checksums of the SQLite store, and its integrity check (``abstractruntime store check``).

Schema version 2 adds one nullable column, ``runs.checksum INTEGER``: the CRC-32 of the UTF-8 bytes of ``data``,
written with every checkpoint and verified on every load (a mismatch raises
:class:`~abstractruntime.errors.CorruptStoreError` naming the file and the run). ``NULL`` means "written before
checksums existed" (schema version 1, or a 0.4.2 file upgraded in place) and is accepted without a check until the
run is next saved. A version-1 database gets the column when it is first opened for writing
(:func:`add_checksum_column`, an ``ALTER TABLE ... ADD COLUMN``: the rows are not rewritten).

:func:`iter_corrupt` reads every checkpoint and ledger row one at a time (cursor iteration, nothing accumulated but
the problems), after ``PRAGMA quick_check`` for damage to the file itself.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import CorruptStoreError, StoreError
from abstractruntime_storekit.integrity import STORE, CorruptRecord, check_rows, checksum, checksum_mismatch

from .schema import _RUN_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from .store import SqliteDatabase

_COLUMNS = _RUN_COLUMNS + ("checksum",)
#: the run-row statements with the checksum (parameters: ``_run_columns(...) + (checksum,)``, then run_id)
UPDATE_RUN = f"UPDATE runs SET {', '.join(c + ' = ?' for c in _COLUMNS)} WHERE run_id = ?"
UPDATE_RUN_AT_REVISION = UPDATE_RUN + " AND revision = ?"
INSERT_RUN = f"INSERT INTO runs ({', '.join(_COLUMNS)}, run_id) VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})"


def add_checksum_column(conn: sqlite3.Connection) -> None:
    """Give a version-1 ``runs`` table its ``checksum`` column (inside the caller's write transaction)."""
    if "checksum" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}:
        conn.execute("ALTER TABLE runs ADD COLUMN checksum INTEGER")


def text_and_sum(data: Optional[bytes], fallback: Callable[[], bytes]) -> Tuple[str, int]:
    """The checkpoint text to store and its checksum."""
    raw = data if data is not None else fallback()
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    raw = bytes(raw)
    return raw.decode("utf-8"), checksum(raw)


def verified(where: str, run_id: str, data: Any, stored: Optional[int]) -> Any:
    """``data`` if its checksum matches ``stored`` (None: no checksum stored, accepted as is)."""
    if stored is None:
        return data
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    actual = checksum(raw)
    if actual != stored:
        raise checksum_mismatch(where, run_id, stored, actual)
    return data


def iter_corrupt(db: "SqliteDatabase", stats: Optional[Dict[str, int]] = None) -> Iterator[CorruptRecord]:
    """The damaged records of a SQLite store; ``stats`` (if given) receives ``runs`` and ``ledger_records``."""
    where = f"SQLite store at {db.path}"
    stats = stats if stats is not None else {}
    try:
        problems = [r[0] for r in db.read(lambda c: c.execute("PRAGMA quick_check").fetchall())]
    except StoreError as exc:
        yield CorruptRecord(where, STORE, None, exc.message)
        return
    for text in problems:
        if text != "ok":
            yield CorruptRecord(where, STORE, None, f"{where}: PRAGMA quick_check: {text}")
    conn = db.connection()
    try:
        yield from check_rows(
            where, conn.execute("SELECT run_id, data, checksum FROM runs ORDER BY run_id"),
            conn.execute("SELECT run_id, seq, data FROM ledger ORDER BY run_id, seq"),
            db.decode_run, db.decode_record, stats)
    except sqlite3.DatabaseError as exc:
        yield CorruptRecord(where, STORE, None, f"{where}: reading failed, the file is damaged ({exc})")


__all__ = ["add_checksum_column", "text_and_sum", "verified", "iter_corrupt", "UPDATE_RUN", "UPDATE_RUN_AT_REVISION",
           "INSERT_RUN"]
