"""The ledger side of the JSON-files store: this process's cache of one ledger file (:class:`_Ledger`: committed
line offsets, which lines are valid, the idempotency index) and the reading and parsing of ledger files
(:class:`LedgerReads`, a part of :class:`~abstractruntime_jsonfiles.backend.JsonFilesBackend`).

Which lines are committed is decided by the run file's count (or a ``.pending_<run_id>`` marker); see the
"Reading" and "Caches" sections of :mod:`abstractruntime_jsonfiles.backend`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import orjson

from abstractruntime.errors import CorruptStoreError, ValidationError
from abstractruntime.logs import get_logger
from abstractruntime.models import StepRecord, StepStatus

from .fileio import _COUNT_HEAD, _HEAD_BYTES, _count_of, _pread_all, _sig, validate_run_id

LEDGER_CACHE_SIZE = 1024
_COMPLETED = StepStatus.COMPLETED.value

T = TypeVar("T")
log = get_logger("abstractruntime.jsonfiles")


class _Ledger:
    """This process's view of one ledger file: committed line offsets, valid lines, idempotency index."""

    __slots__ = ("sig", "claimed", "starts", "end", "torn", "parsed", "valid", "corrupt", "idem")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sig: Optional[Tuple[int, ...]] = None  # stat signature of the file when last read or written
        self.claimed: Optional[int] = None  # committed line count it was synced to (None: every line)
        self.starts: List[int] = []  # byte offset of each committed physical line
        self.end = 0  # byte offset just after the last committed line
        self.torn = False  # the last committed line has no newline (the file ended there)
        self.parsed = 0  # lines whose validity is known
        self.valid: List[int] = []  # seq - 1 -> physical line index
        self.corrupt: List[int] = []  # 1-based physical line numbers
        self.idem: Dict[str, Tuple[bool, int]] = {}  # key -> (completed, seq)

    def line_end(self, i: int) -> int:
        return self.starts[i + 1] if i + 1 < len(self.starts) else self.end

    def sync(self, fd: Optional[int], target: Optional[int]) -> None:
        """Bring the committed lines up to date with the file (``target`` committed lines; None: all lines)."""
        if fd is None:
            self.reset()
            self.claimed = target
            return
        st = os.fstat(fd)
        sig = _sig(st)
        old = self.sig
        if sig == old and target == self.claimed:
            return
        full = (
            old is None
            or old[:2] != sig[:2]  # another file (device, inode)
            or st.st_size < self.end
            or self.torn
            or (target is not None and target < len(self.starts))
            or (sig != old and target is not None and target == self.claimed)  # changed, but nothing committed
            or (sig != old and target is None and st.st_size == self.end)
        )
        if not full and self.end > 0 and os.pread(fd, 1, self.end - 1) != b"\n":
            full = True
        if full:
            self.reset()
        if (target is None or len(self.starts) < target) and st.st_size > self.end:
            data = _pread_all(fd, st.st_size - self.end, self.end)
            base, pos, n, starts = self.end, 0, len(data), self.starts
            while pos < n and (target is None or len(starts) < target):
                starts.append(base + pos)
                nl = data.find(b"\n", pos)
                if nl < 0:
                    pos = n
                    self.torn = True
                    break
                pos = nl + 1
            self.end = base + pos
        self.sig = sig
        self.claimed = target

    def parse(self, fd: int, run_id: str, path: str) -> None:
        n = len(self.starts)
        if self.parsed >= n:
            return
        lo = self.starts[self.parsed]
        data = _pread_all(fd, self.end - lo, lo)
        for i in range(self.parsed, n):
            line = data[self.starts[i] - lo: self.line_end(i) - lo]
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                if type(row) is not dict:
                    raise ValidationError(f"a JSON {type(row).__name__}, not an object")
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                self.corrupt.append(i + 1)
                log.warning("ledger_line_corrupt", run_id=run_id, file=path, line=i + 1, error=str(exc)[:200])
                continue
            self.valid.append(i)
            self._note(row.get("idempotency_key"), row.get("status") == _COMPLETED)
        self.parsed = n

    def _note(self, key: Any, completed: bool) -> None:
        if isinstance(key, str) and key:
            prev = self.idem.get(key)
            if prev is None or not prev[0]:
                self.idem[key] = (completed, len(self.valid))

    def appended(self, items: Sequence[Tuple[StepRecord, bytes]], sig: Tuple[int, ...]) -> None:
        if self.torn:  # the append started with a newline that ends the torn line
            self.end += 1
            self.torn = False
        known = self.parsed == len(self.starts)
        for record, text in items:
            self.starts.append(self.end)
            self.end += len(text) + 1
            if known:
                self.valid.append(len(self.starts) - 1)
                self._note(record.idempotency_key, record.status is StepStatus.COMPLETED)
        if known:
            self.parsed = len(self.starts)
        self.sig = sig


