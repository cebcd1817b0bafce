"""Shared parts of the web console tests: a workflow that asks a person, runs on a real LMDB store, the groceries
flow started by `abstractruntime flow run`."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Tuple

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec

REPO = Path(__file__).resolve().parents[3]
GROCERIES = REPO / "examples" / "flows" / "groceries.flow"
XSS = "<script>alert(1)</script>"


def _ask(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={
        "prompt": run.vars.get("prompt", "Approve?"), "choices": ["yes", "no"]}, result_key="answer"),
        next_node="done")


def _done(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="done", complete_output={"answer": run.vars.get("answer")})


APPROVAL = WorkflowSpec(workflow_id="approval", entry_node="ask", nodes={"ask": _ask, "done": _done})


def _finish(run: Any, ctx: Any) -> StepPlan:
    return StepPlan(node_id="finish", complete_output={"ok": True})


QUICK = WorkflowSpec(workflow_id="quick", entry_node="finish", nodes={"finish": _finish})


def open_runtime(path: Path) -> Runtime:
    return Runtime.from_config({"store": f"lmdb://{path}"})


def waiting_run(rt: Runtime, **vars: Any) -> str:
    run_id = rt.start(workflow=APPROVAL, vars=dict(vars))
    rt.tick(workflow=APPROVAL, run_id=run_id)
    return run_id


def completed_run(rt: Runtime) -> str:
    run_id = rt.start(workflow=QUICK)
    rt.tick(workflow=QUICK, run_id=run_id)
    return run_id


def start_groceries(store_path: Path) -> str:
    """``abstractruntime --store lmdb://... --json flow run groceries.flow`` (in process); the waiting run's id."""
    from abstractruntime_cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--store", f"lmdb://{store_path}", "--json", "flow", "run", str(GROCERIES),
                     "--input", json.dumps({"items": ["tea", "jam"]})])
    assert code == 0, out.getvalue()
    info = json.loads(out.getvalue())
    assert info["status"] == "waiting", info
    return info["waiting_run_id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(asgi: Any) -> Iterator[str]:
    """uvicorn serving ``asgi`` on 127.0.0.1:<free port> in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning",
                                          access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


__all__ = ["APPROVAL", "QUICK", "XSS", "GROCERIES", "open_runtime", "waiting_run", "completed_run",
           "start_groceries", "serving", "free_port"]
