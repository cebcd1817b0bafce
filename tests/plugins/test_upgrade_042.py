"""Stores written by AbstractRuntime 0.4.2 open and continue (docs/upgrading.md).

The stores under tests/fixtures/042/ were written by the real ``abstractruntime==0.4.2`` (regenerate them with
tests/fixtures/042/generate.py; manifest.json names the runs). Every test works on a copy in tmp_path. Each store
holds a completed run, a run waiting for the user, a run waiting for an event (a child of the completed run) and a
run waiting on a timer that is long due; the tests open them through the reference constructors
(``abstractruntime.storage.sqlite`` / ``abstractruntime.storage.json_files``) and through ``Runtime.from_config``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import StoreError
from abstractruntime.storage.json_files import JsonFileRunStore, JsonlLedgerStore
from abstractruntime.storage.sqlite import SqliteDatabase, SqliteLedgerStore, SqliteRunStore
from abstractruntime_sqlite.migrate import StoreUpgradeError
from abstractruntime_sqlite.schema import SCHEMA_VERSION

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "042"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
KINDS = ("sqlite", "jsonfiles")


# --- the workflows of the fixtures (tests/fixtures/042/generate.py), continued with this runtime ------------------
def _hello(run, ctx):
    return StepPlan(node_id="hello", effect=Effect(type=EffectType.ANSWER_USER,
                                                   payload={"message": "Grüße, " + run.vars["who"]}), next_node="ask")


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Name?"},
                                                 result_key="answer"), next_node="greet")


def _greet(run, ctx):
    return StepPlan(node_id="greet", complete_output={"greeting": "hi " + run.vars["answer"]["name"]})


def _listen(run, ctx):  # pragma: no cover - the fixture's run already waits past it
    raise AssertionError("the 0.4.2 run waits after this node")


def _after(run, ctx):
    return StepPlan(node_id="after", complete_output={"event": run.vars["event"]})


def _sleep(run, ctx):  # pragma: no cover - the fixture's run already waits past it
    raise AssertionError("the 0.4.2 run waits after this node")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"woke": True})


GREETER = WorkflowSpec(workflow_id="greeter", entry_node="hello", nodes={"hello": _hello, "ask": _ask, "greet": _greet})
LISTENER = WorkflowSpec(workflow_id="listener", entry_node="listen", nodes={"listen": _listen, "after": _after})
SLEEPER = WorkflowSpec(workflow_id="sleeper", entry_node="sleep", nodes={"sleep": _sleep, "done": _done})


# --- helpers -----------------------------------------------------------------------------------------------------
def _copy(kind: str, tmp_path: Path) -> Path:
    """A copy of the 0.4.2 store: the database file, or the directory."""
    shutil.copytree(FIXTURES / kind, tmp_path / kind)
    return tmp_path / kind / "store.sqlite" if kind == "sqlite" else tmp_path / kind


def _runs(kind: str) -> Dict[str, str]:
    return MANIFEST[kind]["runs"]


def _raw_rows(kind: str, path: Path) -> Dict[str, List[bytes]]:
    """Every run's ledger rows as the bytes 0.4.2 (or, after the upgrade, this version) stored, read without us."""
    out: Dict[str, List[bytes]] = {}
    for run_id in _runs(kind).values():
        if kind == "jsonfiles":
            out[run_id] = [line for line in (path / f"ledger_{run_id}.jsonl").read_bytes().splitlines() if line]
            continue
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            column = "data" if "data" in [r[1] for r in conn.execute("PRAGMA table_info(ledger)")] else "record_json"
            out[run_id] = [r[0] for r in conn.execute(
                f"SELECT CAST({column} AS BLOB) FROM ledger WHERE run_id = ? ORDER BY seq", (run_id,))]
        finally:
            conn.close()
    return out


def _decoded(rows: Dict[str, List[bytes]]) -> Dict[str, List[Dict[str, Any]]]:
    return {run_id: [json.loads(r) for r in lines] for run_id, lines in rows.items()}


def _url(kind: str, path: Path) -> str:
    return f"{kind}://{path}"


