"""The postgres store plugin against a real PostgreSQL server (see tests/postgres_support.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import abstractruntime_postgres
from abstractruntime import Effect, EffectOutcome, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec, codec
from abstractruntime.descriptors import StoreLocation
from abstractruntime.errors import ConcurrentModificationError, ConfigurationError, CorruptStoreError, StoreError
from abstractruntime.models import RunState, StepRecord, StepStatus, WaitReason, WaitState
from abstractruntime_pluginkit import WorkflowRegistry
from abstractruntime.storage.base import StepCommit, backend_for
from abstractruntime.testing import StoreConformance
from abstractruntime_postgres import LeaseLostError, RunLeasedError, parse_location
from abstractruntime_postgres.schema import SCHEMA_VERSION
from abstractruntime_postgres.worker import PostgresWorker

try:
    import psycopg

    from abstractruntime_postgres.store import PostgresBackend
except ImportError:  # no psycopg: the postgres_server fixture skips every test (and fails them in CI)
    psycopg = PostgresBackend = None

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for postgres_support

from postgres_support import pg_dsn, postgres_server, psycopg_installed  # noqa: E402,F401  (fixtures)


class TestPostgresStoreConformance(StoreConformance):
    backend_class = PostgresBackend
    persistent = True

    @pytest.fixture(autouse=True)
    def _server(self, postgres_server):
        self.server = postgres_server

    def open_backend(self, path: Path):
        # the same database for the same directory: the reopen tests find their data again
        return PostgresBackend(self.server.fresh_dsn(str(path)), max_size=8)


@pytest.fixture(autouse=True)
def _clean_abstractruntime_env(monkeypatch):
    """Configuration from the developer's environment must not leak into the tests."""
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_") and key != "ABSTRACTRUNTIME_TEST_POSTGRES_DSN":
            monkeypatch.delenv(key, raising=False)


def _extra_plugins():
    """The plugin through its entry point when pyproject declares it, else passed explicitly."""
    names = {ep.name for ep in entry_points(group="abstractruntime")}
    return [] if "postgres" in names else [abstractruntime_postgres]


def _runtime(dsn: str, **kwargs) -> Runtime:
    return Runtime.from_config({"store": dsn, **kwargs.pop("config", {})}, plugins=_extra_plugins(), **kwargs)


@pytest.fixture
def backend(pg_dsn):
    b = PostgresBackend(pg_dsn)
    yield b
    b.close()


def _run(**kw) -> RunState:
    run = RunState.new(workflow_id=kw.pop("workflow_id", "wf"), entry_node="a", vars=kw.pop("vars", None))
    for k, v in kw.items():
        setattr(run, k, v)
    return run


def _commit(b, run, records=(), expected=None):
    if run is not None:
        run.revision = (expected if expected is not None else run.revision) + 1
    b.commit_step(StepCommit(run=run, run_json=codec.encode_run(run) if run is not None else None,
                             records=tuple(records), record_jsons=tuple(codec.encode_record(r) for r in records),
                             expected_revision=expected))


def _record(run, node="a", status=StepStatus.COMPLETED, key=None):
    rec = StepRecord.start(run=run, node_id=node, effect=None, idempotency_key=key)
    return rec.finish_success({"ok": True}) if status is StepStatus.COMPLETED else rec


def _waiting_until(b, until: str, **kw) -> RunState:
    run = _run(**kw)
    run.status = RunStatus.WAITING
    run.waiting = WaitState(reason=WaitReason.UNTIL, until=until, resume_to_node="b")
    _commit(b, run)
    return run


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- configuration ------------------------------------------------------------------------------------------------
def _loc(url: str, **options) -> StoreLocation:
    from abstractruntime.settings import parse_store_url

    return parse_store_url(url, options)


def test_options_are_ours_or_libpq_and_are_stripped_from_the_dsn(psycopg_installed):
    libpq = abstractruntime_postgres._libpq_keywords()
    dsn, kw = parse_location(_loc("postgresql://u:pw@h:5433/db?pool_max=3&sslmode=disable&schema=s1&notify=off"
                                  "&application_name=my%20app&pool_min=0&pool_timeout=2.5"), libpq)
    assert dsn == "postgresql://u:pw@h:5433/db?sslmode=disable&application_name=my%20app"
    assert kw == {"min_size": 0, "max_size": 3, "schema": "s1", "notify": False, "pool_timeout": 2.5, "compress": True}
    # libpq parameters given in store_options reach the connection string too
    dsn, kw = parse_location(_loc("postgres://h/db", application_name="x", pool_max=2), libpq)
    assert psycopg.conninfo.conninfo_to_dict(dsn)["application_name"] == "x" and kw["max_size"] == 2
    # a bare name: libpq defaults / PG* environment
    assert parse_location(_loc("postgres"), libpq)[0] == ""
    with pytest.raises(ConfigurationError, match=r"pool_maximum.*pool_max") as info:
        parse_location(_loc("postgresql://u:secret@h/db?pool_maximum=3"), libpq)
    assert "secret" not in str(info.value)
    for bad in ("pool_max=0", "pool_min=x", "pool_min=5&pool_max=2", "notify=maybe", "schema=Bad-Name",
                "pool_timeout=0"):
        with pytest.raises(ConfigurationError):
            parse_location(_loc(f"postgresql://h/db?{bad}"), libpq)


