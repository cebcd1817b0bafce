"""The command inbox: an append-only, idempotent log of commands for gateways (reference §2.2, §10, §10.1).

A gateway accepts commands from clients (``pause``, ``resume``, ``cancel``, ...) into a :class:`CommandStore` and a
worker consumes them in ``seq`` order, remembering how far it got in a :class:`CommandCursorStore`. The runtime
itself never reads commands.

Semantics shared by every store: ``append`` is idempotent by ``command_id`` (a blank id gets ``uuid4().hex``; a
repeated id returns ``accepted=False, duplicate=True`` and the original ``seq``); ``seq`` is assigned by the store,
from 1, monotonic; a blank ``ts`` becomes now (UTC ISO); ``list_after(after=, limit=)`` returns the records with
``seq > after`` (at most ``limit``; ``limit <= 0`` means 1000) and the last ``seq`` returned (``after`` when none).
The JSONL and SQLite stores reject a blank ``run_id`` / ``type`` and a payload that is not a JSON object with
``ValueError``; the in-memory store does not validate (reference behaviour).
"""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from bisect import bisect_right
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple, Union, runtime_checkable

from attrs import frozen

from abstractruntime import StashKey, codec
from abstractruntime.errors import JsonInvariantError, ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import utc_now_iso
from abstractruntime_storekit.files import fsync_dir, write_atomic

try:  # POSIX: serialise appends of several processes sharing one JSONL file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = get_logger("abstractruntime.commands")

DEFAULT_LIST_LIMIT = 1000
DEFAULT_CONSUMER_ID = "gateway_runner"


@frozen
class CommandRecord:
    command_id: str
    run_id: str
    type: str
    payload: Dict[str, Any]
    ts: str
    client_id: Optional[str] = None
    seq: int = 0

    def to_json(self) -> Dict[str, Any]:
        return {"command_id": self.command_id, "run_id": self.run_id, "type": self.type,
                "payload": self.payload, "ts": self.ts, "client_id": self.client_id, "seq": self.seq}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "CommandRecord":
        payload = data.get("payload")
        client = data.get("client_id")
        return cls(command_id=str(data.get("command_id") or ""), run_id=str(data.get("run_id") or ""),
                   type=str(data.get("type") or ""), payload=dict(payload) if isinstance(payload, dict) else {},
                   ts=str(data.get("ts") or ""), client_id=str(client) if client else None,
                   seq=int(data.get("seq") or 0))


@frozen
class CommandAppendResult:
    accepted: bool
    duplicate: bool
    seq: int


@runtime_checkable
class CommandStore(Protocol):
    def append(self, record: CommandRecord) -> CommandAppendResult: ...

    def list_after(self, *, after: int, limit: int = 1000) -> Tuple[List[CommandRecord], int]: ...

    def get_last_seq(self) -> int: ...


@runtime_checkable
class CommandCursorStore(Protocol):
    def load(self) -> int: ...

    def save(self, cursor: int) -> None: ...


# --- normalisation and validation ---------------------------------------------------------------------------------
def _normalise(record: CommandRecord, *, validate: bool) -> CommandRecord:
    cid = str(record.command_id or "").strip() or uuid.uuid4().hex
    run_id = str(record.run_id or "").strip() if validate else str(record.run_id or "")
    typ = str(record.type or "").strip() if validate else str(record.type or "")
    payload = record.payload if record.payload is not None else {}
    client = record.client_id.strip() if isinstance(record.client_id, str) and record.client_id.strip() else None
    if validate:
        if not run_id:
            raise ValidationError("CommandRecord.run_id must be non-empty")
        if not typ:
            raise ValidationError("CommandRecord.type must be non-empty")
        if not isinstance(payload, dict):
            raise ValidationError(
                f"CommandRecord.payload must be a JSON-serializable dict, got {type(payload).__name__}")
        try:
            codec.check_json(payload, "payload")
        except JsonInvariantError as exc:
            raise ValidationError(f"CommandRecord.payload must be a JSON-serializable dict: {exc.path}: {exc.problem} "
                                  f"(use plain JSON values: str, finite numbers, bool, None, lists, dicts)") from None
    payload = _clone(dict(payload) if isinstance(payload, dict) else payload)
    return CommandRecord(command_id=cid, run_id=run_id, type=typ, payload=payload,
                         ts=str(record.ts or "").strip() or utc_now_iso(), client_id=client, seq=0)


