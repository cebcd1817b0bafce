"""Moving a run to another store (``runs move``) and copying a whole store (``store copy``): LMDB -> SQLite and
LMDB -> PostgreSQL. A move leaves one live copy -- the target's, which continues where the source stopped -- and a
source run CANCELLED with a "moved to URL" ledger row; a copy carries every run (hash chains intact), artifact and
schedule, and verifies them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import RunNotWaitingError
from abstractruntime_artifacts import artifact_store_for
from abstractruntime_history import HistoryBundleError, StoreCopyError, copy_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for postgres_support and support/

from postgres_support import postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)
from support.ops_stores import store_url  # noqa: E402


def _ask(run, ctx):
    return StepPlan("ask", effect=Effect(EffectType.WAIT_EVENT, {"name": "approve", "scope": "global"}, "approval"),
                    next_node="done")


def _done(run, ctx):
    return StepPlan("done", complete_output={"approved": run.vars["approval"], "n": run.vars["n"]})


FLOW = WorkflowSpec("approval", "ask", {"ask": _ask, "done": _done})


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    return store_url(request.param, tmp_path, request, name="target")


@pytest.fixture
def source(tmp_path):
    return f"lmdb://{tmp_path / 'source'}"


def _waiting_run(rt: Runtime, n: int = 1) -> str:
    run_id = rt.start(workflow=FLOW, vars={"n": n})
    assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.WAITING
    return run_id


def test_a_moved_run_continues_in_the_target_and_is_cancelled_in_the_source(source, target):
    with Runtime.from_config({"store": source}) as src:
        run_id = _waiting_run(src)
        ledger_before = src.get_ledger(run_id)
        result = src.move_run(run_id, to=target, reason="outgrew the laptop")
        assert result["run_ids"] == [run_id] and result["ledger_records"] == len(ledger_before)
        moved = src.get_state(run_id)
        assert moved.status is RunStatus.CANCELLED and moved.error.startswith("moved to ")
        rows = src.get_ledger(run_id)
        assert rows[:len(ledger_before)] == ledger_before
        moved_row = next(r for r in rows if (r.get("effect") or {}).get("type") == "moved")
        assert moved_row["effect"]["payload"]["reason"] == "outgrew the laptop"
        assert src.verify_ledger(run_id)["ok"]
        with pytest.raises(RunNotWaitingError):  # the source no longer answers the run
            src.resume(workflow=FLOW, run_id=run_id, wait_key=None, payload={"ok": True})

    with Runtime.from_config({"store": target}) as dst:
        copy = dst.get_state(run_id)
        assert copy.status is RunStatus.WAITING and not copy.is_paused  # as it was, not as the move left it
        assert dst.get_ledger(run_id) == ledger_before and dst.verify_ledger(run_id)["ok"]
        done = dst.resume(workflow=FLOW, run_id=run_id, wait_key=copy.waiting.wait_key, payload={"ok": True})
        assert done.status is RunStatus.COMPLETED and done.output == {"approved": {"ok": True}, "n": 1}


def test_a_move_into_a_store_that_has_the_run_changes_nothing_in_the_source(source, tmp_path, request):
    target = store_url("sqlite", tmp_path, request, name="target")
    with Runtime.from_config({"store": source}) as src:
        run_id = _waiting_run(src)
        src.export_history_file(run_id, tmp_path / "run.zip")
        with Runtime.from_config({"store": target}) as dst:
            dst.import_history_file(tmp_path / "run.zip")  # the target already has it
        before = src.get_state(run_id)
        with pytest.raises(HistoryBundleError, match="already exist"):
            src.move_run(run_id, to=target)
        after = src.get_state(run_id)
        assert after.status is RunStatus.WAITING and not after.is_paused  # un-paused again
        assert [(r.get("effect") or {}).get("type") for r in src.get_ledger(run_id)].count("moved") == 0
        assert after.waiting == before.waiting


def test_the_cli_moves_a_run(source, target, capsys):
    from abstractruntime_cli.main import main

    with Runtime.from_config({"store": source}) as src:
        run_id = _waiting_run(src)
    assert main(["--store", source, "--json", "runs", "move", run_id, "--to", target]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_ids"] == [run_id] and out["to"].split("@")[-1] == target.split("@")[-1]
    assert main(["--store", source, "--json", "runs", "show", run_id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"


def test_store_copy_carries_every_run_artifact_and_schedule_and_verifies(source, target, capsys):
    from abstractruntime_cli.main import main

    with Runtime.from_config({"store": source}) as src:
        waiting = [_waiting_run(src, n) for n in range(3)]
        finished = src.start(workflow=FLOW, vars={"n": 9})
        src.tick(workflow=FLOW, run_id=finished)
        src.resume(workflow=FLOW, run_id=finished, wait_key=src.get_state(finished).waiting.wait_key,
                   payload={"ok": False})
        artifact = artifact_store_for(src).store(b"report body", content_type="text/plain", run_id=finished)
        src.add_schedule(schedule_id="nightly", workflow_id="approval", cron="0 3 * * *")
        ids = [r["run_id"] for r in src.run_store.list_run_index(limit=1000)]
        ledgers = {rid: src.get_ledger(rid) for rid in ids}

    assert main(["--json", "store", "copy", source, target]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["copied"] == len(ids) == 5 and report["mismatches"] == [] and report["artifacts"] == 1
    assert report["verified"] == len(ids) + 1
    again = copy_store(source, target)  # an interrupted copy can run again: what is there and equal is skipped
    assert again["copied"] == 0 and again["skipped"] == len(ids) and again["mismatches"] == []

    with Runtime.from_config({"store": target}) as dst:
        for rid in ids:
            assert dst.get_ledger(rid) == ledgers[rid] and dst.verify_ledger(rid)["ok"]
        assert dst.get_state(finished).status is RunStatus.COMPLETED
        assert artifact_store_for(dst).load(artifact.artifact_id).content == b"report body"
        assert [s.schedule_id for s in dst.list_schedules()] == ["nightly"]
        run_id = waiting[1]
        state = dst.get_state(run_id)
        assert dst.resume(workflow=FLOW, run_id=run_id, wait_key=state.waiting.wait_key,
                          payload={"ok": True}).status is RunStatus.COMPLETED



def test_store_copy_refuses_a_target_whose_runs_differ(source, tmp_path, request):
    target = store_url("sqlite", tmp_path, request, name="target")
    with Runtime.from_config({"store": source}) as src:
        run_id = _waiting_run(src)
    copy_store(source, target)
    with Runtime.from_config({"store": target}) as dst:
        dst.cancel_run(run_id)
    with pytest.raises(StoreCopyError, match="differ from the source's"):
        copy_store(source, target)


def test_a_parent_moves_with_its_child_and_the_target_finishes_both(source, tmp_path, request):
    from abstractruntime_pluginkit import WorkflowRegistry

    target = store_url("sqlite", tmp_path, request, name="target")
    parent_flow = WorkflowSpec("parent", "spawn", {
        "spawn": lambda run, ctx: StepPlan("spawn", effect=Effect(EffectType.START_SUBWORKFLOW, {
            "workflow_id": "approval", "vars": {"n": 7}, "async": True, "wait": True}, "child"), next_node="end"),
        "end": lambda run, ctx: StepPlan("end", complete_output={"child": run.vars["child"]["output"]})})
    registry = WorkflowRegistry()
    registry.register(FLOW)
    registry.register(parent_flow)
    with Runtime.from_config({"store": source}, workflow_registry=registry) as src:
        parent = src.start(workflow=parent_flow)
        assert src.tick(workflow=parent_flow, run_id=parent).status is RunStatus.WAITING
        [child] = src.run_store.list_children(parent_run_id=parent)
        src.tick(workflow=FLOW, run_id=child.run_id)  # the child waits for its approval
        result = src.move_run(parent, to=target)
        assert result["run_ids"] == [parent, child.run_id]
        assert {src.get_state(r).status for r in result["run_ids"]} == {RunStatus.CANCELLED}
    with Runtime.from_config({"store": target}, workflow_registry=registry) as dst:
        wait = dst.get_state(child.run_id).waiting
        assert dst.resume(workflow=FLOW, run_id=child.run_id, wait_key=wait.wait_key,
                          payload={"ok": True}).status is RunStatus.COMPLETED
        done = dst.tick(workflow=parent_flow, run_id=parent)  # the parent's wait is answered by its finished child
        assert done.status is RunStatus.COMPLETED and done.output["child"]["approved"] == {"ok": True}


def test_urls_in_ledgers_and_messages_hide_passwords():
    from abstractruntime_history.moving import redact_url

    assert redact_url("postgresql://app:s3cret@db:5432/app?sslmode=require") == \
        "postgresql://app:***@db:5432/app?sslmode=require"
    assert redact_url("lmdb:///var/lib/app/runs") == "lmdb:///var/lib/app/runs"