def test_store_descriptor_schemes_and_lazy_psycopg_import():
    (desc,) = abstractruntime_postgres.abstractruntime_register_stores()
    assert desc.name == "postgres" and set(desc.all_schemes()) == {"postgres", "postgresql"}
    code = ("import sys, abstractruntime_postgres; "
            "assert 'psycopg' not in sys.modules and 'psycopg_pool' not in sys.modules, 'psycopg imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_from_config_url_options_and_schemes(pg_dsn):
    url = pg_dsn.replace("postgresql://", "postgres://", 1) + "?pool_max=3&application_name=ar-test&schema=custom"
    with _runtime(url) as rt:
        b = rt.run_store.backend
        assert isinstance(b, PostgresBackend) and rt.ledger_store.backend is b and b.schema == "custom"
        assert b.pool.max_size == 3
        with b.pool.connection() as conn:
            assert conn.execute("SHOW application_name").fetchone()[0] == "ar-test"
            assert conn.execute("SELECT count(*) FROM custom.runs").fetchone()[0] == 0
        assert backend_for(rt.run_store, rt.ledger_store) is b
    with _runtime(pg_dsn, config={"store_options": {"pool_min": 0, "notify": False}}) as rt:
        assert rt.run_store.backend.schema == "abstractruntime"


def test_configured_by_environment_or_config_file(pg_dsn, monkeypatch, tmp_path):
    monkeypatch.setenv("ABSTRACTRUNTIME_STORE", pg_dsn + "?schema=from_env")
    with Runtime.from_config(None, plugins=_extra_plugins()) as rt:
        assert isinstance(rt.run_store.backend, PostgresBackend) and rt.run_store.backend.schema == "from_env"
    monkeypatch.delenv("ABSTRACTRUNTIME_STORE")
    path = tmp_path / "abstractruntime.toml"
    path.write_text(f'[abstractruntime]\nstore = "{pg_dsn}"\n\n[abstractruntime.store_options]\n'
                    f'pool_max = 2\nschema = "from_file"\napplication_name = "from-file"\n')
    with Runtime.from_config(str(path), plugins=_extra_plugins()) as rt:
        b = rt.run_store.backend
        assert b.schema == "from_file" and b.pool.max_size == 2
        with b.pool.connection() as conn:
            assert conn.execute("SHOW application_name").fetchone()[0] == "from-file"


def test_unreachable_server_is_a_store_error_without_the_password(psycopg_installed):
    with socket_closed_port() as port:
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as info:
            PostgresBackend(f"postgresql://someone:hunter2@127.0.0.1:{port}/nodb")
        assert time.monotonic() - started < 10
        assert "hunter2" not in str(info.value)


class socket_closed_port:
    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        pass


def test_sessions_commit_synchronously_and_read_committed_whatever_the_defaults(pg_dsn):
    """The test server runs with synchronous_commit = off (fast, and its durability is not under test): without the
    store's session setting, an immediate restart took back commits it had acknowledged (the restart fault test).
    Under a serializable default, concurrent commits and claims failed with raw serialization errors (the PostgreSQL
    tests, run with the role's default set so, had 5 failures): the store's sessions are READ COMMITTED."""
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        server = conn.execute("SHOW synchronous_commit").fetchone()[0]
        database = conn.execute("SELECT current_database()").fetchone()[0]
    with PostgresBackend(pg_dsn, min_size=1, max_size=2) as b:
        assert b.fetchone("SHOW synchronous_commit")[0] == ("on" if server == "off" else server)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # stronger than "on" is kept; isolation is ours
        conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = remote_apply')
        conn.execute(f'ALTER DATABASE "{database}" SET default_transaction_isolation = serializable')
    try:
        with PostgresBackend(pg_dsn, min_size=1, max_size=2) as b:
            assert b.fetchone("SHOW synchronous_commit")[0] == "remote_apply"
            assert b.fetchone("SHOW default_transaction_isolation")[0] == "read committed"
            with b._connect() as conn:  # the connection that migrates the schema too
                assert conn.execute("SHOW default_transaction_isolation").fetchone()[0] == "read committed"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" RESET synchronous_commit')
            conn.execute(f'ALTER DATABASE "{database}" RESET default_transaction_isolation')


# --- schema and migrations ----------------------------------------------------------------------------------------
def test_schema_is_created_versioned_and_migrations_are_idempotent(pg_dsn):
    with PostgresBackend(pg_dsn) as first:
        assert first.applied_migrations == list(range(1, SCHEMA_VERSION + 1))
    with PostgresBackend(pg_dsn) as again:
        assert again.applied_migrations == []
    with psycopg.connect(pg_dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM abstractruntime.abstractruntime_schema")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'abstractruntime'")}
        assert {"runs", "ledger", "ledger_heads", "artifacts", "snapshots", "abstractruntime_schema"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'abstractruntime'")}
        assert {"runs_wait_until", "runs_wait_key", "ledger_idem", "runs_status"} <= indexes


def test_concurrent_first_opens_migrate_exactly_once(pg_dsn):
    results, errors = [], []
    barrier = threading.Barrier(6)

    def open_one():
        try:
            barrier.wait()
            b = PostgresBackend(pg_dsn, min_size=0)
            results.append(b.applied_migrations)
            b.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results, key=len) == [[]] * 5 + [list(range(1, SCHEMA_VERSION + 1))]