def _clone(payload: Any) -> Any:
    try:
        return copy.deepcopy(payload)
    except Exception:  # the in-memory store accepts anything; copy what can be copied
        return dict(payload) if isinstance(payload, dict) else payload


def _list_args(after: Any, limit: Any) -> Tuple[int, int]:
    after_i = max(0, int(after or 0))
    limit_i = int(limit or 0)
    return after_i, (limit_i if limit_i > 0 else DEFAULT_LIST_LIMIT)


def _with_seq(record: CommandRecord, seq: int) -> CommandRecord:
    return CommandRecord(record.command_id, record.run_id, record.type, record.payload, record.ts,
                         record.client_id, seq)


def _copy(record: CommandRecord) -> CommandRecord:
    return CommandRecord(record.command_id, record.run_id, record.type, _clone(record.payload),
                         record.ts, record.client_id, record.seq)


# --- in memory ----------------------------------------------------------------------------------------------------
class InMemoryCommandStore:
    """Commands in a list (no validation, as in the reference; payloads are copied in and out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: List[CommandRecord] = []
        self._by_id: Dict[str, int] = {}

    def append(self, record: CommandRecord) -> CommandAppendResult:
        rec = _normalise(record, validate=False)
        with self._lock:
            seq = self._by_id.get(rec.command_id)
            if seq is not None:
                return CommandAppendResult(accepted=False, duplicate=True, seq=seq)
            seq = len(self._records) + 1
            self._records.append(_with_seq(rec, seq))
            self._by_id[rec.command_id] = seq
            return CommandAppendResult(accepted=True, duplicate=False, seq=seq)

    def list_after(self, *, after: int, limit: int = 1000) -> Tuple[List[CommandRecord], int]:
        after_i, limit_i = _list_args(after, limit)
        with self._lock:
            out = [_copy(r) for r in self._records[after_i: after_i + limit_i]]
        return out, (out[-1].seq if out else after_i)

    def get_last_seq(self) -> int:
        with self._lock:
            return len(self._records)


class InMemoryCommandCursorStore:
    def __init__(self, initial: int = 0) -> None:
        self._cursor = int(initial or 0)
        self._lock = threading.Lock()

    def load(self) -> int:
        with self._lock:
            return self._cursor

    def save(self, cursor: int) -> None:
        with self._lock:
            self._cursor = int(cursor or 0)


# --- files --------------------------------------------------------------------------------------------------------
class JsonlCommandStore:
    """Commands as JSON lines in ``base_dir/filename`` (one record per line, with its ``seq``).

    Appends are fsynced (``fsync=False`` to skip) and serialised across threads and, on POSIX, across processes
    (``flock``). The id index is rebuilt from the file on open and then kept up to date incrementally (lines
    appended by another process are picked up before every operation). Unreadable lines are skipped; a truncated
    last line (a writer that crashed mid-line) is ignored and the next append starts on a fresh line.
    """

    def __init__(self, base_dir: Union[str, os.PathLike], *, filename: str = "commands.jsonl",
                 fsync: bool = True) -> None:
        name = str(filename or "commands.jsonl")
        if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ValidationError(f"filename must be a plain file name, got {filename!r}")
        self._dir = Path(base_dir).expanduser()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / name
        self._fsync = bool(fsync)
        self._lock = threading.RLock()
        self._seq = 0
        self._by_id: Dict[str, int] = {}
        self._seqs: List[int] = []  # increasing seqs of the readable lines ...
        self._offsets: List[int] = []  # ... and where each line starts
        self._end = 0  # the file is indexed up to here (always the end of a complete line)
        self._bad_lines = 0
        with self._lock:
            self._catch_up()

    def __repr__(self) -> str:
        return f"JsonlCommandStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    def _reset(self) -> None:
        self._seq, self._by_id, self._seqs, self._offsets, self._end = 0, {}, [], [], 0

    def _catch_up(self) -> None:
        try:
            with open(self._path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size < self._end:  # replaced or truncated behind our back
                    log.warning("command_file_shrank", path=str(self._path))
                    self._reset()
                fh.seek(self._end)
                data = fh.read()
        except FileNotFoundError:
            if self._end:
                self._reset()
            return
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # nothing more, or a line still being written / left truncated by a crash
            line, offset = data[pos:nl], self._end + pos
            pos = nl + 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                seq = int(obj.get("seq") or 0)
                cid = obj.get("command_id")
            except Exception:
                seq, cid = 0, None
            if seq <= 0 or not isinstance(cid, str) or not cid or (self._seqs and seq <= self._seqs[-1]):
                self._bad_lines += 1
                log.warning("command_line_skipped", path=str(self._path), offset=offset)
                continue
            self._by_id.setdefault(cid, seq)
            self._seqs.append(seq)
            self._offsets.append(offset)
            self._seq = max(self._seq, seq)
        self._end += pos

    @contextmanager
    def _exclusive(self) -> Iterator[int]:
        fd = os.open(str(self._path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the flock

    def append(self, record: CommandRecord) -> CommandAppendResult:
        rec = _normalise(record, validate=True)
        with self._lock, self._exclusive() as fd:
            self._catch_up()
            seq = self._by_id.get(rec.command_id)
            if seq is not None:
                return CommandAppendResult(accepted=False, duplicate=True, seq=seq)
            seq = self._seq + 1
            line = codec.to_json_bytes(_with_seq(rec, seq).to_json()) + b"\n"
            size = os.fstat(fd).st_size
            prefix = b"\n" if size > self._end else b""  # close a truncated line left by a crashed writer
            data = prefix + line
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            if self._fsync:
                os.fsync(fd)
                if size == 0:
                    fsync_dir(self._dir)
            offset = size + len(prefix)
            if prefix:
                self._bad_lines += 1
            self._by_id[rec.command_id] = seq
            self._seqs.append(seq)
            self._offsets.append(offset)
            self._seq = seq
            self._end = offset + len(line)
            return CommandAppendResult(accepted=True, duplicate=False, seq=seq)

    def list_after(self, *, after: int, limit: int = 1000) -> Tuple[List[CommandRecord], int]:
        after_i, limit_i = _list_args(after, limit)
        with self._lock:
            self._catch_up()
            start = bisect_right(self._seqs, after_i)
            offsets = self._offsets[start: start + limit_i]
        out: List[CommandRecord] = []
        if offsets:
            with open(self._path, "rb") as fh:
                for offset in offsets:
                    fh.seek(offset)
                    out.append(CommandRecord.from_json(json.loads(fh.readline())))
        return out, (out[-1].seq if out else after_i)

    def get_last_seq(self) -> int:
        with self._lock:
            self._catch_up()
            return self._seq


class JsonFileCommandCursorStore:
    """A consumer cursor in a JSON file ``{"cursor": n, "updated_at": iso}`` (atomic, fsynced writes)."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self._path = Path(path).expanduser()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> int:
        with self._lock:
            try:
                data = json.loads(self._path.read_bytes() or b"{}")
                return int(data.get("cursor") or 0)
            except FileNotFoundError:
                return 0
            except Exception as exc:
                log.warning("command_cursor_unreadable", path=str(self._path), error=f"{type(exc).__name__}: {exc}")
                return 0

    def save(self, cursor: int) -> None:
        data = json.dumps({"cursor": int(cursor or 0), "updated_at": utc_now_iso()}, indent=2).encode("utf-8")
        with self._lock:
            write_atomic(self._path, data)


