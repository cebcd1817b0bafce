"""Reference import path ``abstractruntime.workflow_bundle`` (the code lives in the ``bundles`` plugin)."""

from abstractruntime_bundles import (  # noqa: F401
    WORKFLOW_BUNDLE_FORMAT_VERSION_V1,
    BundleLimits,
    InstalledWorkflowBundle,
    PackedWorkflowBundle,
    WorkflowBundle,
    WorkflowBundleEntrypoint,
    WorkflowBundleError,
    WorkflowBundleManifest,
    WorkflowBundleRegistry,
    WorkflowBundleRegistryError,
    WorkflowEntrypointRef,
    default_workflow_bundles_dir,
    inspect_workflow_bundle,
    open_workflow_bundle,
    pack_workflow_bundle,
    sanitize_bundle_id,
    sanitize_bundle_version,
    unpack_workflow_bundle,
    workflow_bundle_manifest_from_dict,
    workflow_bundle_manifest_to_dict,
)

__all__ = [
    "WORKFLOW_BUNDLE_FORMAT_VERSION_V1", "WorkflowBundleError", "WorkflowBundleRegistryError",
    "WorkflowBundleEntrypoint", "WorkflowBundleManifest", "workflow_bundle_manifest_from_dict",
    "workflow_bundle_manifest_to_dict", "WorkflowBundle", "open_workflow_bundle", "InstalledWorkflowBundle",
    "WorkflowBundleRegistry", "WorkflowEntrypointRef", "default_workflow_bundles_dir", "sanitize_bundle_id",
    "sanitize_bundle_version", "PackedWorkflowBundle", "pack_workflow_bundle", "inspect_workflow_bundle",
    "unpack_workflow_bundle",
]
