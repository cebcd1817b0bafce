from pathlib import Path

from abstractruntime.testing import StoreConformance
from abstractruntime_lmdb.store import LmdbBackend


class TestLmdbStoreConformance(StoreConformance):
    backend_class = LmdbBackend
    persistent = True

    def open_backend(self, path: Path) -> LmdbBackend:
        return LmdbBackend(path, sync=False, map_size=1 << 20)


class TestLmdbStoreConformanceSynced(StoreConformance):
    """The same with every commit fsync'd and a small zero-filled room, refilled often (growth.py)."""

    backend_class = LmdbBackend
    persistent = True

    def open_backend(self, path: Path) -> LmdbBackend:
        return LmdbBackend(path, sync=True, map_size=1 << 20, zero_fill=16384)


import subprocess
import sys
import textwrap

import lmdb
import pytest

from abstractruntime import Effect, EffectType, Runtime, RunStatus, StepPlan, WorkflowSpec
from abstractruntime.errors import ConfigurationError, StoreError
from abstractruntime.models import RunState


def test_map_grows_automatically(tmp_path):
    backend = LmdbBackend(tmp_path / "db", sync=False, map_size=64 * 1024)
    try:
        initial = backend.env.info()["map_size"]
        run = RunState.new(workflow_id="wf", entry_node="a", vars={"blob": "x" * 300_000})
        backend.run_store.save(run)
        for i in range(20):
            run.vars[f"more{i}"] = "y" * 50_000
            backend.run_store.save(run)
        assert backend.env.info()["map_size"] > initial
        assert backend.run_store.load(run.run_id).vars["more19"] == "y" * 50_000
    finally:
        backend.close()


def test_newer_schema_version_is_refused_and_untouched(tmp_path):
    path = tmp_path / "db"
    LmdbBackend(path, sync=False).close()
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"m:schema_version", b"99")
    env.close()
    with pytest.raises(StoreError, match="schema version 99"):
        LmdbBackend(path, sync=False)
    env = lmdb.open(str(path))
    with env.begin() as txn:
        assert txn.get(b"m:schema_version") == b"99"
    env.close()


def test_corrupt_checkpoint_is_reported(tmp_path):
    backend = LmdbBackend(tmp_path / "db", sync=False)
    try:
        run = RunState.new(workflow_id="wf", entry_node="a")
        backend.run_store.save(run)
        with backend.env.begin(write=True) as txn:
            txn.put(b"d:" + run.run_id.encode() + b"\x00", b"{not json")
        from abstractruntime.errors import CorruptStoreError

        with pytest.raises(CorruptStoreError, match=run.run_id):
            backend.run_store.load(run.run_id)
    finally:
        backend.close()


def test_url_options_and_errors(tmp_path):
    rt = Runtime.from_config({"store": f"lmdb://{tmp_path}/db?sync=false&map_size=1048576"})
    try:
        assert rt.run_store.backend.sync is False
        assert rt.run_store.backend.path == tmp_path / "db"
    finally:
        rt.close()
    with pytest.raises(ConfigurationError, match="bogus"):
        Runtime.from_config({"store": f"lmdb://{tmp_path}/db2?bogus=1"})
    with pytest.raises(ConfigurationError, match="sync"):
        Runtime.from_config({"store": f"lmdb://{tmp_path}/db3?sync=maybe"})
    for query, expected in (("", {"sync": True, "metasync": True}), ("?metasync=false", {"sync": True, "metasync": False}),
                            ("?sync=false", {"sync": False, "metasync": False})):
        with Runtime.from_config({"store": f"lmdb://{tmp_path}/db4{query}"}) as rt:
            flags = rt.run_store.backend.env.flags()
            assert {k: flags[k] for k in expected} == expected, query
    with pytest.raises(ConfigurationError, match="metasync"):
        Runtime.from_config({"store": f"lmdb://{tmp_path}/db5?metasync=often"})


def test_default_store_is_lmdb_in_documented_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("ABSTRACTRUNTIME_STORE", raising=False)
    monkeypatch.delenv("ABSTRACTRUNTIME_CONFIG", raising=False)
    monkeypatch.setenv("ABSTRACTRUNTIME_HOME", str(tmp_path / "home"))
    with Runtime() as rt:
        assert isinstance(rt.run_store.backend, LmdbBackend)
        assert rt.run_store.backend.path == (tmp_path / "home" / "store").resolve()
    assert (tmp_path / "home" / "store" / "data.mdb").exists()


