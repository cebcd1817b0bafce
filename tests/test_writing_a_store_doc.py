"""docs/writing-a-store.md is a working store: its code blocks, taken as written, pass the store conformance suite
and run a workflow through ``Runtime.from_config``."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-store.md"
_BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
_MODULE = "\n".join(b for b in _BLOCKS if b.startswith("# onefile_store.py"))
_TESTS = next(b for b in _BLOCKS if b.startswith("# test_onefile_store.py"))

_DIR = Path(tempfile.mkdtemp(prefix="onefile_doc_"))
(_DIR / "onefile_store.py").write_text(_MODULE, encoding="utf-8")
sys.path.insert(0, str(_DIR))
import onefile_store  # noqa: E402  (written from the page just above)

exec(compile(_TESTS, str(DOC) + " [test block]", "exec"), globals())  # defines TestOneFileConformance


def test_the_page_runs_the_whole_suite_with_its_declared_capabilities():
    from abstractruntime.testing import capability_report

    report = capability_report(TestOneFileConformance)  # noqa: F821 (defined by the page's test block)
    assert report["declared"] == ["event_index", "idempotency_index", "ledger_paging", "revision_probe",
                                  "run_queries"]
    assert report["not_run"] == ["test_run_locks_exclude_other_threads"]
    assert len(report["required_tests"]) >= 15


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "name?"}, "answer"),
                    next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["text"]})


def test_the_documented_store_runs_a_workflow_through_configuration(tmp_path):
    flow = WorkflowSpec(workflow_id="greet", entry_node="ask", nodes={"ask": _ask, "done": _done})
    url = f"onefile://{tmp_path}/data"
    with Runtime.from_config({"store": url}, plugins=[onefile_store]) as rt:
        run_id = rt.start(workflow=flow)
        waiting = rt.tick(workflow=flow, run_id=run_id)
        assert waiting.status is RunStatus.WAITING
    with Runtime.from_config({"store": url}, plugins=[onefile_store]) as again:  # another runtime: from the file
        done = again.resume(workflow=flow, run_id=run_id, wait_key=again.get_state(run_id).waiting.wait_key,
                            payload={"text": "Ada"})
        assert done.status is RunStatus.COMPLETED and done.output == {"hello": "Ada"}
        assert [r["status"] for r in again.get_ledger(run_id)][-1] == "completed"
        assert isinstance(again.backend, onefile_store.OneFileBackend)
