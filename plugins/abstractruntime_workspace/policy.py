"""The path policy itself: :class:`WorkspacePolicy` (one layer: a root, a mode, allowed and ignored paths) and
:class:`RunWorkspace` (what a run is confined by: every layer must allow a path; see :mod:`.seal` for where the
layers come from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from attrs import frozen

from abstractruntime.errors import AbstractRuntimeError

MODES = ("workspace_only", "workspace_or_allowed", "all_except_ignored")
#: the run variables of the 0.4.2 policy (reference §15.3)
WORKSPACE_KEYS = ("workspace_root", "workspace_access_mode", "workspace_allowed_paths", "workspace_ignored_paths")


class WorkspaceError(AbstractRuntimeError, ValueError):
    """A path the run's workspace policy refuses, or a policy that cannot be understood."""


def _paths(value: Any, base: Path, name: str) -> Tuple[Path, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) for p in items):
        raise WorkspaceError(f"{name} must be a list of paths, got {value!r}")
    return tuple(_absolute(p, base) for p in items if p.strip())


def _absolute(raw: str, base: Path) -> Path:
    path = Path(raw.strip()).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _requested(raw: Any, base: Optional[Path]) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise WorkspaceError(f"expected a file or directory path, got {raw!r}")
    return _absolute(raw, base or Path.cwd())


@frozen
class WorkspacePolicy:
    """One layer of policy. ``from_vars`` reads the 0.4.2 variables; a run's policy is a :class:`RunWorkspace`."""

    root: Optional[Path] = None
    mode: str = "workspace_only"
    allowed: Tuple[Path, ...] = ()
    ignored: Tuple[Path, ...] = ()

    @classmethod
    def from_vars(cls, vars: Mapping[str, Any]) -> "WorkspacePolicy":
        raw_root = vars.get("workspace_root")
        if raw_root is not None and (not isinstance(raw_root, str) or not raw_root.strip()):
            raise WorkspaceError(f"workspace_root must be a directory path, got {raw_root!r}")
        mode = vars.get("workspace_access_mode") or "workspace_only"
        if mode not in MODES:
            raise WorkspaceError(f"workspace_access_mode must be one of {', '.join(MODES)}, got {mode!r}")
        root = _absolute(raw_root, Path.cwd()) if raw_root else None
        base = root or Path.cwd()
        return cls(root=root, mode=mode,
                   allowed=_paths(vars.get("workspace_allowed_paths"), base, "workspace_allowed_paths"),
                   ignored=_paths(vars.get("workspace_ignored_paths"), base, "workspace_ignored_paths"))

    @classmethod
    def from_record(cls, record: Any) -> "WorkspacePolicy":
        """A layer as :meth:`to_record` wrote it (absolute, already resolved paths)."""
        if not isinstance(record, Mapping) or record.get("mode") not in MODES:
            raise WorkspaceError(f"malformed workspace policy layer {record!r}")
        root = record.get("root")
        lists = [record.get("allowed") or [], record.get("ignored") or []]
        if (root is not None and not isinstance(root, str)) or not all(
                isinstance(v, list) and all(isinstance(p, str) for p in v) for v in lists):
            raise WorkspaceError(f"malformed workspace policy layer {record!r}")
        return cls(root=Path(root) if root else None, mode=record["mode"],
                   allowed=tuple(Path(p) for p in lists[0]), ignored=tuple(Path(p) for p in lists[1]))

    def to_record(self) -> Dict[str, Any]:
        return {"root": str(self.root) if self.root else None, "mode": self.mode,
                "allowed": [str(p) for p in self.allowed], "ignored": [str(p) for p in self.ignored]}

    @property
    def active(self) -> bool:
        """Does the policy constrain anything (a root or ignored paths)?"""
        return self.root is not None or bool(self.ignored)

    def check(self, path: Path, raw: Any) -> None:
        """Raise :class:`WorkspaceError` unless this layer allows the absolute, resolved ``path``."""
        for ignored in self.ignored:
            if _inside(path, ignored):
                raise WorkspaceError(f"path {raw!r} is in an ignored location ({ignored}) of this run's workspace")
        if self.root is None or self.mode == "all_except_ignored" or _inside(path, self.root):
            return
        if self.mode == "workspace_or_allowed" and any(_inside(path, a) for a in self.allowed):
            return
        extra = " or the allowed paths" if self.mode == "workspace_or_allowed" else ""
        raise WorkspaceError(f"path {raw!r} is outside this run's workspace {self.root}{extra} "
                             f"(workspace_access_mode={self.mode})")

    def resolve(self, raw: Any) -> Path:
        """The absolute path ``raw`` names, if the policy allows it; else :class:`WorkspaceError`."""
        path = _requested(raw, self.root)
        self.check(path, raw)
        return path


@frozen
class RunWorkspace:
    """A run's policy: the layers the host gave (runtime configuration, the start arguments, the parent run's
    layers for a child). A path must be allowed by every layer, so a later layer can only narrow access. Relative
    paths resolve against the innermost root (the last layer that has one), else the working directory."""

    layers: Tuple[WorkspacePolicy, ...] = ()

    @property
    def root(self) -> Optional[Path]:
        return next((layer.root for layer in reversed(self.layers) if layer.root is not None), None)

    @property
    def active(self) -> bool:
        return any(layer.active for layer in self.layers)

    def resolve(self, raw: Any) -> Path:
        """The absolute path ``raw`` names, if every layer allows it; else :class:`WorkspaceError`."""
        path = _requested(raw, self.root)
        for layer in self.layers:
            layer.check(path, raw)
        return path


__all__ = ["WorkspacePolicy", "RunWorkspace", "WorkspaceError", "MODES", "WORKSPACE_KEYS"]
