"""Waking workers: ``NOTIFY`` only when a worker listens, after the commit, coalesced (:class:`Waker`).

``NOTIFY`` inside a step's transaction would hold PostgreSQL's cluster-wide notification lock from the notify until
the commit is flushed, serialising every committing session that notifies (with 8 threads calling ``start`` it cost
about a quarter of the throughput). So commits only *ask* the backend's waker to announce a run; a background thread
sends what accumulated in one statement, in a transaction of its own, after the commits that asked returned -- at
once after a quiet spell, else at most once per :data:`MIN_INTERVAL_S`:

    SELECT count(pg_notify(channel, payload)) FROM unnest(payloads) WHERE <a worker listens>

A listening connection holds a shared session advisory lock (:func:`listener_key`, taken by
``wait_for_work``), so "a worker listens" is a look at ``pg_locks``; with nobody listening no notification is sent
and the statement writes nothing. A payload carries up to ~7,900 bytes of space-separated run ids (run ids have no
spaces). Polling stays the guarantee of progress: a lost wake-up only delays a claim.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from abstractruntime.logs import get_logger

log = get_logger("abstractruntime.postgres")

#: ``pg_advisory_lock_shared(LISTEN_CLASS, <hash of the channel>)`` is held by every listening connection
LISTEN_CLASS = 0x41524E57
MAX_PAYLOAD = 7900
#: at most one notifying statement per this many seconds per backend: a wake-up after a quiet spell is sent at once,
#: under load they are batched (each NOTIFY costs every committing session a little: see the module doc)
MIN_INTERVAL_S = 0.05


def listener_key(channel: str) -> Tuple[int, int]:
    """The two ``int4`` keys of the advisory lock a listener on ``channel`` holds."""
    digest = hashlib.blake2b(f"abstractruntime-listen:{channel}".encode(), digest_size=4).digest()
    return LISTEN_CLASS, int.from_bytes(digest, "big") & 0x7FFFFFFF


def payloads(run_ids: List[str]) -> List[str]:
    """Space-separated run ids, at most :data:`MAX_PAYLOAD` bytes each."""
    out: List[str] = []
    current: List[str] = []
    size = 0
    for run_id in run_ids:
        n = len(run_id.encode()) + 1
        if current and size + n > MAX_PAYLOAD:
            out.append(" ".join(current))
            current, size = [], 0
        current.append(run_id)
        size += n
    if current:
        out.append(" ".join(current))
    return out


class Waker:
    """Announces the runs commits asked it to (:meth:`wake`) from a background thread (see the module doc)."""

    def __init__(self, backend: Any, channel: str) -> None:
        self._backend = backend
        self._channel = channel
        classid, objid = listener_key(channel)
        self._sql = (f"SELECT count(pg_notify(%s, p)) FROM unnest(%s::text[]) AS p WHERE EXISTS (SELECT 1 FROM "
                     f"pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND classid = {classid} AND "
                     f"objid = {objid} AND objsubid = 2 AND database = (SELECT oid FROM pg_catalog.pg_database "
                     f"WHERE datname = current_database()))")
        self._pending: Dict[str, None] = {}
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._busy = False
        self._last_sent = 0.0
        #: statements sent and notifications delivered to the server (for tests and benchmarks)
        self.statements = 0
        self.notified = 0

    def wake(self, run_id: str) -> None:
        """Announce ``run_id`` soon (after the caller's commit returned)."""
        with self._cond:
            if self._closed:
                return
            self._pending[run_id] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"abstractruntime-pg-waker-{self._channel}")
                self._thread.start()
            if not self._busy:  # a busy thread takes it with the batch it is collecting or the next one
                self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was asked so far is sent; returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then stop the thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                if not self._pending:
                    self._busy = False
                    self._cond.notify_all()
                    return
                self._busy = True
                deadline = self._last_sent + MIN_INTERVAL_S  # the wake-ups of concurrent commits join this one
                while not self._closed and deadline > time.monotonic():
                    self._cond.wait(deadline - time.monotonic())
                batch = list(self._pending)
                self._pending.clear()
            self._last_sent = time.monotonic()
            try:
                row = self._backend.fetchone(self._sql, (self._channel, payloads(batch)))
                self.statements += 1
                self.notified += int(row[0]) if row is not None else 0
            except Exception as exc:  # polling picks the runs up anyway
                log.info("postgres_wake_failed", runs=len(batch), error=f"{type(exc).__name__}: {exc}")


__all__ = ["Waker", "listener_key", "payloads", "LISTEN_CLASS"]
