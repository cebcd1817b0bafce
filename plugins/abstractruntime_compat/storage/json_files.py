"""Reference path ``abstractruntime.storage.json_files`` (the store lives in the ``jsonfiles`` plugin)."""

from abstractruntime_jsonfiles.store import JsonFileRunStore, JsonlLedgerStore

__all__ = ["JsonFileRunStore", "JsonlLedgerStore"]
