"""SIGKILL at every durability boundary of a side-effecting step; a second process finishes the run.

For each store (lmdb, sqlite, postgres) and each fault point the kernel exposes, a child process runs the
``checkout`` workflow (tests/support/crash_flow.py: ``charge`` with ``side_effects=True`` -> ``done``) and kills
itself the first time it reaches the point while executing ``charge``. The test process then opens a new runtime on
the same store and ticks the run to completion. Invariants: the run completes; the charge step has exactly one
STARTED row and one COMPLETED row with the same step_id; no step is recorded twice; the provider charged exactly
once (it de-duplicates by idempotency key) and was called at most twice; the provenance hash chain verifies.

Each case runs with durability "step" (a commit per step) and "barrier" (steps staged between barriers: the
charge's reservation, then the end of the tick, which commits the charge's outcome and ``done`` together).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "support")]

from abstractruntime import Runtime, RunStatus  # noqa: E402
from crash_flow import FLOW, PaymentsPlugin  # noqa: E402
from fault_support import lines, run_child_until_killed  # noqa: E402
from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)

STORES = ["lmdb", "sqlite", "postgres"]
DURABILITIES = ["step", "barrier"]
TERMINAL_KEY = "system:terminal_status:completed"

# point -> (provider executions expected after recovery, reservation visible right after the crash?)
POINTS = {
    "commit:before": (1, False),        # the reservation was never written: recovery starts the step afresh
    "commit:after": (1, True),          # reservation written, effect never ran: in doubt, run once
    "effect:after-execute": (2, True),  # effect ran, outcome lost: re-run under the same key, charged once
}


@pytest.fixture
def store_url(request, tmp_path):
    scheme = request.param
    if scheme == "lmdb":
        return f"lmdb://{tmp_path}/db"
    if scheme == "sqlite":
        return f"sqlite://{tmp_path}/db.sqlite"
    return request.getfixturevalue("pg_dsn")


def _open(url: str, provider: Path) -> Runtime:  # recovery runs with the default durability ("barrier")
    return Runtime.from_config({"store": url}, plugins=[PaymentsPlugin(str(provider))])


def _assert_ledger_invariants(rt: Runtime, run_id: str, provider: Path, executions: int) -> None:
    rows = rt.get_ledger(run_id)
    charge = [r for r in rows if r["node_id"] == "charge"]
    assert [r["status"] for r in charge] == ["started", "completed"], charge
    assert charge[0]["step_id"] == charge[1]["step_id"]
    key = charge[0]["idempotency_key"]
    assert key and charge[1]["idempotency_key"] == key
    # no step recorded twice: each step_id has at most one row per status
    per_step = Counter((r["step_id"], r["status"]) for r in rows)
    assert max(per_step.values()) == 1, per_step
    # exactly one completion of the run
    assert [r["idempotency_key"] for r in rows].count(TERMINAL_KEY) == 1
    done = [r for r in rows if r["node_id"] == "done" and (r.get("result") or {}).get("completed") is True]
    assert len(done) == 1, done
    # the provider: charged once, called at most twice, always under the step's key
    attempts = lines(provider / "attempts.log")
    assert attempts == [key] * executions
    assert len(attempts) <= 2
    assert lines(provider / "charges.log") == [key]
    report = rt.verify_ledger(run_id)
    assert report["ok"] is True, report
    assert report["count"] == len(rows)


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_sigkill_during_charge_step_then_new_process_completes_once(store_url, point, durability, tmp_path):
    provider = tmp_path / "provider"
    run_id = run_child_until_killed(store_url, provider, point, "charge", durability=durability)
    executions, reserved = POINTS[point]

    rt = _open(store_url, provider)
    try:
        before = rt.get_ledger(run_id)
        assert [r["status"] for r in before] == (["started"] if reserved else [])
        assert rt.get_state(run_id).status is RunStatus.RUNNING
        assert rt.get_state(run_id).current_node == "charge"

        state = rt.tick(workflow=FLOW, run_id=run_id)
        assert state.status is RunStatus.COMPLETED
        assert state.output["receipt"]["charged"] == 42
        _assert_ledger_invariants(rt, run_id, provider, executions)

        # further ticks change nothing
        n = len(rt.get_ledger(run_id))
        assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.COMPLETED
        assert len(rt.get_ledger(run_id)) == n
    finally:
        rt.close()


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_sigkill_before_charge_outcome_commit(store_url, durability, tmp_path):
    """The commit that would record the charge's outcome, after the effect ran ("step": the charge step's second
    commit; "barrier": the end-of-tick barrier, with ``done``): same as an effect:after-execute crash -- re-run
    under the same key, charged once."""
    provider = tmp_path / "provider"
    if durability == "step":
        run_id = run_child_until_killed(store_url, provider, "commit:before", "charge", nth=2, durability="step")
    else:
        run_id = run_child_until_killed(store_url, provider, "commit:before", "done")
    rt = _open(store_url, provider)
    try:
        assert [r["status"] for r in rt.get_ledger(run_id)] == ["started"]
        assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.COMPLETED
        _assert_ledger_invariants(rt, run_id, provider, executions=2)
    finally:
        rt.close()


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_sigkill_before_final_completing_commit(store_url, tmp_path):
    """Durability "step", killed at commit:before of the completing commit (node ``done``): the charge is durable,
    the completion is not; the second process completes the run with exactly one completion row and no new
    charge."""
    provider = tmp_path / "provider"
    run_id = run_child_until_killed(store_url, provider, "commit:before", "done", durability="step")
    rt = _open(store_url, provider)
    try:
        state = rt.get_state(run_id)
        assert state.status is RunStatus.RUNNING and state.current_node == "done"
        assert [r["status"] for r in rt.get_ledger(run_id)] == ["started", "completed"]
        state = rt.tick(workflow=FLOW, run_id=run_id)
        assert state.status is RunStatus.COMPLETED
        assert state.output["receipt"]["charged"] == 42
        _assert_ledger_invariants(rt, run_id, provider, executions=1)
    finally:
        rt.close()


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_sigkill_after_the_end_of_tick_barrier_committed(store_url, tmp_path):
    """Durability "barrier", killed right after the end-of-tick barrier's commit (before ``tick`` returned): the
    run is complete in the store; a new process finds nothing to do and nothing is repeated."""
    provider = tmp_path / "provider"
    run_id = run_child_until_killed(store_url, provider, "commit:after", "done")
    rt = _open(store_url, provider)
    try:
        assert rt.get_state(run_id).status is RunStatus.COMPLETED
        n = len(rt.get_ledger(run_id))
        assert rt.tick(workflow=FLOW, run_id=run_id).status is RunStatus.COMPLETED
        assert len(rt.get_ledger(run_id)) == n
        _assert_ledger_invariants(rt, run_id, provider, executions=1)
    finally:
        rt.close()
