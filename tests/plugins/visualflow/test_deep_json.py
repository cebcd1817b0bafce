"""JSON from outside nested 100,000 levels deep -- a flow file, a bundle's manifest or flow, a VisualFlow dict, the
``flow run --input`` / ``flow resume --payload`` text -- is refused with a typed error (``error: ...``, exit 2 on the
command line) before any recursive parser or walker sees it; nothing is written."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import zipfile

import pytest

from abstractruntime.workflow_bundle import WorkflowBundleError, open_workflow_bundle, pack_workflow_bundle
from abstractruntime_pluginkit.jsonload import JsonTooDeepError, check_value_depth, json_text_depth, loads_bounded
from abstractruntime_visualflow import VisualFlowError, load_visualflow_json
from vf_support import REPO, entry_point_env

DEEP = "[" * 100_000 + "]" * 100_000
MANIFEST = {"bundle_format_version": "1", "bundle_id": "b", "entrypoints": [{"flow_id": "main"}],
            "flows": {"main": "flows/main.json"}}


def _deep_dict(n):
    root = node = {}
    for _ in range(n):
        node["a"] = {}
        node = node["a"]
    return root


def test_the_bounded_loader():
    with pytest.raises(JsonTooDeepError, match="the request is nested 100000 levels deep; the limit is 200") as e:
        loads_bounded(DEEP, what="the request")
    assert isinstance(e.value, ValueError) and (e.value.depth, e.value.max_depth) == (100_000, 200)
    assert loads_bounded('["[[[[", {"a": "\\"[{"}]') == ["[[[[", {"a": '"[{'}]  # brackets in strings do not count
    assert loads_bounded(b"[" * 200 + b"]" * 200, max_depth=200) is not None
    with pytest.raises(JsonTooDeepError):
        loads_bounded(b"[" * 201 + b"]" * 201, max_depth=200)
    assert json_text_depth('{"a": [1, {"b": "]]]]\\\\"}, []]}') == 3
    with pytest.raises(json.JSONDecodeError):
        loads_bounded("{nope")
    with pytest.raises(ValueError, match="max_depth must be"):
        loads_bounded("[]", max_depth=100_000)
    check_value_depth(_deep_dict(199))
    with pytest.raises(JsonTooDeepError, match="payload is nested 201\\+ levels deep"):
        check_value_depth(_deep_dict(100_000), what="payload")
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(JsonTooDeepError):
        check_value_depth(cyclic)


def test_a_deep_visualflow_dict_is_refused():
    flow = {"id": "f", "nodes": [{"id": "n", "type": "on_flow_start", "data": {"pinDefaults": {
        "x": _deep_dict(100_000)}}}], "edges": []}
    with pytest.raises(VisualFlowError, match="the VisualFlow is nested 201\\+ levels deep; the limit is 200"):
        load_visualflow_json(flow)


def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_deep_bundle_members_are_refused(tmp_path):
    flow = '{"id": "main", "nodes": [], "edges": [], "x": ' + DEEP + "}"
    bundle = open_workflow_bundle(_zip(tmp_path / "f.flow", {"manifest.json": json.dumps(MANIFEST),
                                                             "flows/main.json": flow}))
    with pytest.raises(WorkflowBundleError, match="flows/main.json is nested 100001 levels deep"):
        bundle.flows()
    deep_manifest = json.dumps(MANIFEST)[:-1] + ', "x": ' + DEEP + "}"
    with pytest.raises(WorkflowBundleError, match="manifest.json is nested 100001 levels deep"):
        open_workflow_bundle(_zip(tmp_path / "m.flow", {"manifest.json": deep_manifest}))
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / "manifest.json").write_text(deep_manifest)
    with pytest.raises(WorkflowBundleError, match="manifest.json is nested"):
        open_workflow_bundle(directory)


def test_packing_a_deep_flow_file_is_refused(tmp_path):
    src = tmp_path / "main.json"
    src.write_text('{"id": "main", "nodes": ' + DEEP + ', "edges": []}')
    with pytest.raises(WorkflowBundleError, match="main.json is nested 100001 levels deep"):
        pack_workflow_bundle(root_flow_json=src, out_path=tmp_path / "out.flow")
    assert not (tmp_path / "out.flow").exists()


@pytest.fixture
def cli(tmp_path):
    env = entry_point_env(tmp_path)
    store = f"lmdb://{tmp_path}/store"

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "abstractruntime_cli", "--store", store, *args],
                              capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)

    return call


def _refused(out, message):
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "RecursionError" not in out.stderr
    assert f"error: {message}" in out.stderr


def test_flow_commands_refuse_deep_json(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "deep.json").write_text(DEEP)
    _refused(cli("flow", "pack", str(src), "-o", str(tmp_path / "d.flow")), f"{src / 'deep.json'} is nested 100000")
    assert not (tmp_path / "d.flow").exists()

    packed = cli("flow", "pack", str(REPO / "examples" / "flows" / "src"), "-o", str(tmp_path / "g.flow"))
    assert packed.returncode == 0, packed.stderr
    _refused(cli("flow", "run", str(tmp_path / "g.flow"), "--input", "[" * 100_000), "--input is nested 100000")
    assert cli("runs", "list").stdout.strip() == "(none)"  # no run was started

    ran = cli("flow", "run", str(tmp_path / "g.flow"), "--input", '{"items": ["tea"]}')
    assert ran.returncode == 0 and "is waiting (user)" in ran.stdout, ran.stderr
    resume_line = next(line for line in ran.stdout.splitlines() if line.startswith("resume with: "))
    run_id = shlex.split(resume_line[len("resume with: "):])[5]
    _refused(cli("flow", "resume", run_id, "--payload", "{" * 100_000), "--payload is nested 100000")
    _refused(cli("respond", run_id, "--json", "[" * 100_000), "--json is nested 100000")
    shown = json.loads(cli("--json", "runs", "show", run_id).stdout)
    assert shown["status"] == "waiting"  # unchanged
    done = cli("flow", "resume", run_id, "--response", "Ada")
    assert done.returncode == 0 and "TEA" in done.stdout, done.stderr
