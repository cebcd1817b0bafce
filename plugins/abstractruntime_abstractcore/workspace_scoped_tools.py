"""The reference's workspace helpers (integration-surface §3.5): :class:`WorkspaceScope`,
:func:`resolve_user_path`, :func:`rewrite_tool_arguments` and :class:`WorkspaceScopedToolExecutor`.

A host can use them on their own (e.g. to confine an executor it runs outside a runtime). Inside a runtime the
TOOL_CALLS handler does not use them for the decision: it checks every path against the run's *sealed* policy
(plugin ``workspace``: set by the host when the run starts; a flow cannot change it), after the same argument
rewriting (aliases, ``@`` handles, virtual mount names). So a scope built here can only narrow what a run may
touch, never widen it: :meth:`WorkspaceScope.from_input_data` refuses the variables of a run whose
``workspace_*`` values were changed after it started. This is a policy on path arguments, not a sandbox.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from attrs import frozen

from abstractruntime.errors import ValidationError

from .tool_arguments import split_path_argument

WorkspaceAccessMode = str
MODES = ("all_except_ignored", "workspace_only", "workspace_or_allowed")

#: canonical path argument <- aliases copied into it (the alias keys stay; kwarg filtering drops them later)
FILE_TOOLS = ("read_file", "write_file", "edit_file", "analyze_code")
_ALIASES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    **{t: ("file_path", ("path", "filename", "file")) for t in FILE_TOOLS},
    "skim_files": ("paths", ("path", "file_path", "filename", "file")),
    "skim_folders": ("paths", ("path", "directory_path", "folder")),
}
#: tools whose blank path argument means the workspace root
ROOT_DEFAULTS = {"list_files": "directory_path", "search_files": "path", "execute_command": "working_directory"}


def resolve_workspace_base_dir() -> Path:
    """Base of relative workspace roots: ``ABSTRACT_WORKSPACE_BASE_DIR``, ``ABSTRACTFLOW_WORKSPACE_BASE_DIR``, an
    enclosing AbstractFramework monorepo checkout, else the current directory."""
    for var in ("ABSTRACT_WORKSPACE_BASE_DIR", "ABSTRACTFLOW_WORKSPACE_BASE_DIR"):
        raw = os.environ.get(var, "").strip()
        if raw:
            return Path(raw).expanduser().resolve()
    here = Path(__file__).resolve().parent
    for candidate in [here, *list(here.parents)[:10]]:
        if (candidate / "docs" / "KnowledgeBase.md").is_file() or all(
                (candidate / d).is_dir() for d in ("abstractflow", "abstractcore", "abstractruntime")):
            return candidate
    return Path.cwd().resolve()


def _path_list(value: Any) -> List[str]:
    """A list of path strings: a list, a JSON array in a string, or lines (blank entries skipped)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return [str(p).strip() for p in parsed if str(p).strip()]
        return [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(value, (list, tuple)):
        return [str(p).strip() for p in value if isinstance(p, str) and p.strip()]
    raise ValidationError(f"Expected a list of paths, got {type(value).__name__}")


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


@frozen
class WorkspaceScope:
    root: Path
    access_mode: WorkspaceAccessMode = "workspace_only"
    ignored_paths: Tuple[Path, ...] = ()
    allowed_paths: Tuple[Path, ...] = ()

    @classmethod
    def from_input_data(cls, input_data: Dict[str, Any], *, key: str = "workspace_root",
                        base_dir: Optional[Path] = None) -> Optional["WorkspaceScope"]:
        """The scope described by run variables (``workspace_root``, ``workspace_access_mode``,
        ``workspace_allowed_paths``, ``workspace_ignored_paths``, or their camelCase forms); None without a root.
        The root is created. The variables of a run whose sealed policy they no longer match raise
        ``ValueError`` (a flow cannot widen its run's policy through this helper)."""
        if not isinstance(input_data, Mapping):
            return None
        runtime_ns = input_data.get("_runtime")
        if isinstance(runtime_ns, Mapping) and runtime_ns.get("workspace") is not None:
            from abstractruntime_workspace import workspace_for_vars

            workspace_for_vars(input_data)  # raises WorkspaceError (a ValueError) for changed workspace_* values
        raw = input_data.get(key)
        if not isinstance(raw, str) or not raw.strip():
            return None
        root = Path(raw.strip()).expanduser()
        if not root.is_absolute():
            root = Path(base_dir).expanduser() / root if base_dir is not None else resolve_workspace_base_dir() / root
        root = root.resolve(strict=False)
        if root.exists() and not root.is_dir():
            raise ValidationError(f"workspace_root must be a directory (got file): {raw}")
        root.mkdir(parents=True, exist_ok=True)
        mode_raw = input_data.get("workspace_access_mode", input_data.get("workspaceAccessMode"))
        mode = str(mode_raw or "").strip().lower() or "workspace_only"
        if mode not in MODES:
            raise ValidationError(f"Invalid workspace_access_mode: '{mode_raw}' (expected one of: {sorted(MODES)})")

        def paths(*names: str) -> Tuple[Path, ...]:
            value = next((input_data.get(n) for n in names if input_data.get(n) is not None), None)
            out: List[Path] = []
            for entry in _path_list(value):
                p = Path(entry).expanduser()
                p = (p if p.is_absolute() else root / p).resolve(strict=False)
                if p not in out:
                    out.append(p)
            return tuple(out)

        return cls(root=root, access_mode=mode,
                   ignored_paths=paths("workspace_ignored_paths", "workspaceIgnoredPaths"),
                   allowed_paths=paths("workspace_allowed_paths", "workspaceAllowedPaths"))

    def mounts(self) -> Dict[str, Path]:
        """Virtual mount names of the allowed paths outside the root (``/x/Other Dir`` -> ``other-dir``)."""
        return mount_names(self.root, self.allowed_paths)

    def to_policy(self) -> Any:
        """The same scope as a ``workspace`` plugin policy layer (``WorkspacePolicy``)."""
        from abstractruntime_workspace import WorkspacePolicy

        return WorkspacePolicy(root=Path(self.root), mode=self.access_mode, allowed=tuple(self.allowed_paths),
                               ignored=tuple(self.ignored_paths))


def mount_names(root: Path, allowed: Sequence[Path]) -> Dict[str, Path]:
    mounts: Dict[str, Path] = {}
    for path in allowed:
        path = Path(path)
        if _inside(path, Path(root)):
            continue
        base = re.sub(r"[^a-z0-9_-]", "-", path.name.lower()).strip("-")[:32] or "mount"
        name = base
        if name in mounts:
            name = f"{base}_{hashlib.sha256(str(path).encode('utf-8')).hexdigest()[:8]}"
            n = 2
            while name in mounts:
                name = f"{base}_{n}"
                n += 1
        mounts[name] = path
    return mounts


def resolve_user_path(*, scope: WorkspaceScope, user_path: Any) -> Path:
    """The absolute path ``user_path`` names under ``scope``; ``ValueError`` when the scope refuses it."""
    raw = str(user_path or "").strip()
    if not raw:
        raise ValidationError("Empty path")
    if raw.startswith("@"):
        raw = raw[1:]
    root = Path(scope.root).resolve(strict=False)
    mode = scope.access_mode
    given = Path(raw).expanduser()
    if given.is_absolute():
        resolved = given.resolve(strict=False)
        if mode == "workspace_only" and not _inside(resolved, root):
            raise ValidationError(f"Path escapes workspace_root: '{raw}'")
        if mode == "workspace_or_allowed" and not (
                _inside(resolved, root) or any(_inside(resolved, Path(a)) for a in scope.allowed_paths)):
            raise ValidationError(f"Path is outside workspace roots: '{raw}'")
    else:
        rel = raw
        while rel.startswith("./"):
            rel = rel[2:]
        parts = Path(rel).parts
        base = root
        if len(parts) >= 2:
            mounts = mount_names(root, scope.allowed_paths) if mode == "workspace_or_allowed" else {}
            if parts[0] in mounts:
                base, parts = Path(mounts[parts[0]]).resolve(strict=False), parts[1:]
            elif parts[0] == root.name and not (root / parts[0]).exists():
                parts = parts[1:]
        resolved = base.joinpath(*parts).resolve(strict=False) if parts else base
        if not _inside(resolved, base):
            raise ValidationError(f"Path escapes workspace_root: '{raw}'")
    for ignored in scope.ignored_paths:
        if _inside(resolved, Path(ignored).resolve(strict=False)):
            raise ValidationError(f"Path is blocked by workspace_ignored_paths: '{resolved}'")
    return resolved


def copy_path_aliases(tool_name: str, args: Mapping[str, Any]) -> Dict[str, Any]:
    """``args`` with an alias (``path``, ``filename``...) copied into the tool's canonical path argument when that
    one is missing or blank."""
    out = dict(args)
    canonical = _ALIASES.get(tool_name)
    if canonical is not None:
        key, aliases = canonical
        if out.get(key) in (None, "", []):
            for alias in aliases:
                if out.get(alias) not in (None, "", []):
                    out[key] = out[alias]
                    break
    return out


def rewrite_tool_arguments(*, tool_name: str, args: Dict[str, Any], scope: WorkspaceScope) -> Dict[str, Any]:
    """``args`` with the tool's path arguments resolved under ``scope`` (see the table in integration-surface
    §3.5); ``ValueError`` for a refused or missing path."""
    out = copy_path_aliases(tool_name, args if isinstance(args, Mapping) else {})
    if tool_name in ROOT_DEFAULTS:
        key = ROOT_DEFAULTS[tool_name]
        value = out.get(key)
        out[key] = str(Path(scope.root)) if value is None or not str(value).strip() else str(
            resolve_user_path(scope=scope, user_path=value))
    elif tool_name in FILE_TOOLS:
        if out.get("file_path") is None or not str(out.get("file_path")).strip():
            raise ValidationError(f"{tool_name} requires file_path")
        out["file_path"] = str(resolve_user_path(scope=scope, user_path=out["file_path"]))
    elif tool_name in ("skim_files", "skim_folders"):
        value = out.get("paths")
        items = [value] if isinstance(value, Path) else _split_paths(value)
        if not items:
            raise ValidationError(f"{tool_name} requires paths")
        out["paths"] = [str(resolve_user_path(scope=scope, user_path=p)) for p in items]
    return out


def _split_paths(value: Any) -> List[str]:
    """Every path a skim tool would read from ``value``: a list, a JSON array, or a string split the way the tools
    split it (``|``, newlines, else commas) -- each one is checked, not the string as one path."""
    items = split_path_argument(value)
    return _path_list(list(items) if isinstance(items, (list, tuple)) else [str(items)] if items else [])


class WorkspaceScopedToolExecutor:
    """Rewrites each call's path arguments under ``scope`` before ``delegate`` runs it; refused calls become error
    results (matched back by call id)."""

    def __init__(self, *, scope: WorkspaceScope, delegate: Any) -> None:
        self.scope = scope
        self.delegate = delegate

    @property
    def executes(self) -> Optional[bool]:
        return getattr(self.delegate, "executes", None)

    def set_timeout_s(self, timeout_s: Optional[float]) -> None:
        setter = getattr(self.delegate, "set_timeout_s", None)
        if callable(setter):
            setter(timeout_s)

    def execute(self, *, tool_calls: List[Dict[str, Any]]) -> Dict[str, Any]:
        order: List[str] = []
        blocked: Dict[str, Dict[str, Any]] = {}
        ready: List[Dict[str, Any]] = []
        for i, call in enumerate(tool_calls):
            call = dict(call) if isinstance(call, Mapping) else {}
            cid = str(call.get("call_id") or call.get("id") or f"call_{i}")
            order.append(cid)
            name = str(call.get("name") or "")
            from .llm_client import parse_arguments

            try:
                call["arguments"] = rewrite_tool_arguments(tool_name=name, args=parse_arguments(
                    call.get("arguments")), scope=self.scope)
            except ValueError as exc:
                blocked[cid] = {"call_id": cid, "name": name, "success": False, "output": None, "error": str(exc)}
                continue
            call["call_id"] = cid
            ready.append(call)
        answer: Dict[str, Any] = {"mode": "executed", "results": []}
        if ready:
            answer = self.delegate.execute(tool_calls=ready)
            if not isinstance(answer, Mapping) or answer.get("mode", "executed") != "executed":
                return answer
        by_id = {str(r.get("call_id")): r for r in answer.get("results") or [] if isinstance(r, Mapping)}
        results = [blocked.get(cid) or by_id.get(cid) or {
            "call_id": cid, "name": "", "success": False, "output": None,
            "error": "Tool result missing (internal error)"} for cid in order]
        return {"mode": "executed", "results": results}


__all__ = ["WorkspaceAccessMode", "WorkspaceScope", "WorkspaceScopedToolExecutor", "rewrite_tool_arguments",
           "resolve_workspace_base_dir", "resolve_user_path"]
