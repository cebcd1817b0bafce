"""History plugin: reference §13 (export_run_history_bundle, persist_workflow_snapshot), portable bundle files, and
importing them into another store (LMDB -> SQLite), with bounded, path-checked reading (§17 #21)."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import pytest

import abstractruntime_artifacts
import abstractruntime_history
from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec, codec
from abstractruntime.errors import UnknownRunError
from abstractruntime.history_bundle import (
    RUN_HISTORY_BUNDLE_VERSION_V1,
    export_run_history_bundle,
    persist_workflow_snapshot,
)
from abstractruntime_artifacts import FileArtifactStore, InMemoryArtifactStore, artifact_store_for, is_artifact_ref
from abstractruntime_history import HistoryBundleError, import_history_bundle, write_history_bundle


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ABSTRACTRUNTIME_HOME", str(tmp_path / "home"))


def _plugins():
    names = {p.name for p in Runtime.from_config({"store": "memory://"}).plugins()}
    return [m for name, m in (("artifacts", abstractruntime_artifacts), ("history", abstractruntime_history))
            if name not in names]


def _runtime(config, **kw) -> Runtime:
    return Runtime.from_config(config, plugins=_plugins(), **kw)


def parent_wf() -> WorkflowSpec:
    def hello(run, ctx):
        return StepPlan(node_id="hello", effect=Effect(EffectType.ANSWER_USER, {"message": run.vars.get("say", "hi")}),
                        next_node="ask")

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "name?"}, result_key="name"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"answer": f"bye {run.vars['name']['text']}"})

    return WorkflowSpec(workflow_id="parent", entry_node="hello", nodes={"hello": hello, "ask": ask, "done": done})


def child_wf() -> WorkflowSpec:
    def say(run, ctx):
        return StepPlan(node_id="say", effect=Effect(EffectType.ANSWER_USER, {"message": "child"}), next_node="end")

    def end(run, ctx):
        return StepPlan(node_id="end", complete_output={"ok": True})

    return WorkflowSpec(workflow_id="child", entry_node="say", nodes={"say": say, "end": end})


def _make_history(rt: Runtime, *, session_id=None, prompt="hello there", **more):
    """A finished parent run with a child and a grandchild; returns (parent, child, grandchild) ids."""
    wf = parent_wf()
    parent = rt.start(workflow=wf, vars={"prompt": prompt, "blob": "b" * 2000, "_private": {"x": 1}, **more},
                      session_id=session_id)
    waiting = rt.tick(workflow=wf, run_id=parent)
    child = rt.start(workflow=child_wf(), parent_run_id=parent)
    rt.tick(workflow=child_wf(), run_id=child)
    grandchild = rt.start(workflow=child_wf(), parent_run_id=child)
    rt.tick(workflow=child_wf(), run_id=grandchild)
    rt.resume(workflow=wf, run_id=parent, wait_key=waiting.waiting.wait_key, payload={"text": "Ada"})
    return parent, child, grandchild


# --- export -------------------------------------------------------------------------------------------------------
def test_export_shape_cursors_and_subruns(tmp_path):
    with _runtime({"store": f"lmdb://{tmp_path / 'env'}"}) as rt:
        parent, child, grandchild = _make_history(rt)
        full_ledger = rt.get_ledger(parent)
        bundle = export_run_history_bundle(run_id=parent, run_store=rt.run_store, ledger_store=rt.ledger_store)
        assert RUN_HISTORY_BUNDLE_VERSION_V1 == 1 and bundle["version"] == 1
        assert set(bundle) == {"version", "generated_at", "root_run_id", "run", "workflow_snapshot", "input_data",
                               "ledgers", "timeline", "session"}
        assert bundle["root_run_id"] == parent and bundle["workflow_snapshot"] is None and bundle["session"] is None
        assert bundle["run"] == {"run_id": parent, "workflow_id": "parent", "status": "completed",
                                 "current_node": "done", "created_at": rt.get_state(parent).created_at,
                                 "updated_at": rt.get_state(parent).updated_at, "error": None, "waiting": None,
                                 "parent_run_id": None, "session_id": None, "actor_id": None}
        assert bundle["input_data"] == {"prompt": "hello there", "blob": "b" * 2000, "name": {"text": "Ada"}}
        assert list(bundle["ledgers"]) == [parent, child, grandchild]  # breadth-first
        led = bundle["ledgers"][parent]
        assert (led["total"], led["cursor_start"], led["cursor_end"]) == (len(full_ledger), 1, len(full_ledger))
        assert [it["cursor"] for it in led["items"]] == list(range(1, len(full_ledger) + 1))
        assert [it["record"] for it in led["items"]] == full_ledger
        assert len(bundle["timeline"]) == sum(len(v["items"]) for v in bundle["ledgers"].values())
        entry = bundle["timeline"][0]
        assert set(entry) == {"run_id", "cursor", "node_id", "status", "effect_type", "started_at", "ended_at",
                              "duration_ms"}
        assert (entry["run_id"], entry["cursor"], entry["node_id"]) == (parent, 1, "hello")
        assert entry["effect_type"] == "answer_user" and isinstance(entry["duration_ms"], float)
        json.dumps(bundle)  # JSON-safe

        tail = export_run_history_bundle(run_id=parent, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                         ledger_max_items=2, include_subruns=False)
        led = tail["ledgers"][parent]
        n = len(full_ledger)
        assert list(tail["ledgers"]) == [parent]
        assert (led["total"], led["cursor_start"], led["cursor_end"]) == (n, n - 1, n)  # absolute cursors
        assert [it["record"] for it in led["items"]] == full_ledger[-2:]
        assert [t["cursor"] for t in tail["timeline"]] == [n - 1, n]
        for kw in ({"ledger_mode": "full", "ledger_max_items": 2}, {"ledger_max_items": 0}):
            every = export_run_history_bundle(run_id=parent, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                              include_subruns=False, **kw)
            assert len(every["ledgers"][parent]["items"]) == n
        with pytest.raises(ValueError):
            export_run_history_bundle(run_id="  ", run_store=rt.run_store, ledger_store=rt.ledger_store)
        with pytest.raises(KeyError):
            export_run_history_bundle(run_id="nope", run_store=rt.run_store, ledger_store=rt.ledger_store)
        # any mode other than "full" tails, as in the reference
        middle = export_run_history_bundle(run_id=parent, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                           include_subruns=False, ledger_mode="middle", ledger_max_items=2)
        assert [it["cursor"] for it in middle["ledgers"][parent]["items"]] == [n - 1, n]


def test_input_data_offload_and_session(tmp_path):
    with _runtime({"store": "memory://"}) as rt:
        first, _c, _g = _make_history(rt, session_id="s1", prompt="first question")
        second, _c2, _g2 = _make_history(rt, session_id="s1", prompt="second question")
        store = InMemoryArtifactStore()
        big = rt.start(workflow=child_wf(), vars={"huge": "h" * (300 * 1024)})
        bundle = export_run_history_bundle(run_id=big, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                           artifact_store=store)
        ref = bundle["input_data"]["huge"]
        assert is_artifact_ref(ref) and store.get_metadata(ref["$artifact"]).tags["source"] == "history_bundle"

        bundle = export_run_history_bundle(run_id=second, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                           include_session=True)
        session = bundle["session"]
        assert session["session_id"] == "s1"
        assert [t["run_id"] for t in session["turns"]] == [first, second]  # root runs only, oldest first
        turn = session["turns"][0]
        assert turn["prompt"] == "first question" and turn["answer"] == "bye Ada" and turn["attachments"] == []
        assert turn["status"] == "completed" and turn["stats"]["llm_calls"] == 0
        assert set(turn["stats"]) == {"duration_ms", "llm_calls", "tool_calls", "usage", "tok_s"}
        only_first = export_run_history_bundle(run_id=first, run_store=rt.run_store, ledger_store=rt.ledger_store,
                                               include_session=True, session_turn_limit=5)
        assert [t["run_id"] for t in only_first["session"]["turns"]] == [first]  # not newer turns


def test_persist_workflow_snapshot(tmp_path):
    with _runtime({"store": "memory://"}) as rt:
        run_id = rt.start(workflow=child_wf())
        store = InMemoryArtifactStore()
        spec = {"nodes": {"b": 2, "a": 1}, "name": "é"}
        revision = rt.get_state(run_id).revision
        ref = persist_workflow_snapshot(run_store=rt.run_store, artifact_store=store, run_id=run_id,
                                        workflow_id="child", snapshot=spec, format=" ")
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert ref["sha256"] == hashlib.sha256(canonical).hexdigest() and ref["format"] == "unknown"
        assert set(ref) == {"workflow_id", "format", "sha256", "artifact_id", "created_at"}
        meta = store.get_metadata(ref["artifact_id"])
        assert meta.run_id == run_id and meta.tags == {"kind": "workflow_snapshot", "workflow_id": "child",
                                                       "format": "unknown", "sha256": ref["sha256"]}
        assert store.load_json(ref["artifact_id"]) == spec
        state = rt.get_state(run_id)
        assert state.vars["_runtime"]["workflow_snapshot"] == ref and state.revision == revision + 1
        again = persist_workflow_snapshot(run_store=rt.run_store, artifact_store=store, run_id=run_id,
                                          workflow_id="child", snapshot={"other": 1}, format="json")
        assert again == ref and len(store.list_all()) == 1  # idempotent
        bundle = export_run_history_bundle(run_id=run_id, run_store=rt.run_store, ledger_store=rt.ledger_store)
        assert bundle["workflow_snapshot"] == ref
        kw = dict(run_store=rt.run_store, artifact_store=store, workflow_id="w", snapshot={}, format="f")
        with pytest.raises(ValueError):
            persist_workflow_snapshot(**{**kw, "run_id": ""})
        with pytest.raises(ValueError):
            persist_workflow_snapshot(**{**kw, "run_id": run_id, "workflow_id": " "})
        with pytest.raises(ValueError):
            persist_workflow_snapshot(**{**kw, "run_id": run_id, "snapshot": ["not", "a", "dict"]})
        with pytest.raises(UnknownRunError):
            persist_workflow_snapshot(**{**kw, "run_id": "missing"})


# --- portable files and import ------------------------------------------------------------------------------------
def _dump(store, run_ids):
    return {rid: codec.run_to_dict(store.load(rid)) for rid in run_ids}


def test_export_from_lmdb_import_into_sqlite(tmp_path):
    path = tmp_path / "out" / "history.zip"
    with _runtime({"store": f"lmdb://{tmp_path / 'env'}",
                   "plugin_options": {"artifacts": {"max_inline_bytes": 1024}}}) as src:
        parent, child, grandchild = _make_history(src, say="s" * 3000)  # its ledger rows get offloaded
        persist_workflow_snapshot(run_store=src.run_store, artifact_store=artifact_store_for(src), run_id=parent,
                                  workflow_id="parent", snapshot={"nodes": ["hello", "ask", "done"]}, format="py")
        artifacts = artifact_store_for(src)
        assert isinstance(artifacts, FileArtifactStore)
        extra = artifacts.store(b"\x00binary", content_type="application/octet-stream", run_id=child,
                                tags={"kind": "upload"})
        ids = [parent, child, grandchild]
        states, ledgers = _dump(src.run_store, ids), {rid: src.get_ledger(rid) for rid in ids}
        assert src.export_history_file(parent, path) == path
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert {"bundle.json", "manifest.json", f"artifacts/{extra.artifact_id}.bin",
            f"artifacts/{extra.artifact_id}.meta"} <= names
    assert manifest["missing_artifacts"] == [] and extra.artifact_id in manifest["artifacts"]
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]

    with _runtime({"store": f"sqlite://{tmp_path / 'db' / 'rt.sqlite'}"}) as dst:
        summary = dst.import_history_file(path)
        assert summary["root_run_id"] == parent and summary["run_ids"] == ids
        assert summary["ledger_records"] == sum(len(v) for v in ledgers.values())
        assert _dump(dst.run_store, ids) == states
        assert {rid: dst.get_ledger(rid) for rid in ids} == ledgers
        assert [r.run_id for r in dst.run_store.list_children(parent_run_id=parent)] == [child]
        target = artifact_store_for(dst)
        assert target.artifacts_dir == tmp_path / "db" / "artifacts"
        assert target.load(extra.artifact_id).content == b"\x00binary"
        assert target.get_metadata(extra.artifact_id).tags == {"kind": "upload"}
        ws = dst.get_state(parent).vars["_runtime"]["workflow_snapshot"]
        assert target.load_json(ws["artifact_id"]) == {"nodes": ["hello", "ask", "done"]}
        refs = [ref for rows in ledgers.values() for row in rows for ref in _refs(row)]
        assert refs and all(target.load_text(ref) == "s" * 3000 for ref in refs)  # offloaded rows resolve
        # the imported runs are live runs of this store
        bundle = export_run_history_bundle(run_id=parent, run_store=dst.run_store, ledger_store=dst.ledger_store)
        assert bundle["ledgers"][parent]["total"] == len(ledgers[parent])

        # importing again collides: a clear error, nothing written
        before = dst.get_ledger(parent)
        with pytest.raises(HistoryBundleError, match="already exist"):
            dst.import_history_file(path)
        assert dst.get_ledger(parent) == before


def _refs(value):
    if isinstance(value, dict):
        if "$artifact" in value:
            yield value["$artifact"]
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _write_zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_import_refuses_unsafe_or_incomplete_files(tmp_path):
    with _runtime({"store": "memory://"}) as src:
        parent, _c, _g = _make_history(src)
        store = InMemoryArtifactStore()
        art = store.store(b"payload", run_id=parent)
        full = export_run_history_bundle(run_id=parent, run_store=src.run_store, ledger_store=src.ledger_store,
                                         ledger_mode="full", include_state=True)
        good = write_history_bundle(full, tmp_path / "good.zip", artifact_store=store)
        tail = export_run_history_bundle(run_id=parent, run_store=src.run_store, ledger_store=src.ledger_store,
                                         ledger_max_items=1, include_state=True)
        no_state = export_run_history_bundle(run_id=parent, run_store=src.run_store, ledger_store=src.ledger_store,
                                             ledger_mode="full")
    body = json.dumps(full).encode()
    meta = json.dumps(art.to_dict()).encode()
    cases = {
        "traversal": {"bundle.json": body, "../evil.txt": b"x"},
        "absolute": {"bundle.json": body, "/etc/evil": b"x"},
        "other file": {"bundle.json": body, "artifacts/x.exe": b"x"},
        "no bundle": {"manifest.json": b"{}"},
        "not json": {"bundle.json": b"{nope"},
        "bin without meta": {"bundle.json": body, f"artifacts/{art.artifact_id}.bin": b"payload"},
        "size mismatch": {"bundle.json": body, f"artifacts/{art.artifact_id}.bin": b"payloa",
                          f"artifacts/{art.artifact_id}.meta": meta},
        "hash mismatch": {"bundle.json": body, f"artifacts/{art.artifact_id}.bin": b"PAYLOAD",
                          f"artifacts/{art.artifact_id}.meta": meta},
        "tail ledger": {"bundle.json": json.dumps(tail).encode()},
        "no states": {"bundle.json": json.dumps(no_state).encode()},
    }
    for label, entries in cases.items():
        with _runtime({"store": "memory://"}, artifact_store=InMemoryArtifactStore()) as dst:
            with pytest.raises(HistoryBundleError):
                import_history_bundle(_write_zip(tmp_path / f"{label}.zip", entries), runtime=dst)
            assert dst.run_store.load(parent) is None, label
    with _runtime({"store": "memory://"}, artifact_store=InMemoryArtifactStore()) as dst:
        with pytest.raises(HistoryBundleError, match="entries"):
            import_history_bundle(good, runtime=dst, max_entries=2)
        with pytest.raises(HistoryBundleError, match="bytes"):
            import_history_bundle(good, runtime=dst, max_entry_bytes=100)
        with pytest.raises(HistoryBundleError, match="bytes"):
            import_history_bundle(good, runtime=dst, max_total_bytes=len(body) // 2)
        bomb = _write_zip(tmp_path / "bomb.zip", {"bundle.json": body + b" " * 5_000_000})
        assert os.path.getsize(bomb) < 200_000
        with pytest.raises(HistoryBundleError, match="bytes"):
            import_history_bundle(bomb, runtime=dst, max_entry_bytes=1_000_000)
        with pytest.raises(HistoryBundleError, match="not a readable"):
            import_history_bundle(_write_zip(tmp_path / "x.zip", {}).with_name("missing.zip"), runtime=dst)
        assert dst.run_store.load(parent) is None
        # the good file imports; an artifact with other content under the same id would collide
        summary = import_history_bundle(good, runtime=dst)
        assert summary["artifacts"] == [art.artifact_id] and dst.artifact_store.load(art.artifact_id) is not None
    with _runtime({"store": "memory://"}) as dst:  # artifacts, but nowhere to put them
        with pytest.raises(HistoryBundleError, match="no artifact store"):
            import_history_bundle(good, runtime=dst)
        assert dst.run_store.load(parent) is None
    clash = InMemoryArtifactStore()
    clash.store(b"different", artifact_id=art.artifact_id)
    with _runtime({"store": "memory://"}, artifact_store=clash) as dst:
        with pytest.raises(HistoryBundleError, match="other content"):
            import_history_bundle(good, runtime=dst)
        assert dst.run_store.load(parent) is None


def test_write_history_bundle_checks(tmp_path):
    with pytest.raises(HistoryBundleError):
        write_history_bundle({"version": 99}, tmp_path / "x.zip")
    with _runtime({"store": "memory://"}) as rt:
        run_id = rt.start(workflow=child_wf(), vars={"ref": {"$artifact": "gone"}})
        bundle = export_run_history_bundle(run_id=run_id, run_store=rt.run_store, ledger_store=rt.ledger_store)
        path = write_history_bundle(bundle, tmp_path / "x.zip", artifact_store=InMemoryArtifactStore())
        with zipfile.ZipFile(path) as zf:
            assert json.loads(zf.read("manifest.json"))["missing_artifacts"] == ["gone"]
            assert json.loads(zf.read("bundle.json")) == bundle
