"""Drivers: what may move a run that nobody asked to move.

A bare ``Runtime`` only moves the runs its caller names (``tick``, ``resume``, ...): committing a child's completion
or an ``EMIT_EVENT`` records and at most marks another run RUNNING, as 0.4.2 does, so a host that runs its own loop
sees exactly the transitions it expects. Automatic driving -- resuming the parent of a finished child, ticking a
woken listener -- is a *driver's* job: the scheduler, the PostgreSQL worker, or configuration that asks for it. A
driver registers itself on the runtime it drives with :func:`attach_driver`; plugins ask :func:`is_driven`.
"""

from __future__ import annotations

import weakref
from typing import Any

from abstractruntime import StashKey

_DRIVERS = StashKey["weakref.WeakSet[Any]"]()


def attach_driver(runtime: Any, driver: Any) -> None:
    """``driver`` (a scheduler, a worker) drives ``runtime``'s runs from now on (while it exists)."""
    runtime.stash.setdefault_factory(_DRIVERS, weakref.WeakSet).add(driver)


def is_driven(runtime: Any) -> bool:
    """Does a driver drive this runtime's runs?"""
    stash = getattr(runtime, "stash", None)
    return bool(stash is not None and stash.get(_DRIVERS))


__all__ = ["attach_driver", "is_driven"]
