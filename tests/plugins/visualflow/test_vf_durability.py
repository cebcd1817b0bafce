"""A visual run killed mid-loop (real subprocess, SIGKILL, LMDB) resumes at the same iteration with the same
variables: every visual node is a kernel step, and all control state lives in run.vars."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from abstractruntime import Runtime, RunStatus
from abstractruntime_visualflow import compile_visualflow

from vf_support import FLOWS, load

ITEMS = list(range(1, 41))

CHILD = textwrap.dedent("""
    import json, sys, time
    from abstractruntime import Runtime
    from abstractruntime_visualflow import compile_visualflow
    store, flow_path, items = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    spec = compile_visualflow(json.load(open(flow_path)))
    rt = Runtime.from_config({"store": store})
    run_id = rt.start(workflow=spec, vars={"items": items})
    print(json.dumps({"run_id": run_id}), flush=True)
    while True:
        state = rt.tick(workflow=spec, run_id=run_id, max_steps=1)
        frame = state.vars.get("_temp", {}).get("_control", {}).get("frames", {}).get("each")
        print(json.dumps({"node": state.current_node, "index": frame and frame["index"],
                          "status": state.status.value}), flush=True)
        time.sleep(0.01)
""")


def _frame(state):
    return state.vars.get("_temp", {}).get("_control", {}).get("frames", {}).get("each")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_loop_then_resume_at_the_same_iteration(tmp_path):
    store = f"lmdb://{tmp_path}/store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, store, str(FLOWS / "durable_loop.json"), json.dumps(ITEMS)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        run_id = json.loads(child.stdout.readline())["run_id"]
        deadline = time.time() + 60
        while time.time() < deadline:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            info = json.loads(line)
            if info["index"] is not None and info["index"] >= 5:
                break
        child.send_signal(signal.SIGKILL)  # anywhere: between steps or in the middle of a commit
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    spec = compile_visualflow(load("durable_loop"))
    with Runtime.from_config({"store": store}) as rt:
        state = rt.get_state(run_id)
        assert state.status is RunStatus.RUNNING
        frame = _frame(state)
        index, visits, total = frame["index"], state.vars["visits"], state.vars["total"]
        assert index >= 5
        # the checkpoint is consistent: every iteration before `index` happened exactly once
        assert visits == ITEMS[:len(visits)] and total == float(sum(visits))
        assert len(visits) in (index, index + 1)
        assert state.current_node in ("each", "visit", "acc")
        # the next step continues exactly there
        node_before, step_before = state.current_node, state.step
        after = rt.tick(workflow=spec, run_id=run_id, max_steps=1)
        assert after.step == step_before + 1
        if node_before == "visit":
            assert _frame(after)["index"] == index and after.vars["visits"] == ITEMS[:index + 1]
        elif node_before == "each":
            assert _frame(after)["index"] == index + 1 or after.current_node == "end"
        final = rt.tick(workflow=spec, run_id=run_id, max_steps=10_000)
        assert final.status is RunStatus.COMPLETED
        assert final.output == {"visits": ITEMS, "total": float(sum(ITEMS)), "success": True}
        assert final.vars["_temp"]["_control"]["stack"] == []


def test_every_visual_node_step_is_committed_on_lmdb(tmp_path):
    spec = compile_visualflow(load("durable_loop"))
    with Runtime.from_config({"store": f"lmdb://{tmp_path}/s"}) as rt:
        run_id = rt.start(workflow=spec, vars={"items": [1, 2, 3]})
        seen = []
        while True:
            state = rt.tick(workflow=spec, run_id=run_id, max_steps=1)
            persisted = rt.get_state(run_id)
            assert persisted.revision == state.revision and persisted.vars == state.vars
            seen.append(persisted.current_node)
            if state.status is not RunStatus.RUNNING:
                break
        # start, init, then each/visit/acc per item, each (done), end
        assert seen[:4] == ["init", "each", "visit", "acc"] and state.output["total"] == 6.0
        assert state.step == 2 + 3 * 3 + 1 + 1
