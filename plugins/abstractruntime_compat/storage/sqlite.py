"""Reference path ``abstractruntime.storage.sqlite`` (the store lives in the ``sqlite`` plugin)."""

from abstractruntime_sqlite.store import SqliteDatabase, SqliteLedgerStore, SqliteRunStore

__all__ = ["SqliteDatabase", "SqliteRunStore", "SqliteLedgerStore"]
