"""Connections of the SQLite store: per-thread ``sqlite3`` connections (WAL, ``busy_timeout``, ``foreign_keys``,
``synchronous`` from the durability), read and write transactions, and creating or checking the schema on open
(:class:`SqliteConnections`, the base of :class:`~abstractruntime_sqlite.store.SqliteDatabase`)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Optional

from abstractruntime.errors import CorruptStoreError, StoreError

from .migrate import StoreUpgradeError, refuse_unwritable_reference, upgrade_reference_layout
from .checksums import add_checksum_column
from .schema import _SCHEMA, SCHEMA_VERSION

CONNECT_TIMEOUT = 30.0
BUSY_TIMEOUT_MS = 5000
#: "auto" (no durability option given): each commit FULL if the runtime asks for it durable (a barrier, durability
#: "barrier" or "step"), else NORMAL (durability "none"); a FULL commit syncs every WAL frame written before it
DURABILITY = {"normal": "NORMAL", "full": "FULL", "auto": "FULL"}
_FORK_LEFTOVERS: list = []  # connections inherited across fork(): kept referenced so they are never closed


def _error(message: str, exc: sqlite3.Error) -> StoreError:
    """A StoreError for a sqlite3 error; CorruptStoreError when the file itself is unreadable/malformed."""
    if type(exc) is sqlite3.DatabaseError:  # "file is not a database", "database disk image is malformed"
        return CorruptStoreError(f"{message}: {exc}")
    return StoreError(f"{message}: {exc}")


class _Conn:
    """Holds one thread's connection (``sqlite3.Connection`` cannot be weakly referenced; this wrapper can)."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:  # pragma: no cover - closing is best effort
            pass


