"""Builtin plugin ``lmdb``: the default store (URL ``lmdb:///path/to/dir``).

Options (URL query or ``[abstractruntime.store_options]``): ``sync`` (default true: fsync on every commit),
``metasync`` (default: as ``sync``), ``map_size`` (initial map size in bytes; the map grows automatically),
``max_readers``. Runtimes of one process on one directory share one backend (LMDB must not open an environment
twice in a process); it closes when the last of them closes.
A bare ``lmdb`` (no path) uses the default directory, ``<ABSTRACTRUNTIME_HOME>/store``.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, List

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ConfigurationError
from abstractruntime.settings import default_home

_OPTIONS = {"sync", "metasync", "map_size", "max_readers"}
_OPEN: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"lmdb store option {name!r} must be true or false, got {value!r}")


def _int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"lmdb store option {name!r} must be an integer, got {value!r}") from None
    if number <= 0:
        raise ConfigurationError(f"lmdb store option {name!r} must be positive, got {number}")
    return number


def default_url() -> str:
    """``lmdb://<ABSTRACTRUNTIME_HOME>/store``: this plugin offers the default store."""
    return f"lmdb://{(default_home() / 'store').resolve()}"


def open_lmdb(location: StoreLocation):
    from .store import DEFAULT_MAP_SIZE, LmdbBackend

    unknown = set(location.options) - _OPTIONS
    if unknown:
        raise ConfigurationError(
            f"Unknown lmdb store option(s) {sorted(unknown)} in {location.url!r}; valid: {sorted(_OPTIONS)}"
        )
    path = location.path or str(default_home() / "store")
    opts = location.options
    sync = _bool("sync", opts.get("sync", True))
    metasync = _bool("metasync", opts.get("metasync", sync))
    map_size = _int("map_size", opts.get("map_size", DEFAULT_MAP_SIZE))
    max_readers = _int("max_readers", opts.get("max_readers", 256))
    key = os.path.realpath(os.path.expanduser(path))
    # LMDB must not open one environment twice in a process (closing one copy breaks the other's locks): every
    # runtime of this process on this directory shares one backend, which closes when the last one closes.
    with _OPEN_LOCK:
        backend = _OPEN.get(key)
        if backend is not None and not backend.closed:
            if (backend.sync, backend.metasync) != (sync, metasync):
                raise ConfigurationError(
                    f"The LMDB store at {key} is already open in this process with sync={backend.sync}, "
                    f"metasync={backend.metasync}; open it with the same options (got sync={sync}, "
                    f"metasync={metasync}) or close the other runtime first")
            return backend.retain()
        backend = LmdbBackend(path, sync=sync, metasync=metasync, map_size=map_size, max_readers=max_readers)
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
