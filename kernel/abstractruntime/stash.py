"""Typed per-runtime (and per-backend) state for plugins, as pytest's ``Stash``: under a module-level ``StashKey[T]()``
in ``runtime.stash`` instead of a module-level table keyed by the runtime, it lives and dies with its owner."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Generic, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class StashKey(Generic[T]):
    """A key of a :class:`Stash`; ``StashKey[T]()`` types the value stored under it."""

    __slots__ = ()


class Stash:
    """A map of :class:`StashKey` to values; :meth:`setdefault_factory` is atomic (thread-safe)."""

    __slots__ = ("_data", "_lock")

    def __init__(self) -> None:
        self._data: Dict[StashKey[Any], Any] = {}
        self._lock = threading.RLock()

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return self._data[key]  # type: ignore[no-any-return]  # (no typing.cast: a function call at run time)

    def get(self, key: StashKey[T], default: Any = None) -> Any:
        return self._data.get(key, default)

    def setdefault(self, key: StashKey[T], default: T) -> T:
        return self.setdefault_factory(key, lambda: default)

    def setdefault_factory(self, key: StashKey[T], factory: Callable[[], T]) -> T:
        """The value under ``key``; if there is none, ``factory()`` is stored and returned (called once)."""
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            with self._lock:
                value = self._data.get(key, _MISSING)
                if value is _MISSING:
                    value = self._data[key] = factory()
        return value  # type: ignore[no-any-return]

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data


__all__ = ["Stash", "StashKey"]
