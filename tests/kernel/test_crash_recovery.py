"""A process killed (SIGKILL) between a step's reservation and its outcome; a new process finishes the run.

The step is never recorded twice (one STARTED row for it), the effect is re-executed under the *same* idempotency
key (at-least-once), so an outside system that de-duplicates by that key charges exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from abstractruntime import Runtime, RunStatus

SUPPORT = str(Path(__file__).resolve().parents[1] / "support")

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from abstractruntime import Runtime
    from crash_flow import FLOW, PaymentsPlugin
    rt = Runtime.from_config({"store": sys.argv[1]}, plugins=[PaymentsPlugin(sys.argv[2], hang_after_charge=True)])
    run_id = rt.start(workflow=FLOW)
    print(run_id, flush=True)
    rt.tick(workflow=FLOW, run_id=run_id)
    """
)


@pytest.mark.parametrize("scheme", ["lmdb", "sqlite"])
def test_sigkill_mid_effect_then_a_new_process_finishes_without_double_records(tmp_path, scheme):
    sys.path.insert(0, SUPPORT)
    from crash_flow import FLOW, PaymentsPlugin

    url = f"lmdb://{tmp_path}/db" if scheme == "lmdb" else f"sqlite://{tmp_path}/db.sqlite"
    provider = tmp_path / "provider"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(provider), SUPPORT],
                            stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    deadline = time.time() + 60
    while not (provider / "in_effect").exists():
        assert time.time() < deadline and proc.poll() is None, "child never reached the effect"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    rt = Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(str(provider))])
    try:
        rows = rt.get_ledger(run_id)
        assert [r["status"] for r in rows] == ["started"]  # the reservation survived the crash
        assert rt.get_state(run_id).status is RunStatus.RUNNING
        state = rt.tick(workflow=FLOW, run_id=run_id)
        assert state.status is RunStatus.COMPLETED
        assert state.output["receipt"]["charged"] == 42
        rows = rt.get_ledger(run_id)
        charge_rows = [r for r in rows if r["node_id"] == "charge"]
        assert [r["status"] for r in charge_rows] == ["started", "completed"]
        assert charge_rows[0]["step_id"] == charge_rows[1]["step_id"]
        key = charge_rows[0]["idempotency_key"]
        attempts = (provider / "attempts.log").read_text().split()
        assert attempts == [key, key]  # executed twice (at-least-once) under one key...
        assert (provider / "charges.log").read_text().split() == [key]  # ...and charged once
        # nothing more happens on further ticks
        assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.COMPLETED
        assert len(rt.get_ledger(run_id)) == len(rows)
    finally:
        rt.close()
