"""Store interfaces. Store implementations are plugins (``abstractruntime_inmemory``, ``abstractruntime_lmdb``, ...)."""

from .base import (
    EventWaitIndexStore,
    LedgerStore,
    QueryableRunIndexStore,
    QueryableRunStore,
    RunStore,
    StepCommit,
    StoreBackend,
)

__all__ = [
    "RunStore",
    "LedgerStore",
    "QueryableRunStore",
    "QueryableRunIndexStore",
    "EventWaitIndexStore",
    "StepCommit",
    "StoreBackend",
]
