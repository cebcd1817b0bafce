"""Durable functions across processes, on LMDB and PostgreSQL: a SIGKILL after a @step's side effect and before
its commit (the step is recorded once; the side effect repeats only under the same idempotency key), and a run
started in one process and resumed in another."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from abstractruntime import Runtime, RunStatus
from abstractruntime.functional import recorded_results

import fn_flows
from fn_flows import lines

HERE = Path(__file__).resolve().parent
FAULTS = str(HERE.parents[1] / "faults")

CRASH_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from abstractruntime import Runtime
    from fault_support import KillAtPoint
    import fn_flows
    url, marker = sys.argv[3], sys.argv[4]
    rt = Runtime.from_config({"store": url}, plugins=[KillAtPoint("effect:after-execute", "fn", marker)])
    run_id = rt.start(workflow=fn_flows.checkout, vars={"customer_id": "c1"})
    print(run_id, flush=True)
    rt.tick(workflow=fn_flows.checkout, run_id=run_id)
    print("survived", flush=True)
""")

START_CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1]]
    from abstractruntime import Runtime
    import fn_flows
    with Runtime.from_config({"store": sys.argv[2]}) as rt:
        run_id = rt.start(workflow=fn_flows.onboarding, vars={"customer_id": "c7"})
        state = rt.tick(workflow=fn_flows.onboarding, run_id=run_id)
        print(json.dumps({"run_id": run_id, "status": state.status.value, "wait_key": state.waiting.wait_key,
                          "prompt": state.waiting.prompt}), flush=True)
""")

RESUME_CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1]]
    from abstractruntime import Runtime
    import fn_flows
    with Runtime.from_config({"store": sys.argv[2]}) as rt:
        state = rt.resume(workflow=fn_flows.onboarding, run_id=sys.argv[3], wait_key=sys.argv[4],
                          payload={"response": "pro"})
        print(json.dumps({"status": state.status.value, "output": state.output, "error": state.error}), flush=True)
""")


def _child(script: str, *args: str, expect_kill: bool = False) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ABSTRACTRUNTIME_") or k == "ABSTRACTRUNTIME_TEST_POSTGRES_DSN"}
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                          env=env)
    if expect_kill:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    else:
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    return proc.stdout


def test_sigkill_after_a_steps_side_effect_reruns_it_once_under_the_same_key(store_url, provider):
    marker = provider / "killed"
    run_id = _child(CRASH_CHILD, str(HERE), FAULTS, store_url, str(marker), expect_kill=True).split()[0]
    assert marker.exists(), "the child died, but not at the fault point"
    first = lines(provider / "attempts.log")
    assert len(first) == 1 and lines(provider / "charges.log") == first  # charged, then killed before the commit

    with Runtime.from_config({"store": store_url}) as rt:
        before = rt.get_ledger(run_id)
        assert [(r["status"], r["effect"]["type"]) for r in before] == [("started", "function_step")]
        assert rt.get_state(run_id).status is RunStatus.RUNNING

        state = rt.tick(workflow=fn_flows.checkout, run_id=run_id)  # a new process drives the run
        assert state.status is RunStatus.COMPLETED, state.error
        key = first[0]
        assert lines(provider / "attempts.log") == [key, key]  # the side effect repeated under the same key ...
        assert lines(provider / "charges.log") == [key]  # ... and the provider charged once
        assert state.output["receipt"]["cents"] == 900

        rows = rt.get_ledger(run_id)
        steps = [r for r in rows if r["effect"] and r["effect"]["type"] == "function_step"]
        assert [r["status"] for r in steps] == ["started", "completed"]  # the step is recorded once
        assert steps[0]["step_id"] == steps[1]["step_id"] and steps[1]["idempotency_key"] == key
        assert steps[1]["effect"]["payload"]["functional_call"] == {"number": 0, "name": "fn_flows:charge"}
        assert max(Counter((r["step_id"], r["status"]) for r in rows).values()) == 1
        assert list(state.vars["_fn"]["calls"]) == ["0", "1"]  # charge, sleep: each once
        assert rt.verify_ledger(run_id)["ok"] is True

        n = len(rows)  # further ticks change nothing
        assert rt.tick(workflow=fn_flows.checkout, run_id=run_id).status is RunStatus.COMPLETED
        assert len(rt.get_ledger(run_id)) == n


def test_a_run_started_in_one_process_is_resumed_in_another(store_url, provider):
    started = json.loads(_child(START_CHILD, str(HERE), store_url))
    assert started["status"] == "waiting" and started["prompt"] == "Which plan?"
    assert started["wait_key"].endswith(":fn:1")  # call #1 (call #0 is ctx.now())
    done = json.loads(_child(RESUME_CHILD, str(HERE), store_url, started["run_id"], started["wait_key"]))
    assert done["status"] == "completed", done["error"]
    assert done["output"]["plan"] == "pro" and done["output"]["receipt"]["cents"] == 4900
    assert len(lines(provider / "charges.log")) == 1

    with Runtime.from_config({"store": store_url}) as rt:  # a third process: the record replays the same
        state = rt.get_state(started["run_id"])
        recorded = recorded_results(state.vars)
        assert done["output"]["started"] == recorded["0"]  # ctx.now() of the first process, replayed
        assert done["output"]["token"] == recorded[str(len(recorded) - 1)]
        plan = fn_flows.onboarding.nodes["fn"](state, None)  # a replay of the finished run: no new call
        assert plan.complete_output == done["output"]
