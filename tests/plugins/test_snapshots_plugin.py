"""Snapshots plugin: reference §2.2 (Snapshot), §10 (SnapshotStore), §10.1 (backends), §17 #26 (restore), plus
fork_run and the default store choice. Real stores, real files."""

from __future__ import annotations

import json
import os
import time

import pytest

import abstractruntime_snapshots
from abstractruntime import Effect, EffectType, Runtime, RunState, RunStatus, StepPlan, WaitReason, WorkflowSpec
from abstractruntime.errors import UnknownRunError
from abstractruntime.storage.snapshots import InMemorySnapshotStore, JsonSnapshotStore, Snapshot, SnapshotStore
from abstractruntime_snapshots import SnapshotNotFoundError, snapshot_store_for


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ABSTRACTRUNTIME_HOME", str(tmp_path / "home"))


def _plugins():
    names = {p.name for p in Runtime.from_config({"store": "memory://"}).plugins()}
    return [] if "snapshots" in names else [abstractruntime_snapshots]


def _runtime(config) -> Runtime:
    return Runtime.from_config(config, plugins=_plugins())


def counter_wf() -> WorkflowSpec:
    """count += 1, ask the user, count += 10, done."""

    def first(run, ctx):
        run.vars["count"] = run.vars.get("count", 0) + 1
        return StepPlan(node_id="first", next_node="ask")

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "go?"}, result_key="answer"),
                        next_node="second")

    def second(run, ctx):
        run.vars["count"] += 10
        return StepPlan(node_id="second", complete_output={"count": run.vars["count"]})

    return WorkflowSpec(workflow_id="counter", entry_node="first",
                        nodes={"first": first, "ask": ask, "second": second})


# --- model and stores ---------------------------------------------------------------------------------------------
def test_snapshot_from_run_is_a_deep_copy():
    run = RunState.new(workflow_id="wf", entry_node="a", vars={"nested": {"x": [1]}})
    snap = Snapshot.from_run(run=run, name="s", description="d", tags=["T"], step_id="step-1")
    assert snap.run_id == run.run_id and snap.step_id == "step-1" and snap.tags == ["T"]
    assert len(snap.snapshot_id) == 36 and snap.created_at and snap.updated_at
    assert snap.run_state["vars"] == {"nested": {"x": [1]}} and snap.run_state["status"] == "running"
    run.vars["nested"]["x"].append(2)
    assert snap.run_state["vars"]["nested"]["x"] == [1]
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    assert Snapshot(snapshot_id="s1", run_id="r1").name == "" and Snapshot("s1", "r1").run_state == {}


@pytest.fixture(params=["memory", "json"])
def store(request, tmp_path) -> SnapshotStore:
    return InMemorySnapshotStore() if request.param == "memory" else JsonSnapshotStore(tmp_path / "snaps")


def test_store_save_load_list_delete(store):
    runs = [RunState.new(workflow_id="wf", entry_node="a") for _ in range(2)]
    a = Snapshot.from_run(run=runs[0], name="Before Deploy", description="first try", tags=["Release", "x"])
    time.sleep(0.002)
    b = Snapshot.from_run(run=runs[0], name="after", description="Deploy done", tags=["other"])
    time.sleep(0.002)
    c = Snapshot.from_run(run=runs[1], name="c")
    before = a.updated_at
    time.sleep(0.002)
    for s in (a, b, c):
        store.save(s)
    assert a.updated_at > before  # save refreshes updated_at
    loaded = store.load(a.snapshot_id)
    assert loaded == a
    loaded.run_state["vars"]["changed"] = True
    assert "changed" not in store.load(a.snapshot_id).run_state["vars"]  # copies, never the stored object
    assert store.load("0000") is None
    ids = lambda snaps: [s.snapshot_id for s in snaps]  # noqa: E731
    assert ids(store.list()) == [c.snapshot_id, b.snapshot_id, a.snapshot_id]  # newest first
    assert ids(store.list(run_id=runs[0].run_id)) == [b.snapshot_id, a.snapshot_id]
    assert ids(store.list(tag="release")) == [a.snapshot_id]  # case-insensitive exact tag
    assert store.list(tag="rel") == []
    assert ids(store.list(query="DEPLOY")) == [b.snapshot_id, a.snapshot_id]  # name or description substring
    assert ids(store.list(limit=1)) == [c.snapshot_id]
    assert store.delete(b.snapshot_id) and not store.delete(b.snapshot_id)
    assert ids(store.list()) == [c.snapshot_id, a.snapshot_id]


