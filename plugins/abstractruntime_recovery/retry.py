"""``retry_run``: a FAILED run continues from its last committed checkpoint.

What a failure leaves behind (the kernel's commits): a node that raised is failed at the last good checkpoint with
``current_node`` = that node; an effect that failed after its attempts leaves ``current_node`` = the node that asked
for it (the step's variables as the node left them). Either way, setting the run RUNNING again makes the next tick
run that node -- and so its effect -- again. The effect gets a fresh idempotency key (the step counter moved on
with the failure), so its earlier ``failed`` rows do not count against the new attempts.
"""

from __future__ import annotations

from typing import Any, List, Optional

from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.ledger_rows import row
from abstractruntime.logs import get_logger
from abstractruntime.models import RunState, RunStatus, StepRecord, StepStatus, utc_now_iso
from abstractruntime.paths import dict_at

log = get_logger("abstractruntime.recovery")

#: the ``effect.type`` of the ledger row a retry writes
RETRY_EFFECT_TYPE = "retry"


class RunNotFailedError(AbstractRuntimeError, ValueError):
    """``retry_run`` was asked to retry a run that is not FAILED; nothing was written."""

    def __init__(self, run_id: str, status: RunStatus) -> None:
        what = {RunStatus.RUNNING: "it is running (a worker or tick continues it)",
                RunStatus.WAITING: "it is waiting (resume it, or cancel it)",
                RunStatus.COMPLETED: "it completed (start a new run to do it again)",
                RunStatus.CANCELLED: "it was cancelled (start a new run to do it again)"}.get(status, status.value)
        super().__init__(f"Run {run_id} cannot be retried: only a FAILED run can, and {what}. Nothing was changed.",
                         run_id=run_id)
        self.status = status


def retry_row(run: RunState, previous_error: Optional[str], reason: Optional[str]) -> StepRecord:
    payload = {"previous_error": previous_error, "node": run.current_node, "step": run.step}
    if isinstance(reason, str) and reason.strip():
        payload["reason"] = reason.strip()
    return row(run, run.current_node or "runtime", StepStatus.COMPLETED,
               effect={"type": RETRY_EFFECT_TYPE, "payload": payload, "result_key": None},
               result={"retried": True, "status": RunStatus.RUNNING.value})


def retry_run(runtime: Any, run_id: str, *, reason: Optional[str] = None) -> RunState:
    """Set the FAILED run ``run_id`` RUNNING again at its last checkpoint: ``error`` cleared, ``vars._runtime.retry``
    = ``{count, last_at}``, a ``retry`` row in the ledger (with the previous error), in one commit through
    ``runtime.update_run``. The failed step runs again on
    the next ``tick``. Raises :class:`RunNotFailedError` (nothing written) for a run in any other status and
    ``UnknownRunError`` for an unknown id."""

    def mutate(run: RunState) -> List[StepRecord]:
        if run.status is not RunStatus.FAILED:
            raise RunNotFailedError(run.run_id, run.status)
        previous_error = run.error
        run.status = RunStatus.RUNNING
        run.error = None
        run.waiting = None
        run.output = None
        marker = dict_at(run.vars, "_runtime.retry")  # how often and when: what the ledger says, at hand
        marker["count"] = int(marker.get("count") or 0) + 1
        marker["last_at"] = utc_now_iso()
        return [retry_row(run, previous_error, reason)]

    state = runtime.update_run(run_id, mutate)
    log.info("run_retried", run_id=run_id, node=state.current_node)
    return state


__all__ = ["retry_run", "retry_row", "RunNotFailedError", "RETRY_EFFECT_TYPE"]
