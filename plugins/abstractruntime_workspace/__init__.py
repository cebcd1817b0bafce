"""Builtin plugin ``workspace``: a run's workspace path policy (reference §15.3): where file tools and file nodes may
read and write (used by the ``abstractcore`` tools and the ``visualflow`` file nodes).

It is read from the run's variables:

* ``workspace_root`` -- a directory; relative paths resolve against it (without it, against the process's working
  directory, as in the reference);
* ``workspace_access_mode`` -- ``workspace_only`` (default: inside the root), ``workspace_or_allowed`` (inside the
  root or inside one of ``workspace_allowed_paths``) or ``all_except_ignored`` (anywhere);
* ``workspace_allowed_paths`` -- extra directories for ``workspace_or_allowed``;
* ``workspace_ignored_paths`` -- refused in every mode (relative entries resolve against the root).

Without ``workspace_root`` only the ignored paths are enforced. Paths are resolved (``..`` and symbolic links
followed) before they are checked. This is a policy on the paths a tool or node is *given*, not a sandbox: a tool's
own code can still open whatever it likes (run untrusted tools in a separate process or container).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from attrs import frozen

from abstractruntime.errors import AbstractRuntimeError

MODES = ("workspace_only", "workspace_or_allowed", "all_except_ignored")


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


@frozen
class WorkspacePolicy:
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

    @property
    def active(self) -> bool:
        """Does the policy constrain anything (a root or ignored paths)?"""
        return self.root is not None or bool(self.ignored)

    def resolve(self, raw: Any) -> Path:
        """The absolute path ``raw`` names, if the policy allows it; else :class:`WorkspaceError`."""
        if not isinstance(raw, str) or not raw.strip():
            raise WorkspaceError(f"expected a file or directory path, got {raw!r}")
        path = _absolute(raw, self.root or Path.cwd())
        for ignored in self.ignored:
            if _inside(path, ignored):
                raise WorkspaceError(f"path {raw!r} is in an ignored location ({ignored}) of this run's workspace")
        if self.root is None or self.mode == "all_except_ignored" or _inside(path, self.root):
            return path
        if self.mode == "workspace_or_allowed" and any(_inside(path, a) for a in self.allowed):
            return path
        extra = " or the allowed paths" if self.mode == "workspace_or_allowed" else ""
        raise WorkspaceError(f"path {raw!r} is outside this run's workspace {self.root}{extra} "
                             f"(workspace_access_mode={self.mode})")


__all__ = ["WorkspacePolicy", "WorkspaceError", "MODES"]
