"""PostgreSQL store (psycopg 3): one transaction per step, leases with fencing epochs for many workers.

:class:`PostgresBackend` is the store backend: ``run_store`` and ``ledger_store`` share it and its connection pool
(``psycopg_pool.ConnectionPool``), and :meth:`PostgresBackend.commit_step` writes a step in one transaction of a few
statements (see :mod:`abstractruntime_postgres.commit`):

1. the run row: inserted (a new run), or ``SELECT ... FOR UPDATE`` -- the revision check
   (``ConcurrentModificationError``) and, when the calling thread holds a claim on the run
   (:meth:`PostgresBackend.fenced`), the fencing check (:class:`~abstractruntime_postgres.errors.LeaseLostError`),
   both before anything is written -- then updated (checkpoint bytes + indexed columns);
2. the ``fault_injector`` seam (``"commit:after-checkpoint"``);
3. per run, one statement bumps its ``ledger_heads`` row (a row lock held until commit; it gives the records their
   ``seq`` numbers -- the earlier ledger is never scanned), inserts the records and reads what the commit's
   preconditions check (the chain head, the reservations' keys).

Scale-out (see ``docs/postgres.md``): :meth:`~PostgresBackend.claim_runnable` picks claimable runs (RUNNING, due
timers) in the order they became claimable, unleased or with an expired lease, with ``FOR UPDATE SKIP LOCKED``, bumps
each one's ``fencing_epoch`` and gives it a lease; :meth:`~PostgresBackend.heartbeat` extends leases;
:meth:`~PostgresBackend.release` gives a run back. A commit made inside ``backend.fenced(run_id, epoch)`` is refused
unless the run still has that epoch and an unexpired lease, so a worker whose lease expired (and was perhaps taken
over) can never write. Lease times are the database server's clock (``clock_timestamp()``), never a worker's.

Commits that make a run runnable by others (it becomes RUNNING, or gets a timer) have the backend's
:class:`~abstractruntime_postgres.wake.Waker` send a ``NOTIFY`` after the commit, only while a worker listens;
:meth:`~PostgresBackend.wait_for_work` listens. Polling stays the guarantee of progress.

Connections: a statement or transaction that fails because the connection was lost (a server restart, a terminated
session) before its ``COMMIT`` was sent is retried once on a fresh connection (it wrote nothing); for a step commit
whose connection was lost *during* ``COMMIT``, :mod:`~abstractruntime_postgres.commit` looks whether it landed
(:class:`~abstractruntime_postgres.errors.CommitOutcomeUnknownError` when it cannot tell); a connection that stays
lost raises :class:`~abstractruntime_postgres.errors.StoreUnavailableError`.

This module holds the backend (connections, decoding, sibling services); the step commit is in
:mod:`abstractruntime_postgres.commit`, the leases, claims and fencing in :mod:`abstractruntime_postgres.leases`, the
run-row SQL in :mod:`abstractruntime_postgres.sql` and the reference facades (:class:`PostgresRunStore`,
:class:`PostgresLedgerStore`) in :mod:`abstractruntime_postgres.reference`; all are importable from here.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from abstractruntime import codec
from abstractruntime.errors import CorruptStoreError, StoreError, ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState
from abstractruntime.storage.base import Capability, StoreBackend
from abstractruntime_storekit.integrity import decode_skipping

from .commit import FAULT_POINT, StepCommits
from .errors import CommitOutcomeUnknownError, LeaseLostError, RunLeasedError, StoreUnavailableError
from .leases import LISTEN_TCP, Fence, Leases
from .packing import pack, unpack
from .reference import PostgresLedgerStore, PostgresRunStore
from .schema import SCHEMA_VERSION, check_current, check_schema_name, migrate
from .sql import _reason, _Sql, describe
from .wake import Waker

log = get_logger("abstractruntime.postgres")

DEFAULT_CONNECT_TIMEOUT = 10


def _session_settings(conn: psycopg.Connection) -> None:
    """What the store's sessions need whatever the server's (or database's, or role's) defaults say:

    - commits wait for the WAL flush where ``synchronous_commit`` is ``off``: a durable commit is one a crash cannot
      take back once acknowledged (durability ``barrier`` and ``step``; durability ``none`` turns it off per
      transaction); stronger settings (``local``, ``remote_write``, ``remote_apply``) are kept;
    - transactions are ``READ COMMITTED``: the commit path and the claims are built on it (revision-checked updates,
      row locks, ``SKIP LOCKED``); under a ``repeatable read`` or ``serializable`` default, concurrent commits would
      fail with serialization errors instead of a ConcurrentModificationError, and claims would collide."""
    sync, isolation = conn.execute("SELECT current_setting('synchronous_commit'), "
                                   "current_setting('default_transaction_isolation')").fetchone()
    if sync == "off":
        conn.execute("SET synchronous_commit = on")
    if isolation != "read committed":
        conn.execute("SET default_transaction_isolation = 'read committed'")


def transient(exc: BaseException) -> bool:
    """A lost or refused connection (a server restart, a terminated session): worth one retry on another one."""
    if isinstance(exc, PoolTimeout) or not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


class PostgresBackend(StepCommits, Leases, StoreBackend):
    """A PostgreSQL database holding runs, ledger, leases, artifacts and snapshots; it is the store backend.

    ``dsn`` is a libpq connection string or URI (``postgresql://user@host:5432/db?sslmode=require``); ``min_size``
    / ``max_size`` size the connection pool; ``schema`` is the PostgreSQL schema holding the tables (created and
    migrated on open); ``notify`` sends ``NOTIFY`` when a commit makes a run runnable; ``pool_timeout`` is how long
    an operation waits for a free pooled connection.
    """

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX, Capability.LEASES})

    def __init__(self, dsn: str = "", *, min_size: int = 1, max_size: int = 8, schema: str = "abstractruntime",
                 notify: bool = True, pool_timeout: float = 30.0, read_only: bool = False,
                 compress: bool = True) -> None:
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
        self._pack = pack if compress else bytes  # how new checkpoints and ledger records are stored (packing.py)
        self.channel = f"abstractruntime_work_{self._schema}"[:63]
        self._closed = False
        self._init_commits()
        self.waker = Waker(self, self.channel)
        self._listener: Optional[psycopg.Connection] = None
        self._listener_checked = 0.0
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
                                    name=f"abstractruntime-{self._schema}", configure=_session_settings)
        try:
            self._pool.open(wait=min_size > 0, timeout=float(pool_timeout))
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"Cannot open PostgreSQL store {self._where}: {_reason(exc)}") from None
        self.run_store = PostgresRunStore(self)
        self.ledger_store = PostgresLedgerStore(self)

    # --- connections ------------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            _session_settings(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_listener(self) -> psycopg.Connection:
        """A connection for ``LISTEN``: TCP keepalives and ``tcp_user_timeout`` (:data:`LISTEN_TCP`) unless the DSN
        sets them."""
        given = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        extra = {k: v for k, v in LISTEN_TCP.items() if k not in given}
        return psycopg.connect(psycopg.conninfo.make_conninfo(self._conninfo, **extra), autocommit=True)

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
        """Send pending wake-ups, close the pool and the listening connection (idempotent)."""
        if not self._closed:
            self.waker.close()
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

    def _run(self, fn: Callable[[psycopg.Cursor], Any], *, transaction: bool) -> Any:
        """``fn(cursor)`` on a pooled connection (in one transaction when ``transaction``); retried once on a fresh
        connection when the connection was lost before ``COMMIT`` was sent (nothing was written)."""
        for attempt in (1, 2):
            if self._closed:
                raise StoreError(f"PostgreSQL store {self._where} is closed")
            committing = False
            try:
                with self._connection(checked=attempt == 2) as conn:
                    if not transaction:
                        with conn.cursor() as cur:
                            return fn(cur)
                    with conn.transaction():
                        with conn.cursor() as cur:
                            result = fn(cur)
                        committing = True
                    return result
            except PoolTimeout as exc:  # waited pool_timeout for a connection already
                raise StoreUnavailableError(where=self._where, reason=_reason(exc)) from exc
            except psycopg.Error as exc:
                if not transient(exc):
                    raise StoreError(f"PostgreSQL store {self._where}: {_reason(exc)}") from exc
                if committing:
                    raise CommitOutcomeUnknownError(where=self._where, reason=_reason(exc)) from exc
                if attempt == 2:
                    raise StoreUnavailableError(where=self._where, reason=_reason(exc)) from exc
                log.info("postgres_connection_lost_retrying", where=self._where, error=_reason(exc))
        raise StoreError(f"PostgreSQL store {self._where}: unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _connection(self, *, checked: bool) -> Iterator[psycopg.Connection]:
        """A pooled connection; ``checked`` (the retry after a lost one): one that answers an empty query. The event
        that broke a connection (a server restart, terminated backends) broke the others too, including any the
        pool was opening meanwhile -- which ``pool.check()`` did not see, so a retry could take one of them. Each
        broken one is handed back (the pool drops it and opens another); after ``max_size`` of them, a new one."""
        pool = self._pool
        conn: Any = pool.getconn()
        try:
            for _ in range(pool.max_size if checked else 0):
                try:
                    pool.check_connection(conn)
                    break
                except psycopg.Error:
                    pool.putconn(conn)
                    conn = None
                    conn = pool.getconn()
        except BaseException:  # anything else out of the check (an interrupt, a pool timeout): none kept checked out
            if conn is not None:
                pool.putconn(conn)
            raise
        try:
            with conn:  # as pool.connection(): commit, or roll back on an error (a pooled connection stays open)
                yield conn
        finally:
            pool.putconn(conn)

    def write(self, fn: Callable[[psycopg.Cursor], Any]) -> Any:
        """Run ``fn(cursor)`` in one transaction; any exception rolls everything back. A connection lost before
        ``COMMIT`` runs it again once (``fn`` must start from scratch each time)."""
        return self._run(fn, transaction=True)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        return self._run(lambda cur: cur.execute(sql, tuple(params)).fetchall(), transaction=False)

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Optional[Tuple[Any, ...]]:
        return self._run(lambda cur: cur.execute(sql, tuple(params)).fetchone(), transaction=False)

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
            return codec.decode_run(unpack(data))
        except Exception as exc:
            raise CorruptStoreError(
                f"PostgreSQL store {self._where}: checkpoint of run {run_id} cannot be decoded ({exc})",
                run_id=run_id) from exc

    def decode_record(self, run_id: str, seq: int, data: Any) -> Dict[str, Any]:
        try:
            row = codec.decode_record(unpack(data))
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
           "LeaseLostError", "RunLeasedError", "CommitOutcomeUnknownError", "StoreUnavailableError", "describe",
           "transient"]