def test_json_store_files_corruption_and_ids(tmp_path):
    store = JsonSnapshotStore(tmp_path / "snaps")
    snap = Snapshot.from_run(run=RunState.new(workflow_id="wf", entry_node="a", vars={"é": "ü"}), name="n")
    store.save(snap)
    path = tmp_path / "snaps" / f"snapshot_{snap.snapshot_id}.json"
    assert json.loads(path.read_text(encoding="utf-8"))["run_state"]["vars"] == {"é": "ü"}
    assert "ü" in path.read_text(encoding="utf-8")  # ensure_ascii=False
    (tmp_path / "snaps" / "snapshot_broken.json").write_text("{nope")
    (tmp_path / "snaps" / "snapshot_partial.json").write_text('{"name": "no ids"}')
    assert [s.snapshot_id for s in store.list()] == [snap.snapshot_id]
    assert store.load("broken") is None
    assert JsonSnapshotStore(tmp_path / "snaps").load(snap.snapshot_id) == snap
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError):
            store.load(bad)
    with pytest.raises(ValueError):
        store.save(Snapshot(snapshot_id="../../evil", run_id="r"))
    assert not [n for n in os.listdir(tmp_path / "snaps") if n.endswith(".tmp")]


# --- runtime methods ----------------------------------------------------------------------------------------------
def test_create_restore_snapshot(tmp_path):
    wf = counter_wf()
    with _runtime({"store": f"lmdb://{tmp_path / 'env'}"}) as rt:
        run_id = rt.start(workflow=wf, vars={"count": 0})
        waiting = rt.tick(workflow=wf, run_id=run_id)
        assert waiting.status is RunStatus.WAITING and waiting.vars["count"] == 1
        snap = rt.create_snapshot(run_id, name="at the question", tags=["q"], description="waiting for go")
        assert snap.step_id == rt.get_ledger(run_id)[-1]["step_id"] and snap.run_state["status"] == "waiting"
        store = snapshot_store_for(rt)
        assert isinstance(store, JsonSnapshotStore) and store.base_dir == tmp_path / "env" / "snapshots"
        assert store.load(snap.snapshot_id) == snap

        done = rt.resume(workflow=wf, run_id=run_id, wait_key=waiting.waiting.wait_key, payload={"ok": 1})
        assert done.status is RunStatus.COMPLETED and done.output == {"count": 11}
        ledger_before = rt.get_ledger(run_id)

        restored = rt.restore_snapshot(snap.snapshot_id)
        assert restored.status is RunStatus.WAITING and restored.current_node == "ask"
        assert restored.waiting is not None and restored.waiting.reason is WaitReason.USER
        assert restored.vars == waiting.vars and restored.output is None and restored.error is None
        assert restored.revision == done.revision + 1 and restored.step == done.step + 1
        assert rt.get_state(run_id).vars == waiting.vars  # durable
        ledger = rt.get_ledger(run_id)
        assert ledger[: len(ledger_before)] == ledger_before and len(ledger) == len(ledger_before) + 1
        row = ledger[-1]
        assert row["status"] == "completed" and row["node_id"] == "ask"
        assert row["effect"] == {"type": "snapshot_restore", "result_key": None,
                                 "payload": {"snapshot_id": snap.snapshot_id, "name": "at the question"}}
        # the restored run continues normally, as a new step (its idempotency keys are new)
        again = rt.resume(workflow=wf, run_id=run_id, wait_key=restored.waiting.wait_key, payload={"ok": 2})
        assert again.status is RunStatus.COMPLETED and again.output == {"count": 11}
        assert again.vars["answer"] == {"ok": 2}
        # the store in the environment directory survives the runtime
    with _runtime({"store": f"lmdb://{tmp_path / 'env'}"}) as rt:
        assert [s.snapshot_id for s in snapshot_store_for(rt).list(run_id=run_id)] == [snap.snapshot_id]
        with pytest.raises(SnapshotNotFoundError) as info:
            rt.restore_snapshot("does-not-exist")
        assert isinstance(info.value, KeyError)
        with pytest.raises(UnknownRunError):
            rt.create_snapshot("no-such-run", name="x")


