"""Store interfaces, plus the reference's storage names (implementations live in store plugins and are
re-exported lazily).

Reference names not available yet (hash chain, offloading, snapshots) are listed in docs/compatibility.md.
"""

from .._lazy import lazy_exports
from .base import (
    EventWaitIndexStore,
    LedgerStore,
    QueryableRunIndexStore,
    QueryableRunStore,
    RunStore,
    StepCommit,
    StoreBackend,
)
from .observable import ObservableLedgerStore, ObservableLedgerStoreProtocol

# QueryableRunIndexStore, EventWaitIndexStore, StepCommit and StoreBackend are importable from here too; __all__
# below is the reference's list.

__getattr__ = lazy_exports(__name__, {
    "InMemoryRunStore": "abstractruntime_inmemory.store",
    "InMemoryLedgerStore": "abstractruntime_inmemory.store",
    "JsonFileRunStore": "abstractruntime_jsonfiles.store",
    "JsonlLedgerStore": "abstractruntime_jsonfiles.store",
    "HashChainedLedgerStore": "abstractruntime_provenance.chain",
    "verify_ledger_chain": "abstractruntime_provenance.chain",
    "OffloadingRunStore": "abstractruntime_artifacts.offloading",
    "OffloadingLedgerStore": "abstractruntime_artifacts.offloading",
    "offload_large_values": "abstractruntime_artifacts.offloading",
    "Snapshot": "abstractruntime_snapshots.store",
    "SnapshotStore": "abstractruntime_snapshots.store",
    "InMemorySnapshotStore": "abstractruntime_snapshots.store",
    "JsonSnapshotStore": "abstractruntime_snapshots.store",
})

__all__ = [
    "RunStore",
    "LedgerStore",
    "QueryableRunStore",
    "InMemoryRunStore",
    "InMemoryLedgerStore",
    "JsonFileRunStore",
    "JsonlLedgerStore",
    "HashChainedLedgerStore",
    "verify_ledger_chain",
    "ObservableLedgerStore",
    "ObservableLedgerStoreProtocol",
    "OffloadingRunStore",
    "OffloadingLedgerStore",
    "offload_large_values",
    "Snapshot",
    "SnapshotStore",
    "InMemorySnapshotStore",
    "JsonSnapshotStore",
]
