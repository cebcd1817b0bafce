"""Builtin plugin ``jsonfiles``: the reference's JSON-files layout (URL ``jsonfiles:///abs/dir``; scheme ``json``).

One directory holds ``run_<run_id>.json`` (the checkpoint, pretty JSON) and ``ledger_<run_id>.jsonl`` (one ledger
record per line) per run -- the layout of the reference's ``JsonFileRunStore`` / ``JsonlLedgerStore``, which are
importable from :mod:`abstractruntime_jsonfiles.store` (and ``abstractruntime.storage``). Every step is one commit
across the two files; see the module docstring of :mod:`abstractruntime_jsonfiles.store`.

Options (URL query or ``[abstractruntime.store_options]``): ``fsync`` (default true: fsync files and the directory
on every commit; ``sync`` is accepted as an alias, as for the other stores). A bare ``jsonfiles`` (no path) uses
``<ABSTRACTRUNTIME_HOME>/jsonfiles``.
"""

from __future__ import annotations

from typing import Any, List, Mapping

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ConfigurationError

_OPTIONS = {"fsync", "sync"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"jsonfiles store option {name!r} must be true or false, got {value!r}")


def _fsync(options: Mapping[str, Any]) -> bool:
    chosen = {name: _bool(name, options[name]) for name in ("fsync", "sync") if name in options}
    if len(set(chosen.values())) > 1:
        raise ConfigurationError("jsonfiles store options 'fsync' and 'sync' disagree; give only one ('fsync')")
    return next(iter(chosen.values()), True)


def open_jsonfiles(location: StoreLocation):
    from abstractruntime.settings import default_home

    from .store import JsonFilesBackend

    unknown = set(location.options) - _OPTIONS
    if unknown:
        raise ConfigurationError(
            f"Unknown jsonfiles store option(s) {sorted(unknown)} in {location.url!r}; valid: {sorted(_OPTIONS)}"
        )
    path = location.path or str(default_home() / "jsonfiles")
    return JsonFilesBackend(path, fsync=_fsync(location.options))


@hookimpl
def abstractruntime_register_stores() -> List[StoreDescriptor]:
    return [
        StoreDescriptor(
            name="jsonfiles",
            factory=open_jsonfiles,
            schemes=("json",),
            description="A directory of run_<id>.json + ledger_<id>.jsonl files (reference layout). "
            "URL: jsonfiles:///path/to/dir",
        )
    ]
