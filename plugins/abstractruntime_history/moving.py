"""Moving a run to another store: ``runtime.move_run(run_id, to=URL)`` and ``abstractruntime runs move RUN --to URL``.

Export and import alone make a *copy*: both stores could then answer the same run. A move is

1. **quiesce** -- the run and its subruns that are not finished are paused in the source, so no worker advances them
   while they are copied (a step in flight is refused by the revision check);
2. **export / import** -- a full history file (checkpoints, complete ledgers with their hash chains, artifacts)
   imported into the target, which refuses run ids it already has and chains that do not verify;
3. **verify** -- every moved run's checkpoint and ledger read back from the target equal the source's;
4. **switch** -- the runs this move paused are resumed in the target; each source run gets a ``moved`` ledger row
   naming the target (password hidden) and, if it was not finished, is CANCELLED with error ``moved to URL`` --
   provided it did not change since the export (else nothing is cancelled and :class:`RunMoveError` says so).

If anything fails before the switch, the source runs are un-paused and nothing in the source changed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit, urlunsplit

import attrs

from abstractruntime import codec
from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.ledger_rows import row, status_row
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus

from .bundle import descendant_run_ids

log = get_logger("abstractruntime.history")

#: the ``effect.type`` of the ledger row a move leaves in the source
MOVED_EFFECT_TYPE = "moved"


class RunMoveError(AbstractRuntimeError):
    """A run could not be moved; the message says what happened to the source and the target."""


def redact_url(url: str) -> str:
    """``url`` without a password (``postgresql://app:***@db/app``), for ledgers and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_runtime(runtime: Any, url: str, **options: Any) -> Any:
    """A runtime on the store ``url`` with ``runtime``'s configuration (plugins, options) but not its store
    options; ``options`` become the new store's (e.g. ``read_only=True``)."""
    from abstractruntime import Runtime

    return Runtime(settings=attrs.evolve(runtime.settings, store=url, store_options=dict(options)))


def same_run(a: Optional[RunState], b: Optional[RunState]) -> bool:
    return a is not None and b is not None and codec.run_to_dict(a) == codec.run_to_dict(b)


def _moved_row(run: RunState, target: str, reason: Optional[str]) -> StepRecord:
    payload = {"to": target, "status": run.status.value}
    if reason:
        payload["reason"] = reason
    return row(run, run.current_node or "runtime", StepStatus.COMPLETED,
               effect={"type": MOVED_EFFECT_TYPE, "payload": payload, "result_key": None},
               result={"moved": True, "to": target})


def _cancel_moved(runtime: Any, run_id: str, revision: int, target: str, reason: Optional[str]) -> None:
    def mutate(run: RunState) -> List[StepRecord]:
        if run.revision != revision:
            raise RunMoveError(f"Run {run_id} changed in the source while it was being moved (revision "
                               f"{revision} -> {run.revision}); its copy in {target} is out of date and the "
                               f"source run was left as it is: remove the copy from the target and move again",
                               run_id=run_id)
        records = [_moved_row(run, target, reason)]
        if not run.status.is_terminal:
            run.status, run.error, run.waiting = RunStatus.CANCELLED, f"moved to {target}", None
            control = (run.vars.get("_runtime") or {}).get("control")
            if isinstance(control, dict):
                control.pop("paused", None)
            records.append(status_row(run, RunStatus.CANCELLED.value))
        return records

    runtime.update_run(run_id, mutate)


def move_run(runtime: Any, run_id: str, *, to: str, reason: Optional[str] = None) -> Dict[str, Any]:
    """Move ``run_id`` and its subruns to the store ``to`` (a store URL): see the module docstring. Returns
    ``{run_ids, to, ledger_records, artifacts}``."""
    from . import export_history_file, import_history_file

    target = redact_url(to)
    root = runtime.get_state(run_id)
    run_ids = [root.run_id] + descendant_run_ids(runtime.run_store, root.run_id)
    paused: List[str] = []
    dst = open_runtime(runtime, to)
    try:
        try:
            for rid in run_ids:  # quiesce: nothing advances the runs while they are copied
                state = runtime.get_state(rid)
                if not state.status.is_terminal and not state.is_paused:
                    if runtime.pause_run(rid, reason=f"moving to {target}").is_paused:
                        paused.append(rid)
            exported = {rid: runtime.get_state(rid) for rid in run_ids}
            ledgers = {rid: runtime.get_ledger(rid) for rid in run_ids}
            with tempfile.TemporaryDirectory(prefix="abstractruntime-move-") as tmp:
                path = export_history_file(runtime, root.run_id, Path(tmp) / "run.history.zip")
                result = import_history_file(dst, path)
            bad = [rid for rid in run_ids
                   if not same_run(dst.run_store.load(rid), exported[rid]) or dst.get_ledger(rid) != ledgers[rid]]
            if bad:
                raise RunMoveError(f"Run(s) {', '.join(bad)} read back from {target} differ from the source; the "
                                   f"source runs were left as they were (un-paused): remove the copies from the "
                                   f"target and move again")
            changed = [rid for rid in run_ids if runtime.get_state(rid).revision != exported[rid].revision]
            if changed:
                raise RunMoveError(f"Run(s) {', '.join(changed)} changed in the source while being moved; the "
                                   f"source runs were left as they were (un-paused) and their copies in {target} "
                                   f"are out of date: remove the copies from the target and move again")
        except BaseException:
            for rid in paused:
                try:
                    runtime.resume_run(rid)
                except Exception as exc:  # the error that stopped the move is the one to report
                    log.warning("move_unpause_failed", run_id=rid, error=str(exc))
            raise
        for rid in paused:  # the target's copies carry on where the source's stopped
            dst.resume_run(rid)
        for rid in run_ids:  # parents first: a cancelled child never wakes a parent that is still to be moved
            _cancel_moved(runtime, rid, exported[rid].revision, target, reason)
    finally:
        dst.close()
    log.info("run_moved", run_id=root.run_id, runs=len(run_ids), to=target)
    return {"run_ids": run_ids, "to": target, "ledger_records": result["ledger_records"],
            "artifacts": result["artifacts"]}


__all__ = ["move_run", "RunMoveError", "MOVED_EFFECT_TYPE", "redact_url", "open_runtime", "same_run"]
