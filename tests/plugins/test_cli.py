"""The ``abstractruntime`` command line, run as a subprocess against a real LMDB store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec


def cli(*args: str, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "abstractruntime_cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "Name?"}, "answer"),
                    next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["text"]})


FLOW = WorkflowSpec(workflow_id="cli_flow", entry_node="ask", nodes={"ask": _ask, "done": _done})


@pytest.fixture
def store(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    with Runtime.from_config({"store": url}) as rt:
        waiting = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=waiting)
        finished = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=finished)
        state = rt.get_state(finished)
        rt.resume(workflow=FLOW, run_id=finished, wait_key=state.waiting.wait_key, payload={"text": "Ada"})
    return url, waiting, finished


def test_plugins_lists_every_plugin_as_a_table_and_as_json(store):
    url, *_ = store
    out = cli("--store", url, "plugins")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "REQUIRES", "ERROR"]
    evidence = next(line for line in out.stdout.splitlines() if line.startswith("evidence "))
    assert evidence.split()[3:5] == ["loaded", "artifacts"]
    rows = json.loads(cli("--store", url, "--json", "plugins").stdout)
    assert {"lmdb", "waits", "cli"} <= {r["name"] for r in rows}
    assert all(set(r) >= {"name", "distribution", "version", "status", "requires", "error"} for r in rows)
    assert {r["name"]: r["requires"] for r in rows}["scheduler"] == ["events", "memory"]


def test_runs_list_filters_and_runs_show(store):
    url, waiting, finished = store
    rows = json.loads(cli("--store", url, "--json", "runs", "list").stdout)
    assert {r["run_id"] for r in rows} == {waiting, finished}
    rows = json.loads(cli("--store", url, "--json", "runs", "list", "--status", "waiting").stdout)
    assert [r["run_id"] for r in rows] == [waiting]
    assert json.loads(cli("--store", url, "--json", "runs", "list", "--workflow", "other").stdout) == []
    human = cli("--store", url, "runs", "show", finished)
    assert human.returncode == 0 and "completed" in human.stdout and "Ada" in human.stdout
    data = json.loads(cli("--store", url, "--json", "runs", "show", finished).stdout)
    assert data["output"] == {"hello": "Ada"}


def test_ledger_show(store):
    url, _waiting, finished = store
    rows = json.loads(cli("--store", url, "--json", "ledger", "show", finished).stdout)
    assert [r["status"] for r in rows] == ["started", "waiting", "completed", "completed", "completed"]
    human = cli("--store", url, "ledger", "show", finished).stdout.splitlines()
    assert human[0].split()[:4] == ["#", "NODE", "STATUS", "EFFECT"] and len(human) == 6


def test_respond_delivers_the_answer_and_cancel(store):
    url, waiting, finished = store
    out = cli("--store", url, "respond", waiting, "--json", '{"text": "Bo"}')
    assert out.returncode == 0, out.stderr
    with Runtime.from_config({"store": url}) as rt:
        state = rt.get_state(waiting)
        assert state.status is RunStatus.RUNNING and state.vars["answer"] == {"text": "Bo"}
        assert rt.tick(workflow=FLOW, run_id=waiting).output == {"hello": "Bo"}
    bad = cli("--store", url, "respond", finished, "--json", "[1]")
    assert bad.returncode == 2 and "JSON object" in bad.stderr
    out = cli("--store", url, "--json", "cancel", finished)
    assert json.loads(out.stdout)["status"] == "completed"  # terminal runs are left alone


def test_errors_are_clear_and_exit_2(store, tmp_path):
    url, *_ = store
    out = cli("--store", url, "runs", "show", "no-such-run")
    assert out.returncode == 2 and "Unknown run_id: no-such-run" in out.stderr
    out = cli("--store", "nosuch://x", "runs", "list")
    assert out.returncode == 2 and "Available stores" in out.stderr
    out = cli("--store", url)
    assert out.returncode == 2 and "COMMAND" in out.stdout


def test_store_from_environment_and_config_file(store, tmp_path):
    url, waiting, _ = store
    rows = json.loads(cli("--json", "runs", "list", env_extra={"ABSTRACTRUNTIME_STORE": url}).stdout)
    assert waiting in {r["run_id"] for r in rows}
    cfg = tmp_path / "ar.toml"
    cfg.write_text(f'[abstractruntime]\nstore = "{url}"\n')
    rows = json.loads(cli("--config", str(cfg), "--json", "runs", "list").stdout)
    assert waiting in {r["run_id"] for r in rows}


def test_ledger_verify_exits_1_and_names_the_first_bad_record_after_tampering(store):
    import lmdb

    url, _waiting, finished = store
    out = cli("--store", url, "ledger", "verify", finished)
    assert out.returncode == 0 and out.stdout.startswith("ok: 5 records"), out.stdout + out.stderr
    path = url[len("lmdb://"):]
    env = lmdb.open(path, max_dbs=0)
    key = b"d:" + finished.encode() + b"\x01" + (2).to_bytes(8, "big")
    with env.begin(write=True) as txn:
        txn.put(key, txn.get(key).replace(b'"waiting"', b'"completed"', 1))
    env.close()
    out = cli("--store", url, "ledger", "verify", finished)
    # numbered as `ledger show` numbers rows (from 1): the second row; the reference's 0-based index stays
    assert out.returncode == 1 and "first bad record #2 " in out.stdout, out.stdout
    shown = cli("--store", url, "ledger", "show", finished).stdout.splitlines()
    assert shown[2].split()[0] == "2"  # header, row 1, row 2
    report = json.loads(cli("--store", url, "--json", "ledger", "verify", finished).stdout)
    assert report["ok"] is False and report["first_bad_index"] == 1 and report["first_bad_record"] == 2
    assert report["errors"][0]["record"] == 2


def test_snapshots_create_list_restore_fork(store):
    url, waiting, _finished = store
    snap = json.loads(cli("--store", url, "--json", "snapshots", "create", waiting, "--name", "before",
                          "--tag", "t1").stdout)
    assert snap["run_id"] == waiting and snap["name"] == "before"
    rows = json.loads(cli("--store", url, "--json", "snapshots", "list", "--run", waiting).stdout)
    assert [r["snapshot_id"] for r in rows] == [snap["snapshot_id"]]
    assert "before" in cli("--store", url, "snapshots", "list").stdout
    assert cli("--store", url, "respond", waiting, "--json", '{"text": "x"}').returncode == 0
    restored = json.loads(cli("--store", url, "--json", "snapshots", "restore", snap["snapshot_id"]).stdout)
    assert restored["status"] == "waiting"
    forked = json.loads(cli("--store", url, "--json", "snapshots", "fork", snap["snapshot_id"]).stdout)
    with Runtime.from_config({"store": url}) as rt:
        assert rt.get_state(waiting).status is RunStatus.WAITING
        assert any((r["effect"] or {}).get("type") == "snapshot_restore" for r in rt.get_ledger(waiting))
        fork = rt.get_state(forked["run_id"])
        assert fork.status is RunStatus.WAITING and fork.vars["_runtime"]["forked_from"]["run_id"] == waiting


def test_export_then_import_into_another_store(store, tmp_path):
    url, _waiting, finished = store
    out = cli("--store", url, "export", finished, "-o", str(tmp_path / "run.zip"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run.zip").exists()
    other = f"sqlite://{tmp_path}/other.db"
    out = cli("--store", other, "import", str(tmp_path / "run.zip"))
    assert out.returncode == 0, out.stderr
    with Runtime.from_config({"store": url}) as a, Runtime.from_config({"store": other}) as b:
        assert b.get_state(finished).output == a.get_state(finished).output
        assert b.get_ledger(finished) == a.get_ledger(finished)
