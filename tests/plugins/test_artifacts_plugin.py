"""Artifacts plugin: reference §2.2 (Artifact, ArtifactMetadata), §10 (ArtifactStore), §10.1 (backends), §10.2
(helpers), §10.3 (offloading); plus artifact_store_for and ledger offloading. Real stores, real files."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

import abstractruntime_artifacts
from abstractruntime import Effect, EffectType, Runtime, RunState, RunStatus, StepPlan, StepRecord, WorkflowSpec
from abstractruntime.errors import ConfigurationError
from abstractruntime.storage.base import backend_for
from abstractruntime.storage.artifacts import (
    Artifact,
    ArtifactMetadata,
    ArtifactStore,
    FileArtifactStore,
    InMemoryArtifactStore,
    artifact_ref,
    compute_artifact_id,
    compute_blob_id,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
    validate_artifact_id,
)
from abstractruntime.storage.offloading import (
    DEFAULT_MAX_INLINE_BYTES,
    OffloadingLedgerStore,
    OffloadingRunStore,
    offload_large_values,
)
from abstractruntime_artifacts import artifact_store_for, max_inline_bytes_for
from abstractruntime_artifacts.offloading import _OffloadingBackend, default_max_inline_bytes
from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore
from abstractruntime_lmdb.store import LmdbBackend


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ABSTRACTRUNTIME_HOME", str(tmp_path / "home"))


def _plugins():
    names = {p.name for p in Runtime.from_config({"store": "memory://"}).plugins()}
    return [] if "artifacts" in names else [abstractruntime_artifacts]


def _runtime(config, **kw) -> Runtime:
    return Runtime.from_config(config, plugins=_plugins(), **kw)


# --- ids and references -------------------------------------------------------------------------------------------
def test_ids_and_reference_helpers():
    content = b"hello"
    assert compute_blob_id(content) == hashlib.sha256(content).hexdigest()
    assert compute_artifact_id(content) == hashlib.sha256(content).hexdigest()[:32]
    scoped = hashlib.sha256(b"run-1\0hello").hexdigest()[:32]
    assert compute_artifact_id(content, run_id="run-1") == scoped
    assert compute_artifact_id(content, run_id="  run-1 ") == scoped  # stripped
    assert compute_artifact_id(content, run_id="   ") == compute_artifact_id(content)  # blank = no run
    assert validate_artifact_id("a-B_9") == "a-B_9"
    for bad in ("", "../x", "a/b", "a.b", "a b", None):
        with pytest.raises(ValueError):
            validate_artifact_id(bad)
    with pytest.raises(TypeError):  # as in the reference
        validate_artifact_id(3)
    ref = artifact_ref("abc")
    assert ref == {"$artifact": "abc"} and is_artifact_ref(ref) and get_artifact_id(ref) == "abc"
    assert not is_artifact_ref({"x": 1}) and not is_artifact_ref("abc")
    with pytest.raises(KeyError):
        get_artifact_id({"x": 1})
    store = InMemoryArtifactStore()
    meta = store.store(b"data")
    assert resolve_artifact(artifact_ref(meta.artifact_id), store).content == b"data"
    assert resolve_artifact("not a ref", store) is None
    assert resolve_artifact(artifact_ref("missing"), store) is None


def test_models():
    meta = ArtifactMetadata("a1", "application/json", 2, "2026-01-01T00:00:00+00:00", run_id="r", tags={"k": "v"})
    assert meta.blob_id is None
    d = meta.to_dict()
    assert d == {"artifact_id": "a1", "content_type": "application/json", "size_bytes": 2,
                 "created_at": "2026-01-01T00:00:00+00:00", "blob_id": None, "run_id": "r", "tags": {"k": "v"}}
    assert ArtifactMetadata.from_dict({**d, "future_field": 1}) == meta
    art = Artifact(metadata=meta, content=b'{"x": "\xc3\xa9"}')
    assert art.artifact_id == "a1" and art.content_type == "application/json"
    assert art.as_json() == {"x": "é"} and art.as_text() == '{"x": "é"}'


# --- both stores --------------------------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path) -> ArtifactStore:
    return InMemoryArtifactStore() if request.param == "memory" else FileArtifactStore(tmp_path / "base")


def test_store_load_list_delete(store):
    m1 = store.store(b"one", content_type="text/plain", run_id="r1", tags={"kind": "a", "n": 1})
    assert m1.artifact_id == compute_artifact_id(b"one", run_id="r1")
    assert (m1.size_bytes, m1.content_type, m1.run_id, m1.blob_id) == (3, "text/plain", "r1", compute_blob_id(b"one"))
    assert m1.tags == {"kind": "a", "n": "1"}  # tag values are strings
    time.sleep(0.002)
    m2 = store.store_json({"b": [1, "é"]}, run_id="r1", tags={"kind": "b"})
    time.sleep(0.002)
    m3 = store.store_text("három", run_id="r2")
    assert store.load(m2.artifact_id).content == '{"b":[1,"é"]}'.encode()  # compact, ensure_ascii=False
    assert store.get_metadata(m2.artifact_id).content_type == "application/json"
    assert store.load_json(m2.artifact_id) == {"b": [1, "é"]}
    assert store.load_text(m3.artifact_id) == "három"
    assert store.get_metadata(m3.artifact_id).content_type == "text/plain"
    assert store.load_text("nope") is None and store.load_json("nope") is None and store.load("nope") is None
    assert store.exists(m1.artifact_id) and not store.exists("nope")
    assert sorted(m.artifact_id for m in store.list_by_run("r1")) == sorted([m1.artifact_id, m2.artifact_id])
    assert [m.artifact_id for m in store.list_all()] == [m3.artifact_id, m2.artifact_id, m1.artifact_id]
    assert [m.artifact_id for m in store.list_all(limit=1)] == [m3.artifact_id]
    assert len(store.list_all(limit=0)) == 3
    # search: exact filters, all tags, newest first
    assert [m.artifact_id for m in store.search(run_id="r1")] == [m2.artifact_id, m1.artifact_id]
    assert [m.artifact_id for m in store.search(content_type="text/plain")] == [m3.artifact_id, m1.artifact_id]
    assert [m.artifact_id for m in store.search(tags={"kind": "a", "n": "1"})] == [m1.artifact_id]
    assert store.search(tags={"kind": "a", "n": "2"}) == []
    assert len(store.search(limit=2)) == 2
    # returned metadata are copies
    store.get_metadata(m1.artifact_id).tags["kind"] = "changed"
    assert store.get_metadata(m1.artifact_id).tags["kind"] == "a"
    # explicit id overwrites
    store.store(b"v1", artifact_id="fixed")
    store.store(b"v2", artifact_id="fixed", content_type="x/y")
    assert store.load("fixed").content == b"v2" and store.get_metadata("fixed").content_type == "x/y"
    assert store.delete("fixed") and not store.delete("fixed") and store.load("fixed") is None
    assert store.delete_by_run("r1") == 2
    assert store.list_by_run("r1") == [] and store.exists(m3.artifact_id)


# --- FileArtifactStore --------------------------------------------------------------------------------------------
def test_file_store_layout_dedup_and_persistence(tmp_path):
    store = FileArtifactStore(tmp_path)
    a = store.store(b"same bytes", run_id="r1")
    b = store.store(b"same bytes", run_id="r2")
    assert a.artifact_id != b.artifact_id and a.blob_id == b.blob_id == compute_blob_id(b"same bytes")
    blobs = tmp_path / "artifacts" / "blobs"
    refs = tmp_path / "artifacts" / "refs"
    assert sorted(os.listdir(blobs)) == [f"{a.blob_id}.bin"]  # one blob for both
    assert sorted(os.listdir(refs)) == sorted([f"{a.artifact_id}.meta", f"{b.artifact_id}.meta"])
    assert json.loads((refs / f"{a.artifact_id}.meta").read_text()) == a.to_dict()
    # a new instance reads the same files
    again = FileArtifactStore(tmp_path)
    assert again.load(b.artifact_id).content == b"same bytes"
    assert again.get_metadata(a.artifact_id) == a
    # deleting one reference keeps the shared blob
    assert again.delete(a.artifact_id)
    assert again.load(b.artifact_id).content == b"same bytes"
    assert not [n for n in os.listdir(blobs) + os.listdir(refs) if n.endswith(".tmp")]


def test_file_store_validates_ids(tmp_path):
    store = FileArtifactStore(tmp_path)
    for call in (lambda: store.store(b"x", artifact_id="../evil"), lambda: store.load("../evil"),
                 lambda: store.get_metadata("a/b"), lambda: store.exists(""), lambda: store.delete("x.y")):
        with pytest.raises(ValueError):
            call()
    assert not (tmp_path / "evil.meta").exists()
    # in memory, ids are not validated (reference behaviour)
    assert InMemoryArtifactStore().store(b"x", artifact_id="../free").artifact_id == "../free"


def test_file_store_legacy_layout_missing_blob_and_corrupt_meta(tmp_path):
    store = FileArtifactStore(tmp_path)
    legacy = tmp_path / "artifacts"
    (legacy / "old1.bin").write_bytes(b"legacy content")
    (legacy / "old1.meta").write_text(json.dumps({"artifact_id": "old1", "content_type": "text/plain",
                                                  "size_bytes": 14, "created_at": "2020-01-01T00:00:00+00:00",
                                                  "run_id": "r-old", "tags": {}}))
    assert store.load("old1").as_text() == "legacy content"
    assert store.exists("old1") and [m.artifact_id for m in store.list_by_run("r-old")] == ["old1"]
    assert store.delete("old1") and not (legacy / "old1.bin").exists() and store.load("old1") is None
    # metadata whose blob is gone: load -> None
    meta = store.store(b"soon gone")
    (legacy / "blobs" / f"{meta.blob_id}.bin").unlink()
    assert store.load(meta.artifact_id) is None and store.get_metadata(meta.artifact_id) is not None
    # a corrupt metadata file is skipped when listing, and reads as missing
    (legacy / "refs" / "broken.meta").write_text("{not json")
    assert store.get_metadata("broken") is None and store.load("broken") is None
    assert [m.artifact_id for m in store.list_all()] == [meta.artifact_id]


def test_file_store_gc(tmp_path):
    store = FileArtifactStore(tmp_path)
    keep = store.store(b"keep me")
    gone = store.store(b"x" * 100)
    store.delete(gone.artifact_id)
    (tmp_path / "artifacts" / "blobs" / ".inflight.tmp").write_bytes(b"partial")  # never touched
    report = store.gc(grace_seconds=60)  # our option: an orphan younger than the grace period is kept
    assert report == {"dry_run": True, "blobs_total": 2, "blobs_referenced": 2, "blobs_deleted": 0,
                      "bytes_reclaimed": 0, "errors": []}
    report = store.gc()
    assert report == {"dry_run": True, "blobs_total": 2, "blobs_referenced": 1, "blobs_deleted": 1,
                      "bytes_reclaimed": 100, "errors": []}
    assert (tmp_path / "artifacts" / "blobs" / f"{gone.blob_id}.bin").exists()  # dry run deletes nothing
    report = store.gc(dry_run=False)
    assert report["blobs_deleted"] == 1 and report["bytes_reclaimed"] == 100 and not report["dry_run"]
    assert not (tmp_path / "artifacts" / "blobs" / f"{gone.blob_id}.bin").exists()
    assert store.load(keep.artifact_id).content == b"keep me"
    assert (tmp_path / "artifacts" / "blobs" / ".inflight.tmp").exists()
    assert store.gc(dry_run=False)["blobs_deleted"] == 0


# --- offload_large_values -----------------------------------------------------------------------------------------
def test_offload_large_values_semantics():
    store = InMemoryArtifactStore()
    value = {"small": "ok", "big": "é" * 40, "nested": {"list": ["x" * 100, 1]}, "ref": {"$artifact": "keep"},
             "raw": b"\x00\x01", "none": None}
    out = offload_large_values(value, artifact_store=store, run_id="r1", max_inline_bytes=70,
                               base_tags={"source": "t"}, root_path="vars")
    assert value["big"] == "é" * 40 and value["raw"] == b"\x00\x01"  # input untouched
    assert out["small"] == "ok" and out["ref"] == {"$artifact": "keep"} and out["none"] is None
    big = store.get_metadata(get_artifact_id(out["big"]))
    assert big.content_type == "text/plain" and big.run_id == "r1"  # 80 UTF-8 bytes > 70
    assert big.tags == {"source": "t", "path": "vars.big", "kind": "text"}
    assert store.load_text(big.artifact_id) == "é" * 40
    assert is_artifact_ref(out["nested"]["list"][0])
    assert store.get_metadata(get_artifact_id(out["nested"]["list"][0])).tags["path"] == "vars.nested.list[0]"
    raw = store.get_metadata(get_artifact_id(out["raw"]))
    assert raw.content_type == "application/octet-stream" and raw.tags["kind"] == "bytes"
    # a container still too large after its children were offloaded becomes one JSON artifact
    many = {"items": [{"v": i} for i in range(20)]}
    out2 = offload_large_values(many, artifact_store=store, run_id="r1", max_inline_bytes=40)
    meta = store.get_metadata(get_artifact_id(out2["items"]))
    assert meta.content_type == "application/json" and meta.tags == {"path": "items", "kind": "json"}
    assert store.load_json(meta.artifact_id) == many["items"]
    # the root is replaced only when allowed; threshold <= 0 changes nothing; unchanged values keep identity
    assert offload_large_values("y" * 100, artifact_store=store, run_id="r", max_inline_bytes=10) == "y" * 100
    assert is_artifact_ref(offload_large_values("y" * 100, artifact_store=store, run_id="r", max_inline_bytes=10,
                                                allow_root_replace=True))
    assert offload_large_values(many, artifact_store=store, run_id="r", max_inline_bytes=0) is many
    small = {"a": [1, 2]}
    assert offload_large_values(small, artifact_store=store, run_id="r", max_inline_bytes=1000) is small
    # allow_offload vetoes (and a raising veto is a veto); bytes are offloaded regardless
    vetoed = offload_large_values({"s": "z" * 100, "b": b"1"}, artifact_store=store, run_id="r",
                                  max_inline_bytes=10, allow_offload=lambda p, v: 1 / 0)
    assert vetoed["s"] == "z" * 100 and is_artifact_ref(vetoed["b"])
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Cycle"):
        offload_large_values(cyclic, artifact_store=store, run_id="r", max_inline_bytes=10)


def test_default_threshold_and_env(monkeypatch):
    assert DEFAULT_MAX_INLINE_BYTES == 256 * 1024 == default_max_inline_bytes()
    monkeypatch.setenv("ABSTRACTRUNTIME_MAX_INLINE_BYTES", "1234")
    assert default_max_inline_bytes() == 1234
    assert OffloadingLedgerStore(InMemoryLedgerStore(), artifact_store=InMemoryArtifactStore()).max_inline_bytes == 1234
    monkeypatch.setenv("ABSTRACTRUNTIME_MAX_INLINE_BYTES", "lots")
    assert default_max_inline_bytes() == DEFAULT_MAX_INLINE_BYTES


# --- decorators ---------------------------------------------------------------------------------------------------
def _record(run, **kw) -> StepRecord:
    return StepRecord.start(run=run, node_id="n", effect=Effect(EffectType.ANSWER_USER, kw.pop("payload", {})),
                            idempotency_key=kw.pop("key", None)).finish_success(kw.pop("result", None))


def test_offloading_run_store_offloads_only_terminal_private_values_and_output():
    artifacts = InMemoryArtifactStore()
    inner = InMemoryRunStore()
    store = OffloadingRunStore(inner, artifact_store=artifacts, max_inline_bytes=64)
    assert store.inner is inner
    run = RunState.new(workflow_id="wf", entry_node="a",
                       vars={"user": "u" * 200, "_temp": {"big": "t" * 200, "small": 1}, "_flag": "f" * 200})
    store.save(run)
    assert store.load(run.run_id).vars["_temp"]["big"] == "t" * 200  # running: nothing offloaded
    run.status, run.output = RunStatus.COMPLETED, {"answer": "o" * 200}
    store.save(run)
    assert run.vars["_temp"]["big"] == "t" * 200 and run.output["answer"] == "o" * 200  # caller's object untouched
    saved = store.load(run.run_id)
    assert saved.vars["user"] == "u" * 200 and saved.vars["_flag"] == "f" * 200  # public / namespace root kept
    assert saved.vars["_temp"]["small"] == 1
    temp_meta = artifacts.get_metadata(get_artifact_id(saved.vars["_temp"]["big"]))
    assert temp_meta.tags == {"source": "run_store_offload", "path": "vars._temp.big", "kind": "text"}
    out_meta = artifacts.get_metadata(get_artifact_id(saved.output["answer"]))
    assert out_meta.tags["source"] == "run_output_offload" and out_meta.run_id == run.run_id
    # queries pass through; missing ones raise NotImplementedError
    assert [r.run_id for r in store.list_runs(status=RunStatus.COMPLETED)] == [run.run_id]
    assert store.list_children(parent_run_id="x") == [] and store.load_revision(run.run_id) is not None

    class Bare(InMemoryRunStore.__mro__[1]):  # the RunStore ABC: save/load only
        def save(self, run): pass

        def load(self, run_id): return None

    with pytest.raises(NotImplementedError):
        OffloadingRunStore(Bare(), artifact_store=artifacts).list_runs()


def test_offloading_ledger_store():
    artifacts = InMemoryArtifactStore()
    store = OffloadingLedgerStore(InMemoryLedgerStore(), artifact_store=artifacts, max_inline_bytes=64)
    run = RunState.new(workflow_id="wf", entry_node="n")
    store.append(_record(run, payload={"message": "m" * 100}, result={"message": "r" * 100}, key="k1"))
    row = store.list(run.run_id)[0]
    assert is_artifact_ref(row["effect"]["payload"]["message"]) and row["effect"]["type"] == "answer_user"
    assert artifacts.get_metadata(get_artifact_id(row["result"]["message"])).tags["source"] == "ledger_result_offload"
    assert store.count(run.run_id) == 1 and store.count_many([run.run_id]) == {run.run_id: 1}
    assert store.metrics_many([run.run_id]) == {}
    assert store.find_by_idempotency_key(run.run_id, "k1")["step_id"] == row["step_id"]
    with pytest.raises(RuntimeError):
        store.subscribe(lambda r: None)


def _complete_big_wf() -> WorkflowSpec:
    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"text": "z" * 5000})

    return WorkflowSpec(workflow_id="big", entry_node="done", nodes={"done": done})


def test_decorated_lmdb_stores_still_commit_each_step_once(tmp_path):
    backend = LmdbBackend(tmp_path / "lmdb")
    artifacts = FileArtifactStore(tmp_path / "files")
    run_store = OffloadingRunStore(backend.run_store, artifact_store=artifacts, max_inline_bytes=1024)
    ledger_store = OffloadingLedgerStore(backend.ledger_store, artifact_store=artifacts, max_inline_bytes=1024)
    assert isinstance(run_store.backend, _OffloadingBackend) and run_store.backend is ledger_store.backend
    assert run_store.backend.inner is backend and run_store.backend.capabilities == backend.capabilities
    assert run_store.backend.artifact_store() is artifacts and run_store.backend.run_locks is backend.run_locks
    assert backend_for(run_store, ledger_store) is run_store.backend  # one transaction per step
    try:
        rt = Runtime(run_store=run_store, ledger_store=ledger_store, artifact_store=artifacts,
                     plugins=_plugins())
        run_id = rt.start(workflow=_complete_big_wf())
        state = rt.tick(workflow=_complete_big_wf(), run_id=run_id)
        assert state.status is RunStatus.COMPLETED and state.output["text"] == "z" * 5000  # in memory: full
        stored = backend.run_store.load(run_id)
        assert resolve_artifact(stored.output["text"], artifacts).as_text() == "z" * 5000
        row = backend.ledger_store.list(run_id)[0]
        assert artifacts.load_text(get_artifact_id(row["result"]["output"]["text"])) == "z" * 5000
    finally:
        backend.close()


# --- the plugin ---------------------------------------------------------------------------------------------------
def _answer_wf() -> WorkflowSpec:
    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": "m" * 3000}),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"ok": True})

    return WorkflowSpec(workflow_id="answer", entry_node="say", nodes={"say": say, "done": done})


def _answer_row(rt, run_id):
    return next(r for r in rt.get_ledger(run_id)
                if (r.get("effect") or {}).get("type") == "answer_user" and r["status"] == "completed")


def test_artifact_store_for_never_forces_a_store(tmp_path):
    with _runtime({"store": "memory://"}) as rt:
        assert artifact_store_for(rt) is None and rt.artifact_store is None
        explicit = InMemoryArtifactStore()
        rt.set_artifact_store(explicit)
        assert artifact_store_for(rt) is explicit
    with _runtime({"store": f"lmdb://{tmp_path / 'env'}"}) as rt:
        run_id = rt.start(workflow=_answer_wf())
        rt.tick(workflow=_answer_wf(), run_id=run_id)
        assert not (tmp_path / "env" / "artifacts").exists()  # nothing needed offloading: no directory either
        store = artifact_store_for(rt)
        assert isinstance(store, FileArtifactStore) and store.base_dir == tmp_path / "env"
        assert (tmp_path / "env" / "artifacts" / "blobs").is_dir() and rt.artifact_store is None
        assert artifact_store_for(rt) is store  # one per runtime
    with _runtime({"store": f"sqlite://{tmp_path / 'db' / 'rt.sqlite'}"}) as rt:
        store = artifact_store_for(rt)
        assert store.artifacts_dir == tmp_path / "db" / "artifacts"


def test_ledger_offloading_threshold_from_plugin_options(tmp_path):
    config = {"store": f"lmdb://{tmp_path / 'env'}", "plugin_options": {"artifacts": {"max_inline_bytes": 1000}}}
    with _runtime(config) as rt:
        assert max_inline_bytes_for(rt) == 1000
        run_id = rt.start(workflow=_answer_wf())
        assert rt.tick(workflow=_answer_wf(), run_id=run_id).status is RunStatus.COMPLETED
        row = _answer_row(rt, run_id)
        ref = row["effect"]["payload"]["message"]
        store = artifact_store_for(rt)
        assert store.load_text(get_artifact_id(ref)) == "m" * 3000
        # same content, same run: one content-addressed artifact (the result's copy re-tagged it)
        assert store.get_metadata(get_artifact_id(ref)).tags["source"] in ("ledger_effect_offload",
                                                                          "ledger_result_offload")
        assert is_artifact_ref(row["result"]["message"])
        assert rt.get_state(run_id).output == {"ok": True}
    # below the (default) threshold, and with 0, nothing moves
    for opts in ({}, {"max_inline_bytes": 0}):
        with _runtime({"store": "memory://", "plugin_options": {"artifacts": opts}},
                      artifact_store=InMemoryArtifactStore()) as rt:
            run_id = rt.start(workflow=_answer_wf())
            rt.tick(workflow=_answer_wf(), run_id=run_id)
            assert _answer_row(rt, run_id)["effect"]["payload"]["message"] == "m" * 3000
            assert rt.artifact_store.list_all() == []
    # no artifact store at all: nothing offloaded, none created
    with _runtime({"store": "memory://", "plugin_options": {"artifacts": {"max_inline_bytes": 10}}}) as rt:
        run_id = rt.start(workflow=_answer_wf())
        rt.tick(workflow=_answer_wf(), run_id=run_id)
        assert _answer_row(rt, run_id)["effect"]["payload"]["message"] == "m" * 3000 and rt.artifact_store is None
    with pytest.raises(ConfigurationError, match="max_inline_bytes"):  # refused when the runtime is built
        _runtime({"store": "memory://", "plugin_options": {"artifacts": {"max_inline_bytes": "big"}}},
                 artifact_store=InMemoryArtifactStore())
