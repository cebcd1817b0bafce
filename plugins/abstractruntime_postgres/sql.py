"""The SQL of the PostgreSQL store's run rows: the indexed columns of a checkpoint, the statements of one backend
(with its schema name filled in) and small helpers shared by the backend, its leases and its facades. The tables
themselves are created by the migrations in :mod:`abstractruntime_postgres.schema`."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

from abstractruntime.errors import ValidationError
from abstractruntime.models import RunState, RunStatus, StepStatus, WaitReason
from abstractruntime.timeutil import parse_instant
from abstractruntime_storekit import validate_run_id

_COMPLETED = StepStatus.COMPLETED.value
_RUNNING = RunStatus.RUNNING.value
_WAITING = RunStatus.WAITING.value


def _check_run_id(run_id: Any) -> str:
    return validate_run_id(run_id, store="the postgres store")


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
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _RUN_COLUMNS + ("listed_at", "ready_at"))
        ready = "CASE WHEN %s THEN clock_timestamp() ELSE %s::timestamptz END"  # (now?, else this value)
        #: the locked row a commit checks: revision, status, fencing_epoch, lease_owner, lease free?, wait_until,
        #: listed_at, ready_at
        self.lock_run = (f"SELECT revision, status, fencing_epoch, lease_owner, "
                         f"(lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()), wait_until, "
                         f"listed_at, ready_at FROM {s}.runs WHERE run_id = %s")
        insert = f"INSERT INTO {s}.runs ({cols}, run_id, listed_at, ready_at) VALUES ({marks}, %s, {ready}) "
        #: a new run (the common case of a commit without an expected revision): one statement, no lock read
        self.insert_new = insert + (f"ON CONFLICT (run_id) DO NOTHING RETURNING (SELECT last_seq FROM "
                                    f"{s}.ledger_heads WHERE run_id = %s)")
        self.upsert_run = insert + f"ON CONFLICT (run_id) DO UPDATE SET {sets}"
        self.update_run = (f"UPDATE {s}.runs SET {', '.join(c + ' = %s' for c in _RUN_COLUMNS)}, listed_at = %s, "
                           f"ready_at = {ready} WHERE run_id = %s")
        # A step's commit in one statement: the checks (revision; under a claim, epoch, owner and lease) are the
        # WHERE clause, listed_at / ready_at are derived from the row being replaced, and RETURNING reads the old
        # status and wait_until (a subquery sees the statement's snapshot: the row before this update) and whether
        # the run is leased. No row: a check failed (lock_run then says which); nothing was written.
        self.update_checked = (
            f"UPDATE {s}.runs r SET {', '.join(c + ' = %(' + c + ')s' for c in _RUN_COLUMNS)}, "
            f"listed_at = CASE WHEN r.status = %(status)s AND r.listed_at <= %(listed)s "
            f"AND %(listed)s <= r.listed_at + make_interval(secs => %(slack)s) THEN r.listed_at ELSE %(listed)s END, "
            f"ready_at = CASE WHEN %(status)s = '{_RUNNING}' THEN CASE WHEN r.status = '{_RUNNING}' "
            f"AND r.ready_at IS NOT NULL THEN r.ready_at ELSE clock_timestamp() END "
            f"WHEN %(status)s = '{_WAITING}' THEN CASE WHEN %(wait_until)s::timestamptz IS NOT NULL "
            f"THEN %(wait_until)s::timestamptz WHEN r.status = '{_WAITING}' AND r.wait_until IS NULL "
            f"AND r.ready_at IS NOT NULL THEN r.ready_at ELSE clock_timestamp() END END "
            f"WHERE r.run_id = %(run_id)s AND r.revision = %(expected)s AND (%(epoch)s::bigint IS NULL OR "
            f"(r.fencing_epoch = %(epoch)s::bigint AND (%(owner)s::text IS NULL OR r.lease_owner = %(owner)s::text) "
            f"AND r.lease_expires_at > clock_timestamp())) "
            f"RETURNING (SELECT o.status FROM {s}.runs o WHERE o.run_id = r.run_id), "
            f"(SELECT o.wait_until FROM {s}.runs o WHERE o.run_id = r.run_id), "
            f"(r.lease_expires_at IS NULL OR r.lease_expires_at <= clock_timestamp())")
        self.adopt = (f"UPDATE {s}.runs SET fencing_epoch = fencing_epoch + 1, lease_owner = %s, "
                      f"lease_expires_at = clock_timestamp() + make_interval(secs => %s) WHERE run_id = %s "
                      f"RETURNING fencing_epoch")
        # One statement appends a run's records: bumps its ledger_heads row (a row lock held to the commit; gives
        # the records their seq; a plain UPDATE, the INSERT only for a run's first records), inserts them, and -- for commits with preconditions -- reads what they check: the
        # last record before them and the latest status of each idempotency key they carry. The reads see the
        # statement's snapshot, never the rows it inserts.
        head = (f"WITH u AS (UPDATE {s}.ledger_heads SET last_seq = last_seq + %(n)s WHERE run_id = %(run)s "
                f"RETURNING last_seq), "
                f"i AS (INSERT INTO {s}.ledger_heads AS hd (run_id, last_seq) SELECT %(run)s, %(n)s "
                f"WHERE NOT EXISTS (SELECT FROM u) ON CONFLICT (run_id) DO UPDATE SET last_seq = hd.last_seq "
                f"+ EXCLUDED.last_seq RETURNING last_seq), "
                f"h AS (SELECT last_seq FROM u UNION ALL SELECT last_seq FROM i), "
                f"ins AS (INSERT INTO {s}.ledger (run_id, seq, status, idempotency_key, effect_type, data) "
                f"SELECT %(run)s, h.last_seq - %(n)s + r.ord, r.status, r.key, r.etype, r.data FROM h, "
                f"unnest(%(status)s::text[], %(key)s::text[], %(etype)s::text[], %(data)s::bytea[]) "
                f"WITH ORDINALITY AS r(status, key, etype, data, ord)) ")
        self.append = head + "SELECT h.last_seq, NULL, NULL, NULL, NULL FROM h"
        self.append_checked = head + (
            f"SELECT h.last_seq, l.seq, l.data, k.keys, k.statuses FROM h "
            f"LEFT JOIN LATERAL (SELECT seq, data FROM {s}.ledger WHERE run_id = %(run)s ORDER BY seq DESC LIMIT 1) "
            f"l ON true LEFT JOIN LATERAL (SELECT array_agg(x.key) AS keys, array_agg(x.status) AS statuses FROM "
            f"(SELECT DISTINCT ON (idempotency_key) idempotency_key AS key, status FROM {s}.ledger "
            f"WHERE run_id = %(run)s AND idempotency_key = ANY(%(keys)s) "
            f"ORDER BY idempotency_key, (status = '{_COMPLETED}') DESC, seq DESC) x) k ON true")
        self.s = s


def _check_worker(worker_id: Any) -> str:
    if not isinstance(worker_id, str) or not worker_id:
        raise ValidationError(f"worker_id must be a non-empty string, got {worker_id!r}")
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

