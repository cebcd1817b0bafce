"""PostgreSQL store (psycopg 3): one transaction per step, leases with fencing epochs for many workers.

:class:`PostgresBackend` is the store backend: ``run_store`` and ``ledger_store`` share it and its connection pool
(``psycopg_pool.ConnectionPool``), and :meth:`PostgresBackend.commit_step` writes a step in one transaction:

1. ``SELECT ... FOR UPDATE`` on the run's row: the revision check (``ConcurrentModificationError``) and, when the
   calling thread holds a claim on the run (:meth:`PostgresBackend.fenced`), the fencing check
   (:class:`~abstractruntime_postgres.errors.LeaseLostError`) -- both before anything is written;
2. insert or update the run row (checkpoint bytes + indexed columns);
3. the ``fault_injector`` seam (``"commit:after-checkpoint"``);
4. the ledger records: the run's ``ledger_heads`` row is bumped by the number of records (a row lock held until
   commit) and gives their ``seq`` numbers -- the earlier ledger is never read.

Scale-out (see ``docs/postgres.md``): :meth:`~PostgresBackend.claim_runnable` picks RUNNING runs and waiting runs
whose timer is due, unleased or with an expired lease, with ``FOR UPDATE SKIP LOCKED``, bumps each one's
``fencing_epoch`` and gives it a lease; :meth:`~PostgresBackend.heartbeat` extends leases;
:meth:`~PostgresBackend.release` gives a run back. A commit made inside ``backend.fenced(run_id, epoch)`` is refused
unless the run still has that epoch and an unexpired lease, so a worker whose lease expired (and was perhaps taken
over) can never write. Lease times are the database server's clock (``clock_timestamp()``), never a worker's.

Commits that make a run runnable by others (it becomes RUNNING, or gets a timer) send ``NOTIFY`` on the backend's
channel; :meth:`~PostgresBackend.wait_for_work` listens on it. Polling stays the guarantee of progress.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import psycopg
from attrs import define, field
from psycopg_pool import ConnectionPool

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError, StoreError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from abstractruntime.storage.base import Capability, CommitView, LedgerStore, RunStore, StepCommit, StoreBackend
from abstractruntime_storekit import check_contiguous, run_index_row
from abstractruntime.timeutil import parse_instant

from .errors import LeaseLostError, RunLeasedError
from .schema import SCHEMA_VERSION, check_schema_name, migrate

log = get_logger("abstractruntime.postgres")

FAULT_POINT = "commit:after-checkpoint"
DEFAULT_CONNECT_TIMEOUT = 10
_COMPLETED = StepStatus.COMPLETED.value
_RUNNING = RunStatus.RUNNING.value
_WAITING = RunStatus.WAITING.value

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


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    return run_id


def _bytes(data: Optional[bytes], fallback: Callable[[], bytes]) -> bytes:
    raw = data if data is not None else fallback()
    return bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw).encode("utf-8")


def _run_params(run: RunState, data: bytes) -> Tuple[Any, ...]:
    """The indexed column values of a checkpoint (same rules as :func:`~abstractruntime.storage.base.index_entries`),
    in ``_RUN_COLUMNS`` order."""
    waiting = run.waiting
    is_waiting = run.status is RunStatus.WAITING and waiting is not None
    wait_key = None
    wait_until = None
    if is_waiting and waiting.reason is WaitReason.EVENT and waiting.wait_key:
        wait_key = waiting.wait_key
    if is_waiting and waiting.reason is WaitReason.UNTIL and waiting.until:
        try:
            wait_until = parse_instant(waiting.until)
        except (ValueError, OverflowError):
            wait_until = None  # an unparsable deadline never becomes due; tick reports it
    return (
        run.revision,
        run.status.value,
        run.workflow_id,
        run.parent_run_id or None,
        run.session_id,
        run.actor_id,
        bool(run.is_paused),
        waiting.reason.value if waiting is not None else None,
        wait_key,
        wait_until,
        run.created_at,
        run.updated_at,
        data,
    )


_RUN_COLUMNS = ("revision", "status", "workflow_id", "parent_run_id", "session_id", "actor_id", "paused",
                "wait_reason", "wait_key", "wait_until", "created_at", "updated_at", "data")


class _Sql:
    """The statements of one backend, with its (validated) schema name filled in."""

    def __init__(self, s: str) -> None:
        cols = ", ".join(_RUN_COLUMNS)
        marks = ", ".join(["%s"] * (len(_RUN_COLUMNS) + 1))
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _RUN_COLUMNS)
        self.lock_run = (f"SELECT revision, status, fencing_epoch, lease_owner, "
                         f"(lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()), wait_until "
                         f"FROM {s}.runs WHERE run_id = %s")
        self.upsert_run = (f"INSERT INTO {s}.runs ({cols}, run_id) VALUES ({marks}) "
                           f"ON CONFLICT (run_id) DO UPDATE SET {sets}")
        self.update_run = f"UPDATE {s}.runs SET {', '.join(c + ' = %s' for c in _RUN_COLUMNS)} WHERE run_id = %s"
        self.bump_head = (f"INSERT INTO {s}.ledger_heads AS h (run_id, last_seq) VALUES (%s, %s) "
                          f"ON CONFLICT (run_id) DO UPDATE SET last_seq = h.last_seq + EXCLUDED.last_seq "
                          f"RETURNING last_seq")
        self.insert_record = (f"INSERT INTO {s}.ledger (run_id, seq, status, idempotency_key, effect_type, data) "
                              f"VALUES (%s, %s, %s, %s, %s, %s)")
        self.adopt = (f"UPDATE {s}.runs SET fencing_epoch = fencing_epoch + 1, lease_owner = %s, "
                      f"lease_expires_at = clock_timestamp() + make_interval(secs => %s) WHERE run_id = %s "
                      f"RETURNING fencing_epoch")
        self.s = s


class PostgresBackend(StoreBackend):
    """A PostgreSQL database holding runs, ledger, leases, artifacts and snapshots; it is the store backend.

    ``dsn`` is a libpq connection string or URI (``postgresql://user@host:5432/db?sslmode=require``); ``min_size``
    / ``max_size`` size the connection pool; ``schema`` is the PostgreSQL schema holding the tables (created and
    migrated on open); ``notify`` sends ``NOTIFY`` when a commit makes a run runnable; ``pool_timeout`` is how long
    an operation waits for a free pooled connection.
    """

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.LEASES})

    def __init__(self, dsn: str = "", *, min_size: int = 1, max_size: int = 8, schema: str = "abstractruntime",
                 notify: bool = True, pool_timeout: float = 30.0) -> None:
        self._schema = check_schema_name(schema)
        min_size, max_size = int(min_size), int(max_size)
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(f"pool sizes must satisfy 0 <= min_size <= max_size, max_size >= 1; got "
                             f"min_size={min_size}, max_size={max_size}")
        try:
            params = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StoreError(f"Invalid PostgreSQL connection string: {exc}") from None
        extra: Dict[str, Any] = {}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        if "client_encoding" not in params:
            extra["client_encoding"] = "UTF8"
        self._conninfo = psycopg.conninfo.make_conninfo(dsn, **extra)
        self._where = describe(params)
        self._sql = _Sql(self._schema)
        self._notify = bool(notify)
        self.channel = f"abstractruntime_work_{self._schema}"[:63]
        self._closed = False
        self._listener: Optional[psycopg.Connection] = None
        self._listener_lock = threading.Lock()
        self._aux_lock = threading.Lock()
        self._artifact_store: Any = None
        self._snapshot_store: Any = None
        #: Test seam: called with a fault-point name inside ``commit_step`` (see the conformance suite).
        self.fault_injector: Optional[Callable[[str], None]] = None
        self.applied_migrations: List[int] = []
        try:
            with self._connect() as conn:
                self.applied_migrations = migrate(conn, self._schema, where=self._where)
        except psycopg.Error as exc:
            raise StoreError(f"Cannot open PostgreSQL store {self._where}: {_reason(exc)}") from None
        if self.applied_migrations:
            log.info("postgres_schema_migrated", where=self._where, schema=self._schema,
                     versions=self.applied_migrations)
        self._pool = ConnectionPool(self._conninfo, min_size=min_size, max_size=max_size, open=False,
                                    kwargs={"autocommit": True}, timeout=float(pool_timeout),
                                    name=f"abstractruntime-{self._schema}")
        try:
            self._pool.open(wait=min_size > 0, timeout=float(pool_timeout))
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"Cannot open PostgreSQL store {self._where}: {_reason(exc)}") from None
        self.run_store = PostgresRunStore(self)
        self.ledger_store = PostgresLedgerStore(self)

    # --- connections ------------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, autocommit=True)

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    def __repr__(self) -> str:
        return f"PostgresBackend({self._where}, schema={self._schema!r})"

    def close(self) -> None:
        """Close the pool and the listening connection (idempotent)."""
        self._closed = True
        with self._listener_lock:
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    self._listener.close()
                self._listener = None
        self._pool.close()

    def __enter__(self) -> "PostgresBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def _cursor(self, *, transaction: bool) -> Iterator[psycopg.Cursor]:
        if self._closed:
            raise StoreError(f"PostgreSQL store {self._where} is closed")
        try:
            with self._pool.connection() as conn:
                if transaction:
                    with conn.transaction(), conn.cursor() as cur:
                        yield cur
                else:
                    with conn.cursor() as cur:
                        yield cur
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {self._where}: {_reason(exc)}") from exc

    def write(self, fn: Callable[[psycopg.Cursor], Any]) -> Any:
        """Run ``fn(cursor)`` in one transaction; any exception rolls everything back."""
        with self._cursor(transaction=True) as cur:
            return fn(cur)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        with self._cursor(transaction=False) as cur:
            cur.execute(sql, tuple(params))
            return cur.fetchall()

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Optional[Tuple[Any, ...]]:
        with self._cursor(transaction=False) as cur:
            cur.execute(sql, tuple(params))
            return cur.fetchone()

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

    # --- the step commit --------------------------------------------------------------------------------------
    def commit_step(self, commit: StepCommit) -> None:
        run = commit.run
        run_params: Optional[Tuple[Any, ...]] = None
        if run is not None:
            _check_run_id(run.run_id)
            run_params = _run_params(run, _bytes(commit.run_json, lambda: codec.encode_run(run)))
        by_run: Dict[str, List[Tuple[str, Optional[str], Optional[str], bytes]]] = {}
        records_of: Dict[str, List[StepRecord]] = {}
        for i, record in enumerate(commit.records):
            records_of.setdefault(record.run_id, []).append(record)
            _check_run_id(record.run_id)
            data = _bytes(commit.record_jsons[i] if i < len(commit.record_jsons) else None,
                          lambda r=record: codec.encode_record(r))
            effect_type = record.effect.get("type") if isinstance(record.effect, dict) else None
            by_run.setdefault(record.run_id, []).append(
                (record.status.value, record.idempotency_key or None,
                 effect_type if isinstance(effect_type, str) else None, data))
        sql = self._sql
        root = self._root_fence()
        adopted: List[int] = []

        def tx(cur: psycopg.Cursor) -> None:
            if run is not None and run_params is not None:
                fence = self._fence_for(run.run_id)
                cur.execute(sql.lock_run + " FOR UPDATE", (run.run_id,))
                row = cur.fetchone()
                if fence is not None:
                    self._check_fence(fence, row)
                if commit.expected_revision is not None and (row is None or row[0] != commit.expected_revision):
                    raise ConcurrentModificationError(run_id=run.run_id, expected=commit.expected_revision,
                                                      actual=row[0] if row is not None else None)
                if row is None:
                    cur.execute(sql.upsert_run, run_params + (run.run_id,))
                else:
                    cur.execute(sql.update_run, run_params + (run.run_id,))
                wakes = self._wakes_workers(row, run_params)
                if fence is None and root is not None and wakes and run_params[1] == _RUNNING \
                        and (row is None or row[4]):
                    cur.execute(sql.adopt, (root.worker_id, root.lease_s, run.run_id))
                    adopted.append(int(cur.fetchone()[0]))
                elif self._notify and fence is None and wakes:
                    cur.execute("SELECT pg_notify(%s, %s)", (self.channel, run.run_id))
            if self.fault_injector is not None:
                self.fault_injector(FAULT_POINT)
            for run_id in sorted(by_run):
                fence = self._fence_for(run_id)
                if run is None or run_id != run.run_id:  # records only: whose run is it?
                    cur.execute(sql.lock_run + " FOR SHARE", (run_id,))
                    row = cur.fetchone()
                    if fence is not None:
                        self._check_fence(fence, row)
                    elif row is not None and row[3] is not None and not row[4] \
                            and (root is None or row[3] != root.worker_id):
                        raise RunLeasedError(run_id=run_id, owner=row[3])
                # create-only reservations and the chain head, checked under the head row's lock (taken after
                # the run row's, as every commit does, so two commits cannot deadlock)
                if commit.reservation or commit.preconditions:
                    cur.execute(sql.bump_head, (run_id, 0))
                    cur.fetchone()
            if commit.reservation or commit.preconditions:
                commit.check(CommitView(last_record=lambda rid: self._last_record(cur, rid),
                                        latest_status=lambda rid, key: self._latest_status(cur, rid, key)))
            for run_id in sorted(by_run):
                rows = by_run[run_id]
                cur.execute(sql.bump_head, (run_id, len(rows)))
                first = int(cur.fetchone()[0]) - len(rows) + 1
                cur.executemany(sql.insert_record,
                                [(run_id, first + i, *values) for i, values in enumerate(rows)])

        self.write(tx)
        if adopted and run is not None and root is not None:
            claim = Fence(backend_id=id(self), run_id=run.run_id, epoch=adopted[0], worker_id=root.worker_id,
                          lease_s=root.lease_s)
            root.adopted.append(claim)
            _FENCES.set(_FENCES.get() + (claim,))  # this thread now drives it under the claim

    def _last_record(self, cur: "psycopg.Cursor", run_id: str) -> Optional[Dict[str, Any]]:
        """The run's last record (the caller holds the run's head row lock)."""
        cur.execute(f"SELECT seq, data FROM {self._schema}.ledger WHERE run_id = %s ORDER BY seq DESC LIMIT 1",
                    (run_id,))
        row = cur.fetchone()
        return self.decode_record(run_id, row[0], row[1]).get("record_hash") if row is not None else None

    def _latest_status(self, cur: "psycopg.Cursor", run_id: str, key: str) -> Optional[str]:
        """The status of the row ``find_by_idempotency_key`` would return (a completed row first, else the
        latest); the caller holds the run's head row lock, so concurrent reservations are serialised."""
        cur.execute(f"SELECT status FROM {self._schema}.ledger WHERE run_id = %s AND idempotency_key = %s "
                    f"ORDER BY (status = %s) DESC, seq DESC LIMIT 1", (run_id, key, _COMPLETED))
        row = cur.fetchone()
        return row[0] if row is not None else None

    @staticmethod
    def _wakes_workers(before: Optional[Tuple[Any, ...]], params: Tuple[Any, ...]) -> bool:
        """Does this commit make the run claimable (newly RUNNING, or a new timer)?"""
        status, wait_until = params[1], params[9]
        if status == _RUNNING:
            return before is None or before[1] != _RUNNING
        return wait_until is not None and (before is None or before[5] != wait_until)

    # --- leases -----------------------------------------------------------------------------------------------
    def claim_runnable(self, worker_id: str, *, limit: int = 10, lease_s: float = 30.0,
                       wait_reasons: Iterable[Union[str, WaitReason]] = ()) -> List[Tuple[str, int]]:
        """Claim up to ``limit`` runs that can make progress and are not leased (or whose lease expired).

        Runnable: RUNNING runs (oldest ``updated_at`` first) and WAITING runs whose ``UNTIL`` deadline is due
        (earliest first); with ``wait_reasons`` (e.g. ``("subworkflow",)``), also WAITING runs with those wait
        reasons, which a tick may find ready (``abstractruntime_poll_wait``). Paused runs are never claimed.
        Rows locked by another claimer are skipped (``FOR UPDATE SKIP LOCKED``), so concurrent workers claim
        disjoint sets. Each claimed run's ``fencing_epoch`` is incremented and its lease set to ``lease_s``
        seconds from now (server clock). Returns ``[(run_id, epoch), ...]``: pass them to :meth:`fenced`.
        """
        worker_id = _check_worker(worker_id)
        limit = int(limit)
        if limit <= 0:
            return []
        reasons = [WaitReason(r).value for r in wait_reasons]
        s = self._sql.s
        free = "NOT paused AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())"
        picks = [
            (f"SELECT run_id FROM {s}.runs WHERE wait_until <= clock_timestamp() AND {free} "
             f"ORDER BY wait_until, run_id LIMIT %s FOR UPDATE SKIP LOCKED", ()),
            (f"SELECT run_id FROM {s}.runs WHERE status = '{_RUNNING}' AND {free} "
             f"ORDER BY updated_at, run_id LIMIT %s FOR UPDATE SKIP LOCKED", ()),
        ]
        if reasons:
            picks.append((f"SELECT run_id FROM {s}.runs WHERE status = '{_WAITING}' AND wait_reason = ANY(%s) "
                          f"AND {free} ORDER BY updated_at, run_id LIMIT %s FOR UPDATE SKIP LOCKED", (reasons,)))

        def tx(cur: psycopg.Cursor) -> List[Tuple[str, int]]:
            picked: List[str] = []
            for query, params in picks:
                room = limit - len(picked)
                if room <= 0:
                    break
                cur.execute(query, params + (room,))
                picked.extend(r[0] for r in cur.fetchall() if r[0] not in picked)
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
        announced on the channel so that another worker picks it up at once. Returns whether it was held."""
        worker_id = _check_worker(worker_id)
        s = self._sql.s

        def tx(cur: psycopg.Cursor) -> Optional[str]:
            cur.execute(
                f"UPDATE {s}.runs SET lease_owner = NULL, lease_expires_at = NULL WHERE run_id = %s "
                f"AND lease_owner = %s AND (%s::bigint IS NULL OR fencing_epoch = %s::bigint) RETURNING status",
                (run_id, worker_id, epoch, epoch))
            row = cur.fetchone()
            if row is not None and row[0] == _RUNNING and self._notify:
                cur.execute("SELECT pg_notify(%s, %s)", (self.channel, run_id))
            return row[0] if row is not None else None

        return self.write(tx) is not None

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
        announced (empty on timeout). Only shortens wake-up latency: workers must poll anyway."""
        if self._closed:
            raise StoreError(f"PostgreSQL store {self._where} is closed")
        if not self._listener_lock.acquire(timeout=max(0.0, float(timeout))):
            return []  # another thread of this process is listening
        try:
            try:
                if self._listener is None or self._listener.closed:
                    conn = self._connect()
                    conn.execute(f'LISTEN "{self.channel}"')
                    self._listener = conn
                out = [n.payload for n in self._listener.notifies(timeout=max(0.0, float(timeout)), stop_after=1)]
                if out:  # and whatever else already arrived
                    out.extend(n.payload for n in self._listener.notifies(timeout=0.0))
                return list(dict.fromkeys(out))
            except psycopg.Error as exc:
                with contextlib.suppress(Exception):
                    if self._listener is not None:
                        self._listener.close()
                self._listener = None
                raise StoreError(f"PostgreSQL store {self._where}: listening failed: {_reason(exc)}") from exc
        finally:
            self._listener_lock.release()

    # --- artifacts and snapshots ------------------------------------------------------------------------------
    def artifact_store(self) -> Any:
        """Artifacts in the ``artifacts`` table (:class:`~abstractruntime_postgres.blobs.PostgresArtifactStore`)."""
        with self._aux_lock:
            if self._artifact_store is None:
                from .blobs import PostgresArtifactStore

                self._artifact_store = PostgresArtifactStore(self)
            return self._artifact_store

    def snapshot_store(self) -> Any:
        """Snapshots in the ``snapshots`` table (:class:`~abstractruntime_postgres.blobs.PostgresSnapshotStore`)."""
        with self._aux_lock:
            if self._snapshot_store is None:
                from .blobs import PostgresSnapshotStore

                self._snapshot_store = PostgresSnapshotStore(self)
            return self._snapshot_store

    # --- decoding ---------------------------------------------------------------------------------------------
    def decode_run(self, run_id: str, data: Any) -> RunState:
        try:
            return codec.decode_run(bytes(data))
        except Exception as exc:
            raise CorruptStoreError(
                f"PostgreSQL store {self._where}: checkpoint of run {run_id} cannot be decoded ({exc})",
                run_id=run_id) from exc

    def decode_record(self, run_id: str, seq: int, data: Any) -> Dict[str, Any]:
        try:
            row = codec.decode_record(bytes(data))
        except Exception as exc:
            raise CorruptStoreError(
                f"PostgreSQL store {self._where}: ledger record {seq} of run {run_id} cannot be decoded ({exc})",
                run_id=run_id) from exc
        if not isinstance(row, dict):
            raise CorruptStoreError(
                f"PostgreSQL store {self._where}: ledger record {seq} of run {run_id} is not a JSON object",
                run_id=run_id)
        return row

    def query_runs(self, sql: str, params: Sequence[Any] = ()) -> List[RunState]:
        """Decode the ``(run_id, data)`` rows of a query, in query order."""
        return [self.decode_run(rid, data) for rid, data in self.fetchall(sql, params)]


