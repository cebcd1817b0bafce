"""Ledger rows the kernel writes itself (terminal status, completion, resume)."""

from __future__ import annotations

from typing import Any

from .models import RunState, RunStatus, StepRecord, StepStatus, new_id, utc_now_iso

#: the idempotency keys of the terminal-status rows (``status_row``)
TERMINAL_KEYS = frozenset(f"system:terminal_status:{s.value}" for s in RunStatus if s.is_terminal)


def row(run: RunState, node_id: str, status: StepStatus, **fields: Any) -> StepRecord:
    now = utc_now_iso()
    return StepRecord(run_id=run.run_id, step_id=new_id(), node_id=node_id, status=status, started_at=now,
                      ended_at=now, actor_id=run.actor_id, session_id=run.session_id, **fields)


def status_row(run: RunState, status: str) -> StepRecord:
    """The reference's synthetic terminal-status row (always the last ledger row of a finished run)."""
    payload = {"text": status}
    return row(run, run.current_node or "runtime", StepStatus.COMPLETED,
               effect={"type": "emit_event", "payload": {"name": "abstract.status", "scope": "session",
                                                         "payload": payload}, "result_key": None},
               result={"emitted": True, "name": "abstract.status", "payload": payload},
               attempt=1, idempotency_key=f"system:terminal_status:{status}")
