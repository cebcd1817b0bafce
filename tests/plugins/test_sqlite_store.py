import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import abstractruntime_sqlite
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec, codec
from abstractruntime.errors import ConcurrentModificationError, ConfigurationError, CorruptStoreError, StoreError
from abstractruntime.models import RunState, StepRecord, StepStatus, WaitReason, WaitState
from abstractruntime.storage.base import StepCommit, backend_for
from abstractruntime.testing import InjectedFault, StoreConformance
from abstractruntime_sqlite.store import SCHEMA_VERSION, SqliteDatabase, SqliteLedgerStore, SqliteRunStore


class TestSqliteStoreConformance(StoreConformance):
    backend_class = SqliteDatabase
    persistent = True

    def open_backend(self, path: Path) -> SqliteDatabase:
        return SqliteDatabase(path / "runtime.sqlite")


def _run(**kw) -> RunState:
    return RunState.new(workflow_id=kw.pop("workflow_id", "wf"), entry_node="a", vars=kw.pop("vars", None))


def _commit(db, run, records=(), expected=None):
    if run is not None:
        run.revision = (expected if expected is not None else run.revision) + 1
    db.commit_step(StepCommit(run=run, run_json=codec.encode_run(run) if run is not None else None,
                              records=tuple(records), record_jsons=tuple(codec.encode_record(r) for r in records),
                              expected_revision=expected))


def _record(run, node="a", status=StepStatus.COMPLETED, effect=None, result=None, key=None):
    rec = StepRecord.start(run=run, node_id=node, effect=effect, idempotency_key=key)
    return rec.finish_success(result) if status is StepStatus.COMPLETED else rec


# --- construction, options, schema --------------------------------------------------------------------------------
def test_database_creates_parent_dir_schema_and_pragmas(tmp_path):
    path = tmp_path / "deep" / "er" / "x.db"
    with SqliteDatabase(path) as db:
        assert db.path == path and path.exists()
        conn = db.connection()
        assert conn is db.connection()  # one connection per thread
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "runs", "ledger", "ledger_heads"} <= tables
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        other = []
        t = threading.Thread(target=lambda: other.append(db.connection()))
        t.start()
        t.join()
        assert other[0] is not conn
    db.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        db.run_store.load("x")


def test_durability_option_maps_to_pragma_synchronous(tmp_path):
    with SqliteDatabase(tmp_path / "full.db", durability="full") as db:
        assert db.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # no option: "auto", FULL until a commit asks for less (the runtime's durability "none")
    cases = {"?durability=full": 2, "?durability=normal": 1, "?sync=true": 2, "?sync=false": 1, "": 2,
             "?sync=1&durability=full": 2}
    for i, (query, expected) in enumerate(cases.items()):
        with Runtime.from_config({"store": f"sqlite://{tmp_path}/u{i}.db{query}"}) as rt:
            db = rt.run_store.backend
            assert isinstance(db, SqliteDatabase) and db.path == tmp_path / f"u{i}.db"
            assert db.connection().execute("PRAGMA synchronous").fetchone()[0] == expected, query
    with Runtime.from_config({"store": f"sqlite://{tmp_path}/opt.db", "store_options": {"sync": True}}) as rt:
        assert rt.run_store.backend.connection().execute("PRAGMA synchronous").fetchone()[0] == 2


@pytest.mark.parametrize("durability, expected", [("barrier", 2), ("step", 2), ("none", 1)])
def test_auto_durability_commits_follow_the_runtimes_durability(tmp_path, durability, expected):
    """Without a store option each commit is FULL when the runtime wants it durable, NORMAL under "none"."""
    from abstractruntime import StepPlan, WorkflowSpec

    wf = WorkflowSpec(workflow_id="w", entry_node="a",
                      nodes={"a": lambda run, ctx: StepPlan(node_id="a", complete_output={"ok": True})})
    with Runtime.from_config({"store": f"sqlite://{tmp_path}/a.db", "durability": durability}) as rt:
        run_id = rt.start(workflow=wf)
        assert rt.tick(workflow=wf, run_id=run_id).output == {"ok": True}
        assert rt.run_store.backend.connection().execute("PRAGMA synchronous").fetchone()[0] == expected


