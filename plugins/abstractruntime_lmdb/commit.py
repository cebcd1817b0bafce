"""One step commit inside the LMDB write transaction, in two phases: read and check, then write.

:func:`plan` reads what the commit needs and runs every check -- its preconditions (``commit.check``), the expected
revision, the old checkpoint's index entries, the run ids and keys of its records -- and encodes every key and
value; :meth:`Plan.apply` then only writes. A refused commit has written nothing, so a batch (group commit) needs no
nested transaction per commit; the batch writer (``LmdbBackend._write_batch``) writes the batch again without a
commit whose writing failed midway (the fault point, an unexpected error), so that one leaves no trace either.

Why so few calls: each costs CPU in the batch writer, which every committer waits for, and each releases the GIL
(py-lmdb wraps every LMDB call in Py_BEGIN_ALLOW_THREADS): under many threads a release may be a wait to get it
back (docs/benchmarks.md, S2x16). So a commit looks a run's last sequence number up once (its preconditions and its
records share it), reads an idempotency key once and writes it once, with its final value.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import orjson

from abstractruntime import codec
from abstractruntime.errors import ConcurrentModificationError, CorruptStoreError
from abstractruntime.models import RunState, StepRecord
from abstractruntime.storage.base import CommitView, StepCommit
from abstractruntime_storekit import index_entries

from .keys import (_COMPLETED, _INDEX, _STATUS_BYTE, _STATUS_NAME, _U64, _idem_key, _index_key, _ledger_prefix, _rid,
                   _run_key, last_seq)
from .values import old_entries, pack_value, purge_index, revision_of

FAULT_POINT = "commit:after-checkpoint"
Heads = Dict[str, Tuple[int, Optional[str]]]


class _Reads:
    """What one commit reads, each key once: nothing is written before its plan is complete, so a value read
    stays what the transaction holds."""

    __slots__ = ("txn", "seqs", "entries")

    def __init__(self, txn: Any) -> None:
        self.txn = txn
        self.seqs: Dict[bytes, int] = {}
        self.entries: Dict[bytes, Optional[bytes]] = {}

    def last_seq(self, rid: bytes) -> int:
        seq = self.seqs.get(rid)
        if seq is None:
            seq = self.seqs[rid] = last_seq(self.txn, rid)
        return seq

    def entry(self, ikey: bytes) -> Optional[bytes]:
        """The stored idempotency entry (status byte + seq), or None."""
        if ikey not in self.entries:
            self.entries[ikey] = self.txn.get(ikey)
        return self.entries[ikey]


class Plan:
    """The writes of one checked commit, in order: stale index entries out, new ones in, the checkpoint (then the
    fault point), the ledger records, the idempotency entries."""

    __slots__ = ("purge", "run_id", "deletes", "puts", "tail")

    def __init__(self) -> None:
        self.purge: Optional[CorruptStoreError] = None  # a plain save over a corrupt checkpoint: scan its entries out
        self.run_id = ""
        self.deletes: List[bytes] = []
        self.puts: List[Tuple[bytes, bytes]] = []
        self.tail: List[Tuple[bytes, bytes]] = []

    def apply(self, backend: Any, txn: Any) -> None:
        self.apply_index(backend, txn)
        if backend.fault_injector is not None:
            backend.fault_injector(FAULT_POINT)
        for key, value in self.tail:
            txn.put(key, value)

    def apply_index(self, backend: Any, txn: Any) -> None:
        """The index entries' changes and the checkpoint."""
        if self.purge is not None:
            purge_index(txn, _INDEX, self.run_id, backend.where, self.purge)
        for key in self.deletes:
            txn.delete(key)
        for key, value in self.puts:
            txn.put(key, value)


def plan(backend: Any, txn: Any, commit: StepCommit, heads: Optional[Heads] = None) -> Plan:
    """Check ``commit`` against the transaction and encode its writes (raises, having written nothing, if it is
    refused); ``heads`` gets each run's new last ``(seq, record_hash)``."""
    reads = _Reads(txn)
    commit.check(CommitView(
        last_record=lambda run_id: _last_record(backend, reads, run_id),
        latest_status=lambda run_id, key: _STATUS_NAME.get(bytes((reads.entry(_idem_key(_rid(run_id), key))
                                                                  or b"")[:1])),
        last_hash=lambda run_id: _last_hash(backend, reads, run_id)))
    todo = Plan()
    run = commit.run
    if run is not None:
        rid = _rid(run.run_id)
        key = _run_key(rid)
        old = txn.get(key)
        if commit.expected_revision is not None:
            actual = revision_of(old, backend.where, run.run_id) if old is not None else None
            if actual != commit.expected_revision:
                raise ConcurrentModificationError(run_id=run.run_id, expected=commit.expected_revision, actual=actual)
        index_json = _reindex(backend, todo, run, old, replace=commit.expected_revision is None)
        todo.puts.append((key, pack_value(run.revision, index_json, commit.run_json or codec.encode_run(run))))
        if old is None and heads is not None and reads.last_seq(rid) == 0:
            heads[run.run_id] = (0, None)  # a new run: its ledger is empty (records below may extend it)
    _records(todo, reads, commit.records, commit.record_jsons, heads)
    return todo


