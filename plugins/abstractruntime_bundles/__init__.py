"""Builtin plugin ``bundles``: ``.flow`` WorkflowBundles -- manifest model, safe reader, packer, registry of
installed bundles -- and the ``abstractruntime flow ...`` commands (pack, inspect, validate, run, resume).

Reference import path: ``abstractruntime.workflow_bundle`` re-exports from here.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import hookimpl

from abstractruntime_pluginkit.lazy import lazy_exports

# Imported on first use: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["WORKFLOW_BUNDLE_FORMAT_VERSION_V1", "WorkflowBundleEntrypoint", "WorkflowBundleError",
                     "WorkflowBundleManifest", "WorkflowBundleNotFoundError", "workflow_bundle_manifest_from_dict",
                     "workflow_bundle_manifest_to_dict"], ".manifest"),
    **dict.fromkeys(["PackedWorkflowBundle", "pack_workflow_bundle"], ".packer"),
    **dict.fromkeys(["BundleLimits", "WorkflowBundle", "inspect_workflow_bundle", "open_workflow_bundle",
                     "unpack_workflow_bundle"], ".reader"),
    **dict.fromkeys(["InstalledWorkflowBundle", "WorkflowBundleRegistry", "WorkflowBundleRegistryError",
                     "WorkflowEntrypointRef", "default_workflow_bundles_dir", "sanitize_bundle_id",
                     "sanitize_bundle_version"], ".registry"),
})

#: flows in bundles are VisualFlow
abstractruntime_requires = ('visualflow',)


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from .cli import cli_commands

    return cli_commands()


__all__ = [
    "WORKFLOW_BUNDLE_FORMAT_VERSION_V1", "WorkflowBundleError", "WorkflowBundleRegistryError",
    "WorkflowBundleNotFoundError", "WorkflowBundleEntrypoint", "WorkflowBundleManifest", "workflow_bundle_manifest_from_dict",
    "workflow_bundle_manifest_to_dict", "WorkflowBundle", "open_workflow_bundle", "InstalledWorkflowBundle",
    "WorkflowBundleRegistry", "WorkflowEntrypointRef", "default_workflow_bundles_dir", "sanitize_bundle_id",
    "sanitize_bundle_version", "PackedWorkflowBundle", "pack_workflow_bundle", "inspect_workflow_bundle",
    "unpack_workflow_bundle", "BundleLimits",
]
