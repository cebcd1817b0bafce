"""Builtin plugin ``memory``: the in-memory store (URL ``memory://``).

It takes no options: ``[abstractruntime.store_options]`` and URL query parameters are ignored (documented in
``docs/configuration.md``), so one configuration can switch between ``memory://`` and a persistent store.
"""

from __future__ import annotations

from typing import List

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl


def _open(location: StoreLocation):
    from .store import MemoryBackend

    return MemoryBackend()


@hookimpl
def abstractruntime_register_stores() -> List[StoreDescriptor]:
    return [
        StoreDescriptor(
            name="memory",
            factory=_open,
            schemes=("inmemory",),
            description="In-process store; nothing survives the process. URL: memory://",
        )
    ]