def test_a_newer_schema_is_refused_and_left_unchanged(pg_dsn):
    PostgresBackend(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO abstractruntime.abstractruntime_schema (version) VALUES (99)")
        before = conn.execute("SELECT count(*) FROM pg_class").fetchone()[0]
    with pytest.raises(StoreError, match=rf"schema version 99.*version {SCHEMA_VERSION}") as info:
        PostgresBackend(pg_dsn)
    assert "upgrade abstractruntime" in str(info.value) and "Nothing was changed" in str(info.value)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class").fetchone()[0] == before
        assert conn.execute("SELECT max(version) FROM abstractruntime.abstractruntime_schema").fetchone()[0] == 99


def test_schemas_in_one_database_are_independent(pg_dsn):
    with PostgresBackend(pg_dsn, schema="tenant_a") as a, PostgresBackend(pg_dsn, schema="tenant_b") as b:
        run = _run()
        _commit(a, run, [_record(run)])
        assert a.run_store.load(run.run_id) is not None and b.run_store.load(run.run_id) is None
        assert b.ledger_store.count(run.run_id) == 0


def test_corrupt_rows_are_reported(backend):
    run = _run()
    _commit(backend, run, [_record(run)])
    with backend.pool.connection() as conn:
        conn.execute("UPDATE abstractruntime.runs SET data = 'not json'::bytea")
        conn.execute("UPDATE abstractruntime.ledger SET data = '[1]'::bytea")
    with pytest.raises(CorruptStoreError, match=run.run_id):
        backend.run_store.load(run.run_id)
    with pytest.raises(CorruptStoreError, match="not a JSON object"):
        backend.ledger_store.list(run.run_id)


def test_ledger_helpers_and_unfenced_commit_rules(backend):
    run = _run(vars={"nul": "a\x00b", "uni": "☃"})
    _commit(backend, run, [_record(run, key="k"), _record(run, node="b")])
    assert backend.run_store.load(run.run_id).vars == {"nul": "a\x00b", "uni": "☃"}
    assert backend.ledger_store.count_many([run.run_id, "nope"]) == {run.run_id: 2}  # unknown runs omitted
    metrics = backend.ledger_store.metrics_many([run.run_id])
    assert metrics[run.run_id]["steps"] == 2
    assert backend.run_store.load_revision(run.run_id) == 1 and backend.run_store.load_revision("x") is None
    with pytest.raises(ConcurrentModificationError):  # an expected revision for a run that does not exist
        _commit(backend, _run(), expected=3)
    # records of several runs in one commit get their own sequences
    other = _run()
    _commit(backend, other)
    _commit(backend, None, [_record(run, node="c"), _record(other, node="x"), _record(run, node="d")])
    assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["a", "b", "c", "d"]
    assert [r["node_id"] for r in backend.ledger_store.list(other.run_id)] == ["x"]


# --- a full runtime flow ------------------------------------------------------------------------------------------
def _flow() -> WorkflowSpec:
    def start(run, ctx):
        return StepPlan(node_id="start", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "name?"},
                                                       result_key="answer"), next_node="greet")

    def greet(run, ctx):
        return StepPlan(node_id="greet", effect=Effect(type=EffectType.ANSWER_USER,
                                                       payload={"message": f"hi {run.vars['answer']['text']}"}),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"greeted": run.vars["answer"]["text"]})

    return WorkflowSpec(workflow_id="greeting", entry_node="start", nodes={"start": start, "greet": greet,
                                                                            "done": done})


def test_runtime_flow_through_configuration(pg_dsn):
    wf = _flow()
    with _runtime(pg_dsn) as rt:
        run_id = rt.start(workflow=wf, session_id="s1")
        state = rt.tick(workflow=wf, run_id=run_id)
        assert state.status is RunStatus.WAITING and state.waiting.reason is WaitReason.USER
        assert [r.run_id for r in rt.run_store.list_runs(status=RunStatus.WAITING)] == [run_id]
    with _runtime(pg_dsn) as rt:  # another process would see the same
        state = rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "Ada"})
        assert state.status is RunStatus.COMPLETED and state.output == {"greeted": "Ada"}
        ledger = rt.get_ledger(run_id)
        assert ledger[-1]["idempotency_key"] == "system:terminal_status:completed"
        assert rt.ledger_store.count(run_id) == len(ledger)
        rows = rt.run_store.list_run_index(session_id="s1")
        assert [r["run_id"] for r in rows] == [run_id] and rows[0]["status"] == "completed"


# --- claiming -----------------------------------------------------------------------------------------------------
def _running_runs(b, n: int, workflow_id: str = "wf") -> list:
    runs = []
    for _ in range(n):
        run = _run(workflow_id=workflow_id)
        _commit(b, run)
        runs.append(run)
    return runs


