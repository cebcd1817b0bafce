"""Commands plugin: reference §2.2 (CommandRecord, CommandAppendResult), §10 (protocols), §10.1 (command and cursor
stores). Real files, a real SQLite database, real processes for the shared JSONL file."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3

import pytest

import abstractruntime_commands  # noqa: F401  (the plugin package)
from abstractruntime.storage.commands import (
    CommandAppendResult,
    CommandCursorStore,
    CommandRecord,
    CommandStore,
    InMemoryCommandCursorStore,
    InMemoryCommandStore,
    JsonFileCommandCursorStore,
    JsonlCommandStore,
    SqliteCommandCursorStore,
    SqliteCommandStore,
)
from abstractruntime_sqlite.store import SqliteDatabase


def cmd(command_id="c1", run_id="r1", type="pause", payload=None, ts="", client_id=None) -> CommandRecord:
    return CommandRecord(command_id, run_id, type, payload if payload is not None else {}, ts, client_id)


@pytest.fixture
def db(tmp_path):
    with SqliteDatabase(tmp_path / "rt.sqlite") as database:
        yield database


@pytest.fixture(params=["memory", "jsonl", "sqlite"])
def store(request, tmp_path, db):
    return {"memory": lambda: InMemoryCommandStore(), "jsonl": lambda: JsonlCommandStore(tmp_path / "cmds"),
            "sqlite": lambda: SqliteCommandStore(db)}[request.param]()


def test_models():
    rec = CommandRecord("c", "r", "t", {"a": 1}, "2026-01-01T00:00:00+00:00")
    assert (rec.client_id, rec.seq) == (None, 0)
    assert rec.to_json() == {"command_id": "c", "run_id": "r", "type": "t", "payload": {"a": 1},
                             "ts": "2026-01-01T00:00:00+00:00", "client_id": None, "seq": 0}
    with pytest.raises(Exception):
        rec.seq = 3  # frozen
    assert CommandAppendResult(accepted=False, duplicate=True, seq=4).seq == 4


def test_append_is_idempotent_and_ordered(store):
    assert isinstance(store, CommandStore)
    assert store.get_last_seq() == 0 and store.list_after(after=0) == ([], 0)
    r1 = store.append(cmd("c1", payload={"reason": "lunch", "n": [1, 2.5, None]}, client_id=" web "))
    assert r1 == CommandAppendResult(accepted=True, duplicate=False, seq=1)
    assert store.append(cmd("c2", type="resume")).seq == 2
    assert store.append(cmd("c1", type="other")) == CommandAppendResult(accepted=False, duplicate=True, seq=1)
    r3 = store.append(cmd("  ", type="cancel", ts="2026-01-02T00:00:00+00:00"))  # blank id -> uuid4 hex
    assert r3.accepted and r3.seq == 3 and store.get_last_seq() == 3
    records, cursor = store.list_after(after=0)
    assert cursor == 3 and [r.seq for r in records] == [1, 2, 3]
    first = records[0]
    assert (first.command_id, first.run_id, first.type, first.client_id) == ("c1", "r1", "pause", "web")
    assert first.payload == {"reason": "lunch", "n": [1, 2.5, None]} and first.ts  # blank ts -> now
    assert len(records[2].command_id) == 32 and records[2].ts == "2026-01-02T00:00:00+00:00"
    assert store.list_after(after=1, limit=1) == ([records[1]], 2)
    assert store.list_after(after=3) == ([], 3)
    assert store.list_after(after=10) == ([], 10)
    assert [r.seq for r in store.list_after(after=0, limit=0)[0]] == [1, 2, 3]  # limit <= 0: the default 1000
    records[0].payload["reason"] = "changed"
    assert store.list_after(after=0)[0][0].payload["reason"] == "lunch"


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_persistent_stores_validate(kind, tmp_path, db):
    store = JsonlCommandStore(tmp_path / "cmds") if kind == "jsonl" else SqliteCommandStore(db)
    for bad in (cmd(run_id="  "), cmd(type=""), cmd(payload={"x": float("nan")}), cmd(payload={1: "x"}),
                cmd(payload={"x": object()}), CommandRecord("c", "r", "t", ["not", "a", "dict"], "")):
        with pytest.raises(ValueError):
            store.append(bad)
    assert store.get_last_seq() == 0
    # the in-memory store does not validate (reference behaviour)
    assert InMemoryCommandStore().append(cmd(run_id="", type="")).accepted


def test_jsonl_file_reopen_fsync_and_truncated_line(tmp_path):
    store = JsonlCommandStore(tmp_path / "cmds")
    store.append(cmd("a", payload={"é": "ü"}))
    store.append(cmd("b"))
    path = tmp_path / "cmds" / "commands.jsonl"
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2] and "ü" in lines[0].decode("utf-8")
    # a crash mid-line (no newline at the end) and a garbage line: both skipped on open
    with open(path, "ab") as fh:
        fh.write(b'{"command_id": "torn", "seq": 3, "run_')
    reopened = JsonlCommandStore(tmp_path / "cmds")
    assert reopened.get_last_seq() == 2
    assert reopened.append(cmd("a")).duplicate  # the id index was rebuilt from the file
    assert reopened.append(cmd("c")) == CommandAppendResult(True, False, 3)  # starts on a fresh line
    assert [r.command_id for r in reopened.list_after(after=0)[0]] == ["a", "b", "c"]
    third = JsonlCommandStore(tmp_path / "cmds")
    assert [r.seq for r in third.list_after(after=0)[0]] == [1, 2, 3] and third.get_last_seq() == 3
    # another store object (another process) appending to the same file is seen
    assert store.append(cmd("d")).seq == 4
    assert store.get_last_seq() == 4  # it caught up with the lines the others wrote
    assert [r.command_id for r in third.list_after(after=3)[0]] == ["d"]
    custom = JsonlCommandStore(tmp_path / "cmds", filename="other.jsonl")
    assert custom.get_last_seq() == 0 and custom.path == tmp_path / "cmds" / "other.jsonl"
    with pytest.raises(ValueError):
        JsonlCommandStore(tmp_path, filename="../escape.jsonl")


def _append_many(base_dir: str, prefix: str, n: int) -> None:
    store = JsonlCommandStore(base_dir, fsync=False)
    for i in range(n):
        store.append(cmd(f"{prefix}-{i}"))


def test_jsonl_processes_share_one_file(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), p, 40)) for p in ("x", "y", "z")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    store = JsonlCommandStore(tmp_path)
    records, cursor = store.list_after(after=0, limit=500)
    assert cursor == 120 and [r.seq for r in records] == list(range(1, 121))
    assert len({r.command_id for r in records}) == 120


def test_sqlite_store_tables_and_sharing(tmp_path, db):
    store = SqliteCommandStore(db)
    store.append(cmd("a", payload={"k": "v"}))
    tables = {r[0] for r in db.connection().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"commands", "command_cursors", "runs", "ledger"} <= tables
    # a second database object on the same file (another process) sees and continues the sequence
    with SqliteDatabase(tmp_path / "rt.sqlite") as other_db:
        other = SqliteCommandStore(other_db)
        assert other.append(cmd("a")).duplicate and other.append(cmd("b")).seq == 2
    assert [r.command_id for r in store.list_after(after=0)[0]] == ["a", "b"] and store.get_last_seq() == 2
    raw = sqlite3.connect(str(tmp_path / "rt.sqlite")).execute("SELECT payload FROM commands WHERE seq = 1").fetchone()
    assert json.loads(raw[0]) == {"k": "v"}


def test_cursor_stores(tmp_path, db):
    mem = InMemoryCommandCursorStore(initial=4)
    assert isinstance(mem, CommandCursorStore) and mem.load() == 4
    mem.save(9)
    assert mem.load() == 9 and InMemoryCommandCursorStore().load() == 0

    path = tmp_path / "deep" / "cursor.json"
    js = JsonFileCommandCursorStore(path)
    assert js.load() == 0
    js.save(12)
    data = json.loads(path.read_text())
    assert data["cursor"] == 12 and data["updated_at"]
    assert JsonFileCommandCursorStore(path).load() == 12
    path.write_text("{broken")
    assert js.load() == 0
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]

    a = SqliteCommandCursorStore(db)
    b = SqliteCommandCursorStore(db, consumer_id="worker-2")
    assert a.consumer_id == "gateway_runner" and a.load() == 0
    a.save(3)
    b.save(7)
    a.save(5)
    assert (a.load(), b.load()) == (5, 7)
    assert SqliteCommandCursorStore(db).load() == 5
    # a blank consumer id is the default consumer, as in the reference; ids are stripped
    assert SqliteCommandCursorStore(db, consumer_id=" ").load() == 5
    assert SqliteCommandCursorStore(db, consumer_id=" worker-2 ").load() == 7
