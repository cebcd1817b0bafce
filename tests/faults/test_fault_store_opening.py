"""Issue 14 (hardening), items 11-14: how stores are opened.

* read-only commands (``runs list/show``, ``ledger show/verify``, ``export``) create nothing -- no store, no lock
  file -- and work on stores the user may not write (run here without the capabilities that let root ignore file
  permissions: ``setpriv --bounding-set=-all``);
* degenerate URLs (``lmdb://``, ``sqlite://``, ``--store ""``) and the ``sqlite:/abs`` typo are errors that explain
  the URL forms, never the default store;
* open errors (a file where a directory is needed, a directory where a file is needed, no permission, a zero-length
  SQLite file, an unreadable configuration path) are typed errors naming the path, and exit 2 in the CLI;
* ``Runtime.from_config(store=...)``; failed runs' last ``ledger show`` row; "after 1 attempt".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import ConfigurationError, StoreError


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "answer"), next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"ok": True})


FLOW = WorkflowSpec(workflow_id="open_flow", entry_node="ask", nodes={"ask": _ask, "done": _done})
FILE_STORES = ["lmdb", "sqlite", "jsonfiles"]


def _url(kind: str, base: Path) -> str:
    return f"{kind}://{base / ('runs.db' if kind == 'sqlite' else kind)}"


def _tree(root: Path) -> Dict[str, Tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: "nothing was created or changed" is this being equal.
    (A reader registers in LMDB's existing ``lock.mdb`` reader table when it may write it: its mtime moves.)"""
    return {str(p.relative_to(root)): (p.stat().st_size, 0 if p.name == "lock.mdb" else p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def cli(*args: str, drop_privileges: bool = False, home: Path = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    if home is not None:
        env["ABSTRACTRUNTIME_HOME"] = str(home)
    command = [sys.executable, "-m", "abstractruntime_cli", *args]
    if drop_privileges and os.geteuid() == 0:
        # root ignores file permissions through its capabilities (CAP_DAC_OVERRIDE, ...): drop them all
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(params=FILE_STORES)
def populated(request, tmp_path) -> Tuple[str, Path, str, str]:
    """A store of each kind with a waiting run and a completed run, closed."""
    base = tmp_path / "stores"
    url = _url(request.param, base)
    with Runtime.from_config(store=url) as rt:  # from_config(store=...) (item 14)
        waiting = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=waiting)
        done = rt.start(workflow=FLOW)
        rt.tick(workflow=FLOW, run_id=done)
        rt.resume(workflow=FLOW, run_id=done, wait_key=rt.get_state(done).waiting.wait_key, payload={"a": 1})
    return url, base, waiting, done


# --- read-only commands create nothing ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", FILE_STORES)
def test_read_only_commands_on_a_mistyped_path_create_nothing_and_exit_2(kind, tmp_path):
    home = tmp_path / "home"
    missing = tmp_path / "no" / "such"
    for args in (["runs", "list"], ["runs", "show", "x"], ["ledger", "show", "x"], ["ledger", "verify", "x"],
                 ["export", "x", "--output", str(tmp_path / "out.json")]):
        out = cli("--store", _url(kind, missing), *args, home=home)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert "Nothing was created" in out.stderr and str(missing) in out.stderr
    assert not (tmp_path / "no").exists() and not home.exists() and not (tmp_path / "out.json").exists()


def test_a_read_only_command_on_a_directory_that_is_no_store_creates_no_lock_file(tmp_path):
    """``--store jsonfiles:///etc runs list`` used to create lock files in /etc."""
    plain = tmp_path / "etc"
    plain.mkdir()
    (plain / "hostname").write_text("box\n")
    before = _tree(plain)
    for url in (f"jsonfiles://{plain}", f"lmdb://{plain}"):
        out = cli("--store", url, "runs", "list")
        assert out.returncode == 2 and "is not a" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert _tree(plain) == before


def test_read_only_commands_read_a_store_without_changing_a_byte(populated):
    url, base, waiting, done = populated
    before = _tree(base)
    listed = json.loads(cli("--store", url, "--json", "runs", "list").stdout)
    assert {r["run_id"] for r in listed} == {waiting, done}
    assert cli("--store", url, "runs", "show", waiting).returncode == 0
    assert cli("--store", url, "ledger", "show", done).returncode == 0
    assert _tree(base) == before


def test_read_only_commands_work_for_a_user_without_write_permission(populated):
    if os.geteuid() == 0 and shutil.which("setpriv") is None:  # pragma: no cover - util-linux is essential
        pytest.fail("setpriv (util-linux) is needed to run without root's capabilities")
    url, base, waiting, done = populated
    for p in [base, *base.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        before = _tree(base)
        out = cli("--store", url, "--json", "runs", "list", drop_privileges=True)
        assert out.returncode == 0, out.stderr
        assert {r["run_id"] for r in json.loads(out.stdout)} == {waiting, done}
        out = cli("--store", url, "ledger", "show", done, drop_privileges=True)
        assert out.returncode == 0 and "run completed" in out.stdout, out.stderr
        # a command that writes is refused with a clear error, and nothing changes
        out = cli("--store", url, "cancel", waiting, drop_privileges=True)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert _tree(base) == before
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_a_read_only_runtime_refuses_every_write_and_writes_nothing(populated):
    url, base, waiting, _done = populated
    before = _tree(base)
    with Runtime.from_config({"store": url, "store_options": {"read_only": True}}) as rt:
        assert rt.get_state(waiting).status is RunStatus.WAITING
        with pytest.raises(StoreError, match="read-only|readonly"):
            rt.cancel_run(waiting)
        with pytest.raises(StoreError, match="read-only|readonly"):
            rt.start(workflow=FLOW)
    assert _tree(base) == before


# --- degenerate URLs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["lmdb://", "sqlite://", "jsonfiles://", ""])
def test_degenerate_store_urls_are_errors_not_the_default_store(url, tmp_path):
    home = tmp_path / "home"
    out = cli("--store", url, "runs", "list", home=home)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert ("names no path" in out.stderr) if url else ("non-empty string" in out.stderr)
    assert not home.exists()
    with pytest.raises(ConfigurationError):
        Runtime.from_config(store=url)
    assert not home.exists()


def test_the_one_slash_typo_explains_the_absolute_and_relative_forms(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        Runtime.from_config(store=f"sqlite:{tmp_path}/x.db")
    message = str(info.value)
    assert "'sqlite:///absolute/path'" in message and "'sqlite://relative/path'" in message
    assert not list(tmp_path.iterdir()) and not (Path.cwd() / str(tmp_path).lstrip("/")).exists()


# --- open errors ------------------------------------------------------------------------------------------------
def test_open_errors_are_typed_and_name_the_path(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("not a store")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    cases = [(f"lmdb://{a_file}", "it is a file"), (f"jsonfiles://{a_file}", "it is a file"),
             (f"sqlite://{a_dir}", "it is a directory"), (f"lmdb://{a_file}/sub", "Cannot create")]
    for url, words in cases:
        with pytest.raises(StoreError) as info:
            Runtime.from_config(store=url)
        assert words in str(info.value) and str(tmp_path) in str(info.value), (url, info.value)
        out = cli("--store", url, "cancel", "x")
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr
    assert a_file.read_text() == "not a store" and list(a_dir.iterdir()) == []


def test_an_unreadable_configuration_path_is_a_configuration_error(tmp_path):
    for source in ("", str(tmp_path)):
        with pytest.raises(ConfigurationError, match="cannot be read"):
            Runtime.from_config(source)


def test_a_store_directory_without_permission_is_a_store_error(tmp_path):
    locked = tmp_path / "locked"
    with Runtime.from_config(store=f"lmdb://{locked}"):
        pass
    locked.chmod(0o000)
    try:
        out = cli("--store", f"lmdb://{locked}", "cancel", "x", drop_privileges=True)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and str(locked) in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        locked.chmod(0o755)


def test_a_zero_length_file_is_not_initialised_as_an_empty_sqlite_store(tmp_path):
    empty = tmp_path / "runs.db"
    empty.touch()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="zero-length"):
            Runtime.from_config({"store": f"sqlite://{empty}", "store_options": {"read_only": read_only}})
    for args in (["runs", "list"], ["cancel", "x"]):
        out = cli("--store", f"sqlite://{empty}", *args)
        assert out.returncode == 2 and "zero-length" in out.stderr, out.stderr
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]
    # a missing file is created by a command that writes
    fresh = tmp_path / "fresh.db"
    with Runtime.from_config(store=f"sqlite://{fresh}"):
        pass
    assert fresh.stat().st_size > 0


# --- small fixes (item 14) ---------------------------------------------------------------------------------------
def _failing(run, ctx):
    return StepPlan(node_id="boom", effect=Effect("no_such_effect"), next_node="boom")


def test_a_failed_runs_ledger_reads_run_failed_and_errors_say_1_attempt(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    flow = WorkflowSpec(workflow_id="failing", entry_node="boom", nodes={"boom": _failing})
    with Runtime.from_config(store=url) as rt:
        run_id = rt.start(workflow=flow)
        state = rt.tick(workflow=flow, run_id=run_id)
    assert state.status is RunStatus.FAILED
    assert state.error.startswith("Effect failed after 1 attempt: No effect handler registered for no_such_effect")
    lines: List[str] = cli("--store", url, "ledger", "show", run_id).stdout.splitlines()
    assert "run failed" in lines[-1] and "emit_event" not in lines[-1], lines