def test_two_workers_claim_disjoint_sets(pg_dsn):
    with PostgresBackend(pg_dsn) as a, PostgresBackend(pg_dsn) as b:
        runs = _running_runs(a, 20)
        got = {}
        barrier = threading.Barrier(2)

        def claim(name, backend):
            barrier.wait()
            got[name] = backend.claim_runnable(name, limit=8, lease_s=30)

        threads = [threading.Thread(target=claim, args=(n, x)) for n, x in (("A", a), ("B", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids_a, ids_b = {r for r, _ in got["A"]}, {r for r, _ in got["B"]}
        assert len(ids_a) == 8 and len(ids_b) == 8 and not ids_a & ids_b
        assert all(epoch == 1 for _, epoch in got["A"] + got["B"])
        rest = a.claim_runnable("C", limit=100, lease_s=30)
        assert {r for r, _ in rest} == {r.run_id for r in runs} - ids_a - ids_b
        assert a.claim_runnable("D", limit=100) == []
        lease = a.lease(next(iter(ids_a)))
        assert lease["owner"] == "A" and lease["epoch"] == 1 and not lease["expired"]


def test_polled_waiting_runs_go_to_the_back_so_every_waiting_parent_is_polled(backend):
    """A parent polled for its child (still running) and released goes behind the other waiting parents: with more
    waiting parents than a batch, the ones behind are polled at the next passes (they starved before: the same first
    batch every pass). ``polled`` says whether the waiting runs were looked at at all."""
    parents = []
    for i in range(5):
        parent = _run()
        parent.status = RunStatus.WAITING
        parent.waiting = WaitState(reason=WaitReason.SUBWORKFLOW, wait_key=f"subworkflow:c{i}", resume_to_node="b")
        _commit(backend, parent)
        parents.append(parent.run_id)
    seen = []
    for worker in ("w1", "w2", "w3"):
        polled = []
        claimed = backend.claim_runnable(worker, limit=2, wait_reasons=["subworkflow"], polled=polled)
        assert polled == [True]
        seen.append([r for r, _ in claimed])
        for run_id, epoch in claimed:
            assert backend.release(worker, run_id, epoch)
    assert seen == [parents[0:2], parents[2:4], [parents[4], parents[0]]]
    (running,) = _running_runs(backend, 1)  # a runnable run fills a batch of one: no room to poll
    polled = []
    assert [r for r, _ in backend.claim_runnable("w4", limit=1, wait_reasons=["subworkflow"], polled=polled)] == [
        running.run_id]
    assert polled == []


def test_claim_skips_rows_locked_by_another_claimer(backend, pg_dsn):
    locked, free = _running_runs(backend, 2)
    with psycopg.connect(pg_dsn) as conn:  # a claimer in the middle of its transaction
        conn.execute("SELECT 1 FROM abstractruntime.runs WHERE run_id = %s FOR UPDATE", (locked.run_id,))
        started = time.monotonic()
        claimed = backend.claim_runnable("w", limit=10)
        assert time.monotonic() - started < 2
        assert [r for r, _ in claimed] == [free.run_id]
        conn.rollback()
    assert [r for r, _ in backend.claim_runnable("w", limit=10)] == [locked.run_id]


def test_what_is_claimable(backend):
    now = _now()
    due = _waiting_until(backend, _iso(now - timedelta(seconds=5)))
    later = _waiting_until(backend, _iso(now + timedelta(hours=1)))
    paused = _waiting_until(backend, _iso(now - timedelta(seconds=5)),
                            vars={"_runtime": {"control": {"paused": True}}})
    event = _run()
    event.status = RunStatus.WAITING
    event.waiting = WaitState(reason=WaitReason.EVENT, wait_key="evt:x", resume_to_node="b")
    _commit(backend, event)
    child_wait = _run()
    child_wait.status = RunStatus.WAITING
    child_wait.waiting = WaitState(reason=WaitReason.SUBWORKFLOW, wait_key="subworkflow:c", resume_to_node="b")
    _commit(backend, child_wait)
    done = _run()
    done.status = RunStatus.COMPLETED
    _commit(backend, done)
    (running,) = _running_runs(backend, 1)
    claimed = [r for r, _ in backend.claim_runnable("w", limit=10)]
    assert claimed == [due.run_id, running.run_id]  # due timers first
    assert [r for r, _ in backend.claim_runnable("w2", limit=10, wait_reasons=["subworkflow"])] == [
        child_wait.run_id]
    # an event delivery makes the waiting run RUNNING, hence claimable
    event.status, event.waiting = RunStatus.RUNNING, None
    _commit(backend, event, expected=event.revision)
    assert [r for r, _ in backend.claim_runnable("w3", limit=10)] == [event.run_id]
    assert {later.run_id, paused.run_id, done.run_id}.isdisjoint(claimed)
    assert backend.next_timer_in() is not None


def test_lease_expiry_takeover_and_fencing(pg_dsn):
    with PostgresBackend(pg_dsn) as a, PostgresBackend(pg_dsn) as b:
        (run,) = _running_runs(a, 1)
        ((rid, epoch_a),) = a.claim_runnable("A", limit=1, lease_s=0.5)
        assert b.claim_runnable("B", limit=1, lease_s=30) == []  # leased
        assert a.heartbeat("A", [(rid, epoch_a)], lease_s=0.5) == [rid]
        time.sleep(0.8)  # A stops heartbeating; its lease expires
        ((rid_b, epoch_b),) = b.claim_runnable("B", limit=1, lease_s=30)
        assert rid_b == rid and epoch_b == epoch_a + 1
        assert a.heartbeat("A", [(rid, epoch_a)], lease_s=30) == []  # A learns it lost the run
        before_state, before_ledger = a.run_store.load(rid), a.ledger_store.list(rid)
        stale = a.run_store.load(rid)
        stale.current_node = "stale"
        with a.fenced(rid, epoch_a, "A") as fence:
            with pytest.raises(LeaseLostError, match="another worker claimed it") as info:
                _commit(a, stale, [_record(stale, node="stale")], expected=stale.revision)
            assert isinstance(info.value, ConcurrentModificationError)
            assert info.value.epoch == epoch_a and info.value.actual_epoch == epoch_b and fence.lost
            with pytest.raises(LeaseLostError):  # the ledger-only reservation before a side effect, too
                _commit(a, None, [_record(stale, node="reserve", status=StepStatus.STARTED)])
        assert a.run_store.load(rid) == before_state and a.ledger_store.list(rid) == before_ledger
        assert a.release("A", rid, epoch_a) is False  # not A's to release
        fresh = b.run_store.load(rid)
        fresh.current_node = "b-was-here"
        with b.fenced(rid, epoch_b, "B"):
            _commit(b, fresh, [_record(fresh, node="b")], expected=fresh.revision)
        assert a.run_store.load(rid).current_node == "b-was-here"
        assert b.release("B", rid, epoch_b) is True and b.lease(rid)["owner"] is None


def test_an_expired_lease_cannot_write_until_renewed(backend):
    (run,) = _running_runs(backend, 1)
    ((rid, epoch),) = backend.claim_runnable("A", limit=1, lease_s=0.3)
    time.sleep(0.5)
    with backend.fenced(rid, epoch, "A"):
        with pytest.raises(LeaseLostError, match="lease expired"):
            _commit(backend, run, expected=run.revision)
        run.revision -= 1
        # nobody took it over: a heartbeat renews it and the holder writes again
        assert backend.heartbeat("A", [rid], lease_s=30) == [rid]
        _commit(backend, run, expected=run.revision)
    assert backend.run_store.load_revision(rid) == 2


def test_unfenced_writers_still_work_while_a_run_is_leased(pg_dsn):
    # the host's cancel_run / resume do not hold leases: the revision check orders them with the worker
    with _runtime(pg_dsn) as rt:
        wf = _flow()
        run_id = rt.start(workflow=wf)
        backend = rt.run_store.backend
        ((rid, epoch),) = backend.claim_runnable("w", limit=1)
        assert rt.cancel_run(run_id).status is RunStatus.CANCELLED
        with backend.fenced(rid, epoch, "w"):
            assert rt.tick(workflow=wf, run_id=run_id).status is RunStatus.CANCELLED


def test_an_unclaimed_writer_cannot_start_a_side_effect_of_a_run_another_worker_leases(pg_dsn):
    """A host process ticking a run that a live worker holds: its reservation commit is refused, so the side
    effect never starts and nothing is written; the lease holder runs the step once. After the lease is
    released (or expires) the host may drive the run itself."""
    calls: list = []
    wf = _counter_flow(1, calls)
    with _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) as host, \
            _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) as worker:
        run_id = host.start(workflow=wf)
        backend = worker.run_store.backend
        ((rid, epoch),) = backend.claim_runnable("w", limit=1, lease_s=30)
        before = host.get_ledger(run_id)
        state = host.tick(workflow=wf, run_id=run_id)  # stops quietly, as on any concurrent modification
        assert state.status is RunStatus.RUNNING and state.current_node == "n0"
        assert calls == [] and host.get_ledger(run_id) == before
        with pytest.raises(RunLeasedError, match="leased by worker 'w'") as info:
            host.ledger_store.append(_record(state, node="n0", status=StepStatus.STARTED))
        assert isinstance(info.value, ConcurrentModificationError) and info.value.owner == "w"
        with backend.fenced(rid, epoch, "w"):
            assert worker.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
        assert calls == [(run_id, 0)]
        assert backend.release("w", rid, epoch) is True
        host.ledger_store.append(_record(host.get_state(run_id), node="note"))  # unleased again: allowed


# --- workers ------------------------------------------------------------------------------------------------------
def _counter_flow(steps: int, calls: list, effect_type: str = "count") -> WorkflowSpec:
    nodes = {}
    for i in range(steps):
        def node(run, ctx, i=i):
            return StepPlan(node_id=f"n{i}", effect=Effect(type=effect_type, payload={"i": i}, result_key=f"r{i}"),
                            next_node=f"n{i + 1}" if i + 1 < steps else "end")
        nodes[f"n{i}"] = node
    nodes["end"] = lambda run, ctx: StepPlan(node_id="end", complete_output={"ok": True})
    return WorkflowSpec(workflow_id="counter", entry_node="n0", nodes=nodes)


def _counting_handler(calls: list, delay: float = 0.0):
    lock = threading.Lock()

    def handler(run, effect, default_next_node):
        with lock:
            calls.append((run.run_id, effect.payload["i"]))
        if delay:
            time.sleep(delay)
        return EffectOutcome.completed({"i": effect.payload["i"]})

    return handler


def _registry(*specs) -> WorkflowRegistry:
    reg = WorkflowRegistry()
    for spec in specs:
        reg.register(spec)
    return reg


def _assert_one_commit_per_step(rt, run_id: str, steps: int) -> None:
    ledger = rt.get_ledger(run_id)
    done = [(r["node_id"], r["status"]) for r in ledger if r["status"] == "completed"
            and not (r.get("idempotency_key") or "").startswith("system:")]
    assert done == [(f"n{i}", "completed") for i in range(steps)] + [("end", "completed")], done
    assert [r for r in ledger if (r.get("idempotency_key") or "").startswith("system:")][-1][
        "idempotency_key"] == "system:terminal_status:completed"
    state = rt.get_state(run_id)
    assert state.status is RunStatus.COMPLETED and state.step == steps + 1


def test_two_runtimes_racing_the_same_run_commit_each_step_once(pg_dsn):
    steps = 12
    calls: list = []
    wf = _counter_flow(steps, calls)
    rts = [_runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) for _ in range(2)]
    try:
        run_id = rts[0].start(workflow=wf)
        barrier = threading.Barrier(2)
        errors = []

        def race(rt):
            try:
                barrier.wait()
                for _ in range(200):
                    if rt.tick(workflow=wf, run_id=run_id, max_steps=1).status is not RunStatus.RUNNING:
                        return
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(rt,)) for rt in rts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        _assert_one_commit_per_step(rts[0], run_id, steps)
        assert rts[0].get_state(run_id).vars[f"r{steps - 1}"] == {"i": steps - 1}
    finally:
        for rt in rts:
            rt.close()


