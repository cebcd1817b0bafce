"""Durable retry backoff: a backoff longer than ``inline_backoff_s`` parks the run in a timer wait (reason ``until``,
details ``kind: retry``) instead of sleeping in the caller's thread; when due, the step runs again from the state
before its node, under the same idempotency key, and the attempt count goes on. A SIGKILL during the backoff loses
nothing: another process finishes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from abstractruntime import DefaultEffectPolicy, Effect, EffectOutcome, Runtime, RunStatus, StepPlan, WaitReason
from kernel_support import HandlerPlugin, workflow


class Flaky:
    """Fails ``failures`` times, then succeeds; counts its calls and the idempotency keys it saw."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls, self.keys = failures, 0, []

    def __call__(self, call):
        self.calls += 1
        self.keys.append(call.idempotency_key)
        if self.calls <= self.failures:
            return EffectOutcome.failed(f"down #{self.calls}")
        return EffectOutcome.completed({"ok": True, "attempt": call.attempt})


def _flow():
    def charge(run, ctx):
        run.vars["visits"] = run.vars.get("visits", 0) + 1  # not idempotent: must run from the state before it
        return StepPlan(node_id="charge", effect=Effect("charge", {"cents": 5}, "receipt"), next_node="done")

    return workflow({"charge": charge,
                     "done": lambda run, ctx: StepPlan(node_id="done", complete_output={"r": run.vars["receipt"]})})


@pytest.mark.parametrize("durability", ["barrier", "step"])
@pytest.mark.parametrize("side_effects", [True, False])
def test_a_long_backoff_parks_the_run_and_the_step_runs_again_when_due(tmp_path, side_effects, durability):
    flaky = Flaky(failures=1)
    slept = []
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db", "durability": durability},
                             plugins=[HandlerPlugin("charge_plugin", "charge", flaky, side_effects=side_effects)],
                             effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=1.2),
                             sleep=slept.append)
    wf = _flow()
    run_id = rt.start(workflow=wf, vars={"visits": 0})
    state = rt.tick(workflow=wf, run_id=run_id)
    assert slept == []  # nothing slept in the caller's thread
    assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.UNTIL
    assert state.waiting.details == {"kind": "retry", "attempt": 2, "effect_type": "charge", "error": "down #1"}
    assert state.current_node == "charge" and state.waiting.resume_to_node == "charge"
    stored = rt.get_state(run_id)
    assert stored.status is RunStatus.WAITING and stored.vars["visits"] == 0  # the state before the node
    assert [r["status"] for r in rt.get_ledger(run_id)] == ["started", "failed"]
    assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.WAITING  # not due yet: nothing happens
    assert flaky.calls == 1

    time.sleep(1.3)
    final = rt.tick(workflow=wf, run_id=run_id)
    assert final.status is RunStatus.COMPLETED, final.error
    assert final.output == {"r": {"ok": True, "attempt": 2}} and final.vars["visits"] == 1
    assert flaky.calls == 2 and len(set(flaky.keys)) == 1  # the same idempotency key
    rows = [(r["status"], r["attempt"]) for r in rt.get_ledger(run_id) if r["node_id"] == "charge"]
    assert rows == [("started", 1), ("failed", 1), ("started", 2), ("completed", 2)]
    rt.close()


def test_backoffs_up_to_the_threshold_stay_inline_and_the_attempts_run_out(tmp_path):
    flaky = Flaky(failures=5)
    slept = []
    rt = Runtime.from_config({"store": "memory://", "inline_backoff_s": 5},
                             plugins=[HandlerPlugin("charge_plugin", "charge", flaky)],
                             effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=2),
                             sleep=slept.append)
    wf = _flow()
    state = rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert slept == [2, 4] and flaky.calls == 3
    assert state.status is RunStatus.FAILED and state.error == "Effect failed after 3 attempts: down #3"


def test_inline_backoff_s_is_validated():
    from abstractruntime.errors import ConfigurationError

    for bad in (-1, "soon", float("inf"), True):
        with pytest.raises(ConfigurationError, match="inline_backoff_s"):
            Runtime.from_config({"store": "memory://", "inline_backoff_s": bad})


CHILD = textwrap.dedent('''
    import sys, time
    sys.path[:0] = [sys.argv[3]]
    from abstractruntime import DefaultEffectPolicy, EffectOutcome, Runtime
    from kernel_support import HandlerPlugin
    from test_durable_backoff import _flow
    log = sys.argv[2]
    def charge(call):
        with open(log, "a") as fh:
            fh.write(call.idempotency_key + "\\n")
        return EffectOutcome.failed("down")  # the first attempt fails: a 1.5 s backoff parks the run
    rt = Runtime.from_config({"store": sys.argv[1]}, plugins=[HandlerPlugin("p", "charge", charge)],
                             effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=1.5))
    wf = _flow()
    run_id = rt.start(workflow=wf, vars={"visits": 0})
    state = rt.tick(workflow=wf, run_id=run_id)
    print(run_id, state.status.value, flush=True)
    time.sleep(60)  # killed during the backoff
''')


def test_sigkill_during_a_durable_backoff_loses_nothing(tmp_path):
    url, log = f"lmdb://{tmp_path}/db", tmp_path / "attempts.log"
    here = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(log), here], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        run_id, status = child.stdout.readline().split()
        assert status == "waiting"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    flaky = Flaky(failures=0)
    with Runtime.from_config({"store": url}, plugins=[HandlerPlugin("p", "charge", flaky)],
                             effect_policy=DefaultEffectPolicy(default_max_attempts=3, default_backoff_base=1.5)) as rt:
        wf = _flow()
        assert rt.get_state(run_id).waiting.details["kind"] == "retry"
        deadline = time.time() + 10
        while rt.tick(workflow=wf, run_id=run_id).status is RunStatus.WAITING and time.time() < deadline:
            time.sleep(0.1)
        final = rt.get_state(run_id)
        assert final.status is RunStatus.COMPLETED and final.vars["visits"] == 1
        assert flaky.keys == log.read_text().split()  # the retry ran under the key of the first attempt
        assert rt.verify_ledger(run_id)["ok"] is True
