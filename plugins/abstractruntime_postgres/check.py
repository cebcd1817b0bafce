"""The PostgreSQL store's integrity check (``abstractruntime store check``): every checkpoint and ledger row is
decoded, read in pages of :data:`PAGE` rows by key (never the whole table at once); only the problems are kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

from abstractruntime.errors import StoreError
from abstractruntime_storekit.integrity import STORE, CorruptRecord, check_rows

if TYPE_CHECKING:  # pragma: no cover
    from .store import PostgresBackend

PAGE = 500


def _pages(backend: "PostgresBackend", sql: str, key_width: int) -> Iterator[Tuple[Any, ...]]:
    """Rows of ``sql`` (ordered by its first ``key_width`` columns, ``%s`` = the key after which to go on)."""
    after: Optional[Tuple[Any, ...]] = None
    while True:
        if after is None:
            rows = backend.fetchall(sql.format(where="TRUE"), (PAGE,))
        else:
            marks = ", ".join(["%s"] * key_width)
            rows = backend.fetchall(sql.format(where=f"({', '.join(_KEYS[:key_width])}) > ({marks})"),
                                    (*after, PAGE))
        yield from rows
        if len(rows) < PAGE:
            return
        after = tuple(rows[-1][:key_width])


_KEYS = ("run_id", "seq")


def iter_corrupt(backend: "PostgresBackend", stats: Optional[Dict[str, int]] = None) -> Iterator[CorruptRecord]:
    """The damaged records of a PostgreSQL store; ``stats`` (if given) receives ``runs`` and ``ledger_records``."""
    where = f"PostgreSQL store {backend._where}"
    s = backend.schema
    stats = stats if stats is not None else {}
    runs = _pages(backend, f"SELECT run_id, data FROM {s}.runs WHERE {{where}} ORDER BY run_id LIMIT %s", 1)
    ledger = _pages(backend, f"SELECT run_id, seq, data FROM {s}.ledger WHERE {{where}} ORDER BY run_id, seq "
                             f"LIMIT %s", 2)
    try:
        yield from check_rows(where, runs, ledger, backend.decode_run, backend.decode_record, stats)
    except StoreError as exc:
        yield CorruptRecord(where, STORE, None, exc.message)


__all__ = ["iter_corrupt", "PAGE"]
