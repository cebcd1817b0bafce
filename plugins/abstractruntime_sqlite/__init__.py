"""Builtin plugin ``sqlite``: a single-file SQLite store (URL ``sqlite:///abs/path/file.db``, or a relative path).

Options (URL query or ``[abstractruntime.store_options]``): ``durability`` = ``normal`` (``synchronous=NORMAL``:
no commit waits for the disk) or ``full`` (``synchronous=FULL``: every commit does); ``sync`` = true/false is an
alias (true -> full, false -> normal). Without either, each commit follows the runtime's ``durability``
(docs/durability.md): FULL at barriers, NORMAL under ``durability = "none"``. A bare ``sqlite`` (no path) uses ``<ABSTRACTRUNTIME_HOME>/runtime.sqlite``.
The reference API is available too: ``SqliteDatabase(path)``, ``SqliteRunStore(db)``, ``SqliteLedgerStore(db)``.
"""

from __future__ import annotations

from typing import Any, List, Optional

from attrs import field, frozen

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ConfigurationError, ValidationError
from abstractruntime_pluginkit import structure_options
from abstractruntime_storekit.opening import store_path

_DURABILITIES = ("normal", "full")


def _durability_text(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _check_durability(_instance: Any, _attribute: Any, value: Optional[str]) -> None:
    if value is not None and value not in _DURABILITIES:
        raise ValidationError(f"'durability' must be 'normal' or 'full', got {value!r}")


@frozen
class SqliteOptions:
    """The sqlite store's options: ``durability`` (``normal``, the default, or ``full``) and its alias ``sync``
    (true means ``full``, false ``normal``; give only one)."""

    durability: Optional[str] = field(default=None, converter=_durability_text, validator=_check_durability)
    sync: Optional[bool] = None

    def __attrs_post_init__(self) -> None:
        if self.durability is not None and self.sync is not None and self.durability != self.sync_durability:
            raise ValidationError("'durability' and 'sync' disagree (sync=true means durability=full, "
                                  "sync=false means durability=normal); give only one")

    @property
    def sync_durability(self) -> Optional[str]:
        return None if self.sync is None else ("full" if self.sync else "normal")

    @property
    def effective_durability(self) -> str:
        """``durability``, else what ``sync`` means, else ``auto`` (each commit as durable as the runtime asks)."""
        return self.durability or self.sync_durability or "auto"


def open_sqlite(location: StoreLocation):
    from abstractruntime.settings import default_home

    from .store import SqliteDatabase

    options = structure_options(SqliteOptions, location.options, where="sqlite store options")
    path = str(store_path(location, default_home() / "runtime.sqlite"))
    if path == ":memory:" or path.startswith("file::memory:"):
        raise ConfigurationError(
            f"Store URL {location.url!r}: the sqlite store needs a file (use 'memory://' for an in-process store)")
    return SqliteDatabase(path, durability=options.effective_durability, read_only=location.read_only)


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