def test_workers_share_the_runs_and_each_step_commits_once(pg_dsn):
    steps, n_runs = 4, 12
    calls: list = []
    wf = _counter_flow(steps, calls)
    rts = [_runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls, delay=0.01)}) for _ in range(3)]
    try:
        run_ids = [rts[0].start(workflow=wf) for _ in range(n_runs)]
        workers = [PostgresWorker(rt, _registry(wf), worker_id=f"w{i}", batch_size=2, poll_interval_s=0.05,
                                  lease_s=10) for i, rt in enumerate(rts)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(rts[0].get_state(r).status is RunStatus.COMPLETED for r in run_ids):
                break
            time.sleep(0.05)
        for w in workers:
            w.stop()
        for r in run_ids:
            _assert_one_commit_per_step(rts[0], r, steps)
            assert rts[0].run_store.backend.lease(r)["owner"] is None  # released
        assert sorted(calls) == sorted((r, i) for r in run_ids for i in range(steps))  # no effect ran twice
        assert sum(w.stats.runs_driven for w in workers) == n_runs
        assert sum(1 for w in workers if w.stats.runs_driven) >= 2, [w.stats for w in workers]
        assert all(w.stats.errors == [] for w in workers), [w.stats.errors for w in workers]
    finally:
        for rt in rts:
            rt.close()


def test_heartbeats_keep_a_long_effect_leased(pg_dsn):
    calls: list = []
    wf = _counter_flow(1, calls)
    with _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls, delay=1.5)}) as rt_a, \
            _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) as rt_b:
        run_id = rt_a.start(workflow=wf)
        a = PostgresWorker(rt_a, _registry(wf), worker_id="A", lease_s=0.6, heartbeat_s=0.1, listen=False)
        b = PostgresWorker(rt_b, _registry(wf), worker_id="B", lease_s=30, listen=False)
        t = threading.Thread(target=a.run_once)
        t.start()
        backend = rt_a.run_store.backend
        deadline = time.monotonic() + 10
        while backend.lease(run_id)["owner"] != "A" and time.monotonic() < deadline:
            time.sleep(0.01)  # B starts trying once A holds the run
        stolen = 0
        while t.is_alive():
            stolen += b.run_once()  # B keeps trying while A's effect runs for 2.5 leases
            time.sleep(0.05)
        t.join()
        assert stolen == 0 and b.stats.runs_claimed == 0
        assert calls == [(run_id, 0)] and a.stats.leases_lost == 0
        _assert_one_commit_per_step(rt_a, run_id, 1)


