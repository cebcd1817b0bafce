"""The `workspace` plugin (abstractruntime_workspace): the run's workspace path policy (resolution, modes, ignored
paths, bad policies)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from abstractruntime_workspace import WorkspaceError, WorkspacePolicy


def test_relative_paths_resolve_against_the_root_and_must_stay_inside(tmp_path):
    policy = WorkspacePolicy.from_vars({"workspace_root": str(tmp_path)})
    assert policy.active and policy.resolve("a/b.txt") == tmp_path / "a" / "b.txt"
    assert policy.resolve(str(tmp_path)) == tmp_path
    for escape in ("../x", "a/../../x", "/etc/passwd", str(tmp_path) + "-sibling/x"):
        with pytest.raises(WorkspaceError, match="is outside this run's workspace"):
            policy.resolve(escape)
    (tmp_path / "out").mkdir()
    os.symlink("/etc", tmp_path / "out" / "link")
    with pytest.raises(WorkspaceError, match="outside"):  # symbolic links are followed before the check
        policy.resolve("out/link/passwd")
    with pytest.raises(WorkspaceError, match="expected a file or directory path"):
        policy.resolve("  ")


def test_modes_and_ignored_paths(tmp_path):
    extra = tmp_path / "extra"
    policy = WorkspacePolicy.from_vars({"workspace_root": str(tmp_path / "ws"),
                                        "workspace_access_mode": "workspace_or_allowed",
                                        "workspace_allowed_paths": [str(extra)],
                                        "workspace_ignored_paths": [".git", str(extra / "private")]})
    assert policy.resolve(str(extra / "f")) == extra / "f"
    with pytest.raises(WorkspaceError, match="outside .* or the allowed paths"):
        policy.resolve(str(tmp_path / "other"))
    for ignored in (".git/config", str(extra / "private" / "k")):
        with pytest.raises(WorkspaceError, match="ignored location"):
            policy.resolve(ignored)
    anywhere = WorkspacePolicy.from_vars({"workspace_root": str(tmp_path), "workspace_access_mode":
                                          "all_except_ignored", "workspace_ignored_paths": "secrets"})
    assert anywhere.resolve("/usr/lib") == Path("/usr/lib").resolve()
    with pytest.raises(WorkspaceError, match="ignored"):
        anywhere.resolve("secrets/key")


def test_without_a_root_only_ignored_paths_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not WorkspacePolicy.from_vars({}).active
    assert WorkspacePolicy.from_vars({}).resolve("x") == tmp_path / "x"
    policy = WorkspacePolicy.from_vars({"workspace_ignored_paths": ["tmp"]})
    assert policy.active and policy.resolve("/anything") == Path("/anything")
    with pytest.raises(WorkspaceError, match="ignored"):
        policy.resolve("tmp/x")


@pytest.mark.parametrize("vars, message", [
    ({"workspace_access_mode": "all"}, "workspace_access_mode must be one of"),
    ({"workspace_root": 3}, "workspace_root must be a directory path"),
    ({"workspace_root": "/w", "workspace_allowed_paths": [1]}, "workspace_allowed_paths must be a list of paths"),
])
def test_a_bad_policy_is_a_typed_error(vars, message):
    with pytest.raises(WorkspaceError, match=message) as info:
        WorkspacePolicy.from_vars(vars)
    assert isinstance(info.value, ValueError)


# --- the run's policy: layers, the seal ---------------------------------------------------------------------------
def test_every_layer_must_allow_a_path_and_relative_paths_use_the_innermost_root(tmp_path):
    from abstractruntime_workspace import RunWorkspace

    outer = WorkspacePolicy.from_vars({"workspace_root": str(tmp_path)})
    inner = WorkspacePolicy.from_vars({"workspace_root": str(tmp_path / "sub"),
                                       "workspace_access_mode": "all_except_ignored"})
    both = RunWorkspace((outer, inner))
    assert both.root == tmp_path / "sub" and both.active
    assert both.resolve("a.txt") == tmp_path / "sub" / "a.txt"
    assert both.resolve(str(tmp_path / "x")) == tmp_path / "x"  # the inner layer's mode cannot widen the outer
    with pytest.raises(WorkspaceError, match="outside this run's workspace"):
        both.resolve("/etc/hostname")
    assert WorkspacePolicy.from_record(inner.to_record()) == inner
    assert not RunWorkspace(()).active and RunWorkspace(()).root is None


def test_the_seal_is_what_counts_and_a_changed_variable_refuses_every_path(tmp_path):
    from abstractruntime_workspace import workspace_for_vars

    layer = WorkspacePolicy.from_vars({"workspace_root": str(tmp_path)}).to_record()
    sealed = {"workspace_root": str(tmp_path), "_runtime": {"workspace": {
        "version": 1, "layers": [layer], "given": {"workspace_root": str(tmp_path)}}}}
    assert workspace_for_vars(sealed).resolve("a") == tmp_path / "a"
    for key, value in (("workspace_root", "/"), ("workspace_access_mode", "all_except_ignored")):
        with pytest.raises(WorkspaceError, match=f"the run variable {key} was changed after the run started"):
            workspace_for_vars({**sealed, key: value})
    for bad in ({"layers": "x", "given": {}}, {"layers": [{"mode": "anything"}], "given": {}}):
        with pytest.raises(WorkspaceError, match="malformed"):
            workspace_for_vars({"_runtime": {"workspace": bad}})
    with pytest.raises(WorkspaceError, match="workspace_access_mode must be one of"):
        workspace_for_vars({"_runtime": {"workspace": {"layers": [], "given": {},
                                                       "error": "workspace_access_mode must be one of ..."}}})
    # a run without a seal (started before 0.5, a state built by hand) is read from its variables, as 0.4.2 did
    assert workspace_for_vars({"workspace_root": str(tmp_path)}).root == tmp_path.resolve()
