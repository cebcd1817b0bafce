"""The PostgreSQL store keeps checkpoints and ledger records compressed (abstractruntime_postgres.packing, schema
version 3; issue 25: WAL per side-effecting step), against a real server (tests/postgres_support.py): what is stored,
how a version 2 database is upgraded in place (its JSON rows stay readable), and damaged or unknown stored forms."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import CorruptStoreError

from abstractruntime_postgres.packing import DEFLATE_V1, PackingError, pack, unpack

try:
    import psycopg

    from abstractruntime_postgres.store import PostgresBackend
except ImportError:  # no psycopg: the postgres_server fixture skips every test (and fails them in CI)
    psycopg = PostgresBackend = None

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for postgres_support

from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)

WORDS = ("order", "shipped", "customer", "invoice", "the", "refund", "status", "of", "parcel", "address", "is")


@pytest.fixture(autouse=True)
def _clean_abstractruntime_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_") and key != "ABSTRACTRUNTIME_TEST_POSTGRES_DSN":
            monkeypatch.delenv(key, raising=False)


def _text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def _flow() -> WorkflowSpec:
    """Two side-effecting steps, a question to the user, two more, the end."""
    def call(name, i, nxt):
        return lambda run, ctx: StepPlan(node_id=name, effect=Effect("call", {"i": i, "q": _text(i, 10)}, f"r{i}"),
                                         next_node=nxt)

    return WorkflowSpec(workflow_id="packed", entry_node="a0", nodes={
        "a0": call("a0", 0, "a1"), "a1": call("a1", 1, "ask"),
        "ask": lambda run, ctx: StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "go on?"},
                                                                       "answer"), next_node="b0"),
        "b0": call("b0", 2, "b1"), "b1": call("b1", 3, "end"),
        "end": lambda run, ctx: StepPlan(node_id="end", complete_output={"answer": run.vars.get("answer")})})


def _runtime(dsn: str) -> Runtime:
    def handler(run, effect, default_next_node):
        return EffectOutcome.completed({"i": effect.payload["i"], "answer": _text(effect.payload["i"] + 5, 14)})
    return Runtime.from_config({"store": dsn}, effect_handlers={"call": handler})


def _rows(conn, run_id: str):
    ledger = [(seq, bytes(data)) for seq, data in conn.execute(
        "SELECT seq, data FROM abstractruntime.ledger WHERE run_id = %s ORDER BY seq", (run_id,))]
    run = bytes(conn.execute("SELECT data FROM abstractruntime.runs WHERE run_id = %s", (run_id,)).fetchone()[0])
    return run, ledger


# --- the stored form ----------------------------------------------------------------------------------------------
def test_pack_round_trips_and_keeps_what_compressing_would_not_shrink():
    record = json.dumps({"run_id": "r" * 36, "step_id": "s" * 36, "status": "completed", "text": "a\u0000b ☃ " * 20,
                         "record_hash": "ab" * 32}, ensure_ascii=False).encode()
    packed = pack(record)
    assert packed[0] == DEFLATE_V1 and len(packed) < len(record) // 2
    assert unpack(packed) == record and unpack(memoryview(packed)) == record
    assert pack(record) == packed  # the same bytes each time: a lost COMMIT is recognised by them
    assert pack(b"{}") == b"{}" and unpack(b"{}") == b"{}"  # too small to gain: stored as the JSON itself
    with pytest.raises(PackingError, match="damaged|truncated"):
        unpack(packed[:-3])
    with pytest.raises(PackingError, match="trailing"):
        unpack(packed + b"x")
    with pytest.raises(PackingError, match="unknown stored format 0x02"):
        unpack(b"\x02" + packed[1:])


def test_checkpoints_and_ledger_records_are_stored_compressed_and_read_back(pg_dsn):
    with _runtime(pg_dsn) as rt:
        run_id = rt.start(workflow=_flow())
        state = rt.tick(workflow=_flow(), run_id=run_id)
        assert state.status is RunStatus.WAITING
        state = rt.resume(workflow=_flow(), run_id=run_id, wait_key=state.waiting.wait_key, payload={"t": "yes"})
        assert state.status is RunStatus.COMPLETED and state.vars["r3"]["answer"] == _text(8, 14)
        assert rt.verify_ledger(run_id)["ok"]
        records = rt.get_ledger(run_id)
    with psycopg.connect(pg_dsn) as conn:
        run, ledger = _rows(conn, run_id)
    assert len(ledger) == len(records) >= 10
    stored = [run] + [data for _, data in ledger]
    assert all(data[0] == DEFLATE_V1 for data in stored)
    raw = sum(len(unpack(data)) for data in stored)
    # a record shrinks to ~45% of its JSON, a checkpoint to 30-45%: a step writes about half the WAL it did
    assert sum(map(len, stored)) < 0.5 * raw, (sum(map(len, stored)), raw)
    assert [json.loads(unpack(data)) for _, data in ledger] == records


def test_compress_false_keeps_new_rows_as_json_readable_in_sql_and_both_forms_are_read(pg_dsn):
    with _runtime(pg_dsn) as rt:  # compressed rows first
        run_id = rt.start(workflow=_flow())
        state = rt.tick(workflow=_flow(), run_id=run_id)
    url = pg_dsn + ("&" if "?" in pg_dsn else "?") + "compress=false"
    with _runtime(url) as rt:
        state = rt.resume(workflow=_flow(), run_id=run_id, wait_key=state.waiting.wait_key, payload={"t": "yes"})
        assert state.status is RunStatus.COMPLETED and rt.verify_ledger(run_id)["ok"]
        records = rt.get_ledger(run_id)
    with psycopg.connect(pg_dsn) as conn:
        run, ledger = _rows(conn, run_id)
        status = conn.execute("SELECT convert_from(data, 'UTF8')::json->>'status' FROM abstractruntime.runs "
                              "WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert run[:1] == b"{" and status == "completed"
    forms = [data[:1] for _, data in ledger]
    assert forms[0] == bytes([DEFLATE_V1]) and forms[-1] == b"{"
    assert [json.loads(unpack(data)) for _, data in ledger] == records


# --- migrating a database of the previous version -----------------------------------------------------------------
def test_a_version_2_database_is_upgraded_in_place_and_its_json_rows_stay_readable(pg_dsn):
    with _runtime(pg_dsn) as rt:
        run_id = rt.start(workflow=_flow())
        assert rt.tick(workflow=_flow(), run_id=run_id).status is RunStatus.WAITING
    # the database as version 2 left it: the kernel's JSON in every data column, no version 3
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        run, ledger = _rows(conn, run_id)
        conn.execute("UPDATE abstractruntime.runs SET data = %s WHERE run_id = %s", (unpack(run), run_id))
        for seq, data in ledger:
            conn.execute("UPDATE abstractruntime.ledger SET data = %s WHERE run_id = %s AND seq = %s",
                         (unpack(data), run_id, seq))
        conn.execute("DELETE FROM abstractruntime.abstractruntime_schema WHERE version = 3")
        conn.execute("COMMENT ON COLUMN abstractruntime.runs.data IS NULL")
        conn.execute("COMMENT ON COLUMN abstractruntime.ledger.data IS NULL")
        old_ledger = _rows(conn, run_id)[1]
        assert all(data[:1] == b"{" for _, data in old_ledger)
    with _runtime(pg_dsn) as rt:
        assert rt.backend.applied_migrations == [3]
        state = rt.get_state(run_id)  # a JSON checkpoint
        assert state.status is RunStatus.WAITING and state.vars["r1"]["i"] == 1
        state = rt.resume(workflow=_flow(), run_id=run_id, wait_key=state.waiting.wait_key, payload={"t": "yes"})
        assert state.status is RunStatus.COMPLETED
        assert rt.verify_ledger(run_id)["ok"]  # one chain across the JSON and the compressed records
        assert list(rt.backend.iter_corrupt()) == []
    with psycopg.connect(pg_dsn) as conn:
        run, ledger = _rows(conn, run_id)
        assert run[0] == DEFLATE_V1
        assert ledger[:len(old_ledger)] == old_ledger  # left as they were
        assert len(ledger) > len(old_ledger) and all(data[0] == DEFLATE_V1 for _, data in ledger[len(old_ledger):])
        comment = conn.execute("SELECT col_description('abstractruntime.ledger'::regclass, 6)").fetchone()[0]
        assert "deflate" in comment
    with PostgresBackend(pg_dsn) as again:
        assert again.applied_migrations == []


# --- damage -------------------------------------------------------------------------------------------------------
def test_damaged_or_unknown_stored_forms_are_reported_as_corrupt(pg_dsn):
    with _runtime(pg_dsn) as rt:
        run_id = rt.start(workflow=_flow())
        rt.tick(workflow=_flow(), run_id=run_id)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        run, ledger = _rows(conn, run_id)
        conn.execute("UPDATE abstractruntime.runs SET data = %s WHERE run_id = %s", (b"\x02" + run[1:], run_id))
        conn.execute("UPDATE abstractruntime.ledger SET data = %s WHERE run_id = %s AND seq = %s",
                     (ledger[1][1][:-4], run_id, ledger[1][0]))
    with PostgresBackend(pg_dsn) as backend:
        with pytest.raises(CorruptStoreError, match=rf"checkpoint of run {run_id}.*unknown stored format 0x02"):
            backend.run_store.load(run_id)
        with pytest.raises(CorruptStoreError, match=rf"ledger record {ledger[1][0]} of run {run_id}"):
            backend.ledger_store.list(run_id)
        problems = list(backend.iter_corrupt())
        assert len(problems) == 2, problems
