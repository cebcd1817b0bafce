"""The ledger hash chain: stamping records, verifying a ledger, and the reference ``HashChainedLedgerStore``.

Each record's ``record_hash`` covers every field of the record (timestamps, attempt, idempotency key...) and its
``prev_hash``, the previous record's ``record_hash``. Changing, deleting, inserting or reordering a stored record
therefore breaks the chain at that record or the next one. An optional Ed25519 ``signature`` over each
``record_hash`` makes a rewritten chain detectable too (the forger would need the private key).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import LedgerGapError, ValidationError
from abstractruntime.models import StepRecord
from abstractruntime.storage.base import Capability, LedgerStore, declared_capabilities

from .hashing import HasherDescriptor, compute_record_hash, get_hasher, hash_owned, split_record_hash
from .signing import load_signing_key, signer_for, verifier_for

PAGE_SIZE = 1000


# --- writing ------------------------------------------------------------------------------------------------------
def current_head(ledger_store: Any, run_id: str, *, paging: Optional[bool] = None) -> Optional[str]:
    """The ``record_hash`` of the run's last stored record (None for an empty ledger).

    One indexed read (``last_record``) when the store declares :attr:`Capability.LEDGER_PAGING` (``paging``: None
    asks the store's backend); else the last row of ``list(run_id)``.
    """
    if paging is None:
        paging = Capability.LEDGER_PAGING in declared_capabilities(ledger_store)
    if paging:
        row = ledger_store.last_record(run_id)
    else:
        rows = ledger_store.list(run_id)
        row = rows[-1] if rows else None
    return row.get("record_hash") if row else None


def stamp_record(record: StepRecord, prev_hash: Optional[str], *, algorithm: Optional[str] = None,
                 signer: Optional[Callable[[str], str]] = None) -> str:
    """Set ``prev_hash`` and ``record_hash`` (and, with a signer, ``signature``) on ``record``; return the hash.

    Without a signer ``signature`` is left as it is: the field belongs to provenance only when a key is configured.
    """
    return _stamp(record, prev_hash, get_hasher(algorithm), signer)  # a bad algorithm fails before any record


def _stamp(record: StepRecord, prev_hash: Optional[str], desc: HasherDescriptor,
           signer: Optional[Callable[[str], str]]) -> str:
    record.prev_hash = prev_hash
    try:  # a fresh dict: hashed without a copy
        digest = hash_owned(codec.record_to_dict(record), prev_hash, desc)
    except (TypeError, ValueError):
        codec.encode_record(record)  # raises the kernel's JsonInvariantError naming the offending value
        raise
    record.record_hash = digest
    if signer is not None:
        record.signature = signer(digest)
    return digest


def chain_records(records: Iterable[StepRecord], head: Optional[str], *, algorithm: Optional[str] = None,
                  signer: Optional[Callable[[str], str]] = None) -> Optional[str]:
    """Stamp ``records`` (one run's, in append order) after ``head``; return the new head."""
    desc = get_hasher(algorithm)
    for record in records:
        head = _stamp(record, head, desc, signer)
    return head


# --- verifying ----------------------------------------------------------------------------------------------------
class ChainVerifier:
    """Verifies records fed one at a time (so a long ledger can be read page by page).

    ``report()`` is the reference report: ``ok``, ``count``, ``errors`` (``index``, ``type``, details),
    ``first_bad_index`` (smallest failing index, 0 included), ``head_hash`` (the last record's stored hash) and
    ``computed_head_hash`` (the stored hash of the last record walked).
    """

    def __init__(self, *, public_key: Any = None) -> None:
        self._verify = verifier_for(public_key) if public_key is not None else None
        self.count = 0
        self.errors: List[Dict[str, Any]] = []
        self._expected_prev: Optional[str] = None
        self._walked_head: Optional[str] = None
        self._last_hash: Optional[str] = None
        self._stopped = False

    def _error(self, index: int, kind: str, **details: Any) -> None:
        self.errors.append({"index": index, "type": kind, **details})

    def add(self, record: Mapping[str, Any]) -> None:
        i = self.count
        self.count += 1
        if type(record) is not dict and not isinstance(record, Mapping):
            record = {}
        stored = record.get("record_hash")
        self._last_hash = stored
        if self._stopped:
            return
        actual_prev = record.get("prev_hash")
        if actual_prev != self._expected_prev:  # deleted, inserted or reordered records land here
            self._error(i, "prev_hash_mismatch", expected_prev_hash=self._expected_prev, actual_prev_hash=actual_prev)
        if not stored or type(stored) is not str:
            self._error(i, "missing_record_hash")
            self._stopped = True  # nothing to chain the next record to
            return
        algorithm, _digest = split_record_hash(stored)
        try:
            computed: Optional[str] = compute_record_hash(record=record, prev_hash=actual_prev, algorithm=algorithm)
        except ValueError:  # unknown algorithm (ConfigurationError) or a value that is not JSON
            computed = None
            self._error(i, "unknown_hash_algorithm", algorithm=algorithm)
        if computed is not None and computed != stored:
            self._error(i, "record_hash_mismatch", stored=stored, computed=computed)
        if self._verify is not None:
            signature = record.get("signature")
            if not signature:
                self._error(i, "missing_signature")
            elif not self._verify(stored, signature):
                self._error(i, "bad_signature", record_hash=stored)
        self._expected_prev = stored
        self._walked_head = stored

    def report(self) -> Dict[str, Any]:
        return {
            "ok": not self.errors,
            "count": self.count,
            "errors": [dict(e) for e in self.errors],
            "first_bad_index": self.errors[0]["index"] if self.errors else None,
            "head_hash": self._last_hash if self.count else None,
            "computed_head_hash": self._walked_head,
        }


def verify_ledger_chain(records: Iterable[Mapping[str, Any]], *, public_key: Any = None) -> Dict[str, Any]:
    """Verify stored ledger records (in append order); see :class:`ChainVerifier` for the report.

    Errors: ``prev_hash_mismatch`` (``expected_prev_hash``, ``actual_prev_hash``) -- a record was changed,
    deleted, inserted or moved before this one; ``missing_record_hash`` (stops the walk); ``record_hash_mismatch``
    (``stored``, ``computed``) -- this record was changed; ``unknown_hash_algorithm``; with ``public_key``
    (PEM path, PEM bytes or key object): ``missing_signature`` and ``bad_signature``.
    """
    verifier = ChainVerifier(public_key=public_key)
    for record in records:
        verifier.add(record)
    return verifier.report()


def iter_ledger(ledger_store: Any, run_id: str, *, page_size: int = PAGE_SIZE) -> Iterator[Dict[str, Any]]:
    """A run's ledger rows in order, page by page when the store has ``list_after``.

    Tolerant of a ledger with a gap: a read that raises ``LedgerGapError`` goes on with the rows the error
    carries (``records``, and ``cursor`` for the next page), so a verifier sees every stored row once.
    """
    if Capability.LEDGER_PAGING not in declared_capabilities(ledger_store):
        try:
            rows = ledger_store.list(run_id)
        except LedgerGapError as exc:
            rows = exc.records
        yield from rows
        return
    after = 0
    while True:
        try:
            got = ledger_store.list_after(run_id=run_id, after=after, limit=page_size)
        except LedgerGapError as exc:
            if exc.cursor is None:
                raise
            got = (exc.records, exc.cursor)
        rows, last = got if isinstance(got, tuple) else (got, after + len(got))
        if not rows:
            return
        yield from rows
        if int(last) <= after:
            return
        after = int(last)


def verify_run(runtime: Any, run_id: str, *, public_key: Any = None,
               progress: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
    """Verify one run's ledger in ``runtime``'s store; the report also names ``run_id``.

    ``public_key=None`` uses ``plugin_options.provenance.public_key_path`` when it is set (else signatures are
    not checked). ``progress(n)`` is told of the records verified, a page at a time (the CLI's progress bar).
    """
    if public_key is None:
        from .plugin import configured_public_key

        public_key = configured_public_key(runtime)
    verifier = ChainVerifier(public_key=public_key)
    done = 0
    for done, record in enumerate(iter_ledger(runtime.ledger_store, run_id), 1):
        verifier.add(record)
        if progress is not None and done % PAGE_SIZE == 0:
            progress(PAGE_SIZE)
    if progress is not None and done % PAGE_SIZE:
        progress(done % PAGE_SIZE)
    return {"run_id": run_id, **verifier.report()}


def verify_records(runtime: Any, records: Iterable[Mapping[str, Any]], *, public_key: Any = None) -> Dict[str, Any]:
    """Verify ledger records that are not in a store (e.g. those of a history file before it is imported) as
    ``verify_run`` would verify them once stored: ``public_key=None`` uses the configured ``public_key_path``."""
    if public_key is None:
        from .plugin import configured_public_key

        public_key = configured_public_key(runtime)
    return verify_ledger_chain(records, public_key=public_key)


# --- reference decorator ------------------------------------------------------------------------------------------
class HashChainedLedgerStore(LedgerStore):
    """A ledger decorator that chains every appended record (reference API), for hosts that append outside a
    runtime. A runtime with the provenance plugin already chains its ledger: do not wrap its store as well.

    The head of each run is kept under a per-run lock, so threads appending to one run never fork the chain and
    appends of different runs never wait for each other. The cached head is checked against the inner store's
    ``count`` when it has one, so appends by another process are picked up. ``count``, ``list_after``,
    ``last_record``, ``find_by_idempotency_key``, ``count_many`` and ``metrics_many`` are forwarded when the inner
    store has them.
    The decorator has no ``backend``: a runtime given it commits through ``append`` (records, then checkpoint).
    """

    _FORWARDED = frozenset({"count", "list_after", "last_record", "find_by_idempotency_key", "count_many",
                            "metrics_many"})

    def __init__(self, inner: LedgerStore, *, algorithm: Optional[str] = None, signing_key: Any = None) -> None:
        self._inner = inner
        self._paging = Capability.LEDGER_PAGING in declared_capabilities(inner)
        self._algorithm = get_hasher(algorithm).name
        self._signer = signer_for(load_signing_key(signing_key)) if signing_key is not None else None
        self._heads: Dict[str, Tuple[Optional[int], Optional[str]]] = {}
        self._locks: "weakref.WeakValueDictionary[str, threading.Lock]" = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    @property
    def inner(self) -> LedgerStore:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")
        if inner is not None and name in HashChainedLedgerStore._FORWARDED:
            return getattr(inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _lock(self, run_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(run_id)
            if lock is None:
                lock = threading.Lock()
                self._locks[run_id] = lock
            return lock

    def _head(self, run_id: str) -> Tuple[Optional[str], Optional[int]]:
        n = int(self._inner.count(run_id)) if self._paging else None
        cached = self._heads.get(run_id)
        if cached is not None and (n is None or cached[0] == n):
            return cached[1], n
        return current_head(self._inner, run_id, paging=self._paging), n

    def head(self, run_id: str) -> Optional[str]:
        """The run's current chain head (the last record's ``record_hash``)."""
        with self._lock(run_id):
            return self._head(run_id)[0]

    def append(self, record: StepRecord) -> None:
        if not record.run_id:
            raise ValidationError("StepRecord.run_id must be a non-empty string")
        with self._lock(record.run_id):
            head, n = self._head(record.run_id)
            old_hash, old_signature = record.record_hash, record.signature
            digest = stamp_record(record, head, algorithm=self._algorithm, signer=self._signer)
            if self._signer is None and digest != old_hash and old_signature is not None:
                record.signature = None  # it signed another hash (a runtime plugin's chain): it would never verify
            self._inner.append(record)
            self._heads[record.run_id] = (n + 1 if n is not None else None, digest)

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._inner.list(run_id)

    def delete(self, run_id: str) -> int:
        fn = getattr(self._inner, "delete", None)
        if not callable(fn):
            raise NotImplementedError("The inner ledger store does not support delete")
        with self._lock(run_id):
            deleted = int(fn(run_id))
            self._heads.pop(run_id, None)
        return deleted


__all__ = [
    "ChainVerifier",
    "HashChainedLedgerStore",
    "chain_records",
    "compute_record_hash",
    "current_head",
    "iter_ledger",
    "stamp_record",
    "verify_ledger_chain",
    "verify_records",
    "verify_run",
]
