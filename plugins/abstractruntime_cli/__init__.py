"""Builtin plugin ``cli``: the core subcommands of the ``abstractruntime`` command line.

``plugins``, ``runs list``, ``runs show``, ``ledger show``, ``respond``, ``cancel``, ``store check``. Other plugins add their own
(``ledger verify`` from provenance, ``snapshots ...`` from snapshots, ``export`` from history).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from abstractruntime import RunStatus, hookimpl
from abstractruntime.codec import run_to_dict
from abstractruntime.descriptors import CliCommandDescriptor
from abstractruntime.errors import ValidationError

from abstractruntime_cli.output import show
from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded
from abstractruntime_cli.store_check import store_check, store_check_args, warn_skipped
from abstractruntime_storekit.integrity import collect_skipped


def _plugins(args: Any, runtime: Any) -> int:
    rows = [p.to_dict() for p in runtime.plugins()]
    table = rows if args.json else [dict(r, requires=", ".join(r["requires"])) for r in rows]
    show(table, args.json, ["name", "distribution", "version", "status", "requires", "error"])
    return 1 if any(r["status"] == "failed" for r in rows) else 0


MAX_LIST_LIMIT = 1_000_000


def _list_limit(text: str) -> int:
    """``--limit``: a whole number from 1 to MAX_LIST_LIMIT (argparse reports anything else, exit 2)."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_LIST_LIMIT}, got {n}")
    return n


def _runs_list_args(parser: Any) -> None:
    parser.add_argument("--status", choices=[s.value for s in RunStatus])
    parser.add_argument("--workflow")
    parser.add_argument("--limit", type=_list_limit, default=50,
                        help=f"at most N runs (1-{MAX_LIST_LIMIT}, default 50)")


def _runs_list(args: Any, runtime: Any) -> int:
    with collect_skipped() as skipped:  # corrupt runs are left out by the store and named on stderr
        rows = runtime.run_store.list_run_index(status=RunStatus(args.status) if args.status else None,
                                                workflow_id=args.workflow, limit=args.limit)
    show(rows, args.json, ["run_id", "workflow_id", "status", "wait_reason", "updated_at"])
    warn_skipped(skipped)
    return 0


def _run_id_arg(parser: Any) -> None:
    parser.add_argument("run_id")


def _runs_show(args: Any, runtime: Any) -> int:
    data = run_to_dict(runtime.get_state(args.run_id))
    if args.json:
        show(data, True)
    else:
        summary = {k: data[k] for k in ("run_id", "workflow_id", "status", "current_node", "error", "parent_run_id",
                                        "session_id", "created_at", "updated_at", "step", "revision")}
        summary["waiting"] = data["waiting"]
        summary["output"] = data["output"]
        summary["vars"] = {k: v for k, v in data["vars"].items() if not k.startswith("_")}
        show(summary, False)
    return 0


_TERMINAL_KEY = "system:terminal_status:"


def _ledger_row(i: int, r: Dict[str, Any]) -> Dict[str, Any]:
    """One line of `ledger show`. The synthetic last row of a finished run (the reference's ``abstract.status``
    event, stored as a completed ``emit_event`` step) reads as what happened: ``run failed``, ``run completed``."""
    key = r.get("idempotency_key") or ""
    if key.startswith(_TERMINAL_KEY):
        return {"#": i, "node": r["node_id"], "status": f"run {key[len(_TERMINAL_KEY):]}", "effect": "(run status)",
                "attempt": None, "ended_at": r.get("ended_at"), "error": None}
    return {"#": i, "node": r["node_id"], "status": r["status"], "effect": (r.get("effect") or {}).get("type"),
            "attempt": r.get("attempt"), "ended_at": r.get("ended_at"), "error": r.get("error")}


def _ledger_show(args: Any, runtime: Any) -> int:
    runtime.get_state(args.run_id)  # unknown run -> clear error
    rows = runtime.get_ledger(args.run_id)
    if args.json:
        show(rows, True)
    else:
        flat = [_ledger_row(i, r) for i, r in enumerate(rows, 1)]
        show(flat, False, ["#", "node", "status", "effect", "attempt", "ended_at", "error"])
    return 0


def _respond_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--json", dest="payload", required=True, metavar="PAYLOAD",
                        help='the answer as a JSON object, e.g. \'{"text": "yes"}\'')
    parser.add_argument("--wait-key", help="the wait key to answer (default: the one the run waits for)")


def _respond(args: Any, runtime: Any) -> int:
    try:
        payload = loads_bounded(args.payload, what="--json")
    except JsonTooDeepError:
        raise
    except json.JSONDecodeError as exc:
        raise ValidationError(f"--json is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationError("--json must be a JSON object, e.g. '{\"text\": \"yes\"}'")
    state = runtime.get_state(args.run_id)
    wait_key = args.wait_key or (state.waiting.wait_key if state.waiting else None)
    # No workflow code here: deliver the answer and leave the run RUNNING for a worker/scheduler to continue.
    state = runtime.resume(workflow=None, run_id=args.run_id, wait_key=wait_key, payload=payload, max_steps=0)
    show({"run_id": state.run_id, "status": state.status.value, "current_node": state.current_node}, args.json)
    return 0


def _cancel_args(parser: Any) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--reason")


def _cancel(args: Any, runtime: Any) -> int:
    state = runtime.cancel_run(args.run_id, reason=args.reason)
    show({"run_id": state.run_id, "status": state.status.value, "error": state.error}, args.json)
    return 0


@hookimpl
def abstractruntime_register_cli_commands() -> List[CliCommandDescriptor]:
    return [
        CliCommandDescriptor("plugins", "list plugins: name, distribution, version, status, error",
                             lambda p: None, _plugins, store="none"),
        CliCommandDescriptor("runs list", "list runs (newest first)", _runs_list_args, _runs_list, store="read"),
        CliCommandDescriptor("runs show", "show one run", _run_id_arg, _runs_show, store="read"),
        CliCommandDescriptor("ledger show", "show a run's ledger", _run_id_arg, _ledger_show, store="read"),
        CliCommandDescriptor("respond", "answer a waiting run (it continues when a worker ticks it)",
                             _respond_args, _respond),
        CliCommandDescriptor("cancel", "cancel a run", _cancel_args, _cancel),
        CliCommandDescriptor("store check", "list damaged records (corrupt checkpoints or ledger records); exit 1 "
                             "if any", store_check_args, store_check, store="read"),
    ]
