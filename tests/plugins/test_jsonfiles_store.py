import json
import subprocess
import sys
import textwrap
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

import abstractruntime_jsonfiles
from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec, codec
from abstractruntime.errors import ConcurrentModificationError, ConfigurationError, CorruptStoreError
from abstractruntime.models import RunState, StepRecord, StepStatus, WaitReason, WaitState
from abstractruntime.storage.base import StepCommit, backend_for
from abstractruntime.testing import InjectedFault, StoreConformance
from abstractruntime_jsonfiles.store import COMMITTED_KEY, JsonFilesBackend, JsonFileRunStore, JsonlLedgerStore


class TestJsonFilesStoreConformance(StoreConformance):
    backend_class = JsonFilesBackend
    persistent = True

    def open_backend(self, path: Path) -> JsonFilesBackend:
        return JsonFilesBackend(path, fsync=False)


# --- helpers ------------------------------------------------------------------------------------------------------
def _run(**kw) -> RunState:
    run = RunState.new(workflow_id=kw.pop("workflow_id", "wf"), entry_node="a", vars=kw.pop("vars", None))
    for k, v in kw.items():
        setattr(run, k, v)
    return run


def _commit(backend, run, records=(), expected=None):
    if run is not None:
        run.revision = (expected if expected is not None else run.revision) + 1
    backend.commit_step(StepCommit(run=run, run_json=codec.encode_run(run) if run is not None else None,
                                   records=tuple(records),
                                   record_jsons=tuple(codec.encode_record(r) for r in records),
                                   expected_revision=expected))


def _record(run, node="a", status=StepStatus.COMPLETED, key=None):
    rec = StepRecord.start(run=run, node_id=node, effect=None, idempotency_key=key)
    return rec.finish_success({"node": node}) if status is StepStatus.COMPLETED else rec


@contextmanager
def _warnings():
    was_configured = structlog.is_configured()
    with capture_logs() as logs:
        yield logs
    if not was_configured:
        structlog.reset_defaults()  # leave the library's 'unconfigured' routing as it was


def _lines(path: Path):
    return path.read_bytes().split(b"\n")


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Name?"},
                                                 result_key="answer"), next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["name"]})


WF = WorkflowSpec(workflow_id="ask_flow", entry_node="ask", nodes={"ask": _ask, "done": _done})


@pytest.fixture
def backend(tmp_path):
    b = JsonFilesBackend(tmp_path / "store", fsync=False)
    yield b
    b.close()


# --- configuration ------------------------------------------------------------------------------------------------
def test_url_options_and_errors(tmp_path):
    with Runtime.from_config({"store": f"jsonfiles://{tmp_path}/dir"}) as rt:
        b = rt.run_store.backend
        assert isinstance(b, JsonFilesBackend) and b is rt.ledger_store.backend
        assert b.path == (tmp_path / "dir").resolve() and b.fsync is True
    with Runtime.from_config({"store": f"json://{tmp_path}/dir2?fsync=false"}) as rt:
        assert rt.run_store.backend.fsync is False
    with pytest.raises(ConfigurationError, match="fsync"):
        Runtime.from_config({"store": f"jsonfiles://{tmp_path}/d3?bogus=1"})
    with pytest.raises(ConfigurationError, match="fsync"):
        Runtime.from_config({"store": f"jsonfiles://{tmp_path}/d4?fsync=maybe"})
    assert abstractruntime_jsonfiles.abstractruntime_register_stores()[0].all_schemes() == ("jsonfiles", "json")


# --- reference construction ---------------------------------------------------------------------------------------
def test_reference_construction_shares_one_backend_and_commits_atomically(tmp_path):
    d = tmp_path / "ref"
    runs = JsonFileRunStore(d)
    ledger = JsonlLedgerStore(str(tmp_path / "ref" / ".." / "ref"))
    assert runs.backend is ledger.backend
    assert backend_for(runs, ledger) is runs.backend
    rt = Runtime(run_store=runs, ledger_store=ledger)
    run_id = rt.start(workflow=WF, vars={"k": "v"})
    before = rt.get_state(run_id)

    def crash(point):
        raise InjectedFault(point)

    runs.backend.fault_injector = crash
    with pytest.raises(InjectedFault):
        rt.tick(workflow=WF, run_id=run_id)
    runs.backend.fault_injector = None
    assert rt.get_state(run_id) == before and rt.get_ledger(run_id) == []
    assert sorted(p.name for p in d.iterdir()) == [".lock", ".runs.lock", f"run_{run_id}.json"]  # no temp file, no ledger
    assert rt.tick(workflow=WF, run_id=run_id).status is RunStatus.WAITING
    # a store built later on the same directory reads what the first pair wrote
    assert JsonlLedgerStore(d).list(run_id) == rt.get_ledger(run_id)


