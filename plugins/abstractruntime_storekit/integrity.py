"""Corrupt stored data: checkpoint checksums, skipping a corrupt run in queries, and the records a store check lists.

* :func:`checksum` -- the checksum the builtin stores keep beside a checkpoint (CRC-32 of its stored bytes) and
  verify on every load: a flipped byte raises :class:`~abstractruntime.errors.CorruptStoreError` instead of being
  read back as a silently different value.
* :func:`skip_corrupt` -- what a query does with a run it cannot decode: it leaves the run out, logs a structlog
  warning ``corrupt_run_skipped`` naming the store and the run (once per store, run and error in a process; later
  skips of the same run are ``debug``), and hands a :class:`CorruptRecord` to every :func:`collect_skipped` block
  active in the thread (the scheduler counts them in its stats, the CLI prints them). Loading the run by id still
  raises ``CorruptStoreError``. :func:`load_skipping` is the loop a store's query primitives use.
* :class:`CorruptRecord` -- one problem found by a store's optional ``iter_corrupt()`` (``abstractruntime store
  check``): a checkpoint that cannot be decoded or fails its checksum, a ledger record that cannot be decoded, or
  damage to the store file itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import zlib
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

from attrs import frozen

from abstractruntime.errors import CorruptStoreError
from abstractruntime.logs import get_logger

log = get_logger("abstractruntime.storekit")

T = TypeVar("T")

#: kinds of :class:`CorruptRecord`
CHECKPOINT, LEDGER, STORE = "checkpoint", "ledger", "store"
_WARNED_MAX = 4096


def checksum(data: bytes) -> int:
    """CRC-32 of a stored checkpoint's bytes (an unsigned 32-bit integer)."""
    return zlib.crc32(data)


def checksum_mismatch(where: str, run_id: str, stored: int, actual: int) -> CorruptStoreError:
    """The error of a checkpoint whose bytes do not match the checksum stored beside them."""
    return CorruptStoreError(
        f"{where}: checkpoint of run {run_id} fails its checksum (stored {stored:08x}, computed {actual:08x}): the "
        f"stored bytes changed after they were written (disk or memory fault, or an edit behind the runtime's back). "
        f"Restore the run from a backup or a history bundle; `abstractruntime store check` lists every damaged "
        f"record, and the other runs are unaffected.",
        run_id=run_id,
    )


@frozen
class CorruptRecord:
    """A damaged record: ``kind`` is ``"checkpoint"``, ``"ledger"`` (``seq`` names the record) or ``"store"``
    (the store file itself, e.g. a corrupt LMDB page: the check could not go on past it)."""

    store: str
    kind: str
    run_id: Optional[str]
    error: str
    seq: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "run_id": self.run_id, "seq": self.seq, "error": self.error, "store": self.store}


_COLLECTORS: "contextvars.ContextVar[Tuple[List[CorruptRecord], ...]]" = contextvars.ContextVar(
    "abstractruntime_corrupt_collectors", default=())
_WARNED: "OrderedDict[Tuple[str, str, str], None]" = OrderedDict()
_WARNED_LOCK = threading.Lock()


@contextlib.contextmanager
def collect_skipped() -> Iterator[List[CorruptRecord]]:
    """Collect the corrupt runs that queries made in this block (in this thread) skipped."""
    bucket: List[CorruptRecord] = []
    token = _COLLECTORS.set(_COLLECTORS.get() + (bucket,))
    try:
        yield bucket
    finally:
        _COLLECTORS.reset(token)


def skip_corrupt(where: str, run_id: Optional[str], exc: CorruptStoreError, *, kind: str = CHECKPOINT,
                 seq: Optional[int] = None) -> CorruptRecord:
    """Report a record a query leaves out because it is corrupt (see the module doc)."""
    record = CorruptRecord(store=where, kind=kind, run_id=run_id, error=exc.message, seq=seq)
    for bucket in _COLLECTORS.get():
        bucket.append(record)
    key = (where, run_id or "", exc.message)
    with _WARNED_LOCK:
        first = key not in _WARNED
        _WARNED[key] = None
        _WARNED.move_to_end(key)
        while len(_WARNED) > _WARNED_MAX:
            _WARNED.popitem(last=False)
    (log.warning if first else log.debug)(
        "corrupt_run_skipped", store=where, run_id=run_id, error=exc.message,
        hint="the run is left out of query results; `abstractruntime store check` lists every damaged record")
    return record


