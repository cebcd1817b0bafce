"""Builtin plugin ``jsonfiles``: the reference's JSON-files layout (URL ``jsonfiles:///abs/dir``; scheme ``json``).

One directory holds ``run_<run_id>.json`` (the checkpoint, pretty JSON) and ``ledger_<run_id>.jsonl`` (one ledger
record per line) per run -- the layout of the reference's ``JsonFileRunStore`` / ``JsonlLedgerStore``, which are
importable from :mod:`abstractruntime_jsonfiles.store` (and ``abstractruntime.storage``). Every step is one commit
across the two files; see the module docstring of :mod:`abstractruntime_jsonfiles.backend`.

Options (URL query or ``[abstractruntime.store_options]``): ``fsync`` (default true: fsync files and the directory
on every commit; ``sync`` is accepted as an alias, as for the other stores). A bare ``jsonfiles`` (no path) uses
``<ABSTRACTRUNTIME_HOME>/jsonfiles``.
"""

from __future__ import annotations

from typing import List, Optional

from attrs import frozen

from abstractruntime import StoreDescriptor, StoreLocation, hookimpl
from abstractruntime.errors import ValidationError
from abstractruntime_pluginkit import structure_options
from abstractruntime_storekit.opening import store_path


@frozen
class JsonFilesOptions:
    """The jsonfiles store's options: ``fsync`` (default true) and its alias ``sync`` (give only one)."""

    fsync: Optional[bool] = None
    sync: Optional[bool] = None

    def __attrs_post_init__(self) -> None:
        if None not in (self.fsync, self.sync) and self.fsync != self.sync:
            raise ValidationError("'fsync' and 'sync' disagree; give only one ('fsync')")

    @property
    def effective_fsync(self) -> bool:
        """``fsync``, else ``sync``, else true."""
        return next((v for v in (self.fsync, self.sync) if v is not None), True)


def open_jsonfiles(location: StoreLocation):
    from abstractruntime.settings import default_home

    from .backend import JsonFilesBackend

    options = structure_options(JsonFilesOptions, location.options, where="jsonfiles store options")
    path = store_path(location, default_home() / "jsonfiles")
    return JsonFilesBackend(path, fsync=options.effective_fsync, read_only=location.read_only)


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
