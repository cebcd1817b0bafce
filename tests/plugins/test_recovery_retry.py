"""``runtime.retry_run`` / ``abstractruntime runs retry`` (the recovery plugin) on LMDB, SQLite and PostgreSQL: a
FAILED run continues from its last checkpoint, the failed step runs again, the ledger records the retry, and a run
that is not FAILED is refused with a typed error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest

from abstractruntime import Effect, EffectOutcome, Runtime, RunStatus, StepPlan, WorkflowSpec, hookimpl
from abstractruntime.descriptors import EffectHandlerDescriptor
from abstractruntime.errors import UnknownRunError
from abstractruntime.policy import DefaultEffectPolicy
from abstractruntime_recovery import RunNotFailedError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for postgres_support and support/

from postgres_support import postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)
from support.ops_stores import ALL, store_url  # noqa: E402


class GreetPlugin:
    """The plugin that was missing: it provides the ``greet`` effect."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: List[int] = []
        self.fail_first = fail_first

    @hookimpl
    def abstractruntime_register_effect_handlers(self):
        def greet(call):
            self.calls.append(call.attempt)
            if len(self.calls) <= self.fail_first:
                return EffectOutcome.failed("greeter unavailable")
            return EffectOutcome.completed({"text": f"hello {call.effect.payload['name']}"})

        return [EffectHandlerDescriptor("retry_test_greet", greet)]


def _prepare(run, ctx):
    run.vars["prepared"] = run.vars.get("prepared", 0) + 1
    return StepPlan("prepare", next_node="greet")


def _greet(run, ctx):
    return StepPlan("greet", effect=Effect("retry_test_greet", {"name": run.vars["name"]}, "greeting"), next_node="done")


def _done(run, ctx):
    return StepPlan("done", complete_output={"greeting": run.vars["greeting"]["text"],
                                             "prepared": run.vars["prepared"]})


FLOW = WorkflowSpec("greeter", "prepare", {"prepare": _prepare, "greet": _greet, "done": _done})


@pytest.fixture(params=ALL)
def url(request, tmp_path):
    return store_url(request.param, tmp_path, request)


def _types(runtime, run_id):
    return [(r.get("effect") or {}).get("type") for r in runtime.get_ledger(run_id)]


def test_a_run_failed_for_a_missing_handler_completes_after_the_plugin_is_added(url):
    with Runtime.from_config({"store": url}) as rt:  # the greet plugin is not installed yet
        run_id = rt.start(workflow=FLOW, vars={"name": "Ada"})
        failed = rt.tick(workflow=FLOW, run_id=run_id)
        assert failed.status is RunStatus.FAILED and "No effect handler registered for retry_test_greet" in failed.error
        assert failed.current_node == "greet"

    plugin = GreetPlugin()
    with Runtime.from_config({"store": url}, plugins=[plugin]) as rt:  # "after installing the plugin"
        retried = rt.retry_run(run_id, reason="greet plugin installed")
        assert retried.status is RunStatus.RUNNING and retried.error is None and retried.current_node == "greet"
        stored = rt.get_state(run_id)
        assert stored.status is RunStatus.RUNNING and stored.error is None
        assert stored.vars["_runtime"]["retry"]["count"] == 1
        retry_rows = [r for r in rt.get_ledger(run_id) if (r.get("effect") or {}).get("type") == "retry"]
        assert len(retry_rows) == 1
        assert retry_rows[0]["effect"]["payload"]["previous_error"] == failed.error
        assert retry_rows[0]["effect"]["payload"]["reason"] == "greet plugin installed"

        done = rt.tick(workflow=FLOW, run_id=run_id)
        assert done.status is RunStatus.COMPLETED
        # the failed step ran again; the steps before it were not repeated (its checkpoint was kept)
        assert done.output == {"greeting": "hello Ada", "prepared": 1}
        assert plugin.calls == [1]
        types = _types(rt, run_id)
        assert types.index("retry") < len(types) - 1 and types.count("retry_test_greet") >= 3  # failed, then started+completed
        if hasattr(rt, "verify_ledger"):
            assert rt.verify_ledger(run_id)["ok"]


def test_an_effect_that_failed_after_all_its_attempts_runs_again_with_fresh_attempts(url):
    policy = DefaultEffectPolicy(default_max_attempts=2, default_backoff_base=0.0)
    plugin = GreetPlugin(fail_first=2)
    with Runtime.from_config({"store": url}, plugins=[plugin], effect_policy=policy, sleep=lambda s: None) as rt:
        run_id = rt.start(workflow=FLOW, vars={"name": "Grace"})
        failed = rt.tick(workflow=FLOW, run_id=run_id)
        assert failed.status is RunStatus.FAILED and "after 2 attempts" in failed.error
        assert plugin.calls == [1, 2]
        rt.retry_run(run_id)
        done = rt.tick(workflow=FLOW, run_id=run_id)
        assert done.status is RunStatus.COMPLETED, done.error
        assert plugin.calls == [1, 2, 1]  # executed again, as a first attempt: the old failed rows do not count


def test_a_node_that_raised_runs_again_after_the_fix(url):
    broken = WorkflowSpec("greeter", "prepare", {"prepare": _prepare, "greet": lambda run, ctx: 1 / 0,
                                                 "done": _done})
    with Runtime.from_config({"store": url}, plugins=[GreetPlugin()]) as rt:
        run_id = rt.start(workflow=broken, vars={"name": "Lin"})
        failed = rt.tick(workflow=broken, run_id=run_id)
        assert failed.status is RunStatus.FAILED and "ZeroDivisionError" in failed.error
        rt.retry_run(run_id)
        done = rt.tick(workflow=FLOW, run_id=run_id)  # the fixed code
        assert done.status is RunStatus.COMPLETED and done.output["prepared"] == 1


def test_a_run_that_is_not_failed_is_refused_and_left_unchanged(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 's'}"}, plugins=[GreetPlugin()]) as rt:
        run_id = rt.start(workflow=FLOW, vars={"name": "Ada"})
        before = rt.get_state(run_id)
        with pytest.raises(RunNotFailedError, match="only a FAILED run can, and it is running") as exc:
            rt.retry_run(run_id)
        assert isinstance(exc.value, ValueError) and exc.value.run_id == run_id
        assert rt.get_state(run_id).revision == before.revision and _types(rt, run_id) == []
        rt.tick(workflow=FLOW, run_id=run_id)
        with pytest.raises(RunNotFailedError, match="it completed"):
            rt.retry_run(run_id)
        cancelled = rt.start(workflow=FLOW, vars={"name": "x"})
        rt.cancel_run(cancelled)
        with pytest.raises(RunNotFailedError, match="cancelled"):
            rt.retry_run(cancelled)
        with pytest.raises(UnknownRunError):
            rt.retry_run("no-such-run")


def test_the_cli_retries_a_failed_run(tmp_path, capsys):
    from abstractruntime_cli.main import main

    url = f"lmdb://{tmp_path / 's'}"
    with Runtime.from_config({"store": url}) as rt:
        run_id = rt.start(workflow=FLOW, vars={"name": "Ada"})
        rt.tick(workflow=FLOW, run_id=run_id)
    assert main(["--store", url, "--json", "runs", "retry", run_id, "--reason", "fixed"]) == 0
    assert '"status": "running"' in capsys.readouterr().out
    assert main(["--store", url, "runs", "retry", run_id]) == 2
    assert "only a FAILED run can" in capsys.readouterr().err
    with Runtime.from_config({"store": url}, plugins=[GreetPlugin()]) as rt:
        assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.COMPLETED