# --- on-disk layout -----------------------------------------------------------------------------------------------
def test_on_disk_layout_matches_the_reference(tmp_path):
    d = tmp_path / "dir"
    with Runtime.from_config({"store": f"jsonfiles://{d}"}) as rt:
        run_id = rt.start(workflow=WF, vars={"text": "héllo ☃"})
        state = rt.tick(workflow=WF, run_id=run_id)
        assert state.status is RunStatus.WAITING
        ledger = rt.get_ledger(run_id)
    assert sorted(p.name for p in d.iterdir()) == [".lock", ".runs.lock", f"ledger_{run_id}.jsonl", f"run_{run_id}.json"]
    text = (d / f"run_{run_id}.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    assert set(doc) == set(codec.run_to_dict(state)) | {COMMITTED_KEY}
    assert {k: v for k, v in doc.items() if k != COMMITTED_KEY} == codec.run_to_dict(state)
    assert text == json.dumps(doc, indent=2, ensure_ascii=False)  # reference formatting, UTF-8 unescaped
    assert "héllo ☃" in text
    raw = (d / f"ledger_{run_id}.jsonl").read_text(encoding="utf-8")
    assert raw.endswith("\n")
    rows = [json.loads(line) for line in raw.splitlines()]
    assert rows == ledger and doc[COMMITTED_KEY] == len(rows) == 2
    assert rows[0]["run_id"] == run_id and rows[0]["status"] == "started"


def test_ledger_only_commit_advances_the_count_and_keeps_the_state_bytes(backend):
    run = _run(vars={"big": 12345678901234567890, "text": "héllo"})
    _commit(backend, run, [_record(run)])
    path = Path(backend.run_file(run.run_id))
    before = path.read_bytes()
    backend.ledger_store.append(_record(run, node="b", status=StepStatus.STARTED, key="k"))
    after = path.read_bytes()
    assert after == before.replace(b'"_ledger_committed": 1,', b'"_ledger_committed": 2,')
    assert json.loads(after)["vars"]["big"] == 12345678901234567890
    assert backend.run_store.load_revision(run.run_id) == 1
    assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["a", "b"]


def test_reference_written_run_file_and_ledger_are_read(tmp_path):
    d = tmp_path / "legacy"
    d.mkdir()
    run = _run(vars={"x": 1})
    (d / f"run_{run.run_id}.json").write_text(json.dumps(codec.run_to_dict(run), indent=2, ensure_ascii=False))
    recs = [_record(run, node=f"n{i}") for i in range(3)]
    (d / f"ledger_{run.run_id}.jsonl").write_text(
        "".join(json.dumps(codec.record_to_dict(r), ensure_ascii=False) + "\n" for r in recs))
    b = JsonFilesBackend(d, fsync=False)
    try:
        assert b.run_store.load(run.run_id) == run
        assert [r["node_id"] for r in b.ledger_store.list(run.run_id)] == ["n0", "n1", "n2"]
        b.ledger_store.append(_record(run, node="n3"))
        assert json.loads((d / f"run_{run.run_id}.json").read_text())[COMMITTED_KEY] == 4
        assert b.ledger_store.count(run.run_id) == 4
        assert not list(d.glob(".pending_*"))
    finally:
        b.close()


# --- crash between the ledger append and the rename ---------------------------------------------------------------
def test_uncommitted_ledger_tail_is_ignored_and_truncated_by_the_next_commit(backend):
    run = _run()
    _commit(backend, run, [_record(run, node="a", key="ka"), _record(run, node="b")])
    path = Path(backend.ledger_file(run.run_id))
    committed = path.read_bytes()
    ghost = _record(run, node="ghost", key="kg")
    # what a crash after step 4 leaves: appended lines (the last one torn) and the old run file
    path.write_bytes(committed + codec.encode_record(ghost) + b"\n" + codec.encode_record(ghost)[:25])
    for store in (backend.ledger_store, JsonlLedgerStore(backend.path)):  # this process's cache and a fresh one
        assert [r["node_id"] for r in store.list(run.run_id)] == ["a", "b"]
        assert store.count(run.run_id) == 2
        assert store.find_by_idempotency_key(run.run_id, "kg") is None
        assert store.find_by_idempotency_key(run.run_id, "ka")["node_id"] == "a"
        assert store.list_after(run_id=run.run_id, after=1) == ([store.list(run.run_id)[1]], 2)
        assert store.last_corrupt_lines(run.run_id) == []
    _commit(backend, run, [_record(run, node="c")], expected=run.revision)
    assert [r["node_id"] for r in backend.ledger_store.list(run.run_id)] == ["a", "b", "c"]
    assert path.read_bytes().count(b"\n") == 3 and b"ghost" not in path.read_bytes()
    assert json.loads(Path(backend.run_file(run.run_id)).read_text())[COMMITTED_KEY] == 3


def test_ledger_used_alone_is_protected_by_a_pending_marker(tmp_path):
    d = tmp_path / "alone"
    ledger = JsonlLedgerStore(d)
    run = _run()
    for i in range(2):
        ledger.append(_record(run, node=f"n{i}"))
    assert not (d / f"run_{run.run_id}.json").exists() and not list(d.glob(".pending_*"))
    path = d / f"ledger_{run.run_id}.jsonl"
    # a crash in the middle of a 2-record ledger-only commit: marker written, one of two lines appended
    (d / f".pending_{run.run_id}").write_text("2\n")
    with path.open("ab") as f:
        f.write(codec.encode_record(_record(run, node="half-commit")) + b"\n")
    assert [r["node_id"] for r in JsonlLedgerStore(d).list(run.run_id)] == ["n0", "n1"]
    ledger.append(_record(run, node="n2"))
    assert [r["node_id"] for r in ledger.list(run.run_id)] == ["n0", "n1", "n2"]
    assert not (d / f".pending_{run.run_id}").exists() and b"half-commit" not in path.read_bytes()


# --- corrupt data -------------------------------------------------------------------------------------------------
def test_corrupt_middle_line_is_skipped_and_reported(backend):
    run = _run()
    _commit(backend, run, [_record(run, node=f"n{i}", key=f"k{i}") for i in range(4)])
    store = backend.ledger_store
    assert store.count(run.run_id) == 4  # the cache is warm before the file is damaged
    path = Path(backend.ledger_file(run.run_id))
    lines = _lines(path)
    lines[1] = b'{"run_id": "' + run.run_id.encode() + b'", "node_id": broken'
    path.write_bytes(b"\n".join(lines))
    with _warnings() as logs:
        rows = store.list(run.run_id)
    assert [r["node_id"] for r in rows] == ["n0", "n2", "n3"]
    assert store.last_corrupt_lines(run.run_id) == [2]
    (warning,) = [e for e in logs if e["event"] == "ledger_line_corrupt"]
    assert warning["log_level"] == "warning" and warning["line"] == 2 and warning["file"] == str(path)
    assert store.count(run.run_id) == 3
    assert store.list_after(run_id=run.run_id, after=1, limit=1) == ([rows[1]], 2)
    assert store.find_by_idempotency_key(run.run_id, "k1") is None
    assert store.find_by_idempotency_key(run.run_id, "k3")["node_id"] == "n3"
    # appends continue after the damaged line; it stays reported, the rest stays readable
    _commit(backend, None, [_record(run, node="n4")])
    assert [r["node_id"] for r in store.list(run.run_id)] == ["n0", "n2", "n3", "n4"]
    assert JsonlLedgerStore(backend.path).last_corrupt_lines(run.run_id) == [2]


def test_truncated_last_line_is_skipped_and_reported(tmp_path):
    d = tmp_path / "torn"
    ledger = JsonlLedgerStore(d)  # reference style: a ledger on its own, every line counts
    run = _run()
    ledger.append(_record(run, node="n0"))
    ledger.append(_record(run, node="n1"))
    path = d / f"ledger_{run.run_id}.jsonl"
    with path.open("ab") as f:
        f.write(codec.encode_record(_record(run, node="torn"))[:40])  # half a JSON object, no newline
    with _warnings() as logs:
        assert [r["node_id"] for r in ledger.list(run.run_id)] == ["n0", "n1"]
    assert ledger.last_corrupt_lines(run.run_id) == [3]
    assert [(e["event"], e["line"]) for e in logs] == [("ledger_line_corrupt", 3)]
    ledger.append(_record(run, node="n2"))  # never glued onto the torn line
    assert [r["node_id"] for r in ledger.list(run.run_id)] == ["n0", "n1", "n2"]
    assert ledger.last_corrupt_lines(run.run_id) == [3] and ledger.count(run.run_id) == 3


def test_corrupt_run_file_raises_naming_the_file(backend):
    good, bad = _run(), _run()
    _commit(backend, good)
    _commit(backend, bad, [_record(bad)])
    assert len(backend.run_store.list_runs()) == 2
    path = Path(backend.run_file(bad.run_id))
    path.write_bytes(path.read_bytes()[:60])  # truncated checkpoint
    with pytest.raises(CorruptStoreError, match=f"run_{bad.run_id}.json"):
        backend.run_store.load(bad.run_id)
    with pytest.raises(CorruptStoreError):
        backend.run_store.load_revision(bad.run_id)
    with pytest.raises(CorruptStoreError):  # a checked commit cannot verify the revision
        _commit(backend, bad, expected=1)
    assert [r.run_id for r in backend.run_store.list_runs()] == [good.run_id]  # queries skip and report it
    assert backend.run_store.corrupt_run_files() == [f"run_{bad.run_id}.json"]
    assert [r["node_id"] for r in backend.ledger_store.list(bad.run_id)] == ["a"]  # the ledger stays readable
    bad.revision = 0
    backend.run_store.save(bad)  # an unconditional save replaces it
    assert backend.run_store.load(bad.run_id) == bad
    assert backend.run_store.corrupt_run_files() == []


@pytest.mark.parametrize("bad", ["../evil", "a/b", "..", ".", "", "x\n", "a\\b", "ü", "x" * 201, "/abs"])
def test_run_ids_that_are_not_safe_file_names_are_refused(backend, tmp_path, bad):
    with pytest.raises(ValueError):
        backend.run_store.load(bad)
    with pytest.raises(ValueError):
        backend.ledger_store.list(bad)
    run = _run(run_id=bad)
    with pytest.raises(ValueError):
        backend.run_store.save(run)
    if bad:
        with pytest.raises(ValueError):
            backend.ledger_store.append(_record(run))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert sorted(p.name for p in backend.path.iterdir()) == [".lock", ".runs.lock"]


def test_concurrent_modification_is_refused_across_backends(tmp_path):
    a = JsonFilesBackend(tmp_path / "s", fsync=False)
    b = JsonFilesBackend(tmp_path / "s", fsync=False)
    try:
        run = _run()
        _commit(a, run)
        other = b.run_store.load(run.run_id)
        _commit(b, other, [_record(other, key="k")], expected=1)
        with pytest.raises(ConcurrentModificationError):
            _commit(a, run, [_record(run, node="stale")], expected=1)
        assert a.ledger_store.find_by_idempotency_key(run.run_id, "k")["node_id"] == "a"
        _commit(b, None, [_record(other, node="b2")])
        assert [r["node_id"] for r in a.ledger_store.list(run.run_id)] == ["a", "b2"]
    finally:
        a.close()
        b.close()


def test_two_backends_in_one_process_serialise_through_the_lock_file(tmp_path):
    backends = [JsonFilesBackend(tmp_path / "s", fsync=False) for _ in range(2)]
    try:
        run = _run()
        _commit(backends[0], run)
        errors = []

        def work(b, tag):
            try:
                for i in range(30):
                    b.ledger_store.append(_record(run, node=f"{tag}{i}"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(b, tag)) for b, tag in zip(backends, "xy")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for b in backends:
            rows = [r["node_id"] for r in b.ledger_store.list(run.run_id)]
            assert sorted(rows) == sorted([f"x{i}" for i in range(30)] + [f"y{i}" for i in range(30)])
            assert b.ledger_store.last_corrupt_lines(run.run_id) == []
    finally:
        for b in backends:
            b.close()


# --- other processes ----------------------------------------------------------------------------------------------
_WRITER = textwrap.dedent(
    """
    import sys
    from abstractruntime import codec
    from abstractruntime.models import RunState, RunStatus, StepRecord, WaitReason, WaitState
    from abstractruntime.storage.base import StepCommit
    from abstractruntime_jsonfiles.store import JsonFilesBackend
    path, done_id = sys.argv[1], sys.argv[2]
    b = JsonFilesBackend(path, fsync=False)
    run = RunState.new(workflow_id="remote", entry_node="a")
    run.run_id = "remote-run"
    run.status = RunStatus.WAITING
    run.waiting = WaitState(reason=WaitReason.EVENT, wait_key="evt:global:global:ping", resume_to_node="b")
    run.revision = 1
    rec = StepRecord.start(run=run, node_id="a", effect=None).finish_success({"from": "child"})
    b.commit_step(StepCommit(run=run, run_json=codec.encode_run(run), records=(rec,),
                             record_jsons=(codec.encode_record(rec),)))
    done = b.run_store.load(done_id)
    done.status, done.waiting = RunStatus.COMPLETED, None
    done.revision += 1
    b.commit_step(StepCommit(run=done, run_json=codec.encode_run(done), expected_revision=done.revision - 1))
    b.close()
    """
)

_APPENDER = textwrap.dedent(
    """
    import sys
    from abstractruntime_jsonfiles.store import JsonFilesBackend
    from abstractruntime.models import StepRecord
    b = JsonFilesBackend(sys.argv[1], fsync=False)
    run = b.run_store.load(sys.argv[2])
    for i in range(40):
        b.ledger_store.append(StepRecord.start(run=run, node_id=sys.argv[3] + str(i), effect=None))
    b.close()
    """
)


def test_runs_written_by_another_process_are_seen_by_queries(backend):
    waiting = _run()
    waiting.status = RunStatus.WAITING
    waiting.waiting = WaitState(reason=WaitReason.EVENT, wait_key="evt:global:global:ping", resume_to_node="b")
    _commit(backend, waiting)
    key = "evt:global:global:ping"
    assert [r.run_id for r in backend.run_store.list_waiting_for_event(wait_key=key)] == [waiting.run_id]
    out = subprocess.run([sys.executable, "-c", _WRITER, str(backend.path), waiting.run_id],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [r.run_id for r in backend.run_store.list_waiting_for_event(wait_key=key)] == ["remote-run"]
    assert [r.run_id for r in backend.run_store.list_runs(status=RunStatus.WAITING)] == ["remote-run"]
    assert {r.run_id for r in backend.run_store.list_runs(status=RunStatus.COMPLETED)} == {waiting.run_id}
    assert backend.ledger_store.list("remote-run")[0]["result"] == {"from": "child"}


def test_two_processes_appending_to_one_run_are_serialised(backend):
    run = _run()
    _commit(backend, run)
    assert backend.ledger_store.count(run.run_id) == 0
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(backend.path), run.run_id, tag])
             for tag in ("p", "q")]
    for i in range(20):
        backend.ledger_store.append(_record(run, node=f"m{i}"))
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    rows = backend.ledger_store.list(run.run_id)
    assert len(rows) == 100 and backend.ledger_store.last_corrupt_lines(run.run_id) == []
    for tag, n in (("p", 40), ("q", 40), ("m", 20)):
        assert [r["node_id"] for r in rows if r["node_id"][0] == tag] == [f"{tag}{i}" for i in range(n)]
    assert json.loads(Path(backend.run_file(run.run_id)).read_text())[COMMITTED_KEY] == 100
    assert _lines(Path(backend.ledger_file(run.run_id)))[-1] == b"" and len(_lines(
        Path(backend.ledger_file(run.run_id)))) == 101
    assert backend.run_store.load_revision(run.run_id) == 1