def test_bad_options_are_configuration_errors(tmp_path):
    with pytest.raises(ConfigurationError, match=r"bogus.*valid options: durability, sync"):
        Runtime.from_config({"store": f"sqlite://{tmp_path}/a.db?bogus=1"})
    with pytest.raises(ConfigurationError, match="durability"):
        Runtime.from_config({"store": f"sqlite://{tmp_path}/b.db?durability=extreme"})
    with pytest.raises(ConfigurationError, match="sync"):
        Runtime.from_config({"store": f"sqlite://{tmp_path}/c.db?sync=maybe"})
    with pytest.raises(ConfigurationError, match="disagree"):
        Runtime.from_config({"store": f"sqlite://{tmp_path}/d.db?sync=false&durability=full"})
    with pytest.raises(ConfigurationError, match="memory"):
        Runtime.from_config({"store": "sqlite://:memory:"})
    with pytest.raises(ValueError):
        SqliteDatabase(tmp_path / "e.db", durability="sometimes")
    assert not any((tmp_path / n).exists() for n in ("a.db", "b.db", "c.db", "d.db", "e.db"))


def test_sqlite_plugin_is_registered_by_entry_point():
    with Runtime.from_config({"store": "memory://"}) as rt:
        assert "sqlite" in {p.name for p in rt.plugins()}