_WORKER = textwrap.dedent(
    """
    import sys
    from abstractruntime_lmdb.store import LmdbBackend
    from abstractruntime.models import RunState, StepRecord, StepStatus
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    b = LmdbBackend(path, sync=False, map_size=256 * 1024)
    for i in range(n):
        run = RunState.new(workflow_id=tag, entry_node="a", vars={"i": i, "pad": "z" * 2000})
        run.run_id = f"{tag}-{i}"
        b.run_store.save(run)
        b.ledger_store.append(StepRecord.start(run=run, node_id="a", effect=None).finish_success({"i": i}))
    b.close()
    """
)


def test_several_processes_share_one_environment(tmp_path):
    path = str(tmp_path / "shared")
    LmdbBackend(path, sync=False, map_size=256 * 1024).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, path, f"p{k}", "150"]) for k in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    backend = LmdbBackend(path, sync=False)
    try:
        for k in range(3):
            assert len(backend.run_store.list_runs(workflow_id=f"p{k}", limit=1000)) == 150
            assert backend.ledger_store.list(f"p{k}-149")[0]["result"] == {"i": 149}
    finally:
        backend.close()


def _ask(run, ctx):
    return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER, payload={"prompt": "Name?"},
                                                 result_key="answer"), next_node="done")


def _done(run, ctx):
    return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["name"]})


WF = WorkflowSpec(workflow_id="ask_flow", entry_node="ask", nodes={"ask": _ask, "done": _done})

_RESUMER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from abstractruntime import Runtime
    from test_lmdb_store import WF
    with Runtime.from_config({"store": "lmdb://" + sys.argv[1]}) as rt:
        state = rt.get_state(sys.argv[2])
        state = rt.resume(workflow=WF, run_id=sys.argv[2], wait_key=state.waiting.wait_key, payload={"name": "Ada"})
        print(state.status.value, state.output["hello"])
    """
)


def test_a_waiting_run_is_resumed_by_another_process(tmp_path):
    url = f"lmdb://{tmp_path}/db"
    with Runtime.from_config({"store": url}) as rt:
        run_id = rt.start(workflow=WF)
        assert rt.tick(workflow=WF, run_id=run_id).status is RunStatus.WAITING
    out = subprocess.run(
        [sys.executable, "-c", _RESUMER, str(tmp_path / "db"), run_id, str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "completed Ada"
    with Runtime.from_config({"store": url}) as rt:
        state = rt.get_state(run_id)
        assert state.status is RunStatus.COMPLETED
        assert [r["status"] for r in rt.get_ledger(run_id)] == ["started", "waiting", "completed", "completed",
                                                                 "completed"]


def test_runtimes_of_one_process_share_one_environment_per_directory(tmp_path):
    """LMDB must not open one environment twice in a process: a second runtime on the same directory gets the same
    backend; closing one leaves the other working; the environment closes with the last one."""
    url = f"lmdb://{tmp_path}/db"
    first = Runtime.from_config({"store": url})
    second = Runtime.from_config({"store": f"lmdb://{tmp_path}/./db"})  # the same directory, spelled differently
    backend = first.run_store.backend
    assert second.run_store.backend is backend
    wf = WorkflowSpec(workflow_id="one", entry_node="a",
                      nodes={"a": lambda run, ctx: StepPlan(node_id="a", complete_output={"ok": True})})
    run_id = first.start(workflow=wf)
    first.close()
    assert not backend.closed and second.tick(workflow=wf, run_id=run_id).status is RunStatus.COMPLETED
    with pytest.raises(ConfigurationError, match="already open in this process with sync=True"):
        Runtime.from_config({"store": f"{url}?sync=false"})
    second.close()
    assert backend.closed
    with Runtime.from_config({"store": f"{url}?sync=false"}) as third:  # a fresh environment, new options
        assert third.run_store.backend is not backend and third.run_store.backend.sync is False
        assert third.get_state(run_id).status is RunStatus.COMPLETED
