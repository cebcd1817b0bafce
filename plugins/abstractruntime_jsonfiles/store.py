"""The reference API of the JSON-files store: ``JsonFileRunStore(base_dir)`` and ``JsonlLedgerStore(base_dir)``,
facades over a :class:`~abstractruntime_jsonfiles.backend.JsonFilesBackend`.

The directory layout, the one-commit-per-step protocol (the rename of the run file is the commit point), reading,
caches, queries and processes are described in :mod:`abstractruntime_jsonfiles.backend`.

**Reference construction.** The two stores built separately on the same directory share one backend (a
process-wide weak registry keyed by the resolved path, :func:`shared_backend`: a directory is opened once per
process), so ``Runtime(run_store=JsonFileRunStore(d), ledger_store=JsonlLedgerStore(d))`` gets atomic commits.
This module also re-exports the backend and the helpers other modules import from here.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import InvalidTypeError, ValidationError
from abstractruntime.models import RunState, StepRecord
from abstractruntime.storage.base import LedgerStore, RunStore, StepCommit
from abstractruntime_storekit import IndexedRunQueries
from abstractruntime_storekit.recency import SortedIndexReader

from .backend import JsonFilesBackend
from .fileio import COMMITTED_KEY, FAULT_POINT, MAX_RUN_ID_LENGTH, validate_run_id
from .ledger import _Ledger


# --- reference-style construction -------------------------------------------------------------------------------
_SHARED: "weakref.WeakValueDictionary[str, JsonFilesBackend]" = weakref.WeakValueDictionary()
_SHARED_GUARD = threading.Lock()


def shared_backend(base_dir: os.PathLike | str) -> JsonFilesBackend:
    """The process-wide backend of a directory (created on first use), shared by the reference-style stores."""
    path = Path(base_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _SHARED_GUARD:
        backend = _SHARED.get(key)
        if backend is None or backend.closed:
            backend = JsonFilesBackend(key)
            _SHARED[key] = backend
        return backend


class JsonFileRunStore(IndexedRunQueries, RunStore):
    """Reference ``JsonFileRunStore(base_dir)``: ``run_<run_id>.json`` files; queryable (see
    :mod:`abstractruntime_jsonfiles.backend`)."""

    def __init__(self, base_dir: Optional[os.PathLike | str] = None, *,
                 backend: Optional[JsonFilesBackend] = None) -> None:
        if backend is None:
            if base_dir is None:
                raise InvalidTypeError("JsonFileRunStore needs base_dir (or backend=)")
            backend = shared_backend(base_dir)
        self.backend = backend
        self.base_dir = backend.path

    def save(self, run: RunState) -> None:
        self.backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run)))

    def load(self, run_id: str) -> Optional[RunState]:
        return self.backend.load_run(run_id)

    def load_revision(self, run_id: str) -> Optional[int]:
        return self.backend.load_revision(run_id)

    def corrupt_run_files(self) -> List[str]:
        """Names of run files the query index skipped because they cannot be decoded."""
        return self.backend.corrupt_run_files()

    # --- queries (IndexedRunQueries over the in-process index, refreshed from file mtimes) ---------------------
    def _runs_by_index(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int]) -> List[RunState]:
        b = self.backend
        return b.load_many(b.query(lambda: b.scan(kind, lo, hi, limit)))

    def _all_runs(self) -> List[RunState]:
        b = self.backend
        runs = b.load_many(b.query(lambda: b.all_run_ids()))
        b.report_corrupt()  # the run files the index skipped
        return runs

    def _read_index(self, fn: Callable[[Any], Any]) -> Any:
        b = self.backend
        result = b.query(lambda: fn(SortedIndexReader(b._index, b.load_many)))
        b.report_corrupt()  # the run files the index leaves out: never silently
        return result


class JsonlLedgerStore(LedgerStore):
    """Reference ``JsonlLedgerStore(base_dir)``: ``ledger_<run_id>.jsonl``, one record dict per line."""

    def __init__(self, base_dir: Optional[os.PathLike | str] = None, *,
                 backend: Optional[JsonFilesBackend] = None) -> None:
        if backend is None:
            if base_dir is None:
                raise InvalidTypeError("JsonlLedgerStore needs base_dir (or backend=)")
            backend = shared_backend(base_dir)
        self.backend = backend
        self.base_dir = backend.path

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValidationError("StepRecord.run_id must be a non-empty string")
        self.backend.commit_step(
            StepCommit(run=None, run_json=None, records=(record,), record_jsons=(codec.encode_record(record),))
        )

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        """The committed records in append order (corrupt lines skipped and reported; unknown run: [])."""
        b = self.backend
        return b.read_ledger(run_id, lambda led, fd: b.rows(run_id, led, fd, led.valid))

    def count(self, run_id: str) -> int:
        return self.backend.read_ledger(run_id, lambda led, fd: len(led.valid))

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        """Records with 1-based sequence number > ``after``; returns ``(records, last_seq_returned or after)``."""
        b = self.backend
        after = max(0, int(after))
        limit = max(0, int(limit))
        rows = b.read_ledger(run_id, lambda led, fd: b.rows(run_id, led, fd, led.valid[after: after + limit]))
        return rows, after + len(rows)

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The completed row with this key if any, else the latest row with it, else None."""
        b = self.backend

        def find(led: _Ledger, fd: Optional[int]) -> Optional[Dict[str, Any]]:
            hit = led.idem.get(key)
            if hit is None:
                return None
            return b.rows(run_id, led, fd, [led.valid[hit[1] - 1]])[0]

        return b.read_ledger(run_id, find)

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        """The run's last committed (valid) row, or None."""
        b = self.backend
        return b.read_ledger(run_id, lambda led, fd: b.rows(run_id, led, fd, [led.valid[-1]])[0] if led.valid
                             else None)

    def last_corrupt_lines(self, run_id: str) -> List[int]:
        """1-based line numbers of the committed lines of the run's ledger file that were skipped as corrupt."""
        return self.backend.read_ledger(run_id, lambda led, fd: list(led.corrupt))


__all__ = [
    "JsonFilesBackend",
    "JsonFileRunStore",
    "JsonlLedgerStore",
    "shared_backend",
    "validate_run_id",
    "COMMITTED_KEY",
    "FAULT_POINT",
    "MAX_RUN_ID_LENGTH",
]
