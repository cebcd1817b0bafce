"""The ``abstractruntime`` command line refuses hostile arguments with ``error: ...`` and exit 2, never a traceback,
and leaves the run as it was: a resume payload nested 100,000 levels deep, ``runs list --limit`` out of range."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    return subprocess.run([sys.executable, "-m", "abstractruntime_cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "Name?"}, "answer"),
                    next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]})


FLOW = WorkflowSpec(workflow_id="cli_bad_input", entry_node="ask", nodes={"ask": _ask, "done": _done})


@pytest.fixture(params=["lmdb", "sqlite"])
def store(request, tmp_path):
    url = f"lmdb://{tmp_path}/db" if request.param == "lmdb" else f"sqlite://{tmp_path}/db.sqlite"
    with Runtime.from_config({"store": url}) as rt:
        waiting = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=waiting)
        ledger = len(rt.get_ledger(waiting))
    return url, waiting, ledger


def _unchanged(url, run_id, ledger):
    with Runtime.from_config({"store": url}) as rt:
        state = rt.get_state(run_id)
        assert state.status is RunStatus.WAITING and "answer" not in state.vars
        assert len(rt.get_ledger(run_id)) == ledger


@pytest.mark.parametrize("payload, depth", [
    ("[" * 100_000, "100000"),
    ('{"text": ' + "[" * 300 + "]" * 300 + "}", "301"),
])
def test_respond_refuses_a_deeply_nested_payload(store, payload, depth):
    url, run_id, ledger = store
    out = cli("--store", url, "respond", run_id, "--json", payload)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"error: --json is nested {depth} levels deep; the limit is 200 levels" in out.stderr
    _unchanged(url, run_id, ledger)
    ok = cli("--store", url, "respond", run_id, "--json", '{"text": ' + "[" * 150 + "]" * 150 + "}")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("limit, message", [
    ("0", "must be from 1 to 1000000, got 0"),
    ("-5", "must be from 1 to 1000000, got -5"),
    ("99999999999999999999", "must be from 1 to 1000000"),
    ("ten", "expected a whole number, got 'ten'"),
])
def test_runs_list_limit_out_of_range(store, limit, message):
    url, run_id, _ledger = store
    out = cli("--store", url, "runs", "list", "--limit", limit)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"error: argument --limit: {message}" in out.stderr
    listed = cli("--store", url, "runs", "list", "--limit", "1")
    assert listed.returncode == 0 and run_id in listed.stdout


@pytest.mark.parametrize("option,value,words", [
    ("--lease", "nan", "positive number of seconds"), ("--lease", "-5", "positive number of seconds"),
    ("--lease", "inf", "positive number of seconds"), ("--poll-interval", "-1", "positive number of seconds"),
    ("--poll-interval", "soon", "expected a number of seconds"), ("--concurrency", "0", "must be at least 1"),
])
def test_the_postgres_worker_refuses_odd_options_before_opening_anything(option, value, words, tmp_path):
    """`worker --lease nan`, a negative poll interval or `--concurrency 0` were accepted (0 silently became 1)."""
    out = cli("--store", f"lmdb://{tmp_path}/never", "worker", "--workflows", "m:x", option, value)
    assert out.returncode == 2 and f"argument {option}" in out.stderr and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "never").exists()
