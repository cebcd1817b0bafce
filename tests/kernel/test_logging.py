"""The library never configures logging; unconfigured, it is quiet except for warnings."""

import logging
import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


FLOW = """
from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec
def a(run, ctx):
    return StepPlan(node_id="a", effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "hi"}), next_node="b")
def b(run, ctx):
    raise RuntimeError("boom")
wf = WorkflowSpec(workflow_id="w", entry_node="a", nodes={"a": a, "b": b})
rt = Runtime.from_config({"store": "memory://"})
rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
"""


def test_unconfigured_host_sees_no_debug_output_and_warnings_on_stderr():
    out = _run(FLOW)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert "node_failed" in out.stderr and "boom" in out.stderr
    assert "event='step'" not in out.stderr


def test_stdlib_logging_opt_in_gets_step_events():
    out = _run("import logging; logging.basicConfig(level=logging.DEBUG)\n" + FLOW)
    assert "event='step'" in out.stderr and "node='a'" in out.stderr


def test_a_structlog_configured_host_gets_events_through_its_configuration():
    out = _run(
        "import structlog, logging\n"
        "structlog.configure(processors=[structlog.processors.JSONRenderer()],"
        " wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))\n" + FLOW
    )
    assert '"event": "step"' in out.stdout


def test_importing_and_running_does_not_change_global_logging_configuration():
    out = _run(
        "import logging, structlog\n"
        "before = (structlog.is_configured(), logging.getLogger().handlers[:], logging.getLogger().level)\n"
        + FLOW +
        "\nafter = (structlog.is_configured(), logging.getLogger().handlers[:], logging.getLogger().level)\n"
        "assert before == after, (before, after)\n"
    )
    assert out.returncode == 0, out.stderr
    assert logging.getLogger("abstractruntime").handlers == []
