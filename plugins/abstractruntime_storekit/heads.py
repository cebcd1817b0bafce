"""Chain-head hints: what a backend itself last wrote at the end of each run's ledger.

The provenance plugin chains a commit's records on the run's last ``record_hash``. A backend that remembers what it
wrote offers ``ledger_head_hint(run_id) -> (seq, record_hash) | None``, so that no read is needed before a commit;
the commit's in-transaction precondition still checks the head, so a stale hint can only refuse a commit
(``LedgerHeadMovedError``), never fork a chain. A load that sees another last ``seq`` (another process appended)
forgets the hint (:meth:`HeadHints.seen`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Tuple

Head = Tuple[int, Optional[str]]


class HeadHints:
    """A bounded, thread-safe map run id -> ``(seq, record_hash)`` of the last record this process committed."""

    def __init__(self, kept: int = 50_000) -> None:
        self._kept = kept
        self._heads: "OrderedDict[str, Head]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Optional[Head]:
        with self._lock:
            return self._heads.get(run_id)

    def remember(self, run_id: str, seq: int, record_hash: Optional[str]) -> None:
        """After a commit is durable: its last record of ``run_id`` (a later commit that got here first wins)."""
        with self._lock:
            known = self._heads.get(run_id)
            if known is not None and known[0] > seq:
                return
            self._heads[run_id] = (seq, record_hash)
            self._heads.move_to_end(run_id)
            while len(self._heads) > self._kept:
                self._heads.popitem(last=False)

    def seen(self, run_id: str, last_seq: int) -> None:
        """A read found the run's ledger ending at ``last_seq``: forget a hint that says otherwise."""
        with self._lock:
            known = self._heads.get(run_id)
            if known is not None and known[0] != last_seq:
                del self._heads[run_id]

    def knows(self, run_id: str) -> bool:
        return run_id in self._heads

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._heads.pop(run_id, None)


__all__ = ["HeadHints", "Head"]
