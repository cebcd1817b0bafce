"""Errors of the ``postgres`` store plugin (importable without psycopg)."""

from __future__ import annotations

from typing import Optional

from abstractruntime.errors import ConcurrentModificationError, StoreError
from abstractruntime.errors import StoreUnavailableError as KernelStoreUnavailableError


class LeaseLostError(ConcurrentModificationError):
    """A worker committed to a run it no longer holds: its lease expired or another worker claimed the run
    (the run's fencing epoch moved on). Nothing of the commit was written.

    It is a :class:`~abstractruntime.errors.ConcurrentModificationError`, so the kernel's tick loop stops driving
    the run quietly, exactly as it does when another writer committed first. The worker should drop the run
    (not release it: the lease is not its own any more).
    """

    def __init__(self, *, run_id: str, epoch: int, actual_epoch: Optional[int], owner: Optional[str] = None,
                 actual_owner: Optional[str] = None, reason: str = "") -> None:
        why = reason or "another worker claimed it"
        super().__init__(  # ConcurrentModificationError's expected/actual, in epochs
            run_id=run_id, expected=epoch, actual=actual_epoch,
            message=f"Lease on run {run_id} lost ({why}): this worker holds fencing epoch {epoch}, the store has "
                    f"{actual_epoch} (owner {actual_owner!r}). Nothing was written; stop driving this run, the "
                    f"current lease holder continues it.",
        )
        self.epoch = epoch
        self.actual_epoch = actual_epoch
        self.owner = owner
        self.actual_owner = actual_owner
        self.reason = why


class RunLeasedError(ConcurrentModificationError):
    """A writer without a claim on a run tried to append ledger records (e.g. the reservation that precedes a
    side effect) while another worker holds an unexpired lease on that run. Nothing was written, so the side
    effect was not started.

    It is a :class:`~abstractruntime.errors.ConcurrentModificationError`: a host's ``tick`` on a run that a worker
    is driving stops quietly instead of running the same step a second time.
    """

    def __init__(self, *, run_id: str, owner: str) -> None:
        super().__init__(
            run_id=run_id, expected=None, actual=None,
            message=f"Run {run_id} is leased by worker {owner!r}: only the lease holder may append to its ledger. "
                    f"Nothing was written; let that worker drive the run, or claim it once the lease has expired.",
        )
        self.owner = owner


class StoreUnavailableError(KernelStoreUnavailableError):
    """The connection to the PostgreSQL server was lost (a restart, a terminated session, a network failure) and
    the retry on a fresh connection failed too. Nothing was written by the call; call again once the server
    answers."""

    def __init__(self, *, where: str, reason: str) -> None:
        super().__init__(f"PostgreSQL store {where} is unavailable: {reason}. The call was retried once on a fresh "
                         f"connection and wrote nothing; call it again once the server answers.")
        self.where = where
        self.reason = reason


class CommitOutcomeUnknownError(StoreUnavailableError):
    """The connection was lost while the server was committing: the transaction may or may not have been
    written, so it was not retried. Load the run (``get_state``) to see which: its revision tells."""

    def __init__(self, *, where: str, reason: str) -> None:
        StoreError.__init__(self, f"PostgreSQL store {where}: the connection was lost during COMMIT ({reason}); the "
                                  f"commit may or may not have been written, so it was not retried. Load the run "
                                  f"(get_state) to see whether it was, then continue from there.")
        self.where = where
        self.reason = reason


__all__ = ["LeaseLostError", "RunLeasedError", "StoreUnavailableError", "CommitOutcomeUnknownError"]
