"""Bundle safety (reference defect §17 #21): no path traversal, absolute paths or links; entry, size and ratio
limits; unpack is all-or-nothing."""

from __future__ import annotations

import json
import stat
import zipfile

import pytest

from abstractruntime.workflow_bundle import (
    BundleLimits,
    WorkflowBundleError,
    WorkflowBundleRegistry,
    open_workflow_bundle,
    unpack_workflow_bundle,
)

MANIFEST = json.dumps({"bundle_format_version": "1", "bundle_id": "b", "entrypoints": [{"flow_id": "main"}],
                       "flows": {"main": "flows/main.json"}})
FLOW = json.dumps({"id": "main", "nodes": [], "edges": []})


def make_zip(path, members, manifest=MANIFEST):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if manifest is not None:
            zf.writestr("manifest.json", manifest)
        for item in members:
            if isinstance(item, zipfile.ZipInfo):
                zf.writestr(item, b"target")
            else:
                name, data = item
                zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.json", "flows/../../evil.json", "/etc/passwd", "C:/win.ini",
                                  "..\\evil.json", "flows/./x.json"])
def test_unsafe_member_names_are_refused(tmp_path, name):
    path = make_zip(tmp_path / "b.flow", [("flows/main.json", FLOW), (name, "x")])
    with pytest.raises(WorkflowBundleError, match="bundle member"):
        open_workflow_bundle(path)
    with pytest.raises(WorkflowBundleError):
        unpack_workflow_bundle(bundle_path=path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["b.flow"]  # no temp directory left behind


def test_symbolic_links_are_refused(tmp_path):
    link = zipfile.ZipInfo("flows/link.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "b.flow", [("flows/main.json", FLOW), link])
    with pytest.raises(WorkflowBundleError, match="symbolic links"):
        open_workflow_bundle(path)


def test_entry_count_member_size_and_total_limits(tmp_path):
    many = make_zip(tmp_path / "many.flow", [(f"assets/{i}.txt", "x") for i in range(20)])
    with pytest.raises(WorkflowBundleError, match="entries; the limit is 10"):
        open_workflow_bundle(many, limits=BundleLimits(max_entries=10))
    big = make_zip(tmp_path / "big.flow", [("assets/big.bin", b"x" * 5000)])
    with pytest.raises(WorkflowBundleError, match="member limit"):
        open_workflow_bundle(big, limits=BundleLimits(max_member_bytes=1000))
    with pytest.raises(WorkflowBundleError, match="uncompressed size"):
        open_workflow_bundle(big, limits=BundleLimits(max_total_bytes=3000))


def test_zip_bomb_ratio_is_refused(tmp_path):
    bomb = make_zip(tmp_path / "bomb.flow", [("flows/main.json", FLOW), ("assets/zeros.bin", b"\0" * (20 << 20))])
    with pytest.raises(WorkflowBundleError, match="compression ratio"):
        open_workflow_bundle(bomb)
    with pytest.raises(WorkflowBundleError, match="compression ratio"):
        WorkflowBundleRegistry(tmp_path / "reg").install(bomb)
    assert not (tmp_path / "reg").exists() or list((tmp_path / "reg").iterdir()) == []


def test_missing_manifest_bad_zip_and_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        open_workflow_bundle(make_zip(tmp_path / "nm.flow", [("flows/main.json", FLOW)], manifest=None))
    (tmp_path / "junk.flow").write_bytes(b"junk")
    with pytest.raises(WorkflowBundleError, match="not a zip"):
        open_workflow_bundle(tmp_path / "junk.flow")
    with pytest.raises(FileNotFoundError):
        open_workflow_bundle(tmp_path / "nothing.flow")
    bad_manifest = make_zip(tmp_path / "bm.flow", [], manifest=json.dumps({"bundle_format_version": "1"}))
    with pytest.raises(WorkflowBundleError, match="manifest.bundle_id"):
        open_workflow_bundle(bad_manifest)


def test_unpack_refuses_a_non_empty_target_and_installs_need_every_flow(tmp_path):
    path = make_zip(tmp_path / "ok.flow", [("flows/main.json", FLOW)])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(WorkflowBundleError, match="not an empty directory"):
        unpack_workflow_bundle(bundle_path=path, out_dir=tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert (unpack_workflow_bundle(bundle_path=path, out_dir=tmp_path / "empty") / "manifest.json").is_file()
    incomplete = make_zip(tmp_path / "inc.flow", [])
    with pytest.raises(WorkflowBundleError, match="missing from the bundle"):
        WorkflowBundleRegistry(tmp_path / "reg").install(incomplete)
