"""The PostgreSQL schema: versioned migrations, applied under an advisory lock.

All tables live in one PostgreSQL schema (namespace), ``abstractruntime`` by default (store option ``schema``), so
the runtime can share a database with an application, and several independent runtimes can share one database.

``<schema>.abstractruntime_schema`` holds one row per applied migration (``version``, ``applied_at``); the current
version is the highest. :func:`migrate` applies the missing migrations of :data:`MIGRATIONS` in order, in one
transaction that first takes ``pg_advisory_xact_lock`` on a key derived from the schema name, so workers that start
together never run a migration twice or see a half-created schema. A database whose version is newer than this
code knows is refused with a :class:`~abstractruntime.errors.StoreError` naming both versions, before anything is
changed. A database already at the current version costs one query and takes no lock.

To change the schema, append a migration (a tuple of SQL statements; ``{s}`` is replaced by the quoted schema
name) -- never edit a released one.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, List, Tuple

from abstractruntime.errors import ConfigurationError, StoreError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Migration N (1-based) is ``MIGRATIONS[N - 1]``.
MIGRATIONS: Tuple[Tuple[str, ...], ...] = (
    # --- 1: runs, ledger, leases, artifacts, snapshots ---------------------------------------------------------
    (
        # One row per run: the checkpoint (UTF-8 JSON bytes, exactly as the kernel encoded it) plus the indexed
        # columns, and the lease of the worker driving it (owner, expiry, fencing epoch).
        """CREATE TABLE {s}.runs (
            run_id           text COLLATE "C" PRIMARY KEY,
            revision         bigint NOT NULL,
            status           text NOT NULL,
            workflow_id      text COLLATE "C" NOT NULL,
            parent_run_id    text COLLATE "C",
            session_id       text COLLATE "C",
            actor_id         text COLLATE "C",
            paused           boolean NOT NULL DEFAULT false,
            wait_reason      text,
            wait_key         text COLLATE "C",
            wait_until       timestamptz,
            created_at       text COLLATE "C",
            updated_at       text COLLATE "C",
            data             bytea NOT NULL,
            lease_owner      text,
            lease_expires_at timestamptz,
            fencing_epoch    bigint NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_updated ON {s}.runs (updated_at)",
        "CREATE INDEX runs_status ON {s}.runs (status, updated_at)",
        "CREATE INDEX runs_workflow ON {s}.runs (workflow_id, updated_at)",
        "CREATE INDEX runs_session ON {s}.runs (session_id, updated_at) WHERE session_id IS NOT NULL",
        "CREATE INDEX runs_parent ON {s}.runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL",
        "CREATE INDEX runs_wait_reason ON {s}.runs (wait_reason, updated_at) WHERE wait_reason IS NOT NULL",
        "CREATE INDEX runs_wait_key ON {s}.runs (wait_key, run_id) WHERE wait_key IS NOT NULL",
        "CREATE INDEX runs_wait_until ON {s}.runs (wait_until, run_id) WHERE wait_until IS NOT NULL",
        # per-run ledger sequence: appending locks and bumps one row, never scans the ledger
        """CREATE TABLE {s}.ledger_heads (
            run_id   text COLLATE "C" PRIMARY KEY,
            last_seq bigint NOT NULL
        )""",
        """CREATE TABLE {s}.ledger (
            run_id          text COLLATE "C" NOT NULL,
            seq             bigint NOT NULL,
            status          text NOT NULL,
            idempotency_key text COLLATE "C",
            effect_type     text,
            data            bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE INDEX ledger_idem ON {s}.ledger (run_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
        """CREATE TABLE {s}.artifacts (
            artifact_id  text COLLATE "C" PRIMARY KEY,
            run_id       text COLLATE "C",
            created_at   text COLLATE "C" NOT NULL,
            content_type text NOT NULL,
            size_bytes   bigint NOT NULL,
            blob_id      text NOT NULL,
            meta         bytea NOT NULL,
            content      bytea NOT NULL
        )""",
        "CREATE INDEX artifacts_run ON {s}.artifacts (run_id, created_at) WHERE run_id IS NOT NULL",
        "CREATE INDEX artifacts_created ON {s}.artifacts (created_at, artifact_id)",
        """CREATE TABLE {s}.snapshots (
            snapshot_id text COLLATE "C" PRIMARY KEY,
            run_id      text COLLATE "C" NOT NULL,
            created_at  text COLLATE "C" NOT NULL,
            data        bytea NOT NULL
        )""",
        "CREATE INDEX snapshots_run ON {s}.snapshots (run_id, created_at)",
        "CREATE INDEX snapshots_created ON {s}.snapshots (created_at, snapshot_id)",
    ),
    # --- 2: a step rewrites no index; claims walk only claimable rows, in the order they became claimable -------
    (
        # ready_at: when the run became claimable (became RUNNING, started waiting; a timer: its deadline), kept
        # while it stays so -- also across a release or a lease that expired. listed_at: updated_at as an instant,
        # refreshed only when the status changes or updated_at leaves [listed_at, listed_at + LIST_SLACK_S]; the
        # list queries use it to find the newest updated_at without an index on a column every step changes.
        "ALTER TABLE {s}.runs ADD COLUMN listed_at timestamptz, ADD COLUMN ready_at timestamptz",
        """CREATE FUNCTION pg_temp.abstractruntime_instant(t text) RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN RETURN t::timestamptz; EXCEPTION WHEN others THEN RETURN NULL; END $$""",
        """UPDATE {s}.runs SET listed_at = COALESCE(pg_temp.abstractruntime_instant(updated_at),
            '0001-01-01 00:00:00+00')""",
        """UPDATE {s}.runs SET ready_at = CASE WHEN wait_until IS NOT NULL THEN wait_until
            WHEN status IN ('running', 'waiting') THEN LEAST(listed_at, now()) END""",
        # rows an older process inserts during a rolling upgrade stay claimable and listed
        "ALTER TABLE {s}.runs ALTER COLUMN listed_at SET DEFAULT clock_timestamp(), "
        "ALTER COLUMN ready_at SET DEFAULT clock_timestamp()",
        "DROP INDEX {s}.runs_updated",
        "DROP INDEX {s}.runs_status",
        "DROP INDEX {s}.runs_workflow",
        "DROP INDEX {s}.runs_session",
        "DROP INDEX {s}.runs_wait_reason",
        "CREATE INDEX runs_listed ON {s}.runs (listed_at)",
        "CREATE INDEX runs_status ON {s}.runs (status, listed_at)",
        "CREATE INDEX runs_workflow ON {s}.runs (workflow_id, listed_at)",
        "CREATE INDEX runs_session ON {s}.runs (session_id, listed_at) WHERE session_id IS NOT NULL",
        "CREATE INDEX runs_wait_reason ON {s}.runs (wait_reason, ready_at) WHERE wait_reason IS NOT NULL",
        # the claim queue: unleased, unpaused RUNNING runs and timers, by readiness (claim_runnable)
        """CREATE INDEX runs_claimable ON {s}.runs (ready_at, run_id)
            WHERE lease_owner IS NULL AND NOT paused AND (status = 'running' OR wait_until IS NOT NULL)""",
        "CREATE INDEX runs_leased ON {s}.runs (lease_expires_at) WHERE lease_owner IS NOT NULL",
        # room on each page for the new version of a row: a step's update stays on its page (HOT)
        "ALTER TABLE {s}.runs SET (fillfactor = 80)",
    ),
    # --- 3: checkpoints and ledger records are stored compressed (abstractruntime_postgres.packing) -----------
    (
        # Rows already stored stay as they are (JSON, still read); new values are written compressed, which code of
        # version 2 cannot read: the version bump makes it refuse this database instead of misreading it.
        "COMMENT ON COLUMN {s}.runs.data IS 'the checkpoint: JSON, or 0x01 + raw deflate of the JSON with the "
        "preset dictionary of abstractruntime_postgres.packing (read it with the store, not in SQL)'",
        "COMMENT ON COLUMN {s}.ledger.data IS 'the step record: JSON, or 0x01 + raw deflate of the JSON with the "
        "preset dictionary of abstractruntime_postgres.packing (read it with the store, not in SQL)'",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def check_schema_name(name: Any) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ConfigurationError(
            f"postgres store option 'schema' must be a lower-case SQL identifier (letters, digits, '_'; at most "
            f"63 characters, not starting with a digit), got {name!r}")
    return name


def advisory_key(schema: str) -> int:
    """The ``pg_advisory_xact_lock`` key of a schema's migrations (a signed 64-bit integer)."""
    digest = hashlib.blake2b(f"abstractruntime-migrations:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _current_version(conn: Any, schema: str) -> int:
    """0 when the version table does not exist yet.

    The catalog is read with a query (a fresh snapshot), not ``to_regclass``: that one answers from the backend's
    catalog cache, which may not have seen a table that a concurrent migration committed while we waited for the
    advisory lock.
    """
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'abstractruntime_schema'", (schema,)).fetchone()
    if exists is None:
        return 0
    row = conn.execute(f"SELECT max(version) FROM {schema}.abstractruntime_schema").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _refuse_newer(version: int, schema: str, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"PostgreSQL store {where} (schema {schema!r}) has schema version {version}, newer than version "
            f"{SCHEMA_VERSION} that this abstractruntime knows; upgrade abstractruntime to open it. "
            f"Nothing was changed.")


def migrate(conn: Any, schema: str, *, where: str = "") -> List[int]:
    """Bring ``schema`` to :data:`SCHEMA_VERSION` on an autocommit connection; returns the versions applied."""
    version = _current_version(conn, schema)  # fast path: no lock when nothing is to be done
    _refuse_newer(version, schema, where)
    if version == SCHEMA_VERSION:
        return []
    applied: List[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(schema),))
        version = _current_version(conn, schema)  # another worker may have migrated while we waited
        _refuse_newer(version, schema, where)
        if version == 0:
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {schema}.abstractruntime_schema (
                version    integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )""")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement.format(s=schema))
            conn.execute(f"INSERT INTO {schema}.abstractruntime_schema (version) VALUES (%s)", (target,))
            applied.append(target)
    return applied


def check_current(conn: Any, schema: str, *, where: str = "") -> None:
    """Read-only opening: refuse a database whose ``schema`` is missing or not at :data:`SCHEMA_VERSION`."""
    version = _current_version(conn, schema)
    _refuse_newer(version, schema, where)
    if version != SCHEMA_VERSION:
        raise StoreError(f"PostgreSQL store {where}: schema {schema!r} is at version {version}, not "
                         f"{SCHEMA_VERSION} ({'no store there' if version == 0 else 'not upgraded'}). Nothing was "
                         f"created: this command only reads; open it once with a command that writes")


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "check_current", "advisory_key", "check_schema_name"]
