"""Reference path ``abstractruntime.storage.in_memory`` (the store lives in the ``memory`` plugin)."""

from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore, MemoryBackend

__all__ = ["InMemoryRunStore", "InMemoryLedgerStore", "MemoryBackend"]
