"""Workflows for the scheduler tests (importable by subprocesses)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec


def _timer(run, ctx):
    until = (datetime.now(timezone.utc) + timedelta(seconds=float(run.vars.get("delay", 1.0)))).isoformat()
    return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_UNTIL, {"until": until}), next_node="done")


def _event(run, ctx):
    return StepPlan(node_id="wait", effect=Effect(EffectType.WAIT_EVENT, {"name": "go", "scope": "global"},
                                                  "event"), next_node="done")


def _user(run, ctx):
    return StepPlan(node_id="wait", effect=Effect(EffectType.ASK_USER, {"prompt": "ok?"}, "answer"),
                    next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"kind": run.vars.get("kind")})


TIMER = WorkflowSpec(workflow_id="timer_flow", entry_node="wait", nodes={"wait": _timer, "done": _done})
EVENT = WorkflowSpec(workflow_id="event_flow", entry_node="wait", nodes={"wait": _event, "done": _done})
USER = WorkflowSpec(workflow_id="user_flow", entry_node="wait", nodes={"wait": _user, "done": _done})
ALL = (TIMER, EVENT, USER)


#: a child that completes at once (the missed-wake-up tests of both schedulers)
QUICK = WorkflowSpec(workflow_id="quick", entry_node="a", nodes={
    "a": lambda run, ctx: StepPlan(node_id="a", complete_output={"answer": 42})})


def parent_of(child_id: str) -> WorkflowSpec:
    """A parent that starts ``child_id`` asynchronously, waits for it and completes with its result."""
    return WorkflowSpec(workflow_id=f"parent_{child_id}", entry_node="spawn", nodes={
        "spawn": lambda run, ctx: StepPlan(node_id="spawn", effect=Effect(
            EffectType.START_SUBWORKFLOW, {"workflow_id": child_id, "async": True, "wait": True}, "sub"),
            next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"sub": run.vars["sub"]})})
