"""Ledger subscriptions (:class:`LedgerSubscriptions`, owned by the ``Runtime``): every committed record goes to the
callbacks of ``Runtime.subscribe_ledger``, whatever the store (node traces, limits: the ``observation`` plugin)."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from . import codec
from .logs import get_logger
from .models import StepRecord

log = get_logger("abstractruntime")

Callback = Callable[[Dict[str, Any]], None]


class LedgerSubscriptions:
    """Callbacks called with each committed ledger record (as a reference dict), optionally for one run only."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._subscribers: Tuple[Tuple[Callback, Optional[str]], ...] = ()

    def subscribe(self, callback: Callback, *, run_id: Optional[str] = None) -> Callable[[], None]:
        entry = (callback, run_id)
        with self._guard:
            self._subscribers = self._subscribers + (entry,)

        def unsubscribe() -> None:
            with self._guard:
                self._subscribers = tuple(e for e in self._subscribers if e is not entry)

        return unsubscribe

    def publish(self, records: Sequence[StepRecord]) -> None:
        subscribers = self._subscribers
        if not subscribers:
            return
        for record in records:
            data = None
            for callback, run_filter in subscribers:
                if run_filter is not None and run_filter != record.run_id:
                    continue
                if data is None:
                    data = codec.record_to_dict(record)
                try:
                    callback(dict(data))
                except Exception as exc:
                    log.warning("ledger_subscriber_failed", run_id=record.run_id, error=f"{type(exc).__name__}: {exc}")


__all__ = ["LedgerSubscriptions"]
