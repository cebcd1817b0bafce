"""Builtin plugin ``commands``: the command inbox for gateways (reference ``abstractruntime.storage.commands``).

Command stores (:class:`InMemoryCommandStore`, :class:`JsonlCommandStore`, :class:`SqliteCommandStore`) and consumer
cursor stores (:class:`InMemoryCommandCursorStore`, :class:`JsonFileCommandCursorStore`,
:class:`SqliteCommandCursorStore`); see :mod:`abstractruntime_commands.store`. The runtime never consumes
commands, so this plugin registers no hook: it is the package that holds these primitives.
"""

from abstractruntime_pluginkit.lazy import lazy_exports

# Imported on first use: every plugin package is imported whenever a runtime is built, and this one has no hook.
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys([
    "CommandAppendResult", "CommandCursorStore", "CommandRecord", "CommandStore", "InMemoryCommandCursorStore",
    "InMemoryCommandStore", "JsonFileCommandCursorStore", "JsonlCommandStore", "SqliteCommandCursorStore",
    "SqliteCommandStore", "ensure_command_tables"], ".store"))

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
    "ensure_command_tables",
]
