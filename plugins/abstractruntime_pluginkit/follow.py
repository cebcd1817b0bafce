"""Following a run's ledger: the rows appended since the last look, for live views (``abstractruntime runs watch``)
and streams (``AsyncRuntime.watch_ledger``)."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from abstractruntime.storage.base import Capability

PAGE = 1000


class LedgerFollower:
    """The ledger rows of one run appended since the last :meth:`poll`, numbered from 1 as ``get_ledger`` orders them
    (and ``ledger show`` numbers them), starting after the ``after``-th; by pages (``list_after``, whose cursor is
    the row number: the store conformance suite holds every paging store to it) when the store has
    ``Capability.LEDGER_PAGING``, else from the whole ledger (``list``)."""

    def __init__(self, runtime: Any, run_id: str, *, after: int = 0) -> None:
        self.store = runtime.ledger_store
        self.run_id = run_id
        self.paging = runtime.backend.supports(Capability.LEDGER_PAGING)
        self.cursor = after
        self.seen = after

    def poll(self) -> List[Tuple[int, Dict[str, Any]]]:
        if not self.paging:
            rows = self.store.list(self.run_id)[self.seen:]
        else:
            rows = []
            while True:
                got, cursor = self.store.list_after(run_id=self.run_id, after=self.cursor, limit=PAGE)
                rows.extend(got)
                if not got or int(cursor) <= self.cursor:
                    break
                self.cursor = int(cursor)
        numbered = list(enumerate(rows, self.seen + 1))
        self.seen += len(rows)
        return numbered


__all__ = ["LedgerFollower", "PAGE"]
