"""In-memory store: runs and ledger held as encoded JSON in dicts (every load returns a fresh copy).

Nothing survives the process. Useful for tests and short-lived embedded use; it follows the same contract as the
persistent stores (one commit per step, revision check, indexes for due timers and event waits).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, ValidationError
from abstractruntime.models import RunState, StepRecord, StepStatus
from abstractruntime.storage.base import Capability, CommitView, LedgerStore, RunStore, StepCommit, StoreBackend
from abstractruntime_storekit import IndexedRunQueries, SortedRunIndex, index_entries, validate_run_id
from abstractruntime_storekit.recency import SortedIndexReader

FAULT_POINT = "commit:after-checkpoint"
_COMPLETED = StepStatus.COMPLETED._value_  # (an Enum's .value is a Python-level property)


class MemoryBackend(StoreBackend):
    """The shared state behind an ``InMemoryRunStore`` / ``InMemoryLedgerStore`` pair. It has no sibling services
    of its own: the plugins that need one keep an in-process one per runtime."""

    capabilities = frozenset({Capability.REVISION_PROBE, Capability.IDEMPOTENCY_INDEX, Capability.LEDGER_PAGING,
                              Capability.RUN_QUERIES, Capability.EVENT_INDEX})

    def __init__(
        self,
        *,
        run_store: Optional["InMemoryRunStore"] = None,
        ledger_store: Optional["InMemoryLedgerStore"] = None,
    ) -> None:
        self._lock = threading.RLock()
        self._runs: Dict[str, bytes] = {}
        self._revisions: Dict[str, int] = {}
        self._index = SortedRunIndex()
        self._ledger: Dict[str, List[bytes]] = {}
        self._idem: Dict[Tuple[str, str], Tuple[str, int]] = {}
        self._heads: Dict[str, Optional[str]] = {}  # run id -> record_hash of its last ledger row (ledger_head_hint)
        #: Test seam: called with a fault-point name inside ``commit_step`` (see the conformance suite).
        self.fault_injector: Optional[Callable[[str], None]] = None
        self._view = CommitView(last_record=self._last_record,
                                latest_status=lambda run_id, key: (self._idem.get((run_id, key)) or (None,))[0],
                                last_hash=self._heads.get)  # no run without a ledger row has a head
        self.run_store = run_store if run_store is not None else InMemoryRunStore(backend=self)
        self.ledger_store = ledger_store if ledger_store is not None else InMemoryLedgerStore(backend=self)

    # --- the step commit ----------------------------------------------------------------------------------------
    def commit_step(self, commit: StepCommit) -> None:
        # An id already stored was checked when it was first written (an id's validity never changes): only a new
        # one is checked again.
        if commit.run is not None and commit.run.run_id not in self._runs:
            validate_run_id(commit.run.run_id, store="the memory store")
        for record in commit.records:
            if record.run_id not in self._ledger and record.run_id not in self._runs:
                validate_run_id(record.run_id, store="the memory store")
        run = commit.run
        new_entries = index_entries(run) if run is not None else None
        with self._lock:
            if run is not None and commit.expected_revision is not None:
                actual = self._revisions.get(run.run_id)
                if actual != commit.expected_revision:
                    raise ConcurrentModificationError(
                        run_id=run.run_id, expected=commit.expected_revision, actual=actual
                    )
            commit.check(self._view)
            # Everything was staged first; dict/list mutations below cannot fail half-way.
            if self.fault_injector is not None:
                self.fault_injector(FAULT_POINT)
            if run is not None:
                self._runs[run.run_id] = commit.run_json or codec.encode_run(run)
                self._revisions[run.run_id] = run.revision
                self._index.set(run.run_id, new_entries or ())
            for record, text in zip(commit.records, commit.record_jsons):
                rows = self._ledger.setdefault(record.run_id, [])
                rows.append(text)
                self._heads[record.run_id] = record.record_hash
                if record.idempotency_key:
                    k = (record.run_id, record.idempotency_key)
                    prev = self._idem.get(k)
                    if prev is None or prev[0] != _COMPLETED:
                        self._idem[k] = (record.status._value_, len(rows) - 1)

    def ledger_head_hint(self, run_id: str) -> Optional[Tuple[int, Optional[str]]]:
        """``(seq, record_hash)`` of the run's last ledger record (``(0, None)``: none yet), read without decoding
        it: the provenance plugin chains a commit's records on it (storekit.heads; the commit's precondition
        checks the head again)."""
        rows = self._ledger.get(run_id)  # a hint: read without the lock (the commit's precondition checks it)
        return (len(rows), self._heads.get(run_id)) if rows else (0, None)

    def _last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        rows = self._ledger.get(run_id)
        return codec.decode_record(rows[-1]) if rows else None

    def _scan(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int] = None) -> List[str]:
        return self._index.scan(kind, lo, hi, limit)

    def _load_many(self, run_ids: List[str]) -> List[RunState]:
        return [codec.decode_run(self._runs[r]) for r in run_ids if r in self._runs]

    def iter_corrupt(self, stats: Optional[Dict[str, int]] = None) -> Iterator[Any]:
        """The records that cannot be decoded (``abstractruntime store check``; none unless memory failed)."""
        from abstractruntime_storekit.integrity import check_rows

        with self._lock:
            runs = list(self._runs.items())
            ledger = [(rid, i + 1, text) for rid, rows in self._ledger.items() for i, text in enumerate(rows)]
        return check_rows("memory store", runs, ledger, lambda _rid, text: codec.decode_run(text),
                          lambda _rid, _seq, text: codec.decode_record(text), stats if stats is not None else {})

    def close(self) -> None:
        pass


class InMemoryRunStore(IndexedRunQueries, RunStore):
    """Reference-compatible in-memory run store (returns copies, never live objects)."""

    def __init__(self, backend: Optional[MemoryBackend] = None) -> None:
        self.backend = backend if backend is not None else MemoryBackend(run_store=self)

    def save(self, run: RunState) -> None:
        text = codec.encode_run(run)
        self.backend.commit_step(StepCommit(run=run, run_json=text))

    def load(self, run_id: str) -> Optional[RunState]:
        text = self.backend._runs.get(run_id)  # one dict lookup: atomic under the GIL, no lock needed
        return codec.decode_run(text) if text is not None else None

    def load_revision(self, run_id: str) -> Optional[int]:
        return self.backend._revisions.get(run_id)

    # --- queries (IndexedRunQueries) --------------------------------------------------------------------------
    INDEX_MAY_LAG = False  # index and runs change together under the backend's lock

    def _runs_by_index(self, kind: str, lo: str, hi: Optional[str], limit: Optional[int]) -> List[RunState]:
        with self.backend._lock:
            return self.backend._load_many(self.backend._scan(kind, lo, hi, limit))

    def _all_runs(self) -> List[RunState]:
        with self.backend._lock:
            return self.backend._load_many(list(self.backend._runs))

    def _read_index(self, fn: Callable[[Any], Any]) -> Any:
        with self.backend._lock:
            return fn(SortedIndexReader(self.backend._index, self.backend._load_many))


class InMemoryLedgerStore(LedgerStore):
    """Reference-compatible in-memory ledger (``list`` returns fresh dicts)."""

    def __init__(self, backend: Optional[MemoryBackend] = None) -> None:
        self.backend = backend if backend is not None else MemoryBackend(ledger_store=self)

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValidationError("StepRecord.run_id must be a non-empty string")
        self.backend.commit_step(StepCommit(run=None, run_json=None, records=(record,),
                                            record_jsons=(codec.encode_record(record),)))

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        with self.backend._lock:
            rows = list(self.backend._ledger.get(run_id, ()))
        return [codec.decode_record(t) for t in rows]

    def count(self, run_id: str) -> int:
        with self.backend._lock:
            return len(self.backend._ledger.get(run_id, ()))

    def list_after(self, *, run_id: str, after: int, limit: int = 1000) -> Tuple[List[Dict[str, Any]], int]:
        """Records with 1-based sequence number > ``after``; returns ``(records, last_seq_returned or after)``."""
        with self.backend._lock:
            rows = self.backend._ledger.get(run_id, [])[max(0, after): max(0, after) + max(0, limit)]
        return [codec.decode_record(t) for t in rows], after + len(rows)

    def last_record(self, run_id: str) -> Optional[Dict[str, Any]]:
        """The run's last ledger record, or None."""
        with self.backend._lock:
            rows = self.backend._ledger.get(run_id)
            return codec.decode_record(rows[-1]) if rows else None

    def find_by_idempotency_key(self, run_id: str, key: str) -> Optional[Dict[str, Any]]:
        """The completed row with this key if any, else the latest row with it, else None."""
        with self.backend._lock:
            hit = self.backend._idem.get((run_id, key))
            if hit is None:
                return None
            return codec.decode_record(self.backend._ledger[run_id][hit[1]])