def test_a_crashed_worker_is_taken_over_and_fenced(pg_dsn):
    steps = 3
    calls: list = []
    wf = _counter_flow(steps, calls)
    with _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) as rt_a, \
            _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) as rt_b:
        run_id = rt_a.start(workflow=wf)
        backend_a = rt_a.run_store.backend
        ((rid, epoch_a),) = backend_a.claim_runnable("A", limit=1, lease_s=0.4)
        with backend_a.fenced(rid, epoch_a, "A"):  # A makes one step, then "hangs" (no heartbeat)
            rt_a.tick(workflow=wf, run_id=run_id, max_steps=1)
        b = PostgresWorker(rt_b, _registry(wf), worker_id="B", lease_s=30, listen=False)
        assert b.run_once() == 0  # A's lease still holds
        time.sleep(0.6)
        assert b.run_once() == 1  # expired: B takes over and finishes the run
        _assert_one_commit_per_step(rt_a, run_id, steps)
        # A wakes up and tries to go on under its old epoch: refused, nothing written
        ledger = rt_a.get_ledger(run_id)
        with backend_a.fenced(rid, epoch_a, "A") as fence:
            stale = rt_a.get_state(run_id)
            stale.vars["late"] = True
            with pytest.raises(LeaseLostError):
                backend_a.commit_step(StepCommit(run=stale, run_json=codec.encode_run(stale),
                                                 expected_revision=stale.revision))
            assert fence.lost
        assert rt_a.get_ledger(run_id) == ledger and "late" not in rt_a.get_state(run_id).vars
        assert calls.count((run_id, 0)) == 1


def test_a_worker_stops_driving_a_run_whose_lease_it_lost(pg_dsn):
    calls: list = []
    wf = _counter_flow(2, calls)
    with _runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}) as rt:
        run_id = rt.start(workflow=wf)
        backend = rt.run_store.backend
        worker = PostgresWorker(rt, _registry(wf), worker_id="A", lease_s=30, listen=False)
        ((rid, epoch),) = backend.claim_runnable("A", limit=1)
        with backend.pool.connection() as conn:  # someone takes the run over behind A's back
            conn.execute("UPDATE abstractruntime.runs SET fencing_epoch = fencing_epoch + 1, lease_owner = 'B'")
        assert worker.drive(rid, epoch) is False
        # the reservation committed before a side effect is fenced too: the effect never started
        assert worker.stats.leases_lost == 1 and calls == []
        assert rt.get_state(run_id).step == 0 and backend.lease(rid)["owner"] == "B"


def test_notify_wakes_a_waiting_worker(pg_dsn):
    with PostgresBackend(pg_dsn) as listener, PostgresBackend(pg_dsn) as writer:
        assert listener.wait_for_work(0.05) == []  # subscribes; nothing yet
        got = []
        t = threading.Thread(target=lambda: got.extend(listener.wait_for_work(10)))
        t.start()
        time.sleep(0.2)
        started = time.monotonic()
        (run,) = _running_runs(writer, 1)
        t.join()
        assert got == [run.run_id] and time.monotonic() - started < 5
        # a commit that keeps a run RUNNING under its lease does not wake anyone
        ((rid, epoch),) = writer.claim_runnable("w", limit=1)
        with writer.fenced(rid, epoch, "w"):
            _commit(writer, run, expected=run.revision)
        assert listener.wait_for_work(0.2) == []
        # releasing a run left RUNNING announces it
        writer.release("w", rid, epoch)
        assert listener.wait_for_work(5) == [rid]
        # a new timer wakes workers so they can shorten their sleep
        timer = _waiting_until(writer, _iso(_now() + timedelta(seconds=1)))
        assert listener.wait_for_work(5) == [timer.run_id]
    with PostgresBackend(pg_dsn, notify=False) as quiet, PostgresBackend(pg_dsn) as listener:
        listener.wait_for_work(0.01)
        _running_runs(quiet, 1)
        assert listener.wait_for_work(0.3) == []