def load_skipping(where: str, run_ids: Iterable[str], load: Callable[[str], Optional[T]]) -> List[T]:
    """``load(run_id)`` for each id, leaving out (and reporting) the runs that raise ``CorruptStoreError`` and
    the ones that are gone (None)."""
    out: List[T] = []
    for run_id in run_ids:
        try:
            item = load(run_id)
        except CorruptStoreError as exc:
            skip_corrupt(where, run_id, exc)
            continue
        if item is not None:
            out.append(item)
    return out


def decode_skipping(where: str, rows: Iterable[Tuple[Any, ...]], decode: Callable[..., T]) -> List[T]:
    """``decode(*row)`` for each row whose first item is the run id, leaving out (and reporting) the rows that
    raise ``CorruptStoreError`` (the SQL stores' query results)."""
    out: List[T] = []
    for row in rows:
        try:
            out.append(decode(*row))
        except CorruptStoreError as exc:
            skip_corrupt(where, row[0], exc)
    return out


def check_rows(where: str, runs: Iterable[Tuple[Any, ...]], ledger: Iterable[Tuple[str, int, Any]],
               decode_run: Callable[..., Any], decode_record: Callable[[str, int, Any], Any],
               stats: Dict[str, int]) -> Iterator[CorruptRecord]:
    """The damaged records among stored rows, read one at a time: ``runs`` yields ``(run_id, ...)`` rows that
    ``decode_run(*row)`` decodes (and checks), ``ledger`` yields ``(run_id, seq, data)`` ordered by run then seq
    (a skipped seq is reported too). ``stats`` receives ``runs`` and ``ledger_records``."""
    stats["runs"] = stats["ledger_records"] = 0
    for row in runs:
        stats["runs"] += 1
        try:
            decode_run(*row)
        except Exception as exc:
            message = exc.message if isinstance(exc, CorruptStoreError) else \
                f"{where}: checkpoint of run {row[0]} cannot be decoded ({exc})"
            yield CorruptRecord(where, CHECKPOINT, row[0], message)
    current, prev = None, 0
    for run_id, seq, data in ledger:
        stats["ledger_records"] += 1
        if run_id != current:
            current, prev = run_id, 0
        expected, prev = prev + 1, seq
        if seq != expected:
            yield CorruptRecord(where, LEDGER, run_id, seq=expected, error=(
                f"{where}: ledger of run {run_id} is missing record seq {expected} (found seq {seq})"))
        try:
            problem = None if isinstance(decode_record(run_id, seq, data), dict) else "not a JSON object"
        except Exception as exc:
            problem = exc.message if isinstance(exc, CorruptStoreError) else str(exc)
        if problem is not None:
            yield CorruptRecord(where, LEDGER, run_id, problem if problem.startswith(where) else
                                f"{where}: ledger record {seq} of run {run_id} cannot be decoded ({problem})", seq=seq)


def check_by_loading(runtime_or_stores: Any, *, stats: Optional[Dict[str, int]] = None,
                     limit: int = 10 ** 9) -> Iterator[CorruptRecord]:
    """The store check of a store without ``iter_corrupt()``: list the run ids (``list_run_index``), then load
    each checkpoint and its ledger. Slower (every run is decoded) and blind to runs the listing itself skips."""
    run_store, ledger_store = runtime_or_stores.run_store, runtime_or_stores.ledger_store
    where = type(getattr(runtime_or_stores, "backend", run_store)).__name__
    stats = stats if stats is not None else {}
    stats.setdefault("runs", 0)
    stats.setdefault("ledger_records", 0)
    with collect_skipped() as skipped:
        try:
            rows = run_store.list_run_index(limit=limit)
        except CorruptStoreError as exc:
            yield CorruptRecord(store=where, kind=CHECKPOINT, run_id=exc.run_id, error=exc.message)
            return
    yield from skipped
    for row in rows:
        run_id = row["run_id"]
        stats["runs"] += 1
        try:
            run_store.load(run_id)
        except CorruptStoreError as exc:
            yield CorruptRecord(store=where, kind=CHECKPOINT, run_id=run_id, error=exc.message)
        try:
            stats["ledger_records"] += len(ledger_store.list(run_id))
        except CorruptStoreError as exc:
            records = getattr(exc, "records", None)
            stats["ledger_records"] += len(records or ())
            yield CorruptRecord(store=where, kind=LEDGER, run_id=run_id, error=exc.message)


__all__ = ["checksum", "checksum_mismatch", "CorruptRecord", "collect_skipped", "skip_corrupt", "load_skipping",
           "decode_skipping", "check_rows", "check_by_loading", "CHECKPOINT", "LEDGER", "STORE"]
