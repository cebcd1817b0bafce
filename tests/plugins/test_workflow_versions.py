"""Workflow versions: a run records the ``WorkflowSpec.version`` it started with and is driven only by that
version; a registry holds several versions; a run whose version is not available is left as it is (a clear error
to the caller, a scheduler warning), never FAILED and never run on other code."""

from __future__ import annotations

import time

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec, codec
from abstractruntime.errors import WorkflowVersionError
from abstractruntime_pluginkit import WorkflowRegistry, WorkflowVersionNotFoundError, spec_for_run


def _flow(version, label):
    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"by": label})

    return WorkflowSpec(workflow_id="onboard", entry_node="ask", nodes={"ask": ask, "done": done}, version=version)


V1, V2 = _flow("1", "v1"), _flow("2", "v2")


@pytest.fixture(params=["lmdb", "sqlite"])
def rt(request, tmp_path):
    url = f"lmdb://{tmp_path}/db" if request.param == "lmdb" else f"sqlite://{tmp_path}/db.sqlite"
    with Runtime.from_config({"store": url}) as runtime:
        yield runtime


def test_a_run_records_its_version_and_refuses_another(rt):
    run_id = rt.start(workflow=V1)
    state = rt.tick(workflow=V1, run_id=run_id)
    assert rt.get_state(run_id).workflow_version == "1"
    before = codec.run_to_dict(rt.get_state(run_id)), rt.get_ledger(run_id)
    with pytest.raises(WorkflowVersionError, match="version '1'.*not '2'"):
        rt.resume(workflow=V2, run_id=run_id, wait_key=state.waiting.wait_key, payload={"x": 1})
    with pytest.raises(WorkflowVersionError):
        rt.tick(workflow=V2, run_id=run_id)
    assert (codec.run_to_dict(rt.get_state(run_id)), rt.get_ledger(run_id)) == before  # unchanged
    final = rt.resume(workflow=V1, run_id=run_id, wait_key=state.waiting.wait_key, payload={"x": 1})
    assert final.status is RunStatus.COMPLETED and final.output == {"by": "v1"}


def test_runs_started_before_versions_are_driven_by_any_version(rt):
    legacy = WorkflowSpec(workflow_id="onboard", entry_node="ask", nodes=V1.nodes)
    run_id = rt.start(workflow=legacy)
    state = rt.tick(workflow=legacy, run_id=run_id)
    assert rt.get_state(run_id).workflow_version is None
    final = rt.resume(workflow=V2, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
    assert final.output == {"by": "v2"}


def test_the_registry_holds_versions_new_runs_take_the_latest_old_runs_keep_theirs(rt):
    registry = WorkflowRegistry()
    registry.register(V1)
    old = rt.start(workflow=registry.get("onboard"))
    registry.register(V2)
    assert registry.get("onboard") is V2 and registry.versions("onboard") == ["1", "2"]
    new = rt.start(workflow=registry.get("onboard"))
    for run_id, label in ((old, "v1"), (new, "v2")):
        run = rt.get_state(run_id)
        spec = spec_for_run(registry, run)
        state = rt.tick(workflow=spec, run_id=run_id)
        state = rt.resume(workflow=spec, run_id=run_id, wait_key=state.waiting.wait_key, payload={})
        assert state.output == {"by": label}
    with pytest.raises(Exception, match="already registered"):
        registry.register(_flow("2", "again"))
    registry.unregister("onboard", "1")
    with pytest.raises(WorkflowVersionNotFoundError, match="version '1' is not registered.*'2'"):
        registry.get_for_run(rt.get_state(old))
    assert registry.for_run(rt.get_state(old)) is None


def _module_level_node(run, ctx):
    return StepPlan(node_id="a", complete_output={})


def test_the_spec_round_trips_its_version_through_the_codec():
    spec = WorkflowSpec(workflow_id="w", entry_node="a", nodes={"a": _module_level_node}, version="1")
    data = codec.converter.unstructure(spec)
    assert data["version"] == "1" and codec.converter.structure(data, WorkflowSpec).version == "1"
    assert "version" not in codec.converter.unstructure(WorkflowSpec(workflow_id="w", entry_node="a", nodes={}))
    assert codec.decode_run(codec.encode_run(_run_with_version())).workflow_version == "7"


def _run_with_version():
    from abstractruntime import RunState

    run = RunState.new(workflow_id="w", entry_node="a")
    run.workflow_version = "7"
    return run


def test_the_scheduler_drives_each_run_with_its_version_and_leaves_a_missing_one_alone(caplog):
    from abstractruntime import create_scheduled_runtime

    errors = []
    sr = create_scheduled_runtime(workflows=[V2], poll_interval_s=0.05,
                                  on_run_failed=lambda run_id, exc: errors.append((run_id, exc)))
    try:
        run_id = sr.runtime.start(workflow=V1)  # started by a process that still had version 1
        sr.scheduler._wake()
        deadline = time.time() + 5
        while not errors and time.time() < deadline:
            time.sleep(0.02)
        assert errors and errors[0][0] == run_id and isinstance(errors[0][1], WorkflowVersionNotFoundError)
        assert "version '1' is not registered" in caplog.text  # the scheduler's warning
        state = sr.runtime.get_state(run_id)
        assert state.status is RunStatus.RUNNING and state.step == 0  # left as it is: not FAILED, not run on v2
        sr.registry.register(V1)  # version 1 deployed again: the scheduler continues the run on its own code
        sr.scheduler._failed_at.clear()
        sr.scheduler._wake()
        deadline = time.time() + 5
        while sr.runtime.get_state(run_id).status is RunStatus.RUNNING and time.time() < deadline:
            time.sleep(0.02)
        assert sr.runtime.get_state(run_id).status is RunStatus.WAITING
        final = sr.scheduler.resume_event(run_id=run_id, wait_key=None, payload={})
        deadline = time.time() + 5
        while sr.runtime.get_state(run_id).status is not RunStatus.COMPLETED and time.time() < deadline:
            time.sleep(0.02)
        assert sr.runtime.get_state(run_id).output == {"by": "v1"}, final
    finally:
        sr.stop()
