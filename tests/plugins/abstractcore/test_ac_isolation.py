"""Importing the plugin does not import AbstractCore; using it does not change the host's logging/structlog setup.

Each case runs in a fresh interpreter: AbstractCore reconfigures logging when it is first imported, so only a
clean process shows whether that first import was isolated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)

CONFIGURED_HOST = textwrap.dedent(
    """
    import io, json, logging, sys
    sys.path.insert(0, sys.argv[1])
    import structlog

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.name, record.levelname))

    host_handler = Keep(level=logging.INFO)
    logging.getLogger().addHandler(host_handler)
    logging.getLogger().setLevel(logging.INFO)

    def host_processor(logger, name, event_dict):
        return event_dict

    if sys.argv[2] == "structlog":
        structlog.configure(processors=[host_processor, structlog.processors.JSONRenderer()],
                            cache_logger_on_first_use=False)

    def snapshot():
        root = logging.getLogger()
        return (list(root.handlers), root.level, structlog.is_configured(), structlog.get_config())

    before = snapshot()
    import abstractruntime_abstractcore
    import abstractruntime.integrations.abstractcore
    import abstractruntime.integrations.abstractcore.default_tools
    import abstractruntime.integrations.abstractcore.mcp_worker
    lazy = "abstractcore" not in sys.modules

    from abstractruntime import Effect, EffectType, RunStatus, StepPlan, WorkflowSpec
    from abstractruntime_abstractcore import create_local_runtime, get_default_tools
    from fake_llm_server import MODEL
    from fake_llm_server import FakeLLMServer

    server = FakeLLMServer([{"content": "hi"}, {"error": 500, "message": "boom"}], model=MODEL).start()
    rt = create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": server.base_url})
    flow = WorkflowSpec(workflow_id="f", entry_node="a", nodes={
        "a": lambda run, ctx: StepPlan(node_id="a", effect=Effect(EffectType.LLM_CALL, {"prompt": "x"}, "r"),
                                       next_node="b"),
        "b": lambda run, ctx: StepPlan(node_id="b", effect=Effect(EffectType.LLM_CALL, {"prompt": "y"}, "r"),
                                       next_node=None)})
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    get_default_tools(["files"])  # imports AbstractCore's tool modules too
    after = snapshot()
    print(json.dumps({"lazy": lazy, "imported": "abstractcore" in sys.modules, "same": before == after,
                      "status": state.status.value,
                      "host_saw_abstractcore_error": any(n.startswith("abstractcore") and lvl == "ERROR"
                                                         for n, lvl in records)}))
    """
)

BARE_HOST = textwrap.dedent(
    """
    import json, logging, sys
    sys.path.insert(0, sys.argv[1])
    from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec
    from abstractruntime_abstractcore import create_local_runtime
    from fake_llm_server import MODEL
    from fake_llm_server import FakeLLMServer

    server = FakeLLMServer([{"error": 500, "message": "boom"}], model=MODEL).start()
    rt = create_local_runtime(provider="openai-compatible", model=MODEL, llm_kwargs={"base_url": server.base_url})
    flow = WorkflowSpec(workflow_id="f", entry_node="a", nodes={"a": lambda run, ctx: StepPlan(
        node_id="a", effect=Effect(EffectType.LLM_CALL, {"prompt": "x"}, "r"), next_node=None)})
    state = rt.tick(workflow=flow, run_id=rt.start(workflow=flow))
    import structlog
    print(json.dumps({"handlers": len(logging.getLogger().handlers), "level": logging.getLogger().level,
                      "structlog": structlog.is_configured(), "status": state.status.value}))
    """
)


def _run(code, *args):
    proc = subprocess.run([sys.executable, "-c", code, HERE, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("host", ["logging", "structlog"])
def test_configured_host_keeps_its_logging_and_structlog_configuration(host):
    lines = _run(CONFIGURED_HOST, host).stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert out["lazy"] and out["imported"] and out["same"] and out["status"] == "failed"
    if host == "logging":  # AbstractCore's log records reach the host's handlers (under "abstractcore.*")
        assert out["host_saw_abstractcore_error"]
    else:  # ...or go through the host's structlog configuration (its JSON renderer printing to stdout)
        assert any("Generation failed" in line and line.startswith("{") for line in lines[:-1])


def test_unconfigured_host_gets_no_output_and_no_configuration():
    proc = _run(BARE_HOST)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # AbstractCore's own stdout handler did not print the provider error
    assert json.loads(lines[0]) == {"handlers": 0, "level": 30, "structlog": False, "status": "failed"}
    assert "Generation failed" not in proc.stderr and "Traceback" not in proc.stderr
