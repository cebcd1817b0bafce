"""The ``manifest.json`` of a ``.flow`` bundle (spec Part 1.2): model, validation, (de)serialisation.

Validation errors name the field (``manifest.entrypoints[1].flow_id: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from abstractruntime.errors import AbstractRuntimeError

WORKFLOW_BUNDLE_FORMAT_VERSION_V1 = "1"


class WorkflowBundleError(AbstractRuntimeError, ValueError):
    """A bundle (zip, directory or manifest) is invalid or unsafe."""


class WorkflowBundleNotFoundError(AbstractRuntimeError, FileNotFoundError):
    """A bundle, its ``manifest.json``, a file it names, or a flow file to pack does not exist (a
    ``FileNotFoundError``, as the reference raised)."""


def check_relpath(path: Any, where: str) -> str:
    """A safe relative path: non-empty, not absolute, no drive prefix, no ``.``/``..`` segments."""
    if not isinstance(path, str) or not path.strip():
        raise WorkflowBundleError(f"{where}: must be a non-empty relative path, got {path!r}")
    text = path.replace("\\", "/")
    if text.startswith("/") or path.startswith("\\"):
        raise WorkflowBundleError(f"{where}: absolute paths are not allowed ({path!r})")
    segments = text.split("/")
    if ":" in segments[0]:
        raise WorkflowBundleError(f"{where}: drive prefixes are not allowed ({path!r})")
    for seg in segments:
        if seg in (".", ".."):
            raise WorkflowBundleError(f"{where}: '.' and '..' segments are not allowed ({path!r})")
        if seg == "":
            raise WorkflowBundleError(f"{where}: empty path segment in {path!r}")
        if "\x00" in seg:
            raise WorkflowBundleError(f"{where}: NUL byte in {path!r}")
    return path


@dataclass
class WorkflowBundleEntrypoint:
    flow_id: str
    name: Optional[str] = None
    description: str = ""
    interfaces: List[str] = field(default_factory=list)


@dataclass
class WorkflowBundleManifest:
    bundle_id: str
    bundle_format_version: str = WORKFLOW_BUNDLE_FORMAT_VERSION_V1
    bundle_version: str = "0.0.0"
    created_at: str = ""
    entrypoints: List[WorkflowBundleEntrypoint] = field(default_factory=list)
    default_entrypoint: Optional[str] = None
    flows: Dict[str, str] = field(default_factory=dict)
    artifacts: Dict[str, str] = field(default_factory=dict)
    assets: Dict[str, str] = field(default_factory=dict)
    metadata: Dict[str, Any] = field(default_factory=dict)

    def flow_path_for(self, flow_id: str) -> Optional[str]:
        return self.flows.get(flow_id)

    def artifact_path_for(self, flow_id: str) -> Optional[str]:
        return self.artifacts.get(flow_id)

    @property
    def bundle_ref(self) -> str:
        return f"{self.bundle_id}@{self.bundle_version}"

    def validate(self) -> "WorkflowBundleManifest":
        if self.bundle_format_version != WORKFLOW_BUNDLE_FORMAT_VERSION_V1:
            raise WorkflowBundleError(
                f"manifest.bundle_format_version: unsupported {self.bundle_format_version!r} "
                f"(expected {WORKFLOW_BUNDLE_FORMAT_VERSION_V1!r})")
        if not isinstance(self.bundle_id, str) or not self.bundle_id.strip():
            raise WorkflowBundleError("manifest.bundle_id: must be a non-empty string")
        if not isinstance(self.bundle_version, str) or not self.bundle_version.strip():
            raise WorkflowBundleError("manifest.bundle_version: must be a non-empty string")
        if not isinstance(self.created_at, str):
            raise WorkflowBundleError("manifest.created_at: must be a string")
        if not isinstance(self.entrypoints, list) or not self.entrypoints:
            raise WorkflowBundleError("manifest.entrypoints: must be a non-empty list")
        seen = set()
        for i, ep in enumerate(self.entrypoints):
            where = f"manifest.entrypoints[{i}]"
            if not isinstance(ep, WorkflowBundleEntrypoint):
                raise WorkflowBundleError(f"{where}: must be an entrypoint object")
            if not isinstance(ep.flow_id, str) or not ep.flow_id.strip():
                raise WorkflowBundleError(f"{where}.flow_id: must be a non-empty string")
            if ep.flow_id in seen:
                raise WorkflowBundleError(f"{where}.flow_id: duplicate entrypoint {ep.flow_id!r}")
            seen.add(ep.flow_id)
            if ep.name is not None and not isinstance(ep.name, str):
                raise WorkflowBundleError(f"{where}.name: must be a string or null")
            if not isinstance(ep.description, str):
                raise WorkflowBundleError(f"{where}.description: must be a string")
            if not isinstance(ep.interfaces, list) or not all(isinstance(x, str) for x in ep.interfaces):
                raise WorkflowBundleError(f"{where}.interfaces: must be a list of strings")
        if self.default_entrypoint is not None:
            if not isinstance(self.default_entrypoint, str):
                raise WorkflowBundleError("manifest.default_entrypoint: must be a string or null")
            if self.default_entrypoint.strip() and self.default_entrypoint not in seen:
                raise WorkflowBundleError(
                    f"manifest.default_entrypoint: {self.default_entrypoint!r} is not one of the entrypoints "
                    f"({', '.join(sorted(seen))})")
        for name in ("flows", "artifacts", "assets"):
            table = getattr(self, name)
            if not isinstance(table, dict):
                raise WorkflowBundleError(f"manifest.{name}: must be an object")
            for key, rel in table.items():
                if not isinstance(key, str) or not key.strip():
                    raise WorkflowBundleError(f"manifest.{name}: keys must be non-empty strings, got {key!r}")
                check_relpath(rel, f"manifest.{name}[{key!r}]")
        if not isinstance(self.metadata, dict):
            raise WorkflowBundleError("manifest.metadata: must be an object")
        return self


def _first_key(d: Dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def workflow_bundle_manifest_from_dict(d: Any) -> WorkflowBundleManifest:
    """Read a manifest dict (camelCase aliases accepted) and validate it."""
    if not isinstance(d, dict):
        raise WorkflowBundleError(f"manifest: must be a JSON object, got {type(d).__name__}")
    fmt = _first_key(d, "bundle_format_version", "bundleFormatVersion")
    bundle_id = _first_key(d, "bundle_id", "bundleId")
    version = _first_key(d, "bundle_version", "bundleVersion")
    created = _first_key(d, "created_at", "createdAt")
    default = _first_key(d, "default_entrypoint", "defaultEntrypoint", "default_entrypoint_flow_id",
                         "defaultEntrypointFlowId")
    raw_eps = d.get("entrypoints")
    entrypoints: List[WorkflowBundleEntrypoint] = []
    if raw_eps is not None and not isinstance(raw_eps, list):
        raise WorkflowBundleError("manifest.entrypoints: must be a list")
    for ep in raw_eps or []:
        if not isinstance(ep, dict):
            continue
        name = ep.get("name")
        name = name.strip() if isinstance(name, str) and name.strip() else None
        interfaces = ep.get("interfaces")
        interfaces = [i.strip() for i in interfaces if isinstance(i, str) and i.strip()] \
            if isinstance(interfaces, list) else []
        description = ep.get("description")
        entrypoints.append(WorkflowBundleEntrypoint(
            flow_id=_first_key(ep, "flow_id", "flowId"), name=name,
            description=description if isinstance(description, str) else ("" if description is None else description),
            interfaces=interfaces))
    if fmt is None:
        raise WorkflowBundleError("manifest.bundle_format_version: missing")
    if bundle_id is None:
        raise WorkflowBundleError("manifest.bundle_id: missing")
    manifest = WorkflowBundleManifest(
        bundle_format_version=str(fmt) if isinstance(fmt, (str, int)) and not isinstance(fmt, bool) else fmt,
        bundle_id=bundle_id,
        bundle_version=version if version is not None else "0.0.0",
        created_at=created if created is not None else "",
        entrypoints=entrypoints,
        default_entrypoint=default if not (isinstance(default, str) and not default.strip()) else None,
        flows=dict(d["flows"]) if isinstance(d.get("flows"), dict) else {},
        artifacts=dict(d["artifacts"]) if isinstance(d.get("artifacts"), dict) else {},
        assets=dict(d["assets"]) if isinstance(d.get("assets"), dict) else {},
        metadata=dict(d["metadata"]) if isinstance(d.get("metadata"), dict) else {},
    )
    return manifest.validate()


def workflow_bundle_manifest_to_dict(m: WorkflowBundleManifest) -> Dict[str, Any]:
    m.validate()
    out: Dict[str, Any] = {
        "bundle_format_version": m.bundle_format_version,
        "bundle_id": m.bundle_id,
        "bundle_version": m.bundle_version,
        "created_at": m.created_at,
        "entrypoints": [{"flow_id": e.flow_id, "name": e.name, "description": e.description,
                         "interfaces": list(e.interfaces)} for e in m.entrypoints],
        "flows": dict(m.flows),
        "artifacts": dict(m.artifacts),
        "assets": dict(m.assets),
        "metadata": dict(m.metadata),
    }
    if m.default_entrypoint is not None:
        out["default_entrypoint"] = m.default_entrypoint
    return out


__all__ = [
    "WORKFLOW_BUNDLE_FORMAT_VERSION_V1", "WorkflowBundleError", "WorkflowBundleNotFoundError",
    "WorkflowBundleEntrypoint", "WorkflowBundleManifest", "workflow_bundle_manifest_from_dict", "workflow_bundle_manifest_to_dict", "check_relpath",
]
