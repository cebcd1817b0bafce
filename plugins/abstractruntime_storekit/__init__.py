"""``abstractruntime_storekit``: the public helpers for writing a store (a library, not a plugin: it registers no
hook). The builtin stores are built on it, and so can a third-party store (``docs/writing-a-store.md``):

* :mod:`.indexing` -- :func:`index_entries` (a checkpoint's ``(kind, value)`` index entries), :class:`SortedRunIndex`
  (an in-process ordered index) and :class:`IndexedRunQueries` (the reference's query methods over such an index);
* :mod:`.locks` -- :class:`RunLocks`, cross-process "who drives this run" locks for an embedded store;
* :mod:`.ledger` -- :func:`check_contiguous`, the ledger-gap check of stores with a per-run ``seq``;
* :mod:`.files` -- :func:`write_atomic` and :func:`fsync_dir`, durable file writes (every plugin that keeps files);
* :mod:`.ids` -- :func:`validate_run_id`, the run-id rule of every builtin store.

The store contract itself (``StoreBackend``, ``StepCommit``, capabilities) is the kernel's
(:mod:`abstractruntime.storage.base`); the conformance suite is :mod:`abstractruntime.testing`.
"""

from .files import fsync_dir, write_atomic
from .ids import MAX_RUN_ID_LENGTH, validate_run_id
from .indexing import (
    IndexedRunQueries,
    SortedRunIndex,
    best_index_query,
    filter_runs,
    index_entries,
    run_index_row,
    timer_index_value,
)
from .ledger import check_contiguous
from .locks import RunLocks

__all__ = [
    "index_entries", "timer_index_value", "run_index_row", "filter_runs", "best_index_query", "SortedRunIndex",
    "IndexedRunQueries", "RunLocks", "check_contiguous", "write_atomic", "fsync_dir", "validate_run_id",
    "MAX_RUN_ID_LENGTH",
]