class _Opened:
    """A runtime over a 0.4.2 store opened one of the two ways; ``close()`` closes what it opened."""

    def __init__(self, kind: str, path: Path, how: str) -> None:
        self.db = None
        if how == "config":
            self.rt = Runtime.from_config({"store": _url(kind, path)})
        elif kind == "sqlite":
            self.db = SqliteDatabase(path)
            self.rt = Runtime(run_store=SqliteRunStore(self.db), ledger_store=SqliteLedgerStore(self.db))
        else:
            self.rt = Runtime(run_store=JsonFileRunStore(path), ledger_store=JsonlLedgerStore(path))
        self.runs, self.ledger = self.rt.run_store, self.rt.ledger_store

    def close(self) -> None:
        self.rt.close()
        if self.db is not None:
            self.db.close()


@pytest.fixture(params=[(k, how) for k in KINDS for how in ("reference", "config")], ids=lambda p: "-".join(p))
def store(request, tmp_path):
    kind, how = request.param
    path = _copy(kind, tmp_path)
    old = _raw_rows(kind, path)
    opened = _Opened(kind, path, how)
    opened.kind, opened.path, opened.old, opened.ids = kind, path, old, _runs(kind)
    yield opened
    opened.close()


def _continues(opened: _Opened, run_id: str) -> List[Dict[str, Any]]:
    """The run's ledger keeps its 0.4.2 rows first, and the rows written now follow them (seq continues)."""
    old = _decoded(opened.old)[run_id]
    rows = opened.ledger.list(run_id)
    assert rows[: len(old)] == old
    new, last = opened.ledger.list_after(run_id=run_id, after=len(old))
    assert new == rows[len(old):] and new and last == len(rows) == opened.ledger.count(run_id)
    return new


# --- reading --------------------------------------------------------------------------------------------------------
def test_the_old_ledgers_read_back_identically(store):
    before = _decoded(store.old)
    for name, run_id in store.ids.items():
        assert store.ledger.list(run_id) == before[run_id], name
        assert store.ledger.count(run_id) == len(before[run_id])
    # and the stored bytes are the ones 0.4.2 wrote
    assert _raw_rows(store.kind, store.path) == store.old
    completed = store.runs.load(store.ids["completed"])
    assert completed.status is RunStatus.COMPLETED and completed.output["greeting"] == "hi Ada"
    assert completed.vars["who"] == "Zoë ✓"


def test_queries_find_the_old_runs(store):
    ids = store.ids
    assert {r.run_id for r in store.runs.list_runs(status=RunStatus.WAITING)} == {
        ids["waiting_user"], ids["waiting_event"], ids["waiting_until"]}
    assert [r.run_id for r in store.runs.list_children(parent_run_id=ids["completed"])] == [ids["waiting_event"]]
    key = MANIFEST[store.kind]["wait_keys"]["waiting_event"]
    assert [r.run_id for r in store.runs.list_waiting_for_event(wait_key=key)] == [ids["waiting_event"]]
    now = datetime.now(timezone.utc).isoformat()
    assert [r.run_id for r in store.runs.list_due_wait_until(now_iso=now)] == [ids["waiting_until"]]
    assert [r["run_id"] for r in store.runs.list_run_index(session_id="session-042")] == [ids["waiting_user"]]
    # the idempotency index covers the old rows: the completed ANSWER_USER row is found by its key
    first = _decoded(store.old)[ids["waiting_user"]][1]
    assert first["status"] == "completed" and first["effect"]["type"] == "answer_user"
    assert store.ledger.find_by_idempotency_key(ids["waiting_user"], first["idempotency_key"]) == first


# --- continuing -----------------------------------------------------------------------------------------------------
def test_the_run_waiting_for_the_user_resumes_and_completes(store):
    run_id = store.ids["waiting_user"]
    key = MANIFEST[store.kind]["wait_keys"]["waiting_user"]
    done = store.rt.resume(workflow=GREETER, run_id=run_id, wait_key=key, payload={"name": "Ada"})
    assert done.status is RunStatus.COMPLETED and done.output == {"greeting": "hi Ada"}
    new = _continues(store, run_id)
    assert new[0]["effect"]["type"] == "resume" and new[0]["effect"]["payload"]["payload"] == {"name": "Ada"}
    assert new[-1]["idempotency_key"] == "system:terminal_status:completed"
    assert store.runs.load(run_id).status is RunStatus.COMPLETED
    # the other runs' ledgers are untouched
    after = _raw_rows(store.kind, store.path)
    assert {r: v for r, v in after.items() if r != run_id} == {r: v for r, v in store.old.items() if r != run_id}


