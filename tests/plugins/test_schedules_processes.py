"""Two scheduler processes on one LMDB store fire one schedule: every fire time gets exactly one run, started once
and completed once (the create-only commit refuses the second process's copy inside LMDB's write transaction)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from abstractruntime import Runtime, RunStatus
from abstractruntime.timeutil import parse_instant

TESTS = Path(__file__).resolve().parents[1]
SCRIPT = TESTS / "support" / "schedule_flows.py"


def test_two_scheduler_processes_start_one_run_per_fire_time(tmp_path):
    url = f"lmdb://{tmp_path / 'store'}"
    with Runtime.from_config({"store": url}) as rt:
        schedule = rt.add_schedule(schedule_id="every-second", workflow_id="report", every_s=1, overlap="allow",
                                   catch_up="all")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS / "support"), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), url, "4"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    fired = 0
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        stats = json.loads(out.splitlines()[-1])
        assert stats["errors"] == [], stats
        fired += stats["fired"]
        print("scheduler process:", stats)

    with Runtime.from_config({"store": url}) as rt:
        runs = rt.run_store.list_runs(workflow_id="report", limit=10_000)
        fire_times = sorted(r.vars["_runtime"]["schedule"]["fire_time"] for r in runs)
        assert len(fire_times) >= 3, fire_times
        assert len(set(fire_times)) == len(fire_times)  # one run per fire time ...
        first = parse_instant(fire_times[0])
        assert fire_times == [(first + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                              for i in range(len(fire_times))]  # ... and no fire time without one
        assert parse_instant(fire_times[0]) > parse_instant(schedule.cursor)
        for run in runs:  # each started once and completed once
            ledger = rt.get_ledger(run.run_id)
            types = [(r.get("effect") or {}).get("type") for r in ledger]
            assert types.count("schedule_fire") == 1, ledger
            assert run.status is RunStatus.COMPLETED
            assert sum(1 for r in ledger if (r.get("result") or {}).get("completed")) == 1, ledger
        assert rt.list_schedules()[0].fired == len(runs)  # only the process whose commit was written counted it
        assert fired == len(runs)
        assert rt.verify_ledger(runs[0].run_id)["ok"]
