"""The run-control mutations behind ``pause_run`` / ``resume_run`` / ``cancel_run``: each changes a loaded run and
returns the ledger records to commit with it (None: nothing to change). ``RunWriter.update`` commits them with a
revision check."""

from __future__ import annotations

from typing import List, Optional

from .ledger_rows import status_row
from .models import RunState, RunStatus, StepRecord, WaitReason, WaitState, utc_now_iso
from .paths import dict_at


def pause(run: RunState, *, reason: Optional[str] = None) -> Optional[List[StepRecord]]:
    if run.status.is_terminal or run.is_paused:
        return None
    if run.status is RunStatus.WAITING and run.waiting is not None and run.waiting.reason is WaitReason.USER:
        return None  # already waiting for a person
    state = dict_at(run.vars, "_runtime.control")
    state["paused"] = True
    state["paused_at"] = utc_now_iso()
    if isinstance(reason, str) and reason.strip():
        state["pause_reason"] = reason
    if run.status is RunStatus.RUNNING:
        run.status = RunStatus.WAITING
        run.waiting = WaitState(
            reason=WaitReason.USER, wait_key=f"pause:{run.run_id}", resume_to_node=run.current_node,
            prompt="Paused", allow_free_text=False, details={"kind": "pause"},
        )
    return []


def unpause(run: RunState) -> Optional[List[StepRecord]]:
    if run.status.is_terminal or not run.is_paused:
        return None
    state = dict_at(run.vars, "_runtime.control")
    state.pop("paused", None)
    state.pop("pause_reason", None)
    state["resumed_at"] = utc_now_iso()
    w = run.waiting
    if w is not None and w.reason is WaitReason.USER and (
        w.wait_key == f"pause:{run.run_id}" or (w.details or {}).get("kind") == "pause"
    ):
        run.status = RunStatus.RUNNING
        run.current_node = w.resume_to_node or run.current_node
        run.waiting = None
    return []


def cancel(run: RunState, *, reason: Optional[str] = None) -> Optional[List[StepRecord]]:
    if run.status.is_terminal:
        return None
    run.status = RunStatus.CANCELLED
    run.error = reason or "Cancelled"
    run.waiting = None
    if run.is_paused:
        dict_at(run.vars, "_runtime.control").pop("paused", None)
    return [status_row(run, RunStatus.CANCELLED.value)]
