"""Group commit: the pending commits of many threads in one transaction, made durable by one sync.

A caller hands its commit to :meth:`GroupCommit.submit`. If no batch is being written, it becomes the *leader*: it
takes every commit queued so far (its own included), writes them with ``apply(batch)`` -- one transaction, one
sync -- and wakes the others. Callers that arrive while a batch is being written queue up; the next leader takes
them all. Each caller returns only once the transaction holding its commit is durable, and raises only its own
error: ``apply`` sets ``entry.error`` for a commit it refused (checked one by one inside the transaction) and writes
the rest. An exception out of ``apply`` fails the whole batch (nothing of it was written).

Single-threaded use costs one uncontended lock round trip per commit. ``transactions`` and ``commits`` count what
was written, so ``commits / transactions`` is the mean batch size.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional


class GroupEntry:
    """One caller's commit in a batch; ``apply`` sets ``error`` to refuse it alone."""

    __slots__ = ("commit", "error", "done")

    def __init__(self, commit: Any) -> None:
        self.commit = commit
        self.error: Optional[BaseException] = None
        self.done = False


class GroupCommit:
    """Leader-based group commit around ``apply(batch: list[GroupEntry])`` (one transaction per call)."""

    def __init__(self, apply: Callable[[List[GroupEntry]], None]) -> None:
        self._apply = apply
        self._cond = threading.Condition(threading.Lock())
        self._queue: List[GroupEntry] = []
        self._writing = False
        self.transactions = 0
        self.commits = 0

    def submit(self, commit: Any) -> None:
        """Write ``commit`` in the next batch; return once it is durable, or raise its error."""
        entry = GroupEntry(commit)
        with self._cond:
            self._queue.append(entry)
            while not entry.done and self._writing:
                self._cond.wait()
            if entry.done:
                return self._outcome(entry)
            self._writing = True
            batch, self._queue = self._queue, []
        try:
            self._apply(batch)
        except BaseException as exc:
            for e in batch:
                e.error = e.error or exc
        finally:
            with self._cond:
                self.transactions += 1
                self.commits += len(batch)
                for e in batch:
                    e.done = True
                self._writing = False
                self._cond.notify_all()
        return self._outcome(entry)

    @staticmethod
    def _outcome(entry: GroupEntry) -> None:
        if entry.error is not None:
            raise entry.error


__all__ = ["GroupCommit", "GroupEntry"]
