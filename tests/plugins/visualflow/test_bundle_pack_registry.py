"""`.flow` bundles: pack, open, inspect, unpack, manifest model, registry (versions, latest, install_bytes)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from abstractruntime.workflow_bundle import (
    WorkflowBundleError,
    WorkflowBundleRegistry,
    WorkflowBundleRegistryError,
    inspect_workflow_bundle,
    open_workflow_bundle,
    pack_workflow_bundle,
    sanitize_bundle_id,
    sanitize_bundle_version,
    unpack_workflow_bundle,
    workflow_bundle_manifest_from_dict,
    workflow_bundle_manifest_to_dict,
)

from vf_support import FLOWS, load


def _write(d: Path, data):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{data['id']}.json").write_text(json.dumps(data))
    return d / f"{data['id']}.json"


def _pack_c(tmp_path, version="1.0.0", bundle_id=None, name=None):
    src = tmp_path / "src"
    main = load("example_c_main")
    if name:
        main["name"] = name
    main["interfaces"] = ["demo.v1"]
    root = _write(src, main)
    _write(src, load("example_c_double"))
    return pack_workflow_bundle(root_flow_json=root, out_path=tmp_path / f"out-{version}.flow",
                                bundle_id=bundle_id, bundle_version=version)


def test_pack_collects_reachable_subflows_and_reads_back(tmp_path):
    packed = _pack_c(tmp_path)
    m = packed.manifest
    assert m.bundle_id == "main" and m.bundle_version == "1.0.0" and m.default_entrypoint == "main"
    assert m.flows == {"main": "flows/main.json", "double": "flows/double.json"}
    assert m.entrypoints[0].name == "main" and m.entrypoints[0].interfaces == ["demo.v1"]
    with zipfile.ZipFile(packed.path) as zf:
        assert sorted(zf.namelist()) == ["flows/double.json", "flows/main.json", "manifest.json"]
        assert zf.getinfo("manifest.json").compress_type == zipfile.ZIP_DEFLATED
    bundle = open_workflow_bundle(packed.path)
    assert bundle.read_json("flows/double.json")["id"] == "double"
    assert set(bundle.flows()) == {"main", "double"}
    with pytest.raises(FileNotFoundError):
        bundle.read_bytes("flows/nope.json")
    with pytest.raises(WorkflowBundleError):
        bundle.read_bytes("")
    assert inspect_workflow_bundle(bundle_path=packed.path).bundle_id == "main"
    out = unpack_workflow_bundle(bundle_path=packed.path, out_dir=tmp_path / "unpacked")
    assert (out / "flows" / "main.json").is_file()
    d = open_workflow_bundle(out)  # a directory works like the zip
    assert d.manifest.flows == m.flows and d.read_json("flows/main.json")["id"] == "main"
    with pytest.raises(WorkflowBundleError, match="segments are not allowed"):
        d.read_bytes("flows/../../secret.txt")
    (tmp_path / "secret.txt").write_text("x")
    (out / "assets").mkdir()
    (out / "assets" / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(WorkflowBundleError, match="outside the bundle"):
        d.read_bytes("assets/link.txt")


def test_pack_errors_and_reachability(tmp_path):
    src = tmp_path / "src"
    main = load("example_c_main")
    root = _write(src, main)
    with pytest.raises(WorkflowBundleError, match="missing subflows.*double"):
        pack_workflow_bundle(root_flow_json=root, out_path=tmp_path / "x.flow")
    assert not (tmp_path / "x.flow").exists()
    # a subflow node that no execution path reaches does not count
    main["nodes"].append({"id": "dead", "type": "subflow", "data": {
        "subflowId": "ghost", "inputs": [{"id": "exec-in", "type": "execution"}]}})
    _write(src, main)
    _write(src, load("example_c_double"))
    assert set(pack_workflow_bundle(root_flow_json=root, out_path=tmp_path / "y.flow").manifest.flows) == \
        {"main", "double"}
    (src / "noid.json").write_text(json.dumps({"nodes": []}))
    with pytest.raises(WorkflowBundleError, match="no 'id'"):
        pack_workflow_bundle(root_flow_json=src / "noid.json", out_path=tmp_path / "z.flow")
    with pytest.raises(FileNotFoundError):
        pack_workflow_bundle(root_flow_json=src / "missing.json", out_path=tmp_path / "z.flow")
    packed = pack_workflow_bundle(root_flow_json=root, out_path=tmp_path / "e.flow", entrypoints=["double", "main"],
                                  default_entrypoint="nope")
    assert packed.manifest.default_entrypoint == "main"
    assert [e.flow_id for e in packed.manifest.entrypoints] == ["double", "main"]


def _manifest(**over):
    d = {"bundle_format_version": "1", "bundle_id": "b", "entrypoints": [{"flow_id": "main"}],
         "flows": {"main": "flows/main.json"}}
    d.update(over)
    return d


@pytest.mark.parametrize("over,field", [
    ({"bundle_format_version": "2"}, "manifest.bundle_format_version"),
    ({"bundle_id": ""}, "manifest.bundle_id"),
    ({"entrypoints": []}, "manifest.entrypoints"),
    ({"entrypoints": [{"flow_id": "a"}, {"flow_id": ""}]}, "manifest.entrypoints[1].flow_id"),
    ({"entrypoints": [{"flow_id": "a"}, {"flow_id": "a"}]}, "manifest.entrypoints[1].flow_id"),
    ({"default_entrypoint": "zzz"}, "manifest.default_entrypoint"),
    ({"flows": {"main": "../main.json"}}, "manifest.flows['main']"),
    ({"assets": {"logo": "/etc/passwd"}}, "manifest.assets['logo']"),
    ({"assets": {"logo": "C:/x.png"}}, "manifest.assets['logo']"),
    ({"artifacts": {"a": "x\\..\\y"}}, "manifest.artifacts['a']"),
])
def test_manifest_errors_name_the_field(over, field):
    with pytest.raises(WorkflowBundleError) as info:
        workflow_bundle_manifest_from_dict(_manifest(**over))
    assert str(info.value).startswith(field)


def test_manifest_aliases_and_round_trip():
    m = workflow_bundle_manifest_from_dict({
        "bundleFormatVersion": "1", "bundleId": "b", "defaultEntrypointFlowId": "main", "createdAt": "t",
        "entrypoints": [{"flowId": "main", "name": "  ", "interfaces": ["x", "", 3]}, "junk"],
        "flows": {"main": "flows/main.json"}, "metadata": [1]})
    assert (m.bundle_version, m.default_entrypoint, m.created_at, m.metadata) == ("0.0.0", "main", "t", {})
    assert m.entrypoints[0].name is None and m.entrypoints[0].interfaces == ["x"]
    assert m.flow_path_for("main") == "flows/main.json" and m.flow_path_for("x") is None
    d = workflow_bundle_manifest_to_dict(m)
    assert workflow_bundle_manifest_from_dict(d) == m
    m.default_entrypoint = None
    assert "default_entrypoint" not in workflow_bundle_manifest_to_dict(m)


def test_registry_versions_latest_entrypoints_and_remove(tmp_path):
    reg = WorkflowBundleRegistry(tmp_path / "reg")
    assert reg.scan() == []
    for v in ("1.2.0", "1.10.0", "1.9"):
        inst = reg.install(_pack_c(tmp_path, v, bundle_id="demo", name="Doubler").path)
        assert inst.sha256 and inst.path.name == f"demo@{v}.flow"
    assert reg.resolve_bundle("demo").bundle_version == "1.10.0"  # numeric, not lexicographic
    assert reg.resolve_bundle("demo@1.9").bundle_version == "1.9"
    assert reg.resolve_bundle("demo@1.2.0.flow").bundle_version == "1.2.0"
    with pytest.raises(WorkflowBundleRegistryError, match="no version"):
        reg.resolve_bundle("demo@9")
    with pytest.raises(WorkflowBundleRegistryError, match="Unknown bundle"):
        reg.resolve_bundle("nope")
    ep = reg.resolve_entrypoint("demo")
    assert (ep.bundle_ref, ep.flow_id, ep.is_default, ep.workflow_id) == (
        "demo@1.10.0", "main", True, "demo@1.10.0:main")
    assert reg.resolve_entrypoint("demo@1.9:main").bundle_version == "1.9"
    assert reg.resolve_entrypoint("doubler").flow_id == "main"  # display name, case-insensitive
    assert reg.resolve_entrypoint("demo@1.2.0.flow").bundle_version == "1.2.0"
    with pytest.raises(WorkflowBundleRegistryError):
        reg.resolve_entrypoint("demo:double")  # not an entrypoint
    with pytest.raises(WorkflowBundleRegistryError, match="interface"):
        reg.resolve_entrypoint("demo", interface="other.v1")
    assert [e.bundle_version for e in reg.list_entrypoints()] == ["1.10.0"]
    assert len(reg.list_entrypoints(latest_only=False)) == 3
    assert reg.list_entrypoints(interface="nope") == []
    with pytest.raises(WorkflowBundleRegistryError, match="already installed"):
        reg.install(_pack_c(tmp_path, "1.9", bundle_id="demo").path)
    reg.install(_pack_c(tmp_path, "1.9", bundle_id="demo").path, overwrite=True)
    assert reg.remove("demo@1.9") == 1 and reg.remove("demo") == 2 and reg.remove("demo") == 0


def test_latest_falls_back_to_created_at_for_non_numeric_versions(tmp_path):
    reg = WorkflowBundleRegistry(tmp_path / "reg")
    a = reg.install(_pack_c(tmp_path, "beta", bundle_id="x").path)
    b = reg.install(_pack_c(tmp_path, "alpha", bundle_id="x").path)  # created later
    assert a.manifest.created_at < b.manifest.created_at
    assert reg.resolve_bundle("x").bundle_version == "alpha"


def test_install_bytes_and_sanitised_ids(tmp_path):
    reg = WorkflowBundleRegistry(tmp_path / "reg")
    content = _pack_c(tmp_path, "2.0.0").path.read_bytes()
    inst = reg.install_bytes(content, filename_hint="up.flow")
    assert inst.bundle_ref == "main@2.0.0" and inst.path.read_bytes() == content
    with pytest.raises(WorkflowBundleRegistryError, match="empty"):
        reg.install_bytes(b"")
    with pytest.raises(WorkflowBundleError, match="not a zip"):
        reg.install_bytes(b"not a zip")
    bad = _pack_c(tmp_path, "1 0", bundle_id="my bundle")
    with pytest.raises(WorkflowBundleRegistryError, match="not a safe id"):
        reg.install(bad.path)
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == ["main@2.0.0.flow"]  # nothing half-written
    assert sanitize_bundle_id(" my//bundle!! ") == "my-bundle" and sanitize_bundle_version("1.0 beta") == "1.0-beta"


def test_install_is_all_or_nothing_even_when_interrupted(tmp_path, monkeypatch):
    reg = WorkflowBundleRegistry(tmp_path / "reg")
    src = _pack_c(tmp_path, "3.0.0").path

    def boom(*a, **k):
        raise KeyboardInterrupt  # e.g. the process is being stopped right before the rename

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        reg.install(src)
    monkeypatch.undo()
    assert list((tmp_path / "reg").iterdir()) == []
    # a temp file left by a killed process is ignored by scan
    (tmp_path / "reg" / ".install.flow.0123abcd.tmp").write_bytes(b"partial")
    assert reg.scan() == []
    assert reg.install(src).bundle_version == "3.0.0"


def test_default_bundles_dir_from_environment(monkeypatch, tmp_path):
    from abstractruntime.workflow_bundle import default_workflow_bundles_dir

    for k in ("ABSTRACTFRAMEWORK_WORKFLOWS_DIR", "ABSTRACTGATEWAY_FLOWS_DIR", "ABSTRACTFLOW_PUBLISH_DIR",
              "ABSTRACTFLOW_FLOWS_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("ABSTRACTFLOW_FLOWS_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("ABSTRACTGATEWAY_FLOWS_DIR", str(tmp_path / "a"))
    assert default_workflow_bundles_dir() == tmp_path / "a"


def test_the_example_bundle_is_valid():
    repo = FLOWS.parents[3]
    bundle = open_workflow_bundle(repo / "examples" / "flows" / "groceries.flow")
    assert set(bundle.manifest.flows) == {"groceries", "decorate"}