def test_runs_made_running_under_a_claim_are_adopted_by_the_same_worker(pg_dsn):
    with PostgresBackend(pg_dsn) as backend, PostgresBackend(pg_dsn) as listener:
        (parent,) = _running_runs(backend, 1)
        listener.wait_for_work(0.01)
        ((rid, epoch),) = backend.claim_runnable("A", limit=1)
        with backend.fenced(rid, epoch, "A", lease_s=30) as fence:
            child = _run(workflow_id="child")  # started inside A's tick (e.g. a sync subworkflow)
            _commit(backend, child)
            assert [f.run_id for f in fence.adopted] == [child.run_id]
            lease = backend.lease(child.run_id)
            assert lease["owner"] == "A" and lease["epoch"] == 1 and not lease["expired"]
            assert backend.claim_runnable("B", limit=10) == []  # nobody else drives it meanwhile
            assert listener.wait_for_work(0.2) == []  # and nobody was woken for it
            _commit(backend, child, expected=child.revision)  # A's own commits to it are fenced by the adoption
            with backend.pool.connection() as conn:  # a takeover of the child is noticed like any other
                conn.execute("UPDATE abstractruntime.runs SET fencing_epoch = 7 WHERE run_id = %s", (child.run_id,))
            with pytest.raises(LeaseLostError):
                _commit(backend, child, expected=child.revision)
            child.revision -= 1  # nothing was written
            with backend.pool.connection() as conn:
                conn.execute("UPDATE abstractruntime.runs SET fencing_epoch = 1 WHERE run_id = %s", (child.run_id,))
            fence.adopted[0].lost = False
            assert backend.release_adopted(fence) == [child.run_id] and fence.adopted == []
            assert backend.lease(child.run_id)["owner"] is None
            assert listener.wait_for_work(5) == [child.run_id]  # left RUNNING: announced on release
            # released: later commits of this thread to the child are plain again (e.g. a second event)
            _commit(backend, child, expected=child.revision)
        # outside any claim nothing is adopted
        other = _run()
        _commit(backend, other)
        assert backend.lease(other.run_id)["owner"] is None


