"""The otel plugin's metrics after a known workload, read with the SDK's in-memory metric reader."""

from __future__ import annotations

from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

from otel_support import points

WF = "abstractruntime.workflow_id"
STATUS = "abstractruntime.run.status"
TYPE = "abstractruntime.effect.type"
OUTCOME = "abstractruntime.effect.outcome"


def _charge(run, effect):
    if effect.payload["amount"] > 100:
        return EffectOutcome.failed("over the limit")
    return EffectOutcome.completed({"charged": effect.payload["amount"]})


def _flow(amount):
    """charge -> answer -> done: 3 steps, 2 effects; an amount over 100 fails at the first step."""
    return WorkflowSpec(workflow_id="checkout", entry_node="charge", nodes={
        "charge": lambda run, ctx: StepPlan(node_id="charge", effect=Effect(type="charge", payload={"amount": amount}),
                                            next_node="tell"),
        "tell": lambda run, ctx: StepPlan(node_id="tell", effect=Effect(type=EffectType.ANSWER_USER,
                                                                        payload={"message": "paid"}), next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"ok": True}),
    })


def _ask_flow():
    return WorkflowSpec(workflow_id="ask", entry_node="ask", nodes={
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "?"}),
                                         next_node="done"),
        "done": lambda run, ctx: StepPlan(node_id="done", complete_output={}),
    })


def test_counters_histograms_and_the_runs_gauge_after_a_known_workload(tmp_path, otel):
    store = f"lmdb://{tmp_path}/db?sync=false"
    with Runtime.from_config({"store": store}, effect_handlers={"charge": _charge}) as rt:
        for amount in (10, 20, 30, 500):
            flow = _flow(amount)
            rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
        ask = _ask_flow()
        waiting = rt.start(workflow=ask)
        assert rt.tick(workflow=ask, run_id=waiting).status is RunStatus.WAITING
        cancelled = rt.start(workflow=ask)
        rt.cancel_run(cancelled)
        metrics = otel.metrics()

    assert points(metrics, "abstractruntime.steps") == {
        ((STATUS, "running"), (WF, "checkout")): 6,     # charge and tell of the three paid runs
        ((STATUS, "completed"), (WF, "checkout")): 3,   # their done
        ((STATUS, "failed"), (WF, "checkout")): 1,      # the refused charge
        ((STATUS, "waiting"), (WF, "ask")): 1,
    }
    assert points(metrics, "abstractruntime.effects") == {
        ((OUTCOME, "completed"), (TYPE, "charge")): 3,
        ((OUTCOME, "failed"), (TYPE, "charge")): 1,
        ((OUTCOME, "completed"), (TYPE, "answer_user")): 3,
        ((OUTCOME, "waiting"), (TYPE, "ask_user")): 1,
    }
    assert points(metrics, "abstractruntime.runs.finished") == {
        ((STATUS, "completed"), (WF, "checkout")): 3,
        ((STATUS, "failed"), (WF, "checkout")): 1,
        ((STATUS, "cancelled"), (WF, "ask")): 1,
    }
    # histograms: one measurement per step / effect attempt
    assert points(metrics, "abstractruntime.step.duration") == {((WF, "checkout"),): 10, ((WF, "ask"),): 1}
    assert points(metrics, "abstractruntime.effect.duration") == points(metrics, "abstractruntime.effects")
    (commits,) = metrics["abstractruntime.commit.duration"]
    assert dict(commits.attributes) == {"abstractruntime.store": f"lmdb://{tmp_path}/db"}
    assert commits.count >= 6 + 6 + 1  # each start, each tick's barrier, the cancel
    assert 0 < commits.sum < commits.count  # seconds, not milliseconds
    store_attr = ("abstractruntime.store", f"lmdb://{tmp_path}/db")
    # runtimes of other tests that are not collected yet report their stores too
    gauge = {k: v for k, v in points(metrics, "abstractruntime.runs.current").items() if store_attr in k}
    assert gauge == {((STATUS, "completed"), store_attr): 3, ((STATUS, "failed"), store_attr): 1,
                     ((STATUS, "waiting"), store_attr): 1, ((STATUS, "cancelled"), store_attr): 1}


def test_metrics_work_without_a_tracer_provider(tmp_path, otel):
    import abstractruntime_otel

    abstractruntime_otel.configure(meter_provider=otel.meter_provider)  # metrics only
    flow = _flow(10)
    with Runtime.from_config({"store": "memory://"}, effect_handlers={"charge": _charge}) as rt:
        assert rt.otel_status() == {"active": True, "tracing": False, "metrics": True,
                                    "api_version": rt.otel_status()["api_version"], "reason": None}
        state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    assert state.status is RunStatus.COMPLETED
    assert "trace" not in state.vars.get("_runtime", {})  # no span, no trace context
    assert otel.spans() == []
    assert sum(points(otel.metrics(), "abstractruntime.steps").values()) == 3
