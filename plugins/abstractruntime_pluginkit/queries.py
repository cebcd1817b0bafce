"""Can a run store answer the reference's run queries? Its backend's declaration first (``Capability.RUN_QUERIES``,
``Capability.EVENT_INDEX``), else -- for a host's own store written for 0.4.2, which declares nothing -- the
reference's query protocols, as 0.4.2 checked them."""

from __future__ import annotations

from typing import Any, Dict, Optional

from abstractruntime.storage.base import Capability, declared_capabilities
from abstractruntime_compat.storage.base import QueryableRunIndexStore, QueryableRunStore
from abstractruntime_storekit.indexing import IndexedRunQueries


def answers_run_queries(run_store: Any) -> bool:
    """``list_runs`` / ``list_due_wait_until`` / ``list_children``."""
    return Capability.RUN_QUERIES in declared_capabilities(run_store) or isinstance(run_store, QueryableRunStore)


def answers_run_index(run_store: Any) -> bool:
    """``list_run_index``."""
    return Capability.RUN_QUERIES in declared_capabilities(run_store) or isinstance(run_store,
                                                                                    QueryableRunIndexStore)


def has_event_index(run_store: Any) -> bool:
    """``list_waiting_for_event`` from an index."""
    return Capability.EVENT_INDEX in declared_capabilities(run_store)


def count_by_status(run_store: Any, *, workflow_id: Optional[str] = None) -> Optional[Dict[str, int]]:
    """Runs per status (of ``workflow_id``, if given) from the store's index without loading a run
    (:meth:`IndexedRunQueries.count_by_status`, looking through decorators' ``inner``); None when the store cannot
    count that way (the caller then reads index rows)."""
    store = run_store
    for _ in range(16):
        if isinstance(store, IndexedRunQueries):
            return store.count_by_status(workflow_id=workflow_id)
        store = getattr(store, "inner", None)
        if store is None:
            break
    return None


__all__ = ["answers_run_queries", "answers_run_index", "has_event_index", "count_by_status"]
