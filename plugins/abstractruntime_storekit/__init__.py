"""``abstractruntime_storekit``: the public helpers for writing a store (a library, not a plugin: it registers no
hook). The builtin stores are built on it, and so can a third-party store (``docs/writing-a-store.md``):

* :mod:`.indexing` -- :func:`index_entries` (a checkpoint's ``(kind, value)`` index entries), :class:`SortedRunIndex`
  (an in-process ordered index) and :class:`IndexedRunQueries` (the reference's query methods over such an index);
* :mod:`.recency` -- newest-first ``list_runs`` pages and counts per status read from such an index without
  decoding every checkpoint (a store opts in with ``IndexedRunQueries._read_index``; :class:`SortedIndexReader`);
* :mod:`.locks` -- :class:`RunLocks`, cross-process "who drives this run" locks for an embedded store;
* :mod:`.ledger` -- :func:`check_contiguous`, the ledger-gap check of stores with a per-run ``seq``;
* :mod:`.files` -- :func:`write_atomic` and :func:`fsync_dir`, durable file writes (every plugin that keeps files);
* :mod:`.ids` -- :func:`validate_run_id`, the run-id rule of every builtin store;
* :mod:`.groupcommit` -- :class:`GroupCommit`, many threads' commits in one transaction and one sync;
* :mod:`.heads` -- :class:`HeadHints`, what a backend last wrote at the end of each run's ledger (``ledger_head_hint``).

The store contract itself (``StoreBackend``, ``StepCommit``, capabilities) is the kernel's
(:mod:`abstractruntime.storage.base`); the conformance suite is :mod:`abstractruntime.testing`.
"""

from abstractruntime_pluginkit.lazy import lazy_exports

# Imported on first use: a plugin that needs one helper does not load them all (every plugin package is imported
# whenever a runtime is built).
__getattr__, __dir__ = lazy_exports(__name__, {
    "fsync_dir": ".files", "write_atomic": ".files", "GroupCommit": ".groupcommit", "GroupEntry": ".groupcommit",
    "HeadHints": ".heads",
    "MAX_RUN_ID_LENGTH": ".ids", "validate_run_id": ".ids", "check_contiguous": ".ledger", "RunLocks": ".locks",
    **dict.fromkeys(["IndexedRunQueries", "SortedRunIndex", "best_index_query", "filter_runs", "index_entries",
                     "run_index_row", "timer_index_value"], ".indexing"),
})

__all__ = [
    "index_entries", "timer_index_value", "run_index_row", "filter_runs", "best_index_query", "SortedRunIndex",
    "IndexedRunQueries", "RunLocks", "check_contiguous", "write_atomic", "fsync_dir", "validate_run_id",
    "MAX_RUN_ID_LENGTH", "GroupCommit", "GroupEntry", "HeadHints",
]