def test_the_run_waiting_for_an_event_resumes_and_completes(store):
    run_id = store.ids["waiting_event"]
    key = MANIFEST[store.kind]["wait_keys"]["waiting_event"]
    done = store.rt.resume(workflow=LISTENER, run_id=run_id, wait_key=key, payload={"ok": True})
    assert done.status is RunStatus.COMPLETED and done.output == {"event": {"ok": True}}
    assert _continues(store, run_id)[0]["effect"]["type"] == "resume"
    assert store.runs.list_waiting_for_event(wait_key=key) == []


def test_the_run_paused_on_a_timer_wakes_when_due(store):
    run_id = store.ids["waiting_until"]
    done = store.rt.tick(workflow=SLEEPER, run_id=run_id)
    assert done.status is RunStatus.COMPLETED and done.output == {"woke": True}
    _continues(store, run_id)
    assert store.runs.list_due_wait_until(now_iso=datetime.now(timezone.utc).isoformat()) == []


def test_the_command_inbox_continues(store):
    backend = store.runs.backend
    commands = backend.command_store()
    records, last = commands.list_after(after=0)
    assert [(r.command_id, r.seq, r.payload) for r in records] == [("cmd-042", 1, {"reason": "upgrade"})]
    assert last == 1


# --- SQLite: the upgrade itself --------------------------------------------------------------------------------------
def _digest(path: Path) -> Dict[str, str]:
    """sha256 of every file in the store's directory (a changed, added or removed file shows)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.iterdir())}


def _schema(path: Path, tables=("runs", "ledger", "ledger_heads", "meta")) -> List[tuple]:
    conn = sqlite3.connect(path)
    try:
        marks = ", ".join("?" * len(tables))
        return conn.execute(f"SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name IN ({marks}) "
                            f"AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name", tables).fetchall()
    finally:
        conn.close()


def test_sqlite_upgrade_records_the_version_and_matches_a_fresh_schema(tmp_path):
    path = _copy("sqlite", tmp_path)
    SqliteDatabase(path).close()
    conn = sqlite3.connect(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        heads = dict(conn.execute("SELECT run_id, last_seq FROM ledger_heads"))
        max_seq = dict(conn.execute("SELECT run_id, MAX(seq) FROM ledger GROUP BY run_id"))
    finally:
        conn.close()
    assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["upgraded_from"] == "abstractruntime 0.4.2"
    assert "wait_index" not in tables and not any(t.startswith("_upgrade") for t in tables)
    assert heads == max_seq and set(heads) == set(_runs("sqlite").values())
    fresh = tmp_path / "fresh.sqlite"
    SqliteDatabase(fresh).close()
    assert _schema(path) == _schema(fresh)
    before = _digest(path)
    SqliteDatabase(path).close()  # a second open finds it upgraded and changes nothing
    assert _digest(path) == before


def test_sqlite_upgrade_is_one_transaction(tmp_path):
    """A failure late in the upgrade (here: renaming the commands column, after runs and ledger were rebuilt) rolls
    everything back: the 0.4.2 file is unchanged, and it upgrades once the obstacle is gone."""
    path = _copy("sqlite", tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE commands ADD COLUMN payload TEXT")  # makes RENAME COLUMN payload_json fail
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(StoreError, match="nothing written"):
        SqliteDatabase(path)
    assert _digest(path) == before
    original = _raw_rows("sqlite", _copy("sqlite", tmp_path / "original"))  # never open the fixture itself
    assert _raw_rows("sqlite", path) == original
    if sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover - DROP COLUMN
        return
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE commands DROP COLUMN payload")
    conn.commit()
    conn.close()
    with SqliteDatabase(path) as db:
        assert all(SqliteLedgerStore(db).list(r) == json_rows for r, json_rows in _decoded(original).items())
    assert _raw_rows("sqlite", path) == original


def _open_and_read(path: str, queue: Any) -> None:  # pragma: no cover - runs in the child processes
    try:
        with SqliteDatabase(path) as db:
            queue.put({r: SqliteLedgerStore(db).list(r) for r in _runs("sqlite").values()})
    except BaseException as exc:
        queue.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_processes_opening_a_042_sqlite_store_at_once_all_get_the_upgraded_store(tmp_path):
    import multiprocessing

    path = _copy("sqlite", tmp_path)
    expected = _decoded(_raw_rows("sqlite", path))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_read, args=(str(path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == [expected] * 3
    conn = sqlite3.connect(path)
    try:
        assert dict(conn.execute("SELECT key, value FROM meta"))["schema_version"] == str(SCHEMA_VERSION)
    finally:
        conn.close()


def test_sqlite_store_of_an_unknown_layout_is_refused_unchanged(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, blob TEXT)")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(StoreUpgradeError, match="Nothing was changed"):
        SqliteDatabase(path)
    assert _digest(path) == before


def test_sqlite_store_of_a_newer_schema_version_is_refused_unchanged(tmp_path):
    path = _copy("sqlite", tmp_path)
    SqliteDatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    before = _digest(path)
    for open_it in (lambda: SqliteDatabase(path), lambda: Runtime.from_config({"store": _url("sqlite", path)})):
        with pytest.raises(StoreUpgradeError, match="newer") as info:
            open_it()
        assert "Nothing was changed" in str(info.value)
    assert _digest(path) == before


def _open_as_unprivileged(path: Path) -> str:
    """Open ``path`` in a forked child that cannot write it (as ``nobody`` when we are root); the child's outcome."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        outcome = "opened"
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            for open_it in (lambda: SqliteDatabase(path), lambda: Runtime.from_config({"store": _url("sqlite", path)})):
                try:
                    open_it()
                except BaseException as exc:  # report it to the parent
                    outcome = f"{type(exc).__name__}: {exc}"
                if not outcome.startswith("StoreUpgradeError"):
                    break
        except BaseException as exc:
            outcome = f"the child could not drop its privileges: {exc}"
        finally:
            os.write(write_fd, outcome.encode("utf-8", "replace"))
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        outcome = f.read().decode("utf-8")
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_read_only_042_sqlite_store_is_refused_unchanged(tmp_path):
    import tempfile

    SqliteDatabase(tmp_path / "warm.sqlite").close()  # every module the open needs is imported before the fork
    top = Path(tempfile.mkdtemp(prefix="ar-readonly-"))  # outside tmp_path, whose parents only root may enter
    try:
        os.chmod(top, 0o755)
        (top / "store").mkdir()
        path = top / "store" / "store.sqlite"
        shutil.copy2(FIXTURES / "sqlite" / "store.sqlite", path)
        os.chmod(path, 0o444)
        os.chmod(path.parent, 0o555)
        before = _digest(path)
        outcome = _open_as_unprivileged(path)
        assert outcome.startswith("StoreUpgradeError"), outcome
        assert "0.4.2" in outcome and "write access" in outcome and "Nothing was changed" in outcome, outcome
        assert _digest(path) == before
    finally:
        os.chmod(top / "store", 0o755)
        shutil.rmtree(top)


