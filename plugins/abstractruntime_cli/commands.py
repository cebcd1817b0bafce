"""The core commands' implementations (``plugins``, ``runs list/show``, ``ledger show``, ``respond``, ``cancel``);
their arguments are declared in the package (imported whenever the command line starts), these only when run."""

from __future__ import annotations

import json
from typing import Any, Dict

from abstractruntime import RunStatus
from abstractruntime.codec import run_to_dict
from abstractruntime.errors import ValidationError
from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded
from abstractruntime_storekit.integrity import collect_skipped

from abstractruntime_cli.output import show
from abstractruntime_cli.store_check import warn_skipped

RUN_COLUMNS = ["run_id", "workflow_id", "status", "wait_reason", "updated_at"]
LEDGER_COLUMNS = ["#", "node", "status", "effect", "attempt", "ended_at", "error"]
_TERMINAL_KEY = "system:terminal_status:"


def plugins(args: Any, runtime: Any) -> int:
    rows = [p.to_dict() for p in runtime.plugins()]
    table = rows if args.json else [dict(r, requires=", ".join(r["requires"])) for r in rows]
    show(table, args.json, ["name", "distribution", "version", "status", "requires", "error"])
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def list_runs(runtime: Any, args: Any) -> list:
    """The rows of ``runs list`` (corrupt runs are left out by the store and named on stderr)."""
    with collect_skipped() as skipped:
        rows = runtime.run_store.list_run_index(status=RunStatus(args.status) if args.status else None,
                                                workflow_id=args.workflow, limit=args.limit)
    warn_skipped(skipped)
    return rows


def runs_list(args: Any, runtime: Any) -> int:
    if getattr(args, "watch", False):
        from abstractruntime_cli.live import watch_list

        return watch_list(args, runtime)
    show(list_runs(runtime, args), args.json, RUN_COLUMNS)
    return 0


def runs_show(args: Any, runtime: Any) -> int:
    data = run_to_dict(runtime.get_state(args.run_id))
    if args.json:
        show(data, True)
    else:
        summary = {k: data[k] for k in ("run_id", "workflow_id", "status", "current_node", "error", "parent_run_id",
                                        "session_id", "created_at", "updated_at", "step", "revision",
                                        "workflow_version")}
        summary["waiting"] = data["waiting"]
        summary["output"] = data["output"]
        summary["vars"] = {k: v for k, v in data["vars"].items() if not k.startswith("_")}
        show(summary, False)
    return 0


def ledger_row(i: int, r: Dict[str, Any]) -> Dict[str, Any]:
    """One line of `ledger show` (and of `runs watch`). The synthetic last row of a finished run (the reference's
    ``abstract.status`` event, stored as a completed ``emit_event`` step) reads as what happened: ``run failed``."""
    key = r.get("idempotency_key") or ""
    if key.startswith(_TERMINAL_KEY):
        return {"#": i, "node": r["node_id"], "status": f"run {key[len(_TERMINAL_KEY):]}", "effect": "(run status)",
                "attempt": None, "ended_at": r.get("ended_at"), "error": None}
    return {"#": i, "node": r["node_id"], "status": r["status"], "effect": (r.get("effect") or {}).get("type"),
            "attempt": r.get("attempt"), "ended_at": r.get("ended_at"), "error": r.get("error")}


def ledger_show(args: Any, runtime: Any) -> int:
    runtime.get_state(args.run_id)  # unknown run -> clear error
    rows = runtime.get_ledger(args.run_id)
    if args.json:
        show(rows, True)
    else:
        show([ledger_row(i, r) for i, r in enumerate(rows, 1)], False, LEDGER_COLUMNS)
    return 0


def deliver_answer(runtime: Any, run_id: str, payload: Dict[str, Any], *, wait_key: Any = None) -> Any:
    """What ``respond`` does (and the web console when it cannot resolve a run's workflow): deliver ``payload`` to
    the waiting run without workflow code and leave it RUNNING for a worker/scheduler to continue."""
    state = runtime.get_state(run_id)
    wait_key = wait_key or (state.waiting.wait_key if state.waiting else None)
    return runtime.resume(workflow=None, run_id=run_id, wait_key=wait_key, payload=payload, max_steps=0)


def respond(args: Any, runtime: Any) -> int:
    try:
        payload = loads_bounded(args.payload, what="--json")
    except JsonTooDeepError:
        raise
    except json.JSONDecodeError as exc:
        raise ValidationError(f"--json is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationError("--json must be a JSON object, e.g. '{\"text\": \"yes\"}'")
    state = deliver_answer(runtime, args.run_id, payload, wait_key=args.wait_key)
    show({"run_id": state.run_id, "status": state.status.value, "current_node": state.current_node}, args.json)
    return 0


def cancel(args: Any, runtime: Any) -> int:
    state = runtime.cancel_run(args.run_id, reason=args.reason)
    show({"run_id": state.run_id, "status": state.status.value, "error": state.error}, args.json)
    return 0


__all__ = ["plugins", "runs_list", "runs_show", "ledger_show", "ledger_row", "respond", "cancel", "deliver_answer",
           "list_runs", "RUN_COLUMNS", "LEDGER_COLUMNS"]
