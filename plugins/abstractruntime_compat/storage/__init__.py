"""Reference path ``abstractruntime.storage``: the names the reference exports there that live in plugins (the
kernel's :mod:`abstractruntime.storage` has the store interfaces and finds these here)."""

from .._lazy import lazy_exports

_NAMES = {
    "QueryableRunStore": "abstractruntime_compat.storage.base",
    "InMemoryRunStore": "abstractruntime_inmemory.store",
    "InMemoryLedgerStore": "abstractruntime_inmemory.store",
    "JsonFileRunStore": "abstractruntime_jsonfiles.store",
    "JsonlLedgerStore": "abstractruntime_jsonfiles.store",
    "HashChainedLedgerStore": "abstractruntime_provenance.chain",
    "verify_ledger_chain": "abstractruntime_provenance.chain",
    "ObservableLedgerStore": "abstractruntime_compat.storage.observable",
    "ObservableLedgerStoreProtocol": "abstractruntime_compat.storage.observable",
    "OffloadingRunStore": "abstractruntime_artifacts.offloading",
    "OffloadingLedgerStore": "abstractruntime_artifacts.offloading",
    "offload_large_values": "abstractruntime_artifacts.offloading",
    "Snapshot": "abstractruntime_snapshots.store",
    "SnapshotStore": "abstractruntime_snapshots.store",
    "InMemorySnapshotStore": "abstractruntime_snapshots.store",
    "JsonSnapshotStore": "abstractruntime_snapshots.store",
}

__all__ = list(_NAMES)
__getattr__ = lazy_exports(__name__, _NAMES)
