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

#: bundles carry the runs' artifacts
abstractruntime_requires = ('artifacts',)


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


# --- command line: abstractruntime export RUN_ID -o FILE / import FILE --------------------------------------------

def _cli_export_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("-o", "--output", help="the bundle file to write (default: <run_id>.history.zip)")


def _cli_export(args: Any, runtime: Any) -> int:
    runtime.get_state(args.run_id)
    path = Path(args.output or f"{args.run_id}.history.zip")
    written = export_history_file(runtime, args.run_id, path)
    print(str(written))
    return 0


def _cli_import_args(parser: Any) -> None:
    parser.add_argument("path")


def _cli_import(args: Any, runtime: Any) -> int:
    import json

    print(json.dumps(import_history_file(runtime, args.path), indent=2, default=str))
    return 0


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from abstractruntime.descriptors import CliCommandDescriptor

    return [
        CliCommandDescriptor("export", "export a run (state, ledger, artifacts, subruns) to one portable file",
                             _cli_export_args, _cli_export, store="read"),
        CliCommandDescriptor("import", "import a run history file into this store", _cli_import_args, _cli_import),
    ]
