"""``ObservableLedgerStore`` (reference API): a ledger decorator that calls subscribers after each append.

With AbstractRuntime, ``Runtime.subscribe_ledger`` works with every store (the kernel publishes after each
commit), so the decorator is only needed by code that appends to a ledger outside a runtime. Wrapping a store's
ledger in it makes the runtime commit through the decorator's ``append`` (two writes per step instead of one
transaction).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, runtime_checkable

from abstractruntime import codec
from abstractruntime.logs import get_logger
from abstractruntime.models import StepRecord
from abstractruntime.storage.base import LedgerStore

log = get_logger("abstractruntime.storage")

Subscriber = Callable[[Dict[str, Any]], None]


@runtime_checkable
class ObservableLedgerStoreProtocol(Protocol):
    def subscribe(self, callback: Subscriber, *, run_id: Optional[str] = None) -> Callable[[], None]: ...


class ObservableLedgerStore(LedgerStore):
    def __init__(self, inner: LedgerStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._subscribers: Tuple[Tuple[Subscriber, Optional[str]], ...] = ()

    @property
    def inner(self) -> LedgerStore:
        return self._inner

    def append(self, record: StepRecord) -> None:
        self._inner.append(record)
        subscribers = self._subscribers
        if not subscribers:
            return
        data = codec.record_to_dict(record)
        for callback, run_id in subscribers:
            if run_id is not None and run_id != record.run_id:
                continue
            try:
                callback(dict(data))
            except Exception as exc:  # subscribers never break the ledger
                log.warning("ledger_subscriber_failed", run_id=record.run_id, error=f"{type(exc).__name__}: {exc}")

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._inner.list(run_id)

    def subscribe(self, callback: Subscriber, *, run_id: Optional[str] = None) -> Callable[[], None]:
        entry = (callback, run_id)
        with self._lock:
            self._subscribers = self._subscribers + (entry,)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(e for e in self._subscribers if e is not entry)

        return unsubscribe

    def clear_subscribers(self) -> None:
        with self._lock:
            self._subscribers = ()

    def count(self, run_id: str) -> int:
        counter = getattr(self._inner, "count", None)
        return counter(run_id) if counter is not None else len(self._inner.list(run_id))

    def count_many(self, run_ids: List[str]) -> Dict[str, int]:
        many = getattr(self._inner, "count_many", None)
        return many(run_ids) if many is not None else {r: self.count(r) for r in run_ids}

    def metrics_many(self, run_ids: List[str]) -> Dict[str, Any]:
        many = getattr(self._inner, "metrics_many", None)
        return many(run_ids) if many is not None else {}

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        finder = getattr(self._inner, "find_by_idempotency_key", None)
        if finder is not None:
            return finder(run_id, key)
        latest = None
        for row in self._inner.list(run_id):
            if row.get("idempotency_key") == key:
                if row.get("status") == "completed":
                    return row
                latest = row
        return latest
