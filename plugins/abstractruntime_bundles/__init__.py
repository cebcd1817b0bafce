"""Builtin plugin ``bundles``: ``.flow`` WorkflowBundles -- manifest model, safe reader, packer, registry of
installed bundles -- and the ``abstractruntime flow ...`` commands (pack, inspect, validate, run, resume).

Reference import path: ``abstractruntime.workflow_bundle`` re-exports from here.
"""

from __future__ import annotations

from typing import Any, List

from abstractruntime import hookimpl

from .manifest import (
    WORKFLOW_BUNDLE_FORMAT_VERSION_V1,
    WorkflowBundleEntrypoint,
    WorkflowBundleError,
    WorkflowBundleManifest,
    WorkflowBundleNotFoundError,
    workflow_bundle_manifest_from_dict,
    workflow_bundle_manifest_to_dict,
)
from .packer import PackedWorkflowBundle, pack_workflow_bundle
from .reader import (
    BundleLimits,
    WorkflowBundle,
    inspect_workflow_bundle,
    open_workflow_bundle,
    unpack_workflow_bundle,
)
from .registry import (
    InstalledWorkflowBundle,
    WorkflowBundleRegistry,
    WorkflowBundleRegistryError,
    WorkflowEntrypointRef,
    default_workflow_bundles_dir,
    sanitize_bundle_id,
    sanitize_bundle_version,
)

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
