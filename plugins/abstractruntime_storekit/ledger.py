"""Ledger read helpers for stores that number records with a per-run ``seq``."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from abstractruntime.errors import LedgerGapError


def check_contiguous(run_id: str, seqs: Sequence[int], records: List[Dict[str, Any]], *, after: int = 0,
                     store: str = "") -> List[Dict[str, Any]]:
    """Return ``records`` (the rows with sequence numbers ``seqs``, read in increasing seq order) if the seqs are
    ``after + 1, after + 2, ...``; else raise :class:`~abstractruntime.errors.LedgerGapError` naming the first
    missing seq, with ``records`` and the last seq read as its cursor. ``store`` prefixes the message.

    The seqs of one run are unique and increasing, so the check costs O(1) on an intact ledger (first and last
    seq) and one pass over the seqs already read when it is not. A missing *last* record is not a gap here.
    """
    n = len(seqs)
    if not n or (seqs[0] == after + 1 and seqs[-1] == after + n):
        return records
    missing = after + 1
    for seq in seqs:
        if seq != missing:
            break
        missing += 1
    raise LedgerGapError(run_id=run_id, missing_seq=missing, found_seq=seq, records=records, cursor=seqs[-1],
                         store=store)


__all__ = ["check_contiguous"]
