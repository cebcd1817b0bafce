"""Builtin plugin ``sqlite``: a single-file SQLite store (URL ``sqlite:///abs/path/file.db``, or a relative path).

Options (URL query or ``[abstractruntime.store_options]``): ``durability`` = ``normal`` (default,
``synchronous=NORMAL``) or ``full`` (``synchronous=FULL``: fsync on every commit); ``sync`` = true/false is an alias
(true -> full, false -> normal). A bare ``sqlite`` (no path) uses ``<ABSTRACTRUNTIME_HOME>/runtime.sqlite``.
The reference API is available too: ``SqliteDatabase(path)``, ``SqliteRunStore(db)``, ``SqliteLedgerStore(db)``.
"""

from __future__ import annotations

from typing import Any, List, Mapping

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ConfigurationError

_OPTIONS = {"durability", "sync"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _durability(options: Mapping[str, Any]) -> str:
    chosen = []
    if "durability" in options:
        value = str(options["durability"]).strip().lower()
        if value not in {"normal", "full"}:
            raise ConfigurationError(
                f"sqlite store option 'durability' must be 'normal' or 'full', got {options['durability']!r}")
        chosen.append(value)
    if "sync" in options:
        raw = options["sync"]
        text = str(raw).strip().lower() if not isinstance(raw, bool) else ("true" if raw else "false")
        if text in _TRUE:
            chosen.append("full")
        elif text in _FALSE:
            chosen.append("normal")
        else:
            raise ConfigurationError(f"sqlite store option 'sync' must be true or false, got {raw!r}")
    if len(set(chosen)) > 1:
        raise ConfigurationError(
            "sqlite store options 'durability' and 'sync' disagree (sync=true means durability=full, "
            "sync=false means durability=normal); give only one")
    return chosen[0] if chosen else "normal"


def open_sqlite(location: StoreLocation):
    from abstractruntime.settings import default_home

    from .store import SqliteDatabase

    unknown = set(location.options) - _OPTIONS
    if unknown:
        raise ConfigurationError(
            f"Unknown sqlite store option(s) {sorted(unknown)} in {location.url!r}; valid: {sorted(_OPTIONS)}"
        )
    path = location.path or str(default_home() / "runtime.sqlite")
    if path == ":memory:" or path.startswith("file::memory:"):
        raise ConfigurationError(
            f"Store URL {location.url!r}: the sqlite store needs a file (use 'memory://' for an in-process store)")
    return SqliteDatabase(path, durability=_durability(location.options))


@hookimpl
def abstractruntime_register_stores() -> List[StoreDescriptor]:
    return [
        StoreDescriptor(
            name="sqlite",
            factory=open_sqlite,
            description="Single SQLite file (WAL; several threads and processes). URL: sqlite:///path/to/file.db",
        )
    ]


def __getattr__(name: str) -> Any:  # reference-style imports without loading sqlite3 at plugin discovery
    if name in {"SqliteDatabase", "SqliteRunStore", "SqliteLedgerStore"}:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