# --- the kernel on top --------------------------------------------------------------------------------------------
def test_ask_user_resume_complete_across_two_runtimes(tmp_path):
    url = f"jsonfiles://{tmp_path}/flow"
    with Runtime.from_config({"store": url}) as rt1, Runtime.from_config({"store": url}) as rt2:
        assert rt1.run_store.backend is not rt2.run_store.backend
        run_id = rt1.start(workflow=WF)
        waiting = rt1.tick(workflow=WF, run_id=run_id)
        assert waiting.status is RunStatus.WAITING and waiting.waiting.reason is WaitReason.USER
        assert [r.run_id for r in rt2.run_store.list_runs(status=RunStatus.WAITING)] == [run_id]
        state = rt2.resume(workflow=WF, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"name": "Ada"})
        assert state.status is RunStatus.COMPLETED and state.output["hello"] == "Ada"
        assert rt1.get_state(run_id) == state
        assert rt1.get_ledger(run_id) == rt2.get_ledger(run_id)
        assert [r["status"] for r in rt1.get_ledger(run_id)] == ["started", "waiting", "completed", "completed",
                                                                 "completed"]
    with Runtime.from_config({"store": url}) as rt:
        assert rt.get_state(run_id).status is RunStatus.COMPLETED
        assert rt.run_store.list_run_index(status=RunStatus.COMPLETED)[0]["run_id"] == run_id
        assert json.loads((tmp_path / "flow" / f"run_{run_id}.json").read_text())[COMMITTED_KEY] == 5
