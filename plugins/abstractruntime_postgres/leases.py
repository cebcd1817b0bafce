"""Leases, claims and fencing of the PostgreSQL store (:class:`Leases`, a part of
:class:`~abstractruntime_postgres.store.PostgresBackend`).

:meth:`~Leases.claim_runnable` picks RUNNING runs and waiting runs whose timer is due, unleased or with an expired
lease, in the order they became claimable (``ready_at``: a run released or taken over keeps its place), with
``FOR UPDATE SKIP LOCKED``, bumps each one's ``fencing_epoch`` and gives it a lease. Unleased candidates come from
the partial index ``runs_claimable`` (only unleased, unpaused RUNNING runs and timers, ordered by ``ready_at``), so a
claim never walks finished or leased runs; expired leases from ``runs_leased``.
:meth:`~Leases.heartbeat` extends leases; :meth:`~Leases.release` gives a run back. A commit made inside
``backend.fenced(run_id, epoch)`` (a :class:`Fence` pushed on a context variable) is refused unless the run still has
that epoch and an unexpired lease. Lease times are the database server's clock (``clock_timestamp()``).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import psycopg
from attrs import define, field

from abstractruntime.errors import StoreError
from abstractruntime.logs import get_logger
from abstractruntime.models import WaitReason

from .errors import LeaseLostError
from .sql import _RUNNING, _WAITING, _Sql, _check_run_id, _check_worker, _reason
from .wake import listener_key

log = get_logger("abstractruntime.postgres")

#: an idle listening connection is checked (``SELECT 1``) at most this often, so a dead one is noticed within it
LISTEN_CHECK_S = 2.0
#: libpq parameters of the listening connection unless the DSN sets them: TCP keepalives and a bound on unacknowledged
#: writes, so a silently dropped connection (a network failure, a crashed host) fails within seconds
LISTEN_TCP = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "2",
              "tcp_user_timeout": "5000"}

#: an unleased run a claim may take: the predicate of the partial index runs_claimable (keep them identical)
CLAIMABLE = "lease_owner IS NULL AND NOT paused AND (status = 'running' OR wait_until IS NOT NULL)"

#: Claims held by this thread (and the contexts copied from it): ``backend.fenced`` pushes one.
_FENCES: "contextvars.ContextVar[Tuple[Fence, ...]]" = contextvars.ContextVar("abstractruntime_postgres_fences",
                                                                             default=())


@define(eq=False)
class Fence:
    """A claim the current thread acts under: commits to ``run_id`` must find this ``epoch`` (and ``worker_id``,
    when given) on the run's row and an unexpired lease. ``lost`` turns True when a commit was refused.

    ``adopted`` lists the claims the store took for this worker on runs that its ticks made RUNNING (a child
    started and ticked inside an effect, a parent resumed when its child finished, a listener woken by an
    event): see :meth:`PostgresBackend.release_adopted`.
    """

    backend_id: int
    run_id: str
    epoch: int
    worker_id: Optional[str] = None
    lease_s: float = 30.0
    lost: bool = False
    released: bool = False
    adopted: List["Fence"] = field(factory=list)


class Leases:
    """Claims, leases and fencing (the backend provides the transactions, the connections and the channel)."""

    _sql: _Sql
    _where: str
    _closed: bool
    _notify: bool
    channel: str
    _listener: Optional[psycopg.Connection]
    _listener_lock: Any
    _listener_checked: float
    waker: Any
    write: Callable[..., Any]
    fetchone: Callable[..., Any]
    _connect: Callable[[], psycopg.Connection]
    _connect_listener: Callable[[], psycopg.Connection]

    # --- fencing ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def fenced(self, run_id: str, epoch: int, worker_id: Optional[str] = None, *,
               lease_s: float = 30.0) -> Iterator[Fence]:
        """Act as the holder of a claim: inside the block, every commit of this thread to ``run_id`` (the step
        commit and the ledger-only reservation before a side effect) is refused with :class:`LeaseLostError`
        unless the run still has fencing epoch ``epoch`` (and lease owner ``worker_id``, when given) and an
        unexpired lease. The kernel needs no change: it commits as usual and stops on the error.

        With a ``worker_id``, a commit in the block that makes *another*, unleased run RUNNING claims that run
        for the same worker (lease ``lease_s``) and fences it too, because the kernel may drive it right here
        (a sync child, a parent resumed by its finished child): other workers then leave it alone. Those claims
        are listed in ``fence.adopted``; give them back with :meth:`release_adopted` (the worker does so after
        every tick)."""
        fence = Fence(backend_id=id(self), run_id=_check_run_id(run_id), epoch=int(epoch), worker_id=worker_id,
                      lease_s=float(lease_s))
        token = _FENCES.set(_FENCES.get() + (fence,))
        try:
            yield fence
        finally:
            _FENCES.reset(token)

    def _fence_for(self, run_id: str) -> Optional[Fence]:
        for fence in reversed(_FENCES.get()):
            if fence.backend_id == id(self) and fence.run_id == run_id and not fence.released:
                return fence
        return None

    def _root_fence(self) -> Optional[Fence]:
        """The outermost claim of this backend held by a worker in this thread (adoptions are recorded on it)."""
        for fence in _FENCES.get():
            if fence.backend_id == id(self) and fence.worker_id is not None and not fence.released:
                return fence
        return None

    def release_adopted(self, fence: Fence) -> List[str]:
        """Release the runs adopted under ``fence`` (see :meth:`fenced`); a RUNNING one is announced to the other
        workers. Returns their run ids."""
        out: List[str] = []
        while fence.adopted:
            adopted = fence.adopted.pop(0)
            adopted.released = True
            if not adopted.lost and adopted.worker_id is not None:
                self.release(adopted.worker_id, adopted.run_id, adopted.epoch)
            out.append(adopted.run_id)
        return out

    @staticmethod
    def _check_fence(fence: Fence, row: Optional[Tuple[Any, ...]]) -> None:
        """``row``: (revision, status, fencing_epoch, lease_owner, expired, ...) of the locked run row."""
        reason = ""
        if row is None:
            reason = "the run does not exist"
        elif int(row[2]) != fence.epoch:
            reason = "another worker claimed it"
        elif fence.worker_id is not None and row[3] != fence.worker_id:
            reason = "the run was released or claimed by another worker"
        elif row[4]:
            reason = "the lease expired"
        if reason:
            fence.lost = True
            raise LeaseLostError(run_id=fence.run_id, epoch=fence.epoch,
                                 actual_epoch=int(row[2]) if row is not None else None, owner=fence.worker_id,
                                 actual_owner=row[3] if row is not None else None, reason=reason)

    # --- leases -----------------------------------------------------------------------------------------------
    def claim_runnable(self, worker_id: str, *, limit: int = 10, lease_s: float = 30.0,
                       wait_reasons: Iterable[Union[str, WaitReason]] = (),
                       exclude: Iterable[Tuple[str, int]] = (), polled: Optional[List[bool]] = None
                       ) -> List[Tuple[str, int]]:
        """Claim up to ``limit`` runs that can make progress and are not leased (or whose lease expired).

        Runnable: RUNNING runs and WAITING runs whose ``UNTIL`` deadline is due, in the order they became
        claimable (``ready_at``: when the run became RUNNING, or its deadline; a run released or whose lease
        expired keeps its place); with ``wait_reasons`` (e.g. ``("subworkflow",)``), then WAITING runs with those
        wait reasons, which a tick may find ready (``abstractruntime_poll_wait``). Paused runs are never claimed.
        Rows locked by another claimer are skipped (``FOR UPDATE SKIP LOCKED``), so concurrent workers claim
        disjoint sets. Each claimed run's ``fencing_epoch`` is incremented and its lease set to ``lease_s``
        seconds from now (server clock). Returns ``[(run_id, epoch), ...]``: pass them to :meth:`fenced`.
        ``exclude`` lists ``(run_id, revision)`` pairs not to claim while the run still has that revision (a worker
        passes the runs whose checkpoint it found corrupt, so they never take the places of healthy runs).
        ``polled`` (a list) gets ``True`` appended when the runs waiting for ``wait_reasons`` were looked at (there
        was room left after the runnable ones).
        """
        worker_id = _check_worker(worker_id)
        limit = int(limit)
        if limit <= 0:
            return []
        picks = self.claim_queries(wait_reasons=wait_reasons, exclude=exclude)
        s = self._sql.s

        def tx(cur: psycopg.Cursor) -> List[Tuple[str, int]]:
            found: Dict[str, Any] = {}
            for i, (query, params) in enumerate(picks):
                if i == 2 and len(found) >= limit:  # runs waiting for a child or a job: what room is left
                    break
                if i == 2 and polled is not None:
                    polled.append(True)
                cur.execute(query, params + (limit - len(found) if i == 2 else limit,))
                for run_id, ready in cur.fetchall():
                    found.setdefault(run_id, (i == 2, ready, run_id))
            picked = [rid for rid, _key in sorted(found.items(), key=lambda kv: (kv[1][0], kv[1][1] is None,
                                                                                  kv[1][1] or 0, kv[1][2]))][:limit]
            if not picked:
                return []
            cur.execute(
                f"UPDATE {s}.runs SET fencing_epoch = fencing_epoch + 1, lease_owner = %s, "
                f"lease_expires_at = clock_timestamp() + make_interval(secs => %s) "
                f"WHERE run_id = ANY(%s) RETURNING run_id, fencing_epoch",
                (worker_id, float(lease_s), picked))
            epochs = dict(cur.fetchall())
            return [(rid, int(epochs[rid])) for rid in picked]

        claimed = self.write(tx)
        if claimed:
            log.debug("postgres_claimed", worker=worker_id, runs=len(claimed))
        return claimed

    def claim_queries(self, *, wait_reasons: Iterable[Union[str, WaitReason]] = (),
                      exclude: Iterable[Tuple[str, int]] = ()) -> List[Tuple[str, Tuple[Any, ...]]]:
        """The ``SELECT ... FOR UPDATE SKIP LOCKED`` queries of :meth:`claim_runnable` as ``(sql, params)`` (the
        ``LIMIT`` value is the last parameter, not included): unleased claimable runs (index ``runs_claimable``),
        runs whose lease expired (index ``runs_leased``), and with ``wait_reasons`` runs waiting for those."""
        s = self._sql.s
        reasons = [WaitReason(r).value for r in wait_reasons]
        skip = [(str(r), int(v)) for r, v in exclude]
        tail, excluded = "", ()  # type: Tuple[str, Tuple[Any, ...]]
        if skip:
            tail = " AND (run_id, revision) <> ALL (SELECT x.r, x.v FROM unnest(%s::text[], %s::bigint[]) AS x(r, v))"
            excluded = ([r for r, _ in skip], [v for _, v in skip])
        order = " ORDER BY ready_at, run_id LIMIT %s FOR UPDATE SKIP LOCKED"
        picks = [
            (f"SELECT run_id, ready_at FROM {s}.runs WHERE ready_at <= clock_timestamp() AND {CLAIMABLE}{tail}"
             f"{order}", excluded),
            (f"SELECT run_id, ready_at FROM {s}.runs WHERE lease_owner IS NOT NULL "
             f"AND lease_expires_at <= clock_timestamp() AND NOT paused "
             f"AND (status = '{_RUNNING}' OR wait_until <= clock_timestamp()){tail}{order}", excluded),
        ]
        if reasons:
            picks.append((f"SELECT run_id, ready_at FROM {s}.runs WHERE wait_reason = ANY(%s) "
                          f"AND status = '{_WAITING}' AND NOT paused "
                          f"AND (lease_owner IS NULL OR lease_expires_at <= clock_timestamp()){tail}{order}",
                          (reasons,) + excluded))
        return picks

    def heartbeat(self, worker_id: str, run_ids: Iterable[Union[str, Tuple[str, int]]],
                  lease_s: float = 30.0) -> List[str]:
        """Extend the leases this worker still holds to ``lease_s`` seconds from now; returns those run ids.

        ``run_ids`` are run ids or ``(run_id, epoch)`` pairs (then the epoch must match too). A run missing from
        the result is lost: another worker claimed it, or it was released.
        """
        worker_id = _check_worker(worker_id)
        ids: List[str] = []
        epochs: List[Optional[int]] = []
        for item in run_ids:
            if isinstance(item, str):
                ids.append(item)
                epochs.append(None)
            else:
                ids.append(str(item[0]))
                epochs.append(int(item[1]))
        if not ids:
            return []
        s = self._sql.s
        rows = self.write(lambda cur: cur.execute(
            f"UPDATE {s}.runs r SET lease_expires_at = clock_timestamp() + make_interval(secs => %s) "
            f"FROM unnest(%s::text[], %s::bigint[]) AS h(run_id, epoch) "
            f"WHERE r.run_id = h.run_id AND r.lease_owner = %s AND (h.epoch IS NULL OR r.fencing_epoch = h.epoch) "
            f"RETURNING r.run_id", (float(lease_s), ids, epochs, worker_id)).fetchall())
        return [r[0] for r in rows]

    def release(self, worker_id: str, run_id: str, epoch: Optional[int] = None) -> bool:
        """Give up this worker's lease on ``run_id`` (only if it still holds it). A run left RUNNING is
        announced on the channel so that another worker picks it up at once; one left waiting without a timer (a
        parent polled for its child, still running) goes to the back of the polling order, so the waiting runs
        behind it are polled too. Returns whether it was held."""
        worker_id = _check_worker(worker_id)
        s = self._sql.s

        def tx(cur: psycopg.Cursor) -> Optional[str]:
            cur.execute(
                f"UPDATE {s}.runs SET lease_owner = NULL, lease_expires_at = NULL, ready_at = CASE WHEN status = "
                f"'{_WAITING}' AND wait_until IS NULL THEN clock_timestamp() ELSE ready_at END WHERE run_id = %s "
                f"AND lease_owner = %s AND (%s::bigint IS NULL OR fencing_epoch = %s::bigint) RETURNING status",
                (run_id, worker_id, epoch, epoch))
            row = cur.fetchone()
            return row[0] if row is not None else None

        status = self.write(tx)
        if status == _RUNNING and self._notify:
            self.waker.wake(run_id)
        return status is not None

    def lease(self, run_id: str) -> Optional[Dict[str, Any]]:
        """``{owner, expires_at, epoch, expired}`` of a run (None for an unknown run)."""
        row = self.fetchone(
            f"SELECT lease_owner, lease_expires_at, fencing_epoch, "
            f"(lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()) FROM {self._sql.s}.runs "
            f"WHERE run_id = %s", (run_id,))
        if row is None:
            return None
        return {"owner": row[0], "expires_at": row[1], "epoch": int(row[2]), "expired": bool(row[3])}

    def next_timer_in(self) -> Optional[float]:
        """Seconds until the earliest timer of an unleased, unpaused waiting run (<= 0: one is due; None: none)."""
        row = self.fetchone(
            f"SELECT EXTRACT(EPOCH FROM (min(wait_until) - clock_timestamp())) FROM {self._sql.s}.runs "
            f"WHERE wait_until IS NOT NULL AND NOT paused")
        return float(row[0]) if row is not None and row[0] is not None else None

    def wait_for_work(self, timeout: float) -> List[str]:
        """Block up to ``timeout`` seconds for a ``NOTIFY`` that a run became runnable; returns the run ids
        announced (empty on timeout). Only shortens wake-up latency: workers must poll anyway.

        The listening connection holds the advisory lock that tells committers a worker listens (see
        :mod:`abstractruntime_postgres.wake`); it has TCP keepalives and is checked with ``SELECT 1`` when it has
        been idle for :data:`LISTEN_CHECK_S`, so a dead one is replaced within seconds (one lost in the wait itself
        is replaced at once)."""
        if self._closed:
            raise StoreError(f"PostgreSQL store {self._where} is closed")
        if not self._listener_lock.acquire(timeout=max(0.0, float(timeout))):
            return []  # another thread of this process is listening
        try:
            deadline = time.monotonic() + max(0.0, float(timeout))
            for attempt in (1, 2):
                try:
                    listener = self._listening()
                    out: List[str] = []
                    wait = max(0.0, deadline - time.monotonic())
                    for note in listener.notifies(timeout=wait, stop_after=1):
                        out.extend(note.payload.split())
                    if out:  # and whatever else already arrived; the connection is alive
                        for note in listener.notifies(timeout=0.0):
                            out.extend(note.payload.split())
                        self._listener_checked = time.monotonic()
                    return list(dict.fromkeys(out))
                except psycopg.Error as exc:
                    self._drop_listener()
                    if attempt == 2:
                        raise StoreError(f"PostgreSQL store {self._where}: listening failed: {_reason(exc)}") from exc
                    log.info("postgres_listener_lost", where=self._where, error=_reason(exc))
            return []  # pragma: no cover
        finally:
            self._listener_lock.release()

    def _listening(self) -> psycopg.Connection:
        """The listening connection: (re)connected, subscribed and registered as a listener; checked when idle."""
        conn = self._listener
        if conn is not None and not conn.closed and not conn.broken:
            if time.monotonic() - self._listener_checked >= LISTEN_CHECK_S:
                conn.execute("SELECT 1")
                self._listener_checked = time.monotonic()
            return conn
        self._drop_listener()
        conn = self._connect_listener()
        try:
            conn.execute(f'LISTEN "{self.channel}"')
            conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", listener_key(self.channel))
        except BaseException:
            conn.close()
            raise
        self._listener, self._listener_checked = conn, time.monotonic()
        return conn

    def _drop_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
        self._listener = None
