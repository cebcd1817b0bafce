"""The LMDB store's index reader for storekit's newest-first queries and counts
(:mod:`abstractruntime_storekit.recency`), and the upgrade of a store written before schema version 3, whose runs
have no ``updated`` index entry yet.

The reader works inside one read transaction: ``iter_index`` walks the ``x:`` keys with a cursor (forwards or
backwards), ``entries_of`` reads the index entries stored in a checkpoint's header (the checkpoint JSON is not
decoded), ``load`` decodes the runs a query returns.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, FrozenSet, Iterator, List, Optional, Tuple

from abstractruntime import codec
from abstractruntime.errors import CorruptStoreError
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState

from .commit import reindex
from .store import _INDEX, _SEP, _run_key
from .values import pack_value, split_value

if TYPE_CHECKING:  # pragma: no cover
    from .store import LmdbBackend

log = get_logger("abstractruntime.lmdb")


class LmdbIndexReader:
    """storekit.recency's reader over one LMDB transaction ``txn`` of ``backend``."""

    def __init__(self, backend: "LmdbBackend", txn: Any) -> None:
        self.backend, self.txn = backend, txn

    def iter_index(self, kind: str, lo: str = "", hi: Optional[str] = None,
                   reverse: bool = False) -> Iterator[Tuple[str, str]]:
        prefix = _INDEX + kind.encode("utf-8") + _SEP
        n = len(prefix)
        lo_b = lo.encode("utf-8")
        hi_b = hi.encode("utf-8") if hi is not None else None
        cur = self.txn.cursor()
        if not reverse:
            if not cur.set_range(prefix + lo_b):
                return
            keys = cur.iternext(keys=True, values=False)
        else:
            # first key past the range: values <= hi end before hi + \x01 (a \0 follows every value)
            end = prefix + hi_b + b"\x01" if hi_b is not None else prefix[:-1] + b"\x01"
            if cur.set_range(end):
                if not cur.prev():
                    return
            elif not cur.last():
                return
            keys = cur.iterprev(keys=True, values=False)
        for key in keys:
            if not key.startswith(prefix):
                return
            value, run_id = key[n:].rsplit(_SEP, 1)
            if (hi_b is not None and value > hi_b) or value < lo_b:
                return
            yield value.decode("utf-8"), run_id.decode("utf-8")

    def entries_of(self, run_id: str) -> Optional[FrozenSet[Tuple[str, str]]]:
        raw = self.txn.get(_run_key(run_id.encode("utf-8")))
        if raw is None:
            return None
        try:
            index_json = split_value(raw, self.backend.where, run_id, verify=False)[1]
            return frozenset((str(k), str(v)) for k, v in json.loads(index_json))
        except (CorruptStoreError, ValueError, TypeError):
            return None  # not listed by the index queries; loading it reports it

    def load(self, run_ids: List[str]) -> List[RunState]:
        return self.backend.load_many_in(self.txn, run_ids)


def add_updated_entries(backend: "LmdbBackend", txn: Any) -> int:
    """Give every run of a store written before schema version 3 its index entries of today (adds ``updated``);
    a checkpoint that cannot be read is left as it is (``store check`` reports it). Returns the runs upgraded."""
    done = 0
    for run_id in backend.all_run_ids(txn):
        key = _run_key(run_id.encode("utf-8"))
        raw = txn.get(key)
        try:
            revision, _entries, checkpoint = split_value(raw, backend.where, run_id)
            run = codec.decode_run(checkpoint)
            index_json = reindex(backend, txn, run, raw)
        except Exception as exc:  # a damaged run stays as it is; every read of it reports it
            log.warning("run_index_not_upgraded", store=backend.where, run_id=run_id, error=str(exc))
            continue
        txn.put(key, pack_value(revision, index_json, bytes(checkpoint)))
        done += 1
    if done:
        log.info("lmdb_index_upgraded", store=backend.where, runs=done)
    return done


__all__ = ["LmdbIndexReader", "add_updated_entries"]
