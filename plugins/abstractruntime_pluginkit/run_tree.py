"""A run's tree: its ancestors (through ``parent_run_id``), its root, and the runs it may address.

Effects that take a ``target_run_id`` (``VARS_QUERY``, the memory effects) may only address the calling run, one of
its ancestors or one of its descendants: the reference let any caller read or modify any run (defect 18).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from abstractruntime.models import RunState


def ancestors(run_store: Any, run: RunState) -> Iterator[RunState]:
    """The parent, the grandparent, ... of ``run`` (stops at a missing run or a cycle)."""
    seen = {run.run_id}
    current: Optional[RunState] = run
    while current is not None and current.parent_run_id and current.parent_run_id not in seen:
        seen.add(current.parent_run_id)
        current = run_store.load(current.parent_run_id)
        if current is not None:
            yield current


def root_of(run_store: Any, run: RunState) -> RunState:
    """The top of ``run``'s tree (``run`` itself for a root run)."""
    root = run
    for root in ancestors(run_store, run):
        pass
    return root


def find_in_run_tree(run_store: Any, caller: RunState, target_id: str) -> Optional[RunState]:
    """The run ``target_id`` if it is ``caller``, one of its ancestors or one of its descendants; else None."""
    if target_id == caller.run_id:
        return caller
    for ancestor in ancestors(run_store, caller):
        if ancestor.run_id == target_id:
            return ancestor
    target = run_store.load(target_id)
    if target is None:
        return None
    if any(a.run_id == caller.run_id for a in ancestors(run_store, target)):
        return target
    return None


__all__ = ["ancestors", "root_of", "find_in_run_tree"]
