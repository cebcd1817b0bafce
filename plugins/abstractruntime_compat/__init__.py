"""The 0.4.2 compatibility layer: the reference import paths whose code lives in plugins.

This package is an *overlay* of the ``abstractruntime`` namespace (entry-point group ``abstractruntime.namespace``,
see :mod:`abstractruntime._namespace`): ``abstractruntime.storage.sqlite`` is ``abstractruntime_compat.storage.sqlite``,
and a root name the kernel does not define (``abstractruntime.SqliteRunStore``) is looked up here. The kernel never
imports this package or any plugin; the modules here only re-export what the plugins define.
"""

from ._lazy import lazy_exports

# Root names of the reference (spec §1.1) that live in plugins, resolved on first use.
_ROOT_NAMES = {
    "abstractruntime_inmemory.store": ["InMemoryRunStore", "InMemoryLedgerStore"],
    "abstractruntime_jsonfiles.store": ["JsonFileRunStore", "JsonlLedgerStore"],
    "abstractruntime_sqlite.store": ["SqliteDatabase", "SqliteRunStore", "SqliteLedgerStore"],
    "abstractruntime_provenance.chain": ["HashChainedLedgerStore", "verify_ledger_chain"],
    "abstractruntime_compat.storage.observable": ["ObservableLedgerStore", "ObservableLedgerStoreProtocol"],
    "abstractruntime_commands.store": [
        "CommandRecord", "CommandAppendResult", "CommandStore", "CommandCursorStore", "InMemoryCommandStore",
        "JsonlCommandStore", "SqliteCommandStore", "InMemoryCommandCursorStore", "JsonFileCommandCursorStore",
        "SqliteCommandCursorStore",
    ],
    "abstractruntime_artifacts.store": [
        "Artifact", "ArtifactMetadata", "ArtifactStore", "InMemoryArtifactStore", "FileArtifactStore", "artifact_ref",
        "is_artifact_ref", "get_artifact_id", "resolve_artifact", "compute_artifact_id",
    ],
    "abstractruntime_artifacts.offloading": ["OffloadingRunStore", "OffloadingLedgerStore", "offload_large_values"],
    "abstractruntime_active_memory.active_context": ["ActiveContextPolicy"],
    "abstractruntime_active_memory.spans": ["TimeRange"],
    "abstractruntime_snapshots.store": ["Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore"],
    "abstractruntime_history.bundle": [
        "RUN_HISTORY_BUNDLE_VERSION_V1", "export_run_history_bundle", "persist_workflow_snapshot",
    ],
    "abstractruntime_bundles": [
        "WORKFLOW_BUNDLE_FORMAT_VERSION_V1", "WorkflowBundleError", "WorkflowBundleRegistryError",
        "WorkflowBundleEntrypoint", "WorkflowBundleManifest", "workflow_bundle_manifest_from_dict",
        "workflow_bundle_manifest_to_dict", "WorkflowBundle", "open_workflow_bundle", "InstalledWorkflowBundle",
        "WorkflowBundleRegistry", "WorkflowEntrypointRef", "default_workflow_bundles_dir", "sanitize_bundle_id",
        "sanitize_bundle_version",
    ],
    "abstractruntime_scheduler.scheduler": [
        "Scheduler", "SchedulerStats", "ScheduledRuntime", "create_scheduled_runtime",
    ],
    "abstractruntime_compat.identity": ["ActorFingerprint"],
    "abstractruntime_pluginkit.registry": ["WorkflowRegistry"],
    "abstractruntime_asyncio.runtime": ["AsyncRuntime"],
    "abstractruntime_observation": ["LimitWarning"],
    "abstractruntime_compat.core.policy": ["RetryPolicy", "NoRetryPolicy"],
    "abstractruntime_compat.storage.base": ["QueryableRunStore"],
}

__all__ = [name for names in _ROOT_NAMES.values() for name in names]
__getattr__ = lazy_exports(__name__, {name: module for module, names in _ROOT_NAMES.items() for name in names})
