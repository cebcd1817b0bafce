"""Builtin plugin ``history``: run history bundles (reference §13) and portable history files.

Reference API (also importable from ``abstractruntime.history_bundle``): :func:`export_run_history_bundle`,
:func:`persist_workflow_snapshot`, ``RUN_HISTORY_BUNDLE_VERSION_V1``.

Ours: :func:`write_history_bundle` (a bundle and its artifacts in one zip file), :func:`import_history_bundle`
(recreate the runs, ledgers and artifacts of such a file in another store), and two runtime methods:

* ``runtime.export_history_file(run_id, path, *, include_subruns=True) -> Path`` -- a full export (complete
  ledgers, run states, artifacts from ``artifact_store_for(runtime)``) written to ``path``;
* ``runtime.import_history_file(path) -> dict`` -- :func:`import_history_bundle` into this runtime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Union

from abstractruntime import hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor

from .bundle import RUN_HISTORY_BUNDLE_VERSION_V1, export_run_history_bundle, persist_workflow_snapshot
from .portable import HistoryBundleError, import_history_bundle, read_history_file, write_history_bundle


def export_history_file(runtime: Any, run_id: str, path: Union[str, os.PathLike], *,
                        include_subruns: bool = True) -> Path:
    from abstractruntime_artifacts import artifact_store_for

    store = artifact_store_for(runtime)
    bundle = export_run_history_bundle(run_id=run_id, run_store=runtime.run_store, ledger_store=runtime.ledger_store,
                                       artifact_store=store, include_subruns=include_subruns, ledger_mode="full",
                                       include_state=True)
    return write_history_bundle(bundle, path, artifact_store=store)


def import_history_file(runtime: Any, path: Union[str, os.PathLike]) -> Dict[str, Any]:
    return import_history_bundle(path, runtime=runtime)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor("export_history_file", export_history_file,
                                "Write a run (subruns, ledgers, artifacts) to one portable file"),
        RuntimeMethodDescriptor("import_history_file", import_history_file,
                                "Import a portable history file into this runtime's stores"),
    ]


__all__ = [
    "RUN_HISTORY_BUNDLE_VERSION_V1",
    "export_run_history_bundle",
    "persist_workflow_snapshot",
    "write_history_bundle",
    "read_history_file",
    "import_history_bundle",
    "HistoryBundleError",
    "export_history_file",
    "import_history_file",
]
