"""Reference path ``abstractruntime.history_bundle`` (the code lives in the ``history`` plugin)."""

from abstractruntime_history.bundle import (
    RUN_HISTORY_BUNDLE_VERSION_V1,
    export_run_history_bundle,
    persist_workflow_snapshot,
)
from abstractruntime_history.portable import import_history_bundle, write_history_bundle  # noqa: F401 (ours)

__all__ = ["export_run_history_bundle", "persist_workflow_snapshot", "RUN_HISTORY_BUNDLE_VERSION_V1"]
