"""Builtin plugin ``history``: run history bundles (reference §13) and portable history files.

Reference API (also importable from ``abstractruntime.history_bundle``): :func:`export_run_history_bundle`,
:func:`persist_workflow_snapshot`, ``RUN_HISTORY_BUNDLE_VERSION_V1``.

Ours: :func:`write_history_bundle` (a bundle and its artifacts in one zip file), :func:`import_history_bundle`
(recreate the runs, ledgers and artifacts of such a file in another store), and two runtime methods:

* ``runtime.export_history_file(run_id, path, *, include_subruns=True) -> Path`` -- a full export (complete
  ledgers, run states, artifacts from ``artifact_store_for(runtime)``) written to ``path``;
* ``runtime.import_history_file(path) -> dict`` -- :func:`import_history_bundle` into this runtime;
* ``runtime.move_run(run_id, *, to, reason=None) -> dict`` -- move a run (and its subruns) to another store
  (:mod:`.moving`); :func:`copy_store` copies a whole store (:mod:`.copying`). Command line: ``runs move``,
  ``store copy`` (docs/operations.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Union

from abstractruntime import hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor

from abstractruntime_pluginkit.lazy import lazy_exports

# Imported on first use: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["RUN_HISTORY_BUNDLE_VERSION_V1", "export_run_history_bundle", "persist_workflow_snapshot"],
                    ".bundle"),
    **dict.fromkeys(["HistoryBundleError", "import_history_bundle", "read_history_file", "write_history_bundle"],
                    ".portable"),
    **dict.fromkeys(["RunMoveError"], ".moving"),
    **dict.fromkeys(["StoreCopyError", "copy_runtime_store", "copy_store"], ".copying"),
})

#: bundles carry the runs' artifacts
abstractruntime_requires = ('artifacts',)


def export_history_file(runtime: Any, run_id: str, path: Union[str, os.PathLike], *,
                        include_subruns: bool = True, progress: Any = None) -> Path:
    from abstractruntime_artifacts import artifact_store_for

    from .bundle import export_run_history_bundle
    from .portable import write_history_bundle

    store = artifact_store_for(runtime)
    bundle = export_run_history_bundle(run_id=run_id, run_store=runtime.run_store, ledger_store=runtime.ledger_store,
                                       artifact_store=store, include_subruns=include_subruns, ledger_mode="full",
                                       include_state=True, progress=progress)
    return write_history_bundle(bundle, path, artifact_store=store, progress=progress)


def import_history_file(runtime: Any, path: Union[str, os.PathLike], *, progress: Any = None) -> Dict[str, Any]:
    from .portable import import_history_bundle

    return import_history_bundle(path, runtime=runtime, progress=progress)


def move_run(runtime: Any, run_id: str, *, to: str, reason: Any = None) -> Dict[str, Any]:
    """Move ``run_id`` and its subruns to the store ``to``: export, import, verify, then cancel the source with a
    ``moved`` ledger row (see :mod:`.moving`)."""
    from .moving import move_run as move

    return move(runtime, run_id, to=to, reason=reason)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [
        RuntimeMethodDescriptor("export_history_file", export_history_file,
                                "Write a run (subruns, ledgers, artifacts) to one portable file"),
        RuntimeMethodDescriptor("import_history_file", import_history_file,
                                "Import a portable history file into this runtime's stores"),
        RuntimeMethodDescriptor("move_run", move_run, "Move a run and its subruns to another store (export, import, "
                                "verify, then cancel the source with a 'moved to URL' ledger row)"),
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
    "move_run",
    "RunMoveError",
    "copy_store",
    "copy_runtime_store",
    "StoreCopyError",
]


# --- command line: abstractruntime export RUN_ID -o FILE / import FILE --------------------------------------------

def _cli_export_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("-o", "--output", help="the bundle file to write (default: <run_id>.history.zip)")


def _cli_export(args: Any, runtime: Any) -> int:
    from abstractruntime_pluginkit.console import progress_display

    runtime.get_state(args.run_id)
    path = Path(args.output or f"{args.run_id}.history.zip")
    with progress_display() as progress:  # bars on stderr when it is a terminal
        written = export_history_file(runtime, args.run_id, path, progress=progress)
    if args.json:
        print(json.dumps({"run_id": args.run_id, "path": str(written), "bytes": written.stat().st_size}, indent=2))
    else:
        print(str(written))
    return 0


def _cli_import_args(parser: Any) -> None:
    parser.add_argument("path")


def _cli_import(args: Any, runtime: Any) -> int:
    from abstractruntime_pluginkit.console import progress_display

    with progress_display() as progress:
        report = import_history_file(runtime, args.path, progress=progress)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"imported {len(report['run_ids'])} run(s) ({report['ledger_records']} ledger records, "
              f"{len(report['artifacts'])} artifact(s)); root run {report['root_run_id']}")
    return 0


def _cli_move_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--to", required=True, metavar="URL", help="the target store URL")
    parser.add_argument("--reason", help="kept in the source's 'moved' ledger row")


def _cli_move(args: Any, runtime: Any) -> int:
    from abstractruntime_cli.output import show

    show(move_run(runtime, args.run_id, to=args.to, reason=args.reason), args.json)
    return 0


def _cli_copy_args(parser: Any) -> None:
    parser.add_argument("source", metavar="SRC", help="the store URL to copy from (opened read-only)")
    parser.add_argument("target", metavar="DST", help="the store URL to copy into")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cli_copy(args: Any, runtime: Any) -> int:
    from abstractruntime_cli.output import show

    from .copying import copy_store

    result = copy_store(args.source, args.target, runtime=runtime, progress=not (args.no_progress or args.json))
    show(result, args.json)
    return 1 if result["mismatches"] else 0


@hookimpl
def abstractruntime_register_cli_commands() -> List[Any]:
    from abstractruntime.descriptors import CliCommandDescriptor

    return [
        CliCommandDescriptor("export", "export a run (state, ledger, artifacts, subruns) to one portable file",
                             _cli_export_args, _cli_export, store="read"),
        CliCommandDescriptor("import", "import a run history file into this store", _cli_import_args, _cli_import),
        CliCommandDescriptor("runs move", "move a run (and its subruns) to another store: export, import, verify, "
                             "then cancel it here with a 'moved to URL' ledger row", _cli_move_args, _cli_move),
        CliCommandDescriptor("store copy", "copy every run and artifact of store SRC into store DST, then verify",
                             _cli_copy_args, _cli_copy, store="none"),
    ]
