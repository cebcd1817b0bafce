"""A process killed (SIGKILL) between a tool call and its recorded result, then restarted on the same LMDB store:
completed tool calls are not run again.

The kernel commits a ``started`` reservation before TOOL_CALLS runs and, after the crash, re-executes the in-doubt
step under the same idempotency key. The handler journals each completed tool result (keyed by that key and the
runtime call id) in the artifact store beside the LMDB environment *before* returning, so the re-execution serves
journalled calls instead of running them. Only a call that was itself in flight is run again (at-least-once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import abstractruntime_abstractcore as plugin
from abstractruntime import Runtime, RunStatus
from abstractruntime_abstractcore import LocalAbstractCoreLLMClient, MappingToolExecutor, attach

from ac_flows import REACT, LoggedTools
from fake_llm_server import MODEL
from fake_llm_server import FakeLLMServer

HERE = str(Path(__file__).resolve().parent)

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    url, workdir, where = sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    import abstractruntime_abstractcore as plugin
    from abstractruntime import Runtime, hookimpl
    from abstractruntime_abstractcore import LocalAbstractCoreLLMClient, MappingToolExecutor, attach
    from ac_flows import ADD_SPEC, REACT, SLOW_ADD_SPEC, LoggedTools, react_vars
    from fake_llm_server import MODEL
    from fake_llm_server import FakeLLMServer

    def hang():
        (workdir / "in_window").write_text("1")
        time.sleep(600)

    class KillWindow:  # after the TOOL_CALLS handler returned, before the kernel commits its outcome
        __name__ = "kill_window"

        @hookimpl(wrapper=True)
        def abstractruntime_execute_effect(self, call):
            outcome = yield
            if call.effect.type_value == "tool_calls" and where == "after_tools":
                hang()
            return outcome

    tools = LoggedTools(str(workdir / "executions.log"))

    def slow_add(a, b):
        tools._record("slow_add", {"a": a, "b": b})
        hang()  # killed inside the second tool of the batch

    server = FakeLLMServer(json.loads((workdir / "script.json").read_text()), model=MODEL).start()
    rt = Runtime.from_config({"store": url}, plugins=[plugin, KillWindow()])
    attach(rt, llm=LocalAbstractCoreLLMClient(provider="openai-compatible", model=MODEL,
                                              llm_kwargs={"base_url": server.base_url, "timeout": 30}),
           tools=MappingToolExecutor({"add": tools.add, "slow_add": slow_add}))
    run_id = rt.start(workflow=REACT, vars={**react_vars(), "allowed_tools": ["add", "slow_add"],
                                            "tool_specs": [ADD_SPEC, SLOW_ADD_SPEC]})
    print(run_id, flush=True)
    rt.tick(workflow=REACT, run_id=run_id)
    """
)


def _kill_child(tmp_path, url, where, calls):
    (tmp_path / "script.json").write_text(json.dumps([{"tool_calls": calls}]))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, HERE, url, str(tmp_path), where],
                            stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        deadline = time.time() + 60
        while not (tmp_path / "in_window").exists():
            assert time.time() < deadline and proc.poll() is None, "child never reached the kill window"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return run_id


def _restart(url, tools, server):
    rt = Runtime.from_config({"store": url}, plugins=[plugin])
    attach(rt, llm=LocalAbstractCoreLLMClient(provider="openai-compatible", model=MODEL,
                                              llm_kwargs={"base_url": server.base_url, "timeout": 30}),
           tools=MappingToolExecutor({"add": tools.add, "slow_add": lambda a, b: tools._record(
               "slow_add", {"a": a, "b": b}) or a + b}))
    return rt


def _tool_rows(rt, run_id):
    return [r for r in rt.get_ledger(run_id) if r["node_id"] == "tools"
            and not str(r.get("idempotency_key") or "").startswith("system:")]


def test_sigkill_after_the_tool_ran_does_not_run_it_again(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    run_id = _kill_child(tmp_path, url, "after_tools",
                         [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_1"}])
    tools = LoggedTools(str(tmp_path / "executions.log"))
    assert [e["tool"] for e in tools.executions()] == ["add"]
    with FakeLLMServer([{"content": "The answer is 5"}], model=MODEL) as server:
        with _restart(url, tools, server) as rt:
            assert [r["status"] for r in _tool_rows(rt, run_id)] == ["started"]  # in doubt after the crash
            state = rt.tick(workflow=REACT, run_id=run_id)
            assert state.status is RunStatus.COMPLETED, state.error
            assert state.output["answer"] == "The answer is 5"
            rows = _tool_rows(rt, run_id)
            assert [r["status"] for r in rows] == ["started", "completed"]
            assert rows[0]["step_id"] == rows[1]["step_id"]
            assert rows[1]["result"]["results"][0]["output"] == 5
            assert state.vars["tool_results"]["results"][0]["runtime_call_id"].startswith(
                f"rtcall_{rows[0]['idempotency_key']}_")
    assert [e["tool"] for e in tools.executions()] == ["add"]  # one execution, in the killed process
    assert len(tools.executions()) == 1


def test_sigkill_inside_the_second_tool_reruns_only_the_call_in_flight(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    run_id = _kill_child(tmp_path, url, "in_tool",
                         [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_1"},
                          {"name": "slow_add", "arguments": {"a": 1, "b": 1}, "id": "call_2"}])
    tools = LoggedTools(str(tmp_path / "executions.log"))
    assert [e["tool"] for e in tools.executions()] == ["add", "slow_add"]
    with FakeLLMServer([{"content": "done"}], model=MODEL) as server:
        with _restart(url, tools, server) as rt:
            state = rt.tick(workflow=REACT, run_id=run_id)
            assert state.status is RunStatus.COMPLETED, state.error
            results = state.vars["tool_results"]["results"]
            assert [r["output"] for r in results] == [5, 2]
    # `add` completed before the crash and was journalled: not run again; `slow_add` was in flight: run again
    assert [e["tool"] for e in tools.executions()] == ["add", "slow_add", "slow_add"]