# --- JSON files: adopted, not rewritten ------------------------------------------------------------------------------
def _files(path: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")}


def test_jsonfiles_store_is_adopted_without_rewriting(tmp_path):
    path = _copy("jsonfiles", tmp_path)
    before = _files(path)
    opened = _Opened("jsonfiles", path, "config")
    try:
        ids = _runs("jsonfiles")
        for run_id in ids.values():
            opened.ledger.list(run_id)
            opened.runs.load(run_id)
        opened.runs.list_runs()
        assert _files(path) == before  # reading and querying rewrote nothing
        key = MANIFEST["jsonfiles"]["wait_keys"]["waiting_user"]
        opened.rt.resume(workflow=GREETER, run_id=ids["waiting_user"], wait_key=key, payload={"name": "Ada"})
        after = _files(path)
        changed = sorted(name for name in before if after[name] != before[name])
        run_id = ids["waiting_user"]
        assert changed == [f"ledger_{run_id}.jsonl", f"run_{run_id}.json"]
        ledger = f"ledger_{run_id}.jsonl"
        assert after[ledger].startswith(before[ledger])  # the old lines stay byte for byte, new ones appended
    finally:
        opened.close()


def test_a_read_only_command_on_an_unupgraded_042_sqlite_store_changes_nothing_and_says_how(tmp_path):
    """Read-only opening never upgrades: the CLI's `runs list` explains, and the file stays byte-identical."""
    from abstractruntime_cli.main import main

    path = tmp_path / "store.sqlite"
    shutil.copy(FIXTURES / "sqlite" / "store.sqlite", path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="written by AbstractRuntime 0.4.2"):
        Runtime.from_config({"store": f"sqlite://{path}", "store_options": {"read_only": True}})
    assert main(["--store", f"sqlite://{path}", "runs", "list"]) == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite"]
    with Runtime.from_config(store=f"sqlite://{path}"):  # a writing open upgrades it; then read-only works
        pass
    assert main(["--store", f"sqlite://{path}", "runs", "list"]) == 0