class LedgerReads:
    """Reading the committed part of a run's ledger file (a part of ``JsonFilesBackend``, which provides the
    paths, the run-file decoding and the locks)."""

    _dir: str
    _lock: Any
    _ledgers: "OrderedDict[str, _Ledger]"

    @contextmanager
    def _open_ledger(self, run_id: str) -> Iterator[Optional[int]]:
        try:
            fd = os.open(self.ledger_file(run_id), os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

    def _read_pending(self, run_id: str) -> Optional[int]:
        path = self._pending_file(run_id)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            count = int(text.strip())
        except ValueError:
            count = -1
        if count < 0:
            log.warning("ledger_pending_marker_unreadable", run_id=run_id, file=path)
            return None
        return count

    def _reader_target(self, run_id: str) -> Optional[int]:
        """The committed line count of a run's ledger for a reader (None: every line counts)."""
        path = self.run_file(run_id)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return self._read_pending(run_id)
        with f:
            head = f.read(_HEAD_BYTES)
            m = _COUNT_HEAD.match(head)
            if m:
                return int(m.group(1))
            raw = head + f.read()
        try:
            count = _count_of(self._decode_doc(run_id, raw))
        except CorruptStoreError as exc:
            log.warning("run_file_corrupt", run_id=run_id, file=path, error=exc.message)
            count = None
        return count if count is not None else self._read_pending(run_id)

    # --- ledger reads -------------------------------------------------------------------------------------------
    def _ledger(self, run_id: str) -> _Ledger:
        led = self._ledgers.get(run_id)
        if led is None:
            led = self._ledgers[run_id] = _Ledger()
            if len(self._ledgers) > LEDGER_CACHE_SIZE:
                self._ledgers.popitem(last=False)
        else:
            self._ledgers.move_to_end(run_id)
        return led

    def read_ledger(self, run_id: str, fn: Callable[[_Ledger, Optional[int]], T]) -> T:
        """Call ``fn(ledger_cache, fd)`` with the run's committed lines parsed (fd None: no ledger file)."""
        validate_run_id(run_id)
        with self._lock:
            self._ensure_open()
            target = self._reader_target(run_id)  # first the count, then the lines it counts
            with self._open_ledger(run_id) as fd:
                if fd is None:
                    self._ledgers.pop(run_id, None)
                    return fn(_Ledger(), None)
                led = self._ledger(run_id)
                led.sync(fd, target)
                led.parse(fd, run_id, self.ledger_file(run_id))
                return fn(led, fd)

    def rows(self, run_id: str, led: _Ledger, fd: Optional[int], lines: Sequence[int]) -> List[Dict[str, Any]]:
        if fd is None or not lines:
            return []
        lo, hi = led.starts[lines[0]], led.line_end(lines[-1])
        data = _pread_all(fd, hi - lo, lo)
        try:
            return [orjson.loads(data[led.starts[i] - lo: led.line_end(i) - lo]) for i in lines]
        except ValueError as exc:  # the committed part was rewritten under us (by hand)
            self._ledgers.pop(run_id, None)
            raise CorruptStoreError(
                f"jsonfiles store: ledger file {self.ledger_file(run_id)} changed while it was read ({exc}); retry",
                run_id=run_id,
            ) from exc
