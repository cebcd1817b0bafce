"""Builtin plugin ``artifacts``: artifact stores, ``$artifact`` references and offloading of large values.

Reference API (``abstractruntime.storage.artifacts`` / ``abstractruntime.storage.offloading``): see
:mod:`abstractruntime_artifacts.store` and :mod:`abstractruntime_artifacts.offloading`.

As a plugin it does two things:

* :func:`artifact_store_for` -- the artifact store of a runtime: ``runtime.artifact_store`` when the host set one,
  else the one its store backend hands out (``backend.artifact_store()``: files beside an LMDB, SQLite or
  JSON-files store, a table of the PostgreSQL store), else None. It never sets one on the runtime.
* ledger offloading: before each commit, values in a ledger record's ``effect`` / ``result`` larger than
  ``max_inline_bytes`` are moved into that artifact store and replaced by ``{"$artifact": id}`` (runs first, so a
  provenance hash covers what is stored). Nothing happens when the runtime has no artifact store.

Options (``[abstractruntime.plugin_options.artifacts]``): ``max_inline_bytes`` (default
``$ABSTRACTRUNTIME_MAX_INLINE_BYTES`` or 262144; ``0`` turns ledger offloading off).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, List, Optional

import orjson
from attrs import field, frozen

from abstractruntime import StashKey, hookimpl
from abstractruntime.models import StepRecord
from abstractruntime_pluginkit import plugin_options
from abstractruntime_pluginkit.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .store import ArtifactStore

# The stores and the offloading are imported on first use: every plugin package is imported whenever a runtime is
# built, and most runtimes never offload a value.
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["OffloadingLedgerStore", "OffloadingRunStore", "offload_large_values",
                     "offload_step_record"], ".offloading"),
    **dict.fromkeys(["Artifact", "ArtifactMetadata", "ArtifactStore", "FileArtifactStore", "InMemoryArtifactStore",
                     "artifact_ref", "compute_artifact_id", "compute_blob_id", "get_artifact_id", "is_artifact_ref",
                     "resolve_artifact", "validate_artifact_id"], ".store"),
})

DEFAULT_MAX_INLINE_BYTES = 256 * 1024
ENV_MAX_INLINE_BYTES = "ABSTRACTRUNTIME_MAX_INLINE_BYTES"


def default_max_inline_bytes() -> int:
    """``ABSTRACTRUNTIME_MAX_INLINE_BYTES`` if set to an integer, else ``DEFAULT_MAX_INLINE_BYTES``."""
    raw = os.environ.get(ENV_MAX_INLINE_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_INLINE_BYTES
    try:
        return int(raw)
    except ValueError:
        return DEFAULT_MAX_INLINE_BYTES


PLUGIN_NAME = "artifacts"

_DEFAULT_STORE = StashKey[Optional["ArtifactStore"]]()


@frozen
class ArtifactsOptions:
    """``[abstractruntime.plugin_options.artifacts]``: ``max_inline_bytes`` (0 turns ledger offloading off)."""

    max_inline_bytes: int = field(factory=default_max_inline_bytes)


def fits_inline(value: Any, max_inline_bytes: int) -> bool:
    """True when nothing inside ``value`` can need offloading: its whole compact JSON fits the threshold.

    (A string's UTF-8 size and any subtree's compact JSON are never larger than the whole document's.) Values
    that are not plain JSON (bytes, ...) never fit, so they go through the full walk.
    """
    if max_inline_bytes <= 0:
        return True
    try:
        return len(orjson.dumps(value)) <= max_inline_bytes
    except (TypeError, orjson.JSONEncodeError):
        return False


def artifact_store_for(runtime: Any) -> Optional["ArtifactStore"]:
    """``runtime.artifact_store``, else the store backend's own (``backend.artifact_store()``), else None."""
    explicit = runtime.artifact_store
    if explicit is not None:
        return explicit
    return runtime.stash.setdefault_factory(_DEFAULT_STORE, lambda: runtime.backend.artifact_store())


def max_inline_bytes_for(runtime: Any) -> int:
    """``plugin_options.artifacts.max_inline_bytes``, else ``$ABSTRACTRUNTIME_MAX_INLINE_BYTES``, else 256 KiB."""
    return plugin_options(runtime, PLUGIN_NAME, ArtifactsOptions).max_inline_bytes


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``max_inline_bytes`` fails ``Runtime(...)``."""
    max_inline_bytes_for(runtime)


_THRESHOLD = StashKey[int]()


@hookimpl(tryfirst=True)
def abstractruntime_prepare_ledger_records(runtime: Any, run_id: str, records: List[StepRecord]) -> None:
    threshold = runtime.stash.get(_THRESHOLD)  # at every commit with records: read once per runtime
    if threshold is None:
        threshold = runtime.stash.setdefault_factory(_THRESHOLD, lambda: max_inline_bytes_for(runtime))
    if threshold <= 0:
        return
    store = None
    for record in records:
        effect, result = record.effect, record.result
        if (effect is None or fits_inline(effect, threshold)) and (result is None or fits_inline(result, threshold)):
            continue  # the common case: no artifact store is even looked up (nor its directory created)
        from .offloading import offload_step_record

        if store is None:
            store = artifact_store_for(runtime)
            if store is None:
                return
        persisted = offload_step_record(record, artifact_store=store, max_inline_bytes=threshold)
        if persisted is not record:  # the kernel encodes these very objects: update them in place
            record.effect = persisted.effect
            record.result = persisted.result


__all__ = [
    "Artifact",
    "ArtifactMetadata",
    "ArtifactStore",
    "InMemoryArtifactStore",
    "FileArtifactStore",
    "compute_artifact_id",
    "compute_blob_id",
    "validate_artifact_id",
    "artifact_ref",
    "is_artifact_ref",
    "get_artifact_id",
    "resolve_artifact",
    "offload_large_values",
    "OffloadingRunStore",
    "OffloadingLedgerStore",
    "DEFAULT_MAX_INLINE_BYTES",
    "artifact_store_for",
    "max_inline_bytes_for",
    "ArtifactsOptions",
]