class SqliteConnections:
    """Connection handling of a :class:`~abstractruntime_sqlite.store.SqliteDatabase`: one connection per thread
    (a forked child opens its own), transactions that wait for other writers, and the schema check on open."""

    _path: Path
    _durability: str

    def _init_connections(self, path: Path, durability: str, *, read_only: bool = False) -> None:
        self._path = path
        self._durability = durability
        self._read_only = read_only
        self._local = threading.local()
        self._conns: "weakref.WeakSet[_Conn]" = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        self._closed = False

    # --- connections ------------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def durability(self) -> str:
        return self._durability

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; a forked child opens its own)."""
        if self._closed:
            raise StoreError(f"SQLite store at {self._path} is closed")
        holder: Optional[_Conn] = getattr(self._local, "holder", None)
        if holder is not None and holder.pid == os.getpid():
            return holder.conn
        if holder is not None:  # inherited across fork(): abandon it, never close it (that is the parent's state)
            _FORK_LEFTOVERS.append(holder)
        try:
            conn = sqlite3.connect(self._connect_target(), timeout=CONNECT_TIMEOUT, isolation_level=None,
                                   check_same_thread=False, uri=self._read_only)
        except sqlite3.Error as exc:
            raise _error(f"Cannot open SQLite store at {self._path}", exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA synchronous = {DURABILITY[self._durability]}")
        except sqlite3.Error as exc:
            conn.close()
            raise _error(f"Cannot open SQLite store at {self._path}", exc) from exc
        holder = _Conn(conn)
        with self._conns_lock:
            if self._closed:
                conn.close()
                raise StoreError(f"SQLite store at {self._path} is closed")
            self._conns.add(holder)
        self._local.holder = holder
        return conn

    def _connect_target(self) -> str:
        """The file, or read-only its ``mode=ro`` URI. When no process has the store open (no WAL index file) or
        the index cannot be shared (another user's store, read-only media), the file is read ``immutable``, so
        that nothing is created beside it (docs/stores.md)."""
        if not self._read_only:
            return str(self._path)
        shm = Path(f"{self._path}-shm")
        shared = shm.exists() and os.access(shm, os.W_OK)
        return f"{self._path.resolve().as_uri()}?mode=ro" + ("" if shared else "&immutable=1")

    def _close_connections(self) -> None:
        """Close every connection this object opened (idempotent)."""
        with self._conns_lock:
            self._closed = True
            holders = list(self._conns)
            self._conns = weakref.WeakSet()
        for holder in holders:
            if holder.pid == os.getpid():
                holder.close()
            else:
                _FORK_LEFTOVERS.append(holder)
        self._local = threading.local()

    # --- transactions -----------------------------------------------------------------------------------------
    def _begin(self, conn: sqlite3.Connection, mode: str) -> None:
        # busy_timeout makes each attempt wait up to 5 s for another writer; keep trying up to CONNECT_TIMEOUT.
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            try:
                conn.execute(f"BEGIN {mode}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise

    def write(self, fn: Callable[[sqlite3.Connection], Any], *, durable: bool = True) -> Any:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction; any exception rolls everything back.
        ``durable`` False lets an "auto" store commit at ``synchronous=NORMAL``."""
        conn = self.connection()
        if self._durability == "auto":
            wanted = "FULL" if durable else "NORMAL"
            if getattr(self._local, "synchronous", "FULL") != wanted:
                conn.execute(f"PRAGMA synchronous = {wanted}")
                self._local.synchronous = wanted
        try:
            self._begin(conn, "IMMEDIATE")
        except sqlite3.Error as exc:
            raise _error(f"SQLite store at {self._path}: cannot start a write transaction", exc) from exc
        try:
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:  # pragma: no cover - the transaction is gone with the connection
                pass
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, StoreError):  # ours already say what failed
                raise _error(f"SQLite store at {self._path}: write failed, nothing written", exc) from exc
            raise

    def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` in one read transaction (a consistent snapshot)."""
        conn = self.connection()
        if conn.in_transaction:  # a read from inside this thread's write transaction sees that transaction
            return fn(conn)
        try:
            self._begin(conn, "DEFERRED")
        except sqlite3.Error as exc:
            raise _error(f"SQLite store at {self._path}: cannot start a read", exc) from exc
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise _error(f"SQLite store at {self._path}: read failed", exc) from exc
        finally:
            try:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except sqlite3.Error:  # pragma: no cover
                pass

    def _check_schema_read_only(self) -> None:
        """Read-only: the file must already have this version's schema (nothing is created or upgraded)."""
        def version(conn: sqlite3.Connection) -> Optional[str]:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                return "reference" if "runs" in tables else None
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return str(row[0]) if row is not None else None

        found = self.read(version)
        if found is None:
            raise StoreError(f"{self._path} is not an AbstractRuntime SQLite store (no runs table). Nothing was "
                             f"created: this command only reads; check the path")
        if found == "reference":
            raise StoreError(f"SQLite store at {self._path} was written by AbstractRuntime 0.4.2 and is not upgraded "
                             f"yet; a read-only command changes nothing: open it once with a command that writes "
                             f"(or a Runtime) to upgrade it in place (docs/upgrading.md)")
        if found != str(SCHEMA_VERSION):
            raise StoreError(f"SQLite store at {self._path} has schema version {found}, and this AbstractRuntime "
                             f"reads version {SCHEMA_VERSION}: open it once with a command that writes to upgrade it "
                             f"(docs/upgrading.md), or upgrade abstractruntime if it is newer")

    def _init_schema(self) -> None:
        if self._read_only:
            return self._check_schema_read_only()

        def check(conn: sqlite3.Connection) -> bool:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
            if row is not None:
                try:
                    version = int(row[0])
                except (TypeError, ValueError):
                    raise CorruptStoreError(
                        f"SQLite store at {self._path}: unreadable schema version {row[0]!r}") from None
                if version > SCHEMA_VERSION:
                    raise StoreUpgradeError(
                        f"SQLite store at {self._path} has schema version {version}, newer than this "
                        f"AbstractRuntime supports ({SCHEMA_VERSION}); upgrade abstractruntime to open it. "
                        f"Nothing was changed."
                    )
                if version == SCHEMA_VERSION:
                    return False
            upgrade_reference_layout(conn, self._path)  # a 0.4.2 file: upgraded in this transaction
            for statement in _SCHEMA:
                conn.execute(statement)
            add_checksum_column(conn)  # schema version 1 -> 2
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
            return True

        try:
            conn = self.connection()
            self.write(check)
        except StoreError as exc:
            refuse_unwritable_reference(self._path, exc)  # a read-only 0.4.2 file: say it needs upgrading
            raise
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise _error(f"SQLite store at {self._path}: cannot switch to WAL mode", exc) from exc


__all__ = ["SqliteConnections", "CONNECT_TIMEOUT", "BUSY_TIMEOUT_MS", "DURABILITY"]
