"""The query index of the JSON-files store (:class:`RunFileIndex`, a part of
:class:`~abstractruntime_jsonfiles.backend.JsonFilesBackend`): an in-process sorted ``(kind, value, run_id)`` index
of the run files, built by reading every run file once and brought up to date before each query by one ``stat``
per run file (see the "Queries" section of :mod:`abstractruntime_jsonfiles.backend`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from abstractruntime.errors import CorruptStoreError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState
from abstractruntime_storekit import SortedRunIndex, index_entries
from abstractruntime_storekit.integrity import CHECKPOINT, LEDGER, CorruptRecord, load_skipping, skip_corrupt

from .fileio import _is_valid_id, _sig

log = get_logger("abstractruntime.jsonfiles")


class RunFileIndex:
    """The query index over a directory's run files (the backend provides the paths, the locks and decoding)."""

    _dir: str
    _lock: Any
    _index: SortedRunIndex
    _file_sigs: Dict[str, Optional[Tuple[int, ...]]]
    _corrupt_runs: Dict[str, str]
    _scanned: bool

    def _set_entries(self, run_id: str, entries: Tuple[Tuple[str, str], ...]) -> None:
        self._index.set(run_id, entries)

    def _forget(self, run_id: str) -> None:
        self._set_entries(run_id, ())
        self._file_sigs.pop(run_id, None)
        self._corrupt_runs.pop(run_id, None)

    def _note_commit(self, run: Optional[RunState], plans: List[Any]) -> None:
        for p in plans:
            if p.data is None:
                continue
            if run is not None and p.run_id == run.run_id:
                try:
                    sig: Optional[Tuple[int, ...]] = _sig(os.stat(self.run_file(p.run_id)))
                except OSError:
                    sig = None
                self._file_sigs[p.run_id] = sig
                self._corrupt_runs.pop(p.run_id, None)
                self._set_entries(p.run_id, tuple(sorted(set(index_entries(run)))))
            else:
                self._file_sigs[p.run_id] = None  # same state, new bytes: re-read by the next refresh

    def _index_file(self, run_id: str) -> None:
        path = self.run_file(run_id)
        try:
            with open(path, "rb") as f:
                sig = _sig(os.fstat(f.fileno()))
                raw = f.read()
        except FileNotFoundError:
            self._forget(run_id)
            return
        self._file_sigs[run_id] = sig
        try:
            run = self._run_from_raw(run_id, raw)
        except CorruptStoreError as exc:
            self._corrupt_runs[run_id] = exc.message
            self._set_entries(run_id, ())
            log.warning("run_file_corrupt", run_id=run_id, file=path, error=exc.message)
            return
        self._corrupt_runs.pop(run_id, None)
        self._set_entries(run_id, tuple(sorted(set(index_entries(run)))))

    def refresh_index(self) -> None:
        """Bring the query index up to date: one ``stat`` per run file, a read per changed file."""
        with self._lock:
            self._ensure_open()
            seen = set()
            with os.scandir(self._dir) as entries:
                for entry in entries:
                    name = entry.name
                    if not (name.startswith("run_") and name.endswith(".json")):
                        continue
                    run_id = name[4:-5]
                    if not _is_valid_id(run_id):
                        continue
                    try:
                        sig = _sig(entry.stat())
                    except FileNotFoundError:
                        continue
                    seen.add(run_id)
                    if self._file_sigs.get(run_id) != sig:
                        self._index_file(run_id)
            for run_id in [r for r in self._file_sigs if r not in seen]:
                self._forget(run_id)
            self._scanned = True

    def query(self, fn: Callable[[], List[str]]) -> List[str]:
        """Run ids answered by ``fn`` on a freshly refreshed index."""
        with self._lock:
            self.refresh_index()
            return fn()

    def scan(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        return self._index.scan(kind, lo, hi, limit)

    def all_run_ids(self) -> List[str]:
        return [r for r in self._file_sigs if r not in self._corrupt_runs]

    def load_many(self, run_ids: Sequence[str]) -> List[RunState]:
        """The runs that exist; one whose file became corrupt since the index pass is left out and reported."""
        return load_skipping(f"jsonfiles store at {self._dir}", run_ids, self.load_run)

    def report_corrupt(self) -> None:
        """Report the run files the index skips (after a query that reads every run: nothing is left out silently)."""
        with self._lock:
            corrupt = dict(self._corrupt_runs)
        for run_id, message in sorted(corrupt.items()):
            skip_corrupt(f"jsonfiles store at {self._dir}", run_id, CorruptStoreError(message, run_id=run_id))

    def iter_corrupt(self, stats: Optional[Dict[str, int]] = None) -> Iterator[CorruptRecord]:
        """The damaged records (``abstractruntime store check``): run files that cannot be decoded, and ledger
        lines that cannot (the committed lines only; one ledger file is parsed at a time)."""
        where = f"jsonfiles store at {self._dir}"
        stats = stats if stats is not None else {}
        with self._lock:
            self.refresh_index()
            stats["runs"] = len(self._file_sigs)
            corrupt = sorted(self._corrupt_runs.items())
        for run_id, message in corrupt:
            yield CorruptRecord(where, CHECKPOINT, run_id, message)
        stats["ledger_records"] = 0
        with os.scandir(self._dir) as entries:
            ledgers = sorted(e.name[7:-6] for e in entries
                             if e.name.startswith("ledger_") and e.name.endswith(".jsonl"))
        for run_id in (r for r in ledgers if _is_valid_id(r)):
            valid, bad = self.read_ledger(run_id, lambda led, fd: (len(led.valid), list(led.corrupt)))
            stats["ledger_records"] += valid + len(bad)
            for line in bad:
                yield CorruptRecord(where, LEDGER, run_id, seq=line, error=(
                    f"{where}: line {line} of ledger file {self.ledger_file(run_id)} cannot be decoded (skipped "
                    f"by every read)"))

    def corrupt_run_files(self) -> List[str]:
        with self._lock:
            self.refresh_index()
            return sorted(os.path.basename(self.run_file(r)) for r in self._corrupt_runs)