def _reindex(backend: Any, todo: Plan, run: RunState, old_value: Optional[bytes], replace: bool) -> bytes:
    """Plan the ``x:`` entries' changes; return the JSON of the new entries (stored with the checkpoint). A corrupt
    old checkpoint is refused, unless ``replace`` (a plain save): then its entries are found by a scan."""
    new = sorted(set(index_entries(run)))
    new_json = orjson.dumps(new)  # (stores written before: json.dumps bytes, the same for ASCII values)
    try:
        old: Optional[List[Tuple[str, str]]] = old_entries(old_value, backend.where, run.run_id, new_json)
    except CorruptStoreError as exc:
        if not replace:
            raise
        todo.purge, todo.run_id = exc, run.run_id
        old = []
    if old is None:  # the same entries
        return new_json
    todo.deletes = [_index_key(kind, value, run.run_id) for kind, value in set(old) - set(new)]
    todo.puts.extend((_index_key(kind, value, run.run_id), b"") for kind, value in set(new) - set(old))
    return new_json


def reindex(backend: Any, txn: Any, run: RunState, old_value: Optional[bytes]) -> bytes:
    """Update the ``x:`` entries of a stored run now (the upgrade to schema 3: indexread.py); return their JSON."""
    todo = Plan()
    index_json = _reindex(backend, todo, run, old_value, replace=False)
    todo.apply_index(backend, txn)
    return index_json


def _last_record(backend: Any, reads: _Reads, run_id: str) -> Optional[Dict[str, Any]]:
    """The run's last ledger record (None for an empty ledger)."""
    rid = _rid(run_id)
    seq = reads.last_seq(rid)
    if seq == 0:
        return None
    key = _ledger_prefix(rid) + _U64.pack(seq)
    return backend.ledger_store._decode(run_id, key, reads.txn.get(key))


#: how the kernel's record JSON ends (StepRecord's field order; a hash and a base64 signature hold no quote): a
#: match is the top-level key -- in a nested object another "}" would follow, in a string its quotes are escaped
_HASH_TAIL = re.compile(rb',"record_hash":(?:null|"([^"\\]*)"),"signature":(?:null|"[^"\\]*")\}\Z')


def _last_hash(backend: Any, reads: _Reads, run_id: str) -> Optional[str]:
    """The ``record_hash`` of the run's last ledger record, read off the end of its JSON without decoding the record
    (which may hold a large result); decoded when its end does not read as the kernel writes it."""
    rid = _rid(run_id)
    seq = reads.last_seq(rid)
    if seq == 0:
        return None
    key = _ledger_prefix(rid) + _U64.pack(seq)
    raw = reads.txn.get(key)
    found = _HASH_TAIL.search(raw, max(0, len(raw) - 512)) if raw is not None else None
    if found is not None:
        return found.group(1).decode("ascii") if found.group(1) is not None else None
    return backend.ledger_store._decode(run_id, key, raw).get("record_hash")


def _records(todo: Plan, reads: _Reads, records: Tuple[StepRecord, ...], texts: Tuple[bytes, ...],
             written: Optional[Heads]) -> None:
    """Each record at its run's next seq; an idempotency entry (status byte + seq) follows its key's latest record
    unless it already names a completed one -- written once, with its final value."""
    seqs: Dict[bytes, int] = {}
    entries: Dict[bytes, bytes] = {}
    for record, text in zip(records, texts):
        rid = _rid(record.run_id)
        seq = seqs.get(rid)
        if seq is None:
            seq = reads.last_seq(rid)
        seq += 1
        seqs[rid] = seq
        if written is not None:
            written[record.run_id] = (seq, record.record_hash)
        todo.tail.append((_ledger_prefix(rid) + _U64.pack(seq), text))
        if record.idempotency_key:
            ikey = _idem_key(rid, record.idempotency_key)
            prev = entries[ikey] if ikey in entries else reads.entry(ikey)
            if prev is None or prev[:1] != _COMPLETED:
                entries[ikey] = _STATUS_BYTE[record.status.value] + _U64.pack(seq)
    todo.tail.extend(entries.items())


__all__ = ["FAULT_POINT", "Plan", "plan", "reindex"]
