"""Reference path ``abstractruntime.storage.sqlite`` (the store lives in the ``sqlite`` plugin, the command inbox
tables of the same database in the ``commands`` plugin)."""

from abstractruntime_commands.store import (
    CommandAppendResult,
    CommandCursorStore,
    CommandRecord,
    CommandStore,
    SqliteCommandCursorStore,
    SqliteCommandStore,
)
from abstractruntime_sqlite.store import SqliteDatabase, SqliteLedgerStore, SqliteRunStore

__all__ = [
    "SqliteDatabase",
    "SqliteRunStore",
    "SqliteLedgerStore",
    "SqliteCommandStore",
    "SqliteCommandCursorStore",
    "CommandRecord",
    "CommandAppendResult",
    "CommandStore",
    "CommandCursorStore",
]