def _check_worker(worker_id: Any) -> str:
    if not isinstance(worker_id, str) or not worker_id:
        raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
    return worker_id


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def describe(params: Mapping[str, Any]) -> str:
    """``user@host:port/dbname`` of a parsed conninfo, without the password."""
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    db = params.get("dbname") or "(default db)"
    return f"{user}{host}{port}/{db}"


class PostgresRunStore(RunStore):
    """Run checkpoints in a :class:`PostgresBackend` (reference API; queries are indexed SQL)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self._s = backend.schema

    def save(self, run: RunState) -> None:
        self.backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        row = self.backend.fetchone(f"SELECT data FROM {self._s}.runs WHERE run_id = %s", (run_id,))
        return self.backend.decode_run(run_id, row[0]) if row is not None else None

    def load_revision(self, run_id: str) -> Optional[int]:
        row = self.backend.fetchone(f"SELECT revision FROM {self._s}.runs WHERE run_id = %s", (run_id,))
        return int(row[0]) if row is not None else None

    # --- queries ----------------------------------------------------------------------------------------------
    def _select(self, conds: List[Tuple[str, Tuple[Any, ...]]], order: str, limit: Optional[int]) -> List[RunState]:
        where = (" WHERE " + " AND ".join(c for c, _ in conds)) if conds else ""
        params: List[Any] = [p for _, ps in conds for p in ps]
        tail = ""
        if limit is not None:
            tail = " LIMIT %s"
            params.append(int(limit))
        return self.backend.query_runs(f"SELECT run_id, data FROM {self._s}.runs{where} ORDER BY {order}{tail}",
                                       params)

    def list_runs(self, *, status: Optional[RunStatus] = None, wait_reason: Optional[WaitReason] = None,
                  workflow_id: Optional[str] = None, limit: int = 100) -> List[RunState]:
        """Newest ``updated_at`` first."""
        if limit <= 0:
            return []
        conds: List[Tuple[str, Tuple[Any, ...]]] = []
        if status is not None:
            conds.append(("status = %s", (RunStatus(status).value,)))
        if wait_reason is not None:
            conds.append(("wait_reason = %s", (WaitReason(wait_reason).value,)))
        if workflow_id is not None:
            conds.append(("workflow_id = %s", (workflow_id,)))
        return self._select(conds, "updated_at DESC, run_id", limit)

    def list_due_wait_until(self, *, now_iso: str, limit: int = 100) -> List[RunState]:
        """Waiting UNTIL runs whose deadline (an instant) is at or before ``now_iso``, earliest first."""
        if limit <= 0:
            return []
        return self._select([("wait_until <= %s", (parse_instant(now_iso),))], "wait_until, run_id", limit)

    def list_waiting_for_event(self, *, wait_key: str, limit: int = 10000) -> List[RunState]:
        if limit <= 0:
            return []
        return self._select([("wait_key = %s", (wait_key,))], "run_id", limit)

    def list_children(self, *, parent_run_id: str, status: Optional[RunStatus] = None) -> List[RunState]:
        conds: List[Tuple[str, Tuple[Any, ...]]] = [("parent_run_id = %s", (parent_run_id,))]
        if status is not None:
            conds.append(("status = %s", (RunStatus(status).value,)))
        return self._select(conds, "created_at, run_id", None)

    def list_run_index(self, *, status: Optional[RunStatus] = None, workflow_id: Optional[str] = None,
                       session_id: Optional[str] = None, root_only: bool = False,
                       limit: int = 100) -> List[Dict[str, Any]]:
        if limit <= 0:
            return []
        conds: List[Tuple[str, Tuple[Any, ...]]] = []
        if status is not None:
            conds.append(("status = %s", (RunStatus(status).value,)))
        if workflow_id is not None:
            conds.append(("workflow_id = %s", (workflow_id,)))
        if session_id is not None:
            conds.append(("session_id = %s", (session_id,)))
        if root_only:
            conds.append(("parent_run_id IS NULL", ()))
        return [run_index_row(r) for r in self._select(conds, "updated_at DESC, run_id", limit)]


class PostgresLedgerStore(LedgerStore):
    """The append-only ledger in a :class:`PostgresBackend` (per-run ``seq`` from 1, allocated transactionally)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self._s = backend.schema

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValueError("StepRecord.run_id must be a non-empty string")
        self.backend.commit_step(
            StepCommit(run=None, run_json=None, records=(record,), record_jsons=(codec.encode_record(record),)))

    def _decode(self, run_id: str, rows: List[Tuple[Any, ...]], after: int) -> List[Dict[str, Any]]:
        """Decode ``(seq, data)`` rows; ``LedgerGapError`` if they skip a seq after ``after``."""
        records = [self.backend.decode_record(run_id, seq, data) for seq, data in rows]
        return check_contiguous(run_id, [int(seq) for seq, _ in rows], records, after=after,
                                store=f"PostgreSQL store {self.backend._where}")

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._decode(run_id, self.backend.fetchall(
            f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s ORDER BY seq", (run_id,)), 0)

    def count(self, run_id: str) -> int:
        row = self.backend.fetchone(f"SELECT last_seq FROM {self._s}.ledger_heads WHERE run_id = %s", (run_id,))
        return int(row[0]) if row is not None else 0

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        row = self.backend.fetchone(f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s ORDER BY seq DESC "
                                    f"LIMIT 1", (run_id,))
        return self.backend.decode_record(run_id, row[0], row[1]) if row is not None else None

    def count_many(self, run_ids: Iterable[str]) -> Dict[str, int]:
        ids = list(dict.fromkeys(run_ids))
        out = {rid: 0 for rid in ids}
        if ids:
            for rid, last in self.backend.fetchall(
                    f"SELECT run_id, last_seq FROM {self._s}.ledger_heads WHERE run_id = ANY(%s)", (ids,)):
                out[rid] = int(last)
        return out

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        """Records with 1-based ``seq`` > ``after``; returns ``(records, last seq returned or after)``."""
        after = max(0, int(after))
        if limit <= 0:
            return [], after
        rows = self.backend.fetchall(
            f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (run_id, after, int(limit)))
        return self._decode(run_id, rows, after), (int(rows[-1][0]) if rows else after)

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The (first) completed row with this key if any, else the latest row with it, else None."""
        row = self.backend.fetchone(
            f"SELECT seq, data FROM {self._s}.ledger WHERE run_id = %s AND idempotency_key = %s "
            f"ORDER BY (status = %s) DESC, CASE WHEN status = %s THEN seq ELSE -seq END LIMIT 1",
            (run_id, key, _COMPLETED, _COMPLETED))
        return self.backend.decode_record(run_id, row[0], row[1]) if row is not None else None

    def metrics_many(self, run_ids: Iterable[str]) -> Dict[str, Dict[str, int]]:
        """``{run_id: {steps, llm_calls, tool_calls, tokens_total}}`` over completed rows (same rules as the
        SQLite store: only LLM_CALL and TOOL_CALLS rows are decoded)."""
        from abstractruntime_abstractcore.metrics import add_call_metrics

        ids = list(dict.fromkeys(run_ids))
        out = {rid: {"steps": 0, "llm_calls": 0, "tool_calls": 0, "tokens_total": 0} for rid in ids}
        if not ids:
            return out
        for rid, n in self.backend.fetchall(
                f"SELECT run_id, count(*) FROM {self._s}.ledger WHERE status = %s AND run_id = ANY(%s) "
                f"GROUP BY run_id", (_COMPLETED, ids)):
            out[rid]["steps"] = int(n)
        detail = self.backend.fetchall(
            f"SELECT run_id, seq, effect_type, data FROM {self._s}.ledger WHERE status = %s AND run_id = ANY(%s) "
            f"AND effect_type IN ('llm_call', 'tool_calls')", (_COMPLETED, ids))
        for rid, seq, effect_type, data in detail:
            row = self.backend.decode_record(rid, seq, data)
            add_call_metrics(out[rid], effect_type, row)
        return out


__all__ = ["PostgresBackend", "PostgresRunStore", "PostgresLedgerStore", "Fence", "FAULT_POINT", "SCHEMA_VERSION",
           "LeaseLostError"]
