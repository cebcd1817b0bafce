"""A store outage seen inside an effect handler or a node (``StoreUnavailableError``) is not the step's failure:
the tick raises it, nothing of the step is recorded as failed, and the next tick runs the step again (a reserved
side effect in doubt, under the same idempotency key)."""

from __future__ import annotations

import pytest

from abstractruntime import Effect, EffectOutcome, RunStatus, StepPlan
from abstractruntime.errors import StoreUnavailableError
from kernel_support import HandlerPlugin, runtime_on, workflow


def test_an_outage_in_a_handler_stops_the_tick_and_the_step_runs_again():
    keys = []

    def charge(call):
        keys.append(call.idempotency_key)
        if len(keys) == 1:
            raise StoreUnavailableError("the database restarted")
        return EffectOutcome.completed({"ok": True})

    rt = runtime_on(plugins=[HandlerPlugin("charge_plugin", "charge", charge)])
    wf = workflow({"a": lambda run, ctx: StepPlan(node_id="a", effect=Effect("charge", {}, "r"), next_node="b"),
                   "b": lambda run, ctx: StepPlan(node_id="b", complete_output={"r": run.vars["r"]})})
    run_id = rt.start(workflow=wf)
    with pytest.raises(StoreUnavailableError):
        rt.tick(workflow=wf, run_id=run_id)
    assert rt.get_state(run_id).status is RunStatus.RUNNING  # not FAILED
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started"]  # the reservation, in doubt
    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED and final.output == {"r": {"ok": True}}
    assert len(keys) == 2 and keys[0] == keys[1]


def test_an_outage_in_a_node_does_not_fail_the_run():
    calls = []

    def node(run, ctx):
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailableError("lost the connection")
        return StepPlan(node_id="a", complete_output={"ok": True})

    rt = runtime_on()
    wf = workflow({"a": node})
    run_id = rt.start(workflow=wf)
    with pytest.raises(StoreUnavailableError):
        rt.tick(workflow=wf, run_id=run_id)
    assert rt.get_state(run_id).status is RunStatus.RUNNING and rt.get_ledger(run_id) == []
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
