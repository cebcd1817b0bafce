"""Reference path ``abstractruntime.storage.snapshots`` (the code lives in the ``snapshots`` plugin)."""

from abstractruntime_snapshots.store import InMemorySnapshotStore, JsonSnapshotStore, Snapshot, SnapshotStore

__all__ = ["Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore"]
