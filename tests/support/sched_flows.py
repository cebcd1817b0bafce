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