def test_fork_run_and_explicit_store(tmp_path):
    wf = counter_wf()
    explicit = JsonSnapshotStore(tmp_path / "elsewhere")
    with _runtime({"store": f"sqlite://{tmp_path / 'db' / 'rt.sqlite'}"}) as rt:
        assert snapshot_store_for(rt).base_dir == tmp_path / "db" / "snapshots"
        run_id = rt.start(workflow=wf, vars={"count": 5}, session_id="s1")
        waiting = rt.tick(workflow=wf, run_id=run_id)
        snap = rt.create_snapshot(run_id, name="fork point", snapshot_store=explicit)
        assert explicit.load(snap.snapshot_id) is not None and snapshot_store_for(rt).list() == []
        with pytest.raises(SnapshotNotFoundError):
            rt.fork_run(snap.snapshot_id)  # not in the default store
        new_id = rt.fork_run(snap.snapshot_id, snapshot_store=explicit)
        assert new_id != run_id
        fork = rt.get_state(new_id)
        assert fork.parent_run_id is None and fork.session_id == "s1" and fork.workflow_id == "counter"
        assert fork.status is RunStatus.WAITING and fork.current_node == "ask" and fork.revision == 1
        assert fork.vars["count"] == 6
        assert fork.vars["_runtime"]["forked_from"] == {"run_id": run_id, "snapshot_id": snap.snapshot_id}
        [row] = rt.get_ledger(new_id)
        assert row["effect"]["type"] == "fork" and row["run_id"] == new_id and row["status"] == "completed"
        assert row["effect"]["payload"]["source_run_id"] == run_id
        # the fork and the original go their own ways
        done = rt.resume(workflow=wf, run_id=new_id, wait_key=fork.waiting.wait_key, payload={})
        assert done.status is RunStatus.COMPLETED and done.output == {"count": 16}
        assert rt.get_state(run_id).status is RunStatus.WAITING and rt.get_state(run_id).vars == waiting.vars


def test_default_store_choice(tmp_path):
    with _runtime({"store": "memory://"}) as rt:
        store = snapshot_store_for(rt)
        assert isinstance(store, InMemorySnapshotStore) and snapshot_store_for(rt) is store  # kept per runtime
        run_id = rt.start(workflow=counter_wf())
        snap = rt.create_snapshot(run_id, name="mem")
        assert store.load(snap.snapshot_id) is not None
    with _runtime({"store": "memory://"}) as other:
        assert snapshot_store_for(other) is not store
    configured = {"store": f"lmdb://{tmp_path / 'env'}", "plugin_options": {"snapshots": {"dir": str(tmp_path / "s")}}}
    with _runtime(configured) as rt:
        assert snapshot_store_for(rt).base_dir == tmp_path / "s"


def test_list_snapshots_newest_first_per_run(tmp_path):
    wf = counter_wf()
    with _runtime({"store": f"lmdb://{tmp_path / 'env'}"}) as rt:
        a = rt.start(workflow=wf, vars={"count": 0})
        b = rt.start(workflow=wf, vars={"count": 0})
        rt.tick(workflow=wf, run_id=a)
        first = rt.create_snapshot(a, name="one")
        time.sleep(0.01)
        second = rt.create_snapshot(a, name="two")
        other = rt.create_snapshot(b, name="b")
        assert [s.snapshot_id for s in rt.list_snapshots(a)] == [second.snapshot_id, first.snapshot_id]
        assert [s.snapshot_id for s in rt.list_snapshots(a, limit=1)] == [second.snapshot_id]
        assert {s.snapshot_id for s in rt.list_snapshots()} == {first.snapshot_id, second.snapshot_id,
                                                                other.snapshot_id}
        assert "list_snapshots" in rt.plugin_methods()
