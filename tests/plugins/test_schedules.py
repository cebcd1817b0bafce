"""The schedules plugin on real stores (LMDB, SQLite, PostgreSQL): schedules live in the store, a fire starts one
run per (schedule_id, fire time) however many runtimes fire, overlap and catch_up, the scheduler's poll loop and
the PostgreSQL worker fire them, and the command line manages them."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from abstractruntime import Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.timeutil import now_utc, parse_instant
from abstractruntime_pluginkit import WorkflowRegistry
from abstractruntime_schedules import (SCHEDULE_WORKFLOW_ID, InvalidScheduleError, ScheduleExistsError,
                                       ScheduleNotFoundError, fire_run_id)
from abstractruntime_schedules.book import load_record
from abstractruntime_schedules.firing import fire_schedule
from abstractruntime_schedules.timing import fire_time_text, latest_fire_at_or_before

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for postgres_support and support/

from postgres_support import postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)
from support.ops_stores import ALL, store_url  # noqa: E402

REPORT = WorkflowSpec("report", "make", {"make": lambda run, ctx: StepPlan("make", complete_output={
    "region": run.vars.get("region"), "fire_time": run.vars["_runtime"]["schedule"]["fire_time"]})})


def _registry() -> WorkflowRegistry:
    registry = WorkflowRegistry()
    registry.register(REPORT)
    return registry


@pytest.fixture(params=ALL)
def url(request, tmp_path):
    return store_url(request.param, tmp_path, request)


def _runtime(url: str, **config) -> Runtime:
    return Runtime.from_config({"store": url, **config}, workflow_registry=_registry())


def _fire_runs(rt: Runtime):
    return rt.run_store.list_runs(workflow_id="report", limit=1000)


def _fire_rows(rt: Runtime, run_id: str):
    return [r for r in rt.get_ledger(run_id) if (r.get("effect") or {}).get("type") == "schedule_fire"]


def test_add_list_pause_resume_remove(url):
    with _runtime(url) as rt:
        added = rt.add_schedule(schedule_id="nightly", workflow_id="report", cron="30 2 * * *",
                                timezone="Europe/Paris", vars={"region": "eu"})
        assert added.timing.describe() == "cron '30 2 * * *' (Europe/Paris)"
        with pytest.raises(ScheduleExistsError, match="already exists"):
            rt.add_schedule(schedule_id="nightly", workflow_id="report", every_s=60)
        rt.add_schedule(schedule_id="often", workflow_id="report", every_s=60, overlap="allow", catch_up="all")
        assert [s.schedule_id for s in rt.list_schedules()] == ["nightly", "often"]
        assert rt.pause_schedule("nightly").paused is True
        assert rt.resume_schedule("nightly").paused is False
        replaced = rt.add_schedule(schedule_id="often", workflow_id="report", every_s=120, replace=True)
        assert replaced.every_s == 120
        rt.remove_schedule("often")
        assert [s.schedule_id for s in rt.list_schedules()] == ["nightly"]
        with pytest.raises(ScheduleNotFoundError):
            rt.pause_schedule("often")
        again = rt.add_schedule(schedule_id="often", workflow_id="report", every_s=30)  # a removed id is free
        assert again.every_s == 30
        with pytest.raises(InvalidScheduleError, match="overlap"):
            rt.add_schedule(schedule_id="x", workflow_id="report", every_s=60, overlap="queue")
        with pytest.raises(InvalidScheduleError, match="catch_up"):
            rt.add_schedule(schedule_id="x", workflow_id="report", every_s=60, catch_up="some")
        # the schedule's history is its record run's ledger; other runtimes on the store see the same schedules
        record = load_record(rt, "nightly")
        assert record.workflow_id == SCHEDULE_WORKFLOW_ID
        actions = [r["effect"]["payload"]["action"] for r in rt.get_ledger(record.run_id)]
        assert actions == ["added", "paused", "resumed"]
    with _runtime(url) as other:
        assert [s.schedule_id for s in other.list_schedules()] == ["nightly", "often"]


def test_a_fire_starts_one_run_that_the_workflow_completes_with_the_schedules_vars(url):
    with _runtime(url) as rt:
        schedule = rt.add_schedule(schedule_id="hourly", workflow_id="report", every_s=3600, vars={"region": "eu"},
                                   catch_up="one")
        now = parse_instant(schedule.cursor) + timedelta(hours=1)
        fire_time = fire_time_text(latest_fire_at_or_before(schedule.timing, now))
        created = rt.fire_due_schedules(now=now)
        assert created == [fire_run_id("hourly", fire_time)]
        assert rt.fire_due_schedules(now=now) == []  # handled: the cursor moved on
        done = rt.tick(workflow=REPORT, run_id=created[0])
        assert done.status is RunStatus.COMPLETED and done.output == {"region": "eu", "fire_time": fire_time}
        assert len(_fire_rows(rt, created[0])) == 1
        [listed] = rt.list_schedules()
        assert listed.last_fire_time == fire_time and listed.last_run_id == created[0] and listed.fired == 1


def test_two_runtimes_firing_the_same_fire_time_start_one_run(url):
    with _runtime(url) as a, _runtime(url) as b:
        schedule = a.add_schedule(schedule_id="s", workflow_id="report", every_s=60, overlap="allow",
                                  catch_up="all")
        now = parse_instant(schedule.cursor) + timedelta(minutes=3)
        stale = load_record(b, "s")  # b read the schedule before a fired it
        created_a = a.fire_due_schedules(now=now)
        assert len(created_a) == 3
        # b fires from its stale view: every fire's run exists, its create-only commit is refused
        assert fire_schedule(b, stale, now=now) == []
        assert b.fire_due_schedules(now=now) == []
        runs = _fire_runs(a)
        assert sorted(r.run_id for r in runs) == sorted(created_a)
        for run in runs:
            assert len(_fire_rows(a, run.run_id)) == 1 and len(a.get_ledger(run.run_id)) == 1


def test_overlap_skip_waits_for_the_previous_run_and_allow_does_not(tmp_path):
    url = f"lmdb://{tmp_path / 's'}"
    with _runtime(url) as rt:
        skip = rt.add_schedule(schedule_id="skip", workflow_id="report", every_s=60, overlap="skip", catch_up="all")
        rt.add_schedule(schedule_id="allow", workflow_id="report", every_s=60, overlap="allow", catch_up="all")
        t0 = parse_instant(skip.cursor)
        first = rt.fire_due_schedules(now=t0 + timedelta(minutes=1))
        assert len(first) == 2  # one per schedule
        second = rt.fire_due_schedules(now=t0 + timedelta(minutes=2))
        assert len(second) == 1  # "skip": its run is still RUNNING; "allow" starts another
        skipped = next(s for s in rt.list_schedules() if s.schedule_id == "skip")
        assert skipped.last_skipped_time is not None and skipped.last_run_id in first
        rt.tick(workflow=REPORT, run_id=skipped.last_run_id)  # the previous run finishes
        third = rt.fire_due_schedules(now=t0 + timedelta(minutes=3))
        assert len(third) == 2


@pytest.mark.parametrize("catch_up, expected", [("none", 0), ("one", 1), ("all", 6)])
def test_catch_up_after_an_outage(tmp_path, catch_up, expected):
    with _runtime(f"lmdb://{tmp_path / 's'}") as rt:
        schedule = rt.add_schedule(schedule_id="s", workflow_id="report", every_s=600, overlap="allow",
                                   catch_up=catch_up)
        cursor = parse_instant(schedule.cursor)
        first = latest_fire_at_or_before(schedule.timing, cursor) + timedelta(seconds=600)
        now = first + timedelta(minutes=50, seconds=90)  # six fire times passed, the last one 90 s ago (> grace)
        assert len(rt.fire_due_schedules(now=now)) == expected
        assert rt.fire_due_schedules(now=now) == []
        assert rt.list_schedules()[0].cursor == (first + timedelta(minutes=50)).isoformat()


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(tmp_path):
    with _runtime(f"lmdb://{tmp_path / 's'}") as rt:
        schedule = rt.add_schedule(schedule_id="s", workflow_id="report", every_s=60, catch_up="all")
        rt.pause_schedule("s")
        assert rt.fire_due_schedules(now=parse_instant(schedule.cursor) + timedelta(minutes=5)) == []
        resumed = rt.resume_schedule("s")
        assert parse_instant(resumed.cursor) >= parse_instant(schedule.cursor)


def test_a_process_without_the_workflow_does_not_fire_and_leaves_it_to_one_that_has_it(tmp_path):
    url = f"lmdb://{tmp_path / 's'}"
    with Runtime.from_config({"store": url}) as bare, _runtime(url) as rt:
        schedule = bare.add_schedule(schedule_id="s", workflow_id="report", every_s=60, catch_up="one")
        now = parse_instant(schedule.cursor) + timedelta(minutes=2)
        with structlog.testing.capture_logs() as logs:
            assert bare.fire_due_schedules(now=now) == []
        assert any(e["event"] == "schedule_workflow_not_registered" for e in logs)
        assert bare.list_schedules()[0].cursor == schedule.cursor
        assert len(rt.fire_due_schedules(now=now)) == 1


def test_the_scheduler_poll_loop_fires_and_drives_schedules(tmp_path):
    from abstractruntime_scheduler import create_scheduled_runtime

    sr = create_scheduled_runtime(store=f"lmdb://{tmp_path / 's'}", workflows=[REPORT], poll_interval_s=0.05,
                                  settings={"plugin_options": {"schedules": {"poll_interval_s": 0}}})
    try:
        sr.runtime.add_schedule(schedule_id="tick", workflow_id="report", every_s=1, overlap="allow",
                                catch_up="all", vars={"region": "us"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = [r for r in _fire_runs(sr.runtime) if r.status is RunStatus.COMPLETED]
            if len(done) >= 2:
                break
            time.sleep(0.05)
        assert len(done) >= 2 and all(r.output["region"] == "us" for r in done)
    finally:
        sr.close()


def test_the_postgres_worker_fires_and_drives_schedules(request, tmp_path):
    from abstractruntime_postgres.worker import PostgresWorker

    url = store_url("postgres", tmp_path, request)
    with _runtime(url, plugin_options={"schedules": {"poll_interval_s": 0}}) as rt:
        rt.add_schedule(schedule_id="tick", workflow_id="report", every_s=1, overlap="allow", catch_up="all")
        worker = PostgresWorker(rt, _registry(), lease_s=10)
        deadline = time.monotonic() + 10
        done = []
        while time.monotonic() < deadline and len(done) < 2:
            worker.run_once()
            done = [r for r in _fire_runs(rt) if r.status is RunStatus.COMPLETED]
            time.sleep(0.1)
        assert len(done) >= 2
        for run in _fire_runs(rt):
            assert len(_fire_rows(rt, run.run_id)) == 1


def test_the_command_line_manages_schedules(tmp_path, capsys):
    from abstractruntime_cli.main import main

    url = f"lmdb://{tmp_path / 's'}"
    assert main(["--store", url, "--json", "schedules", "add", "nightly", "report", "--cron", "30 2 * * *",
                 "--timezone", "Europe/Paris", "--vars", '{"region": "eu"}', "--catch-up", "one"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["schedule_id"] == "nightly" and row["vars"] == {"region": "eu"} and row["next_fire_time"]
    assert main(["--store", url, "schedules", "add", "nightly", "report", "--every", "60"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--store", url, "schedules", "add", "bad", "report", "--cron", "* * *"]) == 2
    assert "five-field" in capsys.readouterr().err
    assert main(["--store", url, "schedules", "pause", "nightly"]) == 0
    capsys.readouterr()
    assert main(["--store", url, "--json", "schedules", "list"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["paused"] is True and row["next_fire_time"] is None
    assert main(["--store", url, "schedules", "resume", "nightly"]) == 0
    assert main(["--store", url, "schedules", "list"]) == 0
    assert "nightly" in capsys.readouterr().out
    assert main(["--store", url, "schedules", "remove", "nightly"]) == 0
    capsys.readouterr()
    assert main(["--store", url, "--json", "schedules", "list"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["--store", url, "schedules", "remove", "nightly"]) == 2
    assert "No schedule 'nightly'" in capsys.readouterr().err


def test_two_runtimes_racing_on_the_same_fire_times_start_each_run_once(url):
    import threading

    with _runtime(url) as a, _runtime(url) as b:
        schedule = a.add_schedule(schedule_id="race", workflow_id="report", every_s=60, overlap="allow",
                                  catch_up="all")
        now = parse_instant(schedule.cursor) + timedelta(minutes=20)
        record = load_record(a, "race")
        barrier = threading.Barrier(2)
        created = {}

        def fire(name, rt):
            barrier.wait()
            created[name] = fire_schedule(rt, record, now=now)  # the same stale view: they race on every fire

        threads = [threading.Thread(target=fire, args=(n, rt)) for n, rt in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        runs = _fire_runs(a)
        assert len(runs) == 20
        assert sorted(created["a"] + created["b"]) == sorted(r.run_id for r in runs)  # each created by one of them
        for run in runs:
            assert len(a.get_ledger(run.run_id)) == 1
