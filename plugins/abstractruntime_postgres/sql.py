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

