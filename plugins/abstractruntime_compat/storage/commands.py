"""Reference path ``abstractruntime.storage.commands`` (the code lives in the ``commands`` plugin)."""

from abstractruntime_commands.store import (
    CommandAppendResult,
    CommandCursorStore,
    CommandRecord,
    CommandStore,
    InMemoryCommandCursorStore,
    InMemoryCommandStore,
    JsonFileCommandCursorStore,
    JsonlCommandStore,
    SqliteCommandCursorStore,
    SqliteCommandStore,
)

__all__ = [
    "CommandRecord",
    "CommandAppendResult",
    "CommandStore",
    "CommandCursorStore",
    "InMemoryCommandStore",
    "JsonlCommandStore",
    "SqliteCommandStore",
    "InMemoryCommandCursorStore",
    "JsonFileCommandCursorStore",
    "SqliteCommandCursorStore",
]