def test_sync_subworkflows_under_many_workers_run_each_effect_once(pg_dsn):
    child_steps, n_parents = 3, 6
    calls: list = []
    child = _counter_flow(child_steps, calls)

    def start_child(run, ctx):
        return StepPlan(node_id="spawn", effect=Effect(type=EffectType.START_SUBWORKFLOW,
                                                       payload={"workflow_id": "counter"}, result_key="child"),
                        next_node="end")

    parent = WorkflowSpec(workflow_id="parent", entry_node="spawn", nodes={
        "spawn": start_child, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={"ok": True})})
    rts = [_runtime(pg_dsn, effect_handlers={"count": _counting_handler(calls)}, workflow_registry=_registry(child, parent))
           for _ in range(3)]
    try:
        run_ids = [rts[0].start(workflow=parent) for _ in range(n_parents)]
        workers = [PostgresWorker(rt, worker_id=f"w{i}", batch_size=1, poll_interval_s=0.05, lease_s=10)
                   for i, rt in enumerate(rts)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(rts[0].get_state(r).status is RunStatus.COMPLETED for r in run_ids):
                break
            time.sleep(0.05)
        for w in workers:
            w.stop()
        assert all(rts[0].get_state(r).status is RunStatus.COMPLETED for r in run_ids)
        children = [c for r in run_ids for c in rts[0].run_store.list_children(parent_run_id=r)]
        assert len(children) == n_parents and all(c.status is RunStatus.COMPLETED for c in children)
        assert sorted(calls) == sorted((c.run_id, i) for c in children for i in range(child_steps))  # once each
        for c in children:
            _assert_one_commit_per_step(rts[0], c.run_id, child_steps)
            assert rts[0].run_store.backend.lease(c.run_id)["owner"] is None
        assert all(w.stats.errors == [] for w in workers), [w.stats.errors for w in workers]
    finally:
        for rt in rts:
            rt.close()


# --- artifacts and snapshots --------------------------------------------------------------------------------------
def test_artifacts_and_snapshots_live_in_tables(pg_dsn):
    from abstractruntime_snapshots.store import Snapshot

    with PostgresBackend(pg_dsn) as b:
        arts = b.artifact_store()
        meta = arts.store(b"\x00binary", content_type="application/octet-stream", run_id="r1", tags={"k": "v"})
        arts.store_json({"a": 1}, run_id="r1")
        arts.store_text("other", run_id="r2")
        assert arts.load(meta.artifact_id).content == b"\x00binary" and arts.exists(meta.artifact_id)
        assert arts.get_metadata(meta.artifact_id).tags == {"k": "v"}
        assert len(arts.list_by_run("r1")) == 2 and len(arts.list_all()) == 3
        assert [m.artifact_id for m in arts.search(tags={"k": "v"})] == [meta.artifact_id]
        assert arts.delete(meta.artifact_id) and not arts.exists(meta.artifact_id) and arts.load("nope") is None
        assert arts.delete_by_run("r1") == 1
        run = _run(vars={"x": 1})
        snaps = b.snapshot_store()
        snap = Snapshot.from_run(run=run, name="Before deploy", tags=["Prod"])
        snaps.save(snap)
        snaps.save(Snapshot.from_run(run=_run(), name="other"))
    with PostgresBackend(pg_dsn) as b:  # another worker sees them
        snaps = b.snapshot_store()
        assert snaps.load(snap.snapshot_id).to_run_state() == run
        assert [s.snapshot_id for s in snaps.list(run_id=run.run_id)] == [snap.snapshot_id]
        assert [s.snapshot_id for s in snaps.list(tag="prod")] == [snap.snapshot_id]
        assert [s.snapshot_id for s in snaps.list(query="deploy")] == [snap.snapshot_id]
        assert len(snaps.list()) == 2 and snaps.delete(snap.snapshot_id) and snaps.load(snap.snapshot_id) is None


_SERVICES_SCRIPT = """
import json, sys
from importlib.metadata import entry_points
import abstractruntime_postgres
from abstractruntime import Runtime
dsn, action = sys.argv[1], sys.argv[2]
plugins = [] if "postgres" in {ep.name for ep in entry_points(group="abstractruntime")} else [abstractruntime_postgres]
with Runtime.from_config({"store": dsn}, plugins=plugins) as rt:
    if action == "snapshot":
        snap = rt.create_snapshot(sys.argv[3], name="before the answer")
        meta = rt.backend.artifact_store().store(b"\\x00from process A", content_type="application/octet-stream",
                                                 run_id=sys.argv[3])
        print(json.dumps({"snapshot_id": snap.snapshot_id, "artifact_id": meta.artifact_id}))
    else:
        state = rt.restore_snapshot(sys.argv[3])
        artifact = rt.backend.artifact_store().load(sys.argv[4])
        print(json.dumps({"run_id": state.run_id, "status": state.status.value, "content": artifact.content.hex()}))
"""


def _in_another_process(dsn: str, *args: str) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    done = subprocess.run([sys.executable, "-c", _SERVICES_SCRIPT, dsn, *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_snapshots_and_artifacts_are_shared_by_processes_through_the_database(pg_dsn):
    """On PostgreSQL the snapshots plugin uses ``backend.snapshot_store()``: a snapshot taken in one process is
    restored in another; an artifact stored through ``backend.artifact_store()`` in one process loads in another."""
    wf = _flow()
    with _runtime(pg_dsn) as rt:
        run_id = rt.start(workflow=wf, vars={"kept": [1, 2]})
        before = rt.tick(workflow=wf, run_id=run_id)
        assert before.status is RunStatus.WAITING
    made = _in_another_process(pg_dsn, "snapshot", run_id)  # process A: snapshot + artifact
    with _runtime(pg_dsn) as rt:  # the run moves on after the snapshot
        done = rt.resume(workflow=wf, run_id=run_id, wait_key=before.waiting.wait_key, payload={"text": "Ada"})
        assert done.status is RunStatus.COMPLETED and done.output == {"greeted": "Ada"}
        assert rt.backend.artifact_store().load(made["artifact_id"]).content == b"\x00from process A"
    restored = _in_another_process(pg_dsn, "restore", made["snapshot_id"], made["artifact_id"])  # process B
    assert restored == {"run_id": run_id, "status": "waiting", "content": b"\x00from process A".hex()}
    with _runtime(pg_dsn) as rt:
        state = rt.get_state(run_id)
        assert (state.status, state.current_node, state.vars, state.waiting, state.output, state.error) == (
            before.status, before.current_node, before.vars, before.waiting, before.output, before.error)
        assert state.revision > done.revision
        assert rt.get_ledger(run_id)[-1]["effect"]["type"] == "snapshot_restore"
        again = rt.resume(workflow=wf, run_id=run_id, wait_key=state.waiting.wait_key, payload={"text": "Bob"})
        assert again.status is RunStatus.COMPLETED and again.output == {"greeted": "Bob"}


def test_worker_command_drives_runs_from_a_separate_process(pg_dsn):
    """`abstractruntime worker --store postgresql://... --concurrency N --workflows module:NAME` as a subprocess."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from abstractruntime import Runtime, RunStatus

    support = str(Path(__file__).resolve().parents[1] / "support")
    sys.path.insert(0, support)
    from sched_flows import TIMER

    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRUNTIME_")}
    env["PYTHONPATH"] = os.pathsep.join([support] + [p for p in [env.get("PYTHONPATH")] if p])
    with Runtime.from_config({"store": pg_dsn}) as rt:
        ids = [rt.start(workflow=TIMER, vars={"delay": 0.2}) for _ in range(6)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "abstractruntime_cli", "--store", pg_dsn, "worker", "--concurrency", "3",
         "--workflows", "sched_flows:ALL", "--poll-interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "running with 3 thread(s)" in proc.stdout.readline()
        with Runtime.from_config({"store": pg_dsn}) as rt:
            deadline = time.time() + 60
            while time.time() < deadline:
                if all(rt.get_state(i).status is RunStatus.COMPLETED for i in ids):
                    break
                time.sleep(0.1)
            assert all(rt.get_state(i).status is RunStatus.COMPLETED for i in ids)
            for run_id in ids:
                assert [r["status"] for r in rt.get_ledger(run_id)].count("started") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()


def test_a_read_only_postgres_store_creates_no_schema_and_refuses_writes(pg_dsn):
    """Issue 14 #12: a read-only open (the CLI's read-only commands) creates nothing in an empty database, reads a
    store, and every write is refused by PostgreSQL itself."""
    ro = {"store": pg_dsn, "store_options": {"read_only": True}}
    with pytest.raises(StoreError, match="Nothing was created"):
        Runtime.from_config(ro)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'abstractruntime'").fetchone() is None
    flow = WorkflowSpec(workflow_id="ro", entry_node="a",
                        nodes={"a": lambda run, ctx: StepPlan(node_id="a", complete_output={"ok": 1})})
    with Runtime.from_config(store=pg_dsn) as rt:
        run_id = rt.start(workflow=flow)
    with Runtime.from_config(ro) as rt:
        assert rt.get_state(run_id).status is RunStatus.RUNNING
        with pytest.raises(StoreError, match="read-only"):
            rt.tick(workflow=flow, run_id=run_id)
        assert rt.get_state(run_id).status is RunStatus.RUNNING
