"""``abstractruntime store check``: list the damaged records of a store, and how ``runs list`` reports the runs it
skipped.

The check asks the store's backend for ``iter_corrupt(stats)`` (the builtin stores have it: one pass, one record
decoded at a time); a store without it is checked by listing its runs and loading each checkpoint and ledger
(:func:`abstractruntime_storekit.integrity.check_by_loading`). Exit code 0: nothing damaged; 1: damaged records
(listed); 2: the store could not be opened or read at all (``error: ...``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Iterable, List

from abstractruntime_storekit.integrity import CorruptRecord, check_by_loading

from abstractruntime_cli.output import emit_json, table


def store_check_args(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON output (as the global --json)")


def _where(backend: Any) -> str:
    where = getattr(backend, "where", None)
    if isinstance(where, str):
        return where
    path = getattr(backend, "path", None)
    return f"{type(backend).__name__} at {path}" if path is not None else type(backend).__name__


def store_check(args: Any, runtime: Any) -> int:
    backend = runtime.backend
    stats: Dict[str, int] = {}
    check = getattr(backend, "iter_corrupt", None)  # optional (docs/writing-a-store.md)
    records = check(stats) if callable(check) else check_by_loading(runtime, stats=stats)
    found: List[Dict[str, Any]] = [r.to_dict() for r in records]
    report = {"store": _where(backend), "ok": not found, "runs": stats.get("runs"),
              "ledger_records": stats.get("ledger_records"), "corrupt": found,
              "method": "iter_corrupt" if callable(check) else "load every run"}
    if getattr(args, "json", False):
        emit_json(report)
    else:
        print(f"store: {report['store']}")
        print(f"checked: {report['runs']} runs, {report['ledger_records']} ledger records ({report['method']})")
        if found:
            table(found, ["kind", "run_id", "seq", "error"])
            print(f"{len(found)} damaged record(s): restore them from a backup or a history bundle; the other "
                  f"runs are readable.")
        else:
            print("no damaged records")
    return 1 if found else 0


def warn_skipped(skipped: Iterable[CorruptRecord]) -> None:
    """Tell the person on stderr which runs a listing left out because they are corrupt."""
    seen = set()
    for record in skipped:
        if record.run_id in seen:
            continue
        seen.add(record.run_id)
        print(f"warning: run {record.run_id} skipped, its stored checkpoint is corrupt: {record.error}",
              file=sys.stderr)
    if seen:
        print("warning: `abstractruntime store check` lists every damaged record", file=sys.stderr)


__all__ = ["store_check", "store_check_args", "warn_skipped"]