def test_newer_schema_version_is_refused_and_untouched(tmp_path):
    path = tmp_path / "x.db"
    SqliteDatabase(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    before = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    raw.close()
    with pytest.raises(StoreError, match=rf"schema version 99.*supports \({SCHEMA_VERSION}\).*Nothing was changed"):
        SqliteDatabase(path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "99"
    assert raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == before
    raw.close()


def test_a_file_that_is_not_sqlite_is_reported(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStoreError, match="junk.db"):
        SqliteDatabase(path)


def test_corrupt_rows_are_reported_with_the_run(tmp_path):
    with SqliteDatabase(tmp_path / "x.db") as db:
        run = _run()
        _commit(db, run, [_record(run)])
        db.connection().execute("UPDATE runs SET data = '{not json' WHERE run_id = ?", (run.run_id,))
        with pytest.raises(CorruptStoreError, match=run.run_id) as info:
            db.run_store.load(run.run_id)
        assert info.value.run_id == run.run_id
        from abstractruntime_storekit.integrity import collect_skipped

        with collect_skipped() as skipped:  # a query leaves a corrupt run out and reports it
            assert db.run_store.list_runs() == []
        assert [(r.run_id, r.kind) for r in skipped] == [(run.run_id, "checkpoint")]
        db.connection().execute("UPDATE ledger SET data = '[1,' WHERE run_id = ?", (run.run_id,))
        with pytest.raises(CorruptStoreError, match=rf"ledger record 1 of run {run.run_id}"):
            db.ledger_store.list(run.run_id)


# --- reference-style construction -----------------------------------------------------------------------------------
def test_reference_style_stores_share_the_database_and_commit_atomically(tmp_path):
    db = SqliteDatabase(tmp_path / "ref.db")
    runs, ledger = SqliteRunStore(db), SqliteLedgerStore(db)
    assert runs.backend is db and ledger.backend is db
    assert backend_for(runs, ledger) is db
    run = _run(vars={"v": "before"})
    _commit(db, run, [_record(run, node="first")])

    def fail(point):
        raise InjectedFault(point)

    db.fault_injector = fail
    run.vars["v"] = "after"
    with pytest.raises(InjectedFault, match="commit:after-checkpoint"):
        backend_for(runs, ledger).commit_step(StepCommit(
            run=run, run_json=codec.encode_run(run), records=(_record(run, node="second"),),
            record_jsons=(codec.encode_record(_record(run, node="second")),), expected_revision=1))
    db.fault_injector = None
    assert runs.load(run.run_id).vars == {"v": "before"} and runs.load_revision(run.run_id) == 1
    assert [r["node_id"] for r in ledger.list(run.run_id)] == ["first"]
    assert ledger.count(run.run_id) == 1
    # and through a Runtime built the reference way: a failing commit of the first step writes nothing
    rt = Runtime(run_store=runs, ledger_store=ledger)
    run_id = rt.start(workflow=WF)
    db.fault_injector = fail
    with pytest.raises(InjectedFault):
        rt.tick(workflow=WF, run_id=run_id)
    db.fault_injector = None
    assert ledger.list(run_id) == [] and runs.load(run_id).status is RunStatus.RUNNING
    assert rt.tick(workflow=WF, run_id=run_id).status is RunStatus.WAITING
    db.close()


def test_append_validates_and_allocates_contiguous_seqs(tmp_path):
    with SqliteDatabase(tmp_path / "x.db") as db:
        run = _run()
        with pytest.raises(ValueError):
            db.ledger_store.append(StepRecord(run_id="", step_id="s", node_id="n", status=StepStatus.STARTED))
        for i in range(5):
            db.ledger_store.append(_record(run, node=f"n{i}"))
        # heads are the only source of seq: appends after a reopen continue from them
        db.close()
        db = SqliteDatabase(tmp_path / "x.db")
        db.ledger_store.append(_record(run, node="n5"))
        seqs = [r[0] for r in db.connection().execute("SELECT seq FROM ledger WHERE run_id = ? ORDER BY seq",
                                                      (run.run_id,))]
        assert seqs == [1, 2, 3, 4, 5, 6]
        assert db.ledger_store.count_many([run.run_id, "none"]) == {run.run_id: 6}  # unknown runs omitted
        page, cursor = db.ledger_store.list_after(run_id=run.run_id, after=4)
        assert [r["node_id"] for r in page] == ["n4", "n5"] and cursor == 6


def test_stale_revision_through_run_store_queries(tmp_path):
    with SqliteDatabase(tmp_path / "x.db") as db:
        run = _run()
        _commit(db, run)
        with pytest.raises(ConcurrentModificationError) as info:
            _commit(db, _run(), expected=3)  # unknown run: store has no revision
        assert info.value.actual is None
        run.status = RunStatus.WAITING
        run.waiting = WaitState(reason=WaitReason.EVENT, wait_key="evt:x")
        _commit(db, run, expected=1)
        row = db.connection().execute("SELECT wait_reason, wait_key, wait_until, revision FROM runs").fetchone()
        assert row == ("event", "evt:x", None, 2)
        assert [r.run_id for r in db.run_store.list_runs(wait_reason=WaitReason.EVENT)] == [run.run_id]


def test_queries_use_indexes(tmp_path):
    with SqliteDatabase(tmp_path / "x.db") as db:
        conn = db.connection()

        def plan(sql, params):
            return " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

        assert "runs_wait_until" in plan(
            "SELECT run_id, data FROM runs WHERE wait_until IS NOT NULL AND wait_until <= ? "
            "ORDER BY wait_until, run_id LIMIT ?", ("1", 10))
        assert "runs_wait_key" in plan("SELECT run_id, data FROM runs WHERE wait_key = ? ORDER BY run_id LIMIT ?",
                                       ("k", 10))
        assert "runs_parent" in plan("SELECT run_id, data FROM runs WHERE parent_run_id = ? ORDER BY created_at",
                                     ("p",))
        assert "ledger_idem" in plan("SELECT seq FROM ledger WHERE run_id = ? AND idempotency_key = ?", ("r", "k"))


def test_metrics_many_over_completed_rows(tmp_path):
    with SqliteDatabase(tmp_path / "x.db") as db:
        run, other = _run(), _run()
        llm = Effect(type=EffectType.LLM_CALL, payload={"prompt": "hi"})
        tools = Effect(type=EffectType.TOOL_CALLS, payload={"tool_calls": [{"name": "a"}, {"name": "b"}]})
        db.ledger_store.append(_record(run, status=StepStatus.STARTED, effect=llm))
        db.ledger_store.append(_record(run, effect=llm, result={"usage": {"total_tokens": 30}}))
        db.ledger_store.append(_record(run, effect=llm, result={"content": "no usage"}))
        db.ledger_store.append(_record(run, effect=tools, result={"mode": "executed"}))
        db.ledger_store.append(_record(run, effect=Effect(type=EffectType.ANSWER_USER, payload={"message": "m"})))
        db.ledger_store.append(_record(other, status=StepStatus.STARTED, effect=tools))
        assert db.ledger_store.metrics_many([run.run_id, other.run_id, "none"]) == {  # no completed rows: omitted
            run.run_id: {"steps": 4, "llm_calls": 2, "tool_calls": 2, "tokens_total": 30},
        }


# --- several processes ---------------------------------------------------------------------------------------------
_APPENDER = textwrap.dedent(
    """
    import os, sys, time
    from abstractruntime_sqlite.store import SqliteDatabase
    from abstractruntime.models import RunState, StepRecord
    path, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    db = SqliteDatabase(path)
    shared = RunState.new(workflow_id="wf", entry_node="a")
    shared.run_id = "shared"
    own = RunState.new(workflow_id="wf", entry_node="a")
    own.run_id = "own-" + tag
    while not os.path.exists(go):
        time.sleep(0.002)
    for i in range(n):
        for run in (shared, own):
            rec = StepRecord.start(run=run, node_id=f"{tag}-{i}", effect=None).finish_success({"i": i})
            db.ledger_store.append(rec)
    db.close()
    """
)


def test_two_processes_append_to_one_file(tmp_path):
    path, go, n = str(tmp_path / "shared.db"), tmp_path / "go", 150
    SqliteDatabase(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, path, tag, str(n), str(go)]) for tag in ("p", "q")]
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with SqliteDatabase(path) as db:
        conn = db.connection()
        for run_id, total in (("shared", 2 * n), ("own-p", n), ("own-q", n)):
            seqs = [r[0] for r in conn.execute("SELECT seq FROM ledger WHERE run_id = ? ORDER BY seq", (run_id,))]
            assert seqs == list(range(1, total + 1)), run_id
            assert db.ledger_store.count(run_id) == total
        nodes = [r["node_id"] for r in db.ledger_store.list("shared")]
        for tag in ("p", "q"):  # every row present, each process's rows in its own order
            assert [x for x in nodes if x.startswith(tag + "-")] == [f"{tag}-{i}" for i in range(n)]


