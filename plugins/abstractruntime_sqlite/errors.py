"""Errors of the SQLite store that keep a ``sqlite3`` base class the reference raised, so that ``except`` clauses
written for 0.4.2 still catch them."""

from __future__ import annotations

import sqlite3

from abstractruntime.errors import StoreError


class LedgerSeqConflictError(StoreError, sqlite3.IntegrityError):
    """An append was given a ledger ``seq`` that the run's ledger already has: the run's ``ledger_heads`` counter
    is behind its ledger rows (the table was edited or restored apart from ``ledger``). Nothing was written.

    ``run_id`` and ``seq`` name the conflict. It is a :class:`sqlite3.IntegrityError` as the reference's error was
    (and a :class:`~abstractruntime.errors.StoreError`).
    """

    def __init__(self, *, run_id: str, seq: int, path: str, detail: str = "") -> None:
        super().__init__(
            f"SQLite store at {path}: duplicate ledger seq {seq} for run {run_id} (run_id={run_id!r}, seq={seq}"
            f"{'; ' + detail if detail else ''}): the run's ledger_heads counter is behind its ledger rows. Nothing "
            f"was written. Set ledger_heads.last_seq of this run to its highest ledger seq, then append again.",
            run_id=run_id,
        )
        self.seq = seq
        self.path = path


__all__ = ["LedgerSeqConflictError"]
