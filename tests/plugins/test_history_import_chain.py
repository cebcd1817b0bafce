"""Importing a history file verifies the hash chain of every ledger first: a record changed, deleted or moved after
export is refused with HistoryBundleError and the target store keeps no trace of the runs (no checkpoint, no ledger
row, no artifact). Bundles exported with provenance off still import; deep JSON in bundle.json is refused before it
is parsed."""

from __future__ import annotations

import copy
import json
import os
import zipfile

import pytest

from abstractruntime import Effect, EffectType, Runtime, StepPlan, WorkflowSpec
from abstractruntime_artifacts import artifact_store_for
from abstractruntime_history import HistoryBundleError, import_history_bundle


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("ABSTRACTRUNTIME_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ABSTRACTRUNTIME_HOME", str(tmp_path / "home"))


def _wf():
    def hello(run, ctx):
        return StepPlan(node_id="hello", effect=Effect(EffectType.ANSWER_USER, {"message": run.vars["say"]}),
                        next_node="ask")

    def ask(run, ctx):
        return StepPlan(node_id="ask", effect=Effect(EffectType.ASK_USER, {"prompt": "name?"}, result_key="name"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan(node_id="done", complete_output={"answer": f"bye {run.vars['name']['text']}"})

    return WorkflowSpec(workflow_id="greet", entry_node="hello", nodes={"hello": hello, "ask": ask, "done": done})


def _export(tmp_path, config, name="history.zip"):
    """A finished run with a child run and an artifact, exported to a file; returns (path, run ids, artifact id)."""
    path = tmp_path / name
    with Runtime.from_config(config) as src:
        wf = _wf()
        parent = src.start(workflow=wf, vars={"say": "hi"})
        waiting = src.tick(workflow=wf, run_id=parent)
        child = src.start(workflow=wf, vars={"say": "child"}, parent_run_id=parent)
        src.tick(workflow=wf, run_id=child)
        src.resume(workflow=wf, run_id=parent, wait_key=waiting.waiting.wait_key, payload={"text": "Ada"})
        art = artifact_store_for(src).store(b"attached", run_id=parent)
        src.export_history_file(parent, path)
    return path, [parent, child], art.artifact_id


def _rewrite(path, out, change):
    """Copy the history file ``path`` to ``out`` with ``change(bundle)`` applied to its bundle.json."""
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    bundle = json.loads(entries["bundle.json"])
    change(bundle)
    entries["bundle.json"] = json.dumps(bundle).encode()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, data in entries.items():
            zf.writestr(n, data)
    return out


def _items(bundle, run_id):
    return bundle["ledgers"][run_id]["items"]


def _change_value(bundle, run_id):
    _items(bundle, run_id)[0]["record"]["effect"]["payload"]["message"] = "forged"


def _delete_middle(bundle, run_id):
    ledger = bundle["ledgers"][run_id]
    del ledger["items"][1]
    ledger["total"] -= 1  # keep the file "complete" so only the chain can tell
    ledger["cursor_end"] -= 1
    for i, item in enumerate(ledger["items"]):
        item["cursor"] = i + 1


def _reorder(bundle, run_id):
    items = _items(bundle, run_id)
    items[0]["record"], items[1]["record"] = items[1]["record"], items[0]["record"]


def _assert_no_trace(rt, run_ids, artifact_id):
    for rid in run_ids:
        assert rt.run_store.load(rid) is None
        assert rt.ledger_store.list(rid) == []
    assert rt.run_store.list_run_index(limit=100) == []
    assert not artifact_store_for(rt).exists(artifact_id)


@pytest.mark.parametrize("tamper", [_change_value, _delete_middle, _reorder])
@pytest.mark.parametrize("which", [0, 1], ids=["parent", "child"])
def test_a_tampered_ledger_is_refused_and_nothing_is_imported(tmp_path, tamper, which):
    path, run_ids, artifact_id = _export(tmp_path, {"store": f"lmdb://{tmp_path / 'src'}"})
    bad = _rewrite(path, tmp_path / "bad.zip", lambda b: tamper(b, run_ids[which]))
    with Runtime.from_config({"store": f"sqlite://{tmp_path / 'dst' / 'rt.sqlite'}"}) as dst:
        with pytest.raises(HistoryBundleError, match=f"ledger of run {run_ids[which]} fails its hash-chain check") \
                as caught:
            dst.import_history_file(bad)
        assert "Nothing was imported" in str(caught.value)
        _assert_no_trace(dst, run_ids, artifact_id)
        # the untouched file imports, and its ledgers verify in the new store
        summary = dst.import_history_file(path)
        assert summary["run_ids"] == run_ids
        assert all(dst.verify_ledger(rid)["ok"] for rid in run_ids)


def test_a_stripped_chain_in_a_chained_bundle_is_refused(tmp_path):
    path, run_ids, artifact_id = _export(tmp_path, {"store": f"lmdb://{tmp_path / 'src'}"})

    def strip(bundle):  # forge the child's ledger and drop its chain fields, hoping to pass as "provenance off"
        for item in _items(bundle, run_ids[1]):
            item["record"].update(record_hash=None, prev_hash=None, signature=None)

    bad = _rewrite(path, tmp_path / "stripped.zip", strip)
    with Runtime.from_config({"store": f"sqlite://{tmp_path / 'dst.sqlite'}"}) as dst:
        with pytest.raises(HistoryBundleError, match=f"run {run_ids[1]} fails .*missing_record_hash"):
            dst.import_history_file(bad)
        _assert_no_trace(dst, run_ids, artifact_id)


def test_bundles_without_a_chain_import(tmp_path):
    config = {"store": f"lmdb://{tmp_path / 'src'}", "plugins": {"block": ["provenance"]}}
    path, run_ids, artifact_id = _export(tmp_path, config)
    with zipfile.ZipFile(path) as zf:
        bundle = json.loads(zf.read("bundle.json"))
    assert all(item["record"]["record_hash"] is None for item in _items(bundle, run_ids[0]))
    with Runtime.from_config({"store": f"sqlite://{tmp_path / 'dst.sqlite'}"}) as dst:
        assert dst.import_history_file(path)["run_ids"] == run_ids
        assert artifact_store_for(dst).exists(artifact_id)


def test_a_chained_bundle_needs_the_provenance_plugin_or_an_explicit_opt_out(tmp_path):
    path, run_ids, artifact_id = _export(tmp_path, {"store": f"lmdb://{tmp_path / 'src'}"})
    config = {"store": f"sqlite://{tmp_path / 'dst.sqlite'}", "plugins": {"block": ["provenance"]}}
    with Runtime.from_config(config) as dst:
        with pytest.raises(HistoryBundleError, match="no 'provenance' plugin"):
            dst.import_history_file(path)
        _assert_no_trace(dst, run_ids, artifact_id)
        summary = import_history_bundle(path, runtime=dst, verify_chain=False)
        assert summary["run_ids"] == run_ids


def test_deep_json_in_a_history_file_is_refused_before_parsing(tmp_path):
    path, run_ids, artifact_id = _export(tmp_path, {"store": f"lmdb://{tmp_path / 'src'}"})
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    deep = copy.copy(entries)
    deep["bundle.json"] = b'{"version": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bad = tmp_path / "deep.zip"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, data in deep.items():
            zf.writestr(n, data)
    with Runtime.from_config({"store": f"sqlite://{tmp_path / 'dst.sqlite'}"}) as dst:
        with pytest.raises(HistoryBundleError, match="bundle.json is nested 100001 levels deep; the limit is 256"):
            dst.import_history_file(bad)
        _assert_no_trace(dst, run_ids, artifact_id)


def test_export_to_a_directory_is_refused(tmp_path):
    with Runtime.from_config({"store": f"lmdb://{tmp_path / 'src'}"}) as src:
        run_id = src.start(workflow=_wf(), vars={"say": "hi"})
        with pytest.raises(HistoryBundleError, match="is a directory"):
            src.export_history_file(run_id, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