# --- a whole runtime flow ------------------------------------------------------------------------------------------
def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Name?"},
                                                 result_key="answer"), next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["name"]})


WF = WorkflowSpec(workflow_id="ask_flow", entry_node="ask", nodes={"ask": _ask, "done": _done})


def test_runtime_flow_resumed_from_a_second_runtime(tmp_path):
    url = f"sqlite://{tmp_path}/x.db"
    with Runtime.from_config({"store": url}) as rt:
        assert isinstance(rt.run_store.backend, SqliteDatabase)
        assert rt.run_store.backend is rt.ledger_store.backend
        run_id = rt.start(workflow=WF)
        waiting = rt.tick(workflow=WF, run_id=run_id)
        assert waiting.status is RunStatus.WAITING and waiting.waiting.reason is WaitReason.USER
        assert [r.run_id for r in rt.run_store.list_runs(status=RunStatus.WAITING)] == [run_id]
    with Runtime.from_config({"store": url}) as rt2:
        state = rt2.get_state(run_id)
        done = rt2.resume(workflow=WF, run_id=run_id, wait_key=state.waiting.wait_key, payload={"name": "Ada"})
        assert done.status is RunStatus.COMPLETED and done.output["hello"] == "Ada"
    with Runtime.from_config({"store": url}) as rt3:
        assert rt3.get_state(run_id).status is RunStatus.COMPLETED
        ledger = rt3.get_ledger(run_id)
        assert [r["status"] for r in ledger] == ["started", "waiting", "completed", "completed", "completed"]
        assert rt3.run_store.list_run_index()[0]["status"] == "completed"


def test_plugin_module_exposes_reference_names():
    assert abstractruntime_sqlite.SqliteDatabase is SqliteDatabase
    assert abstractruntime_sqlite.SqliteRunStore is SqliteRunStore
    assert abstractruntime_sqlite.SqliteLedgerStore is SqliteLedgerStore
