"""The LMDB store's integrity check (``abstractruntime store check``): one pass over the ``d:`` keys in one read
transaction, decoding each checkpoint (and verifying its checksum) and each ledger record, one at a time; only
the problems are kept. A damaged page (``lmdb.CorruptedError`` and friends) ends the pass with one ``store``
record: LMDB cannot read past it."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import lmdb

from abstractruntime import codec
from abstractruntime.errors import CorruptStoreError
from abstractruntime_storekit.integrity import CHECKPOINT, LEDGER, STORE, CorruptRecord

from .values import driver_error, split_value

if TYPE_CHECKING:  # pragma: no cover
    from .store import LmdbBackend

_U64 = struct.Struct(">Q")


def iter_corrupt(backend: "LmdbBackend", stats: Optional[Dict[str, int]] = None) -> Iterator[CorruptRecord]:
    """The damaged records of an LMDB store; ``stats`` (if given) receives ``runs`` and ``ledger_records``."""
    from .store import _DATA, _LEDGER_TAG, _RUN_TAG, _TAGS

    where = backend.where
    stats = stats if stats is not None else {}
    stats["runs"] = stats["ledger_records"] = 0
    found: List[CorruptRecord] = []

    def scan(txn: Any) -> None:
        cur = txn.cursor()
        last_seq: Dict[str, int] = {}
        try:
            if not cur.set_range(_DATA):
                return
            for key, raw in cur:
                if not key.startswith(_DATA):
                    break
                m = _TAGS.search(key, len(_DATA))
                if m is None:
                    continue
                run_id = key[len(_DATA):m.start()].decode("utf-8", "replace")
                tag = key[m.start():m.start() + 1]
                if tag == _RUN_TAG and m.end() == len(key):
                    stats["runs"] += 1
                    try:
                        codec.decode_run(split_value(raw, where, run_id)[2])
                    except CorruptStoreError as exc:
                        found.append(CorruptRecord(where, CHECKPOINT, run_id, exc.message))
                    except Exception as exc:
                        found.append(CorruptRecord(where, CHECKPOINT, run_id,
                                                   f"{where}: checkpoint of run {run_id} cannot be decoded ({exc})"))
                elif tag == _LEDGER_TAG and len(key) == m.end() + 8:
                    stats["ledger_records"] += 1
                    seq = _U64.unpack(key[-8:])[0]
                    expected = last_seq.get(run_id, 0) + 1
                    last_seq[run_id] = seq
                    if seq != expected:
                        found.append(CorruptRecord(where, LEDGER, run_id, seq=expected, error=(
                            f"{where}: ledger of run {run_id} is missing record seq {expected} (found seq {seq})")))
                    try:
                        problem = None if isinstance(codec.decode_record(raw), dict) else "not a JSON object"
                    except Exception as exc:
                        problem = str(exc)
                    if problem is not None:
                        found.append(CorruptRecord(where, LEDGER, run_id, seq=seq, error=(
                            f"{where}: ledger record {seq} of run {run_id} cannot be decoded ({problem})")))
        except lmdb.Error as exc:
            found.append(CorruptRecord(where, STORE, None, driver_error(where, exc).message))

    try:
        backend.read(scan)
    except CorruptStoreError as exc:  # the transaction itself could not start
        found.append(CorruptRecord(where, STORE, None, exc.message))
    return iter(found)


__all__ = ["iter_corrupt"]
