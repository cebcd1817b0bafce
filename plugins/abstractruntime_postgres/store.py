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

This module holds the backend (connections, the step commit, decoding, sibling services); the leases, claims and
fencing are in :mod:`abstractruntime_postgres.leases`, the run-row SQL in :mod:`abstractruntime_postgres.sql` and
the reference facades (:class:`PostgresRunStore`, :class:`PostgresLedgerStore`) in
:mod:`abstractruntime_postgres.reference`; all are importable from here.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import psycopg
from psycopg_pool import ConnectionPool

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError, StoreError, ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, StepRecord
from abstractruntime.storage.base import Capability, CommitView, StepCommit, StoreBackend
from abstractruntime_storekit.integrity import decode_skipping

from .errors import LeaseLostError, RunLeasedError
from .leases import _FENCES, Fence, Leases
from .reference import PostgresLedgerStore, PostgresRunStore
from .schema import SCHEMA_VERSION, check_current, check_schema_name, migrate
from .sql import _COMPLETED, _RUNNING, _bytes, _check_run_id, _reason, _run_params, _Sql, describe

log = get_logger("abstractruntime.postgres")

FAULT_POINT = "commit:after-checkpoint"
DEFAULT_CONNECT_TIMEOUT = 10


class PostgresBackend(Leases, StoreBackend):
    """A PostgreSQL database holding runs, ledger, leases, artifacts and snapshots; it is the store backend.

    ``dsn`` is a libpq connection string or URI (``postgresql://user@host:5432/db?sslmode=require``); ``min_size``
    / ``max_size`` size the connection pool; ``schema`` is the PostgreSQL schema holding the tables (created and
    migrated on open); ``notify`` sends ``NOTIFY`` when a commit makes a run runnable; ``pool_timeout`` is how long
    an operation waits for a free pooled connection.
    """

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.LEASES})

    def __init__(self, dsn: str = "", *, min_size: int = 1, max_size: int = 8, schema: str = "abstractruntime",
                 notify: bool = True, pool_timeout: float = 30.0, read_only: bool = False) -> None:
        self._schema = check_schema_name(schema)
        min_size, max_size = int(min_size), int(max_size)
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValidationError(f"pool sizes must satisfy 0 <= min_size <= max_size, max_size >= 1; got "
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
        self.read_only = bool(read_only)
        if self.read_only:  # every transaction of every connection is read-only: PostgreSQL refuses any write
            extra["options"] = (params.get("options", "") + " -c default_transaction_read_only=on").strip()
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
                if self.read_only:  # create nothing: the schema must be there, at this version
                    check_current(conn, self._schema, where=self._where)
                else:
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
        return self.decode_record(run_id, row[0], row[1]) if row is not None else None

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
        """Decode the ``(run_id, data)`` rows of a query, in query order; a corrupt run is left out and reported."""
        return decode_skipping(f"PostgreSQL store {self._where}", self.fetchall(sql, params), self.decode_run)

    def iter_corrupt(self, stats: Optional[Dict[str, int]] = None) -> Iterator[Any]:
        """The damaged records of the store (``abstractruntime store check``; see :mod:`.check`)."""
        from .check import iter_corrupt

        return iter_corrupt(self, stats)


__all__ = ["PostgresBackend", "PostgresRunStore", "PostgresLedgerStore", "Fence", "FAULT_POINT", "SCHEMA_VERSION",
           "LeaseLostError", "RunLeasedError", "describe"]
