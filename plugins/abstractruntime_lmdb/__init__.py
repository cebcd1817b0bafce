"""Builtin plugin ``lmdb``: the default store (URL ``lmdb:///path/to/dir``).

Options (URL query or ``[abstractruntime.store_options]``): ``sync`` (default true: fsync on every commit),
``metasync`` (default: as ``sync``), ``map_size`` (initial map size in bytes; the map grows automatically),
``max_readers``, ``zero_fill`` (bytes of zero-filled room kept past the data while commits are synced, default
4 MiB: growth.py; 0: none). Runtimes of one process on one directory share one backend (LMDB must not open an
environment twice in a process; a later one gets the first one's ``zero_fill``); it closes when the last of them
closes.
A bare ``lmdb`` (no path) uses the default directory, ``<ABSTRACTRUNTIME_HOME>/store``.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, List, Optional

from attrs import field, frozen

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ConfigurationError, ValidationError
from abstractruntime.settings import default_home
from abstractruntime_pluginkit import structure_options
from abstractruntime_storekit.opening import store_path

from .growth import DEFAULT_ZERO_FILL

#: initial map size in bytes (the map grows automatically)
DEFAULT_MAP_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_READERS = 256

_OPEN: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def _positive(_instance: Any, attribute: Any, value: int) -> None:
    if value <= 0:
        raise ValidationError(f"{attribute.name!r} must be positive, got {value}")


def _not_negative(_instance: Any, attribute: Any, value: int) -> None:
    if value < 0:
        raise ValidationError(f"{attribute.name!r} must be 0 (off) or a number of bytes, got {value}")


@frozen
class LmdbOptions:
    """The lmdb store's options: ``sync`` (default true: fsync on every commit), ``metasync`` (default: as
    ``sync``), ``map_size`` (initial map size in bytes), ``max_readers`` and ``zero_fill`` (bytes of zero-filled
    room kept past the data while commits are synced; 0: none)."""

    sync: bool = True
    metasync: Optional[bool] = None
    map_size: int = field(default=DEFAULT_MAP_SIZE, validator=_positive)
    max_readers: int = field(default=DEFAULT_MAX_READERS, validator=_positive)
    zero_fill: int = field(default=DEFAULT_ZERO_FILL, validator=_not_negative)

    @property
    def effective_metasync(self) -> bool:
        return self.sync if self.metasync is None else self.metasync


def default_url() -> str:
    """``lmdb://<ABSTRACTRUNTIME_HOME>/store``: this plugin offers the default store."""
    return f"lmdb://{(default_home() / 'store').resolve()}"


def open_lmdb(location: StoreLocation):
    from .store import LmdbBackend

    options = structure_options(LmdbOptions, location.options, where="lmdb store options")
    path = str(store_path(location, default_home() / "store"))
    sync, metasync = options.sync, options.effective_metasync
    map_size, max_readers = options.map_size, options.max_readers
    key = os.path.realpath(os.path.expanduser(path))
    # LMDB must not open one environment twice in a process (closing one copy breaks the other's locks): every
    # runtime of this process on this directory shares one backend, which closes when the last one closes.
    with _OPEN_LOCK:
        backend = _OPEN.get(key)
        if backend is not None and not backend.closed:
            if backend.read_only and not location.read_only:
                raise ConfigurationError(f"The LMDB store at {key} is open read-only in this process; close that "
                                         f"runtime before opening the store for writing")
            if (backend.sync, backend.metasync) != (sync, metasync):
                raise ConfigurationError(
                    f"The LMDB store at {key} is already open in this process with sync={backend.sync}, "
                    f"metasync={backend.metasync}; open it with the same options (got sync={sync}, "
                    f"metasync={metasync}) or close the other runtime first")
            return backend.retain()
        backend = LmdbBackend(path, sync=sync, metasync=metasync, map_size=map_size, max_readers=max_readers,
                              read_only=location.read_only, zero_fill=options.zero_fill)
        _OPEN[key] = backend
        return backend


@hookimpl
def abstractruntime_register_stores() -> List[StoreDescriptor]:
    return [
        StoreDescriptor(
            name="lmdb",
            factory=open_lmdb,
            description="Embedded LMDB environment (default). URL: lmdb:///path/to/dir",
            default_url=default_url,
        )
    ]