# --- SQLite -------------------------------------------------------------------------------------------------------
COMMANDS_SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        command_id TEXT NOT NULL UNIQUE,
        run_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        ts TEXT NOT NULL,
        client_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS commands_run ON commands (run_id, seq)",
    """CREATE TABLE IF NOT EXISTS command_cursors (
        consumer_id TEXT PRIMARY KEY,
        cursor INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
)
#: in the ``stash`` of a ``SqliteDatabase`` once its command tables exist
_TABLES_READY = StashKey[bool]()


def ensure_command_tables(db: Any) -> None:
    """Create the ``commands`` / ``command_cursors`` tables in a ``SqliteDatabase`` if missing (once per object)."""

    def create(conn: Any) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('commands_schema_version', ?)",
                     (str(COMMANDS_SCHEMA_VERSION),))

    def create_tables() -> bool:
        db.write(create)
        return True

    db.stash.setdefault_factory(_TABLES_READY, create_tables)


class SqliteCommandStore:
    """Commands in the ``commands`` table of a :class:`~abstractruntime_sqlite.store.SqliteDatabase`.

    ``seq`` is SQLite's AUTOINCREMENT rowid: allocated inside the write transaction, so several threads and
    processes sharing the file get distinct, increasing sequence numbers; ``command_id`` is UNIQUE.
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        ensure_command_tables(db)

    def append(self, record: CommandRecord) -> CommandAppendResult:
        rec = _normalise(record, validate=True)
        payload = codec.to_json_text(rec.payload)

        def tx(conn: Any) -> CommandAppendResult:
            row = conn.execute("SELECT seq FROM commands WHERE command_id = ?", (rec.command_id,)).fetchone()
            if row is not None:
                return CommandAppendResult(accepted=False, duplicate=True, seq=int(row[0]))
            cur = conn.execute(
                "INSERT INTO commands (command_id, run_id, type, payload, ts, client_id) VALUES (?, ?, ?, ?, ?, ?)",
                (rec.command_id, rec.run_id, rec.type, payload, rec.ts, rec.client_id))
            return CommandAppendResult(accepted=True, duplicate=False, seq=int(cur.lastrowid))

        return self.db.write(tx)

    def list_after(self, *, after: int, limit: int = 1000) -> Tuple[List[CommandRecord], int]:
        after_i, limit_i = _list_args(after, limit)
        rows = self.db.read(lambda c: c.execute(
            "SELECT seq, command_id, run_id, type, payload, ts, client_id FROM commands WHERE seq > ? "
            "ORDER BY seq LIMIT ?", (after_i, limit_i)).fetchall())
        out = [CommandRecord(command_id=cid, run_id=rid, type=typ, payload=codec.from_json_text(payload), ts=ts,
                             client_id=client, seq=int(seq))
               for seq, cid, rid, typ, payload, ts, client in rows]
        return out, (out[-1].seq if out else after_i)

    def get_last_seq(self) -> int:
        row = self.db.read(lambda c: c.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'commands'").fetchone())
        return int(row[0]) if row is not None else 0


class SqliteCommandCursorStore:
    """One consumer's cursor in the ``command_cursors`` table (keyed by ``consumer_id``, stripped; a blank one is
    the default ``gateway_runner``, as in the reference)."""

    def __init__(self, db: Any, *, consumer_id: str = DEFAULT_CONSUMER_ID) -> None:
        if consumer_id is not None and not isinstance(consumer_id, str):
            raise ValidationError(f"consumer_id must be a string, got {type(consumer_id).__name__}")
        self.db = db
        self.consumer_id = (consumer_id or "").strip() or DEFAULT_CONSUMER_ID
        ensure_command_tables(db)

    def load(self) -> int:
        row = self.db.read(lambda c: c.execute(
            "SELECT cursor FROM command_cursors WHERE consumer_id = ?", (self.consumer_id,)).fetchone())
        return int(row[0]) if row is not None else 0

    def save(self, cursor: int) -> None:
        value = int(cursor or 0)
        self.db.write(lambda c: c.execute(
            "INSERT INTO command_cursors (consumer_id, cursor, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (consumer_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (self.consumer_id, value, utc_now_iso())))


__all__ = [
    "CommandRecord",
    "CommandAppendResult",
    "CommandStore",
    "CommandCursorStore",
    "InMemoryCommandStore",
    "JsonlCommandStore",
    "SqliteCommandStore",
    "InMemoryCommandCursorStore",
    "JsonFileCommandCursorStore",
    "SqliteCommandCursorStore",
    "ensure_command_tables",
]
