"""A directory of installed bundles, ``<bundle_id>@<bundle_version>.flow`` (spec Part 1.4).

Installs are all-or-nothing: the bundle is written to a hidden temporary file in the directory and fsynced, then
validated (its name comes from its manifest), renamed into place and the directory fsynced, with the helpers of
:mod:`abstractruntime_storekit.files` (a crash leaves at most a hidden ``.*.tmp`` file, which ``scan`` ignores).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Dict, List, Optional, Tuple, Union

from abstractruntime.errors import AbstractRuntimeError
from abstractruntime.logs import get_logger
from abstractruntime_storekit.files import fsync_dir, temp_path

from .manifest import WorkflowBundleManifest
from .reader import bundle_from_bytes, open_workflow_bundle, verify_bundle_contents

log = get_logger("abstractruntime.bundles")


class WorkflowBundleRegistryError(AbstractRuntimeError, ValueError):
    """A registry operation failed (unknown bundle/version/entrypoint, invalid id, existing target...)."""


def default_workflow_bundles_dir() -> Path:
    for env in ("ABSTRACTFRAMEWORK_WORKFLOWS_DIR", "ABSTRACTGATEWAY_FLOWS_DIR", "ABSTRACTFLOW_PUBLISH_DIR",
                "ABSTRACTFLOW_FLOWS_DIR"):
        value = os.environ.get(env)
        if value and value.strip():
            return Path(value).expanduser()
    local = Path("flows") / "bundles"
    if local.is_dir():
        return local
    return Path.home() / ".abstractframework" / "workflows"


def _sanitize(value: str, pattern: str) -> str:
    text = re.sub(pattern, "-", str(value or ""))
    text = re.sub(r"-+", "-", text)
    return text.strip("-")


def sanitize_bundle_id(value: str) -> str:
    return _sanitize(value, r"[^A-Za-z0-9_-]+")


def sanitize_bundle_version(value: str) -> str:
    return _sanitize(value, r"[^A-Za-z0-9_.-]+")


@dataclass
class InstalledWorkflowBundle:
    bundle_id: str
    bundle_version: str
    path: Path
    manifest: WorkflowBundleManifest
    sha256: Optional[str] = None

    @property
    def bundle_ref(self) -> str:
        return f"{self.bundle_id}@{self.bundle_version}"


@dataclass
class WorkflowEntrypointRef:
    bundle_id: str
    bundle_version: str
    flow_id: str
    name: str = ""
    description: str = ""
    interfaces: List[str] = field(default_factory=list)
    is_default: bool = False

    @property
    def bundle_ref(self) -> str:
        return f"{self.bundle_id}@{self.bundle_version}"

    @property
    def workflow_id(self) -> str:
        return f"{self.bundle_id}@{self.bundle_version}:{self.flow_id}"


def _int_version(version: str) -> Optional[Tuple[int, ...]]:
    parts = version.split(".")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts]
    while len(nums) < 3:
        nums.append(0)
    return tuple(nums)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WorkflowBundleRegistry:
    def __init__(self, bundles_dir: Optional[Union[str, Path]] = None) -> None:
        self.bundles_dir = Path(bundles_dir) if bundles_dir is not None else default_workflow_bundles_dir()

    def ensure_dir(self) -> Path:
        self.bundles_dir.mkdir(parents=True, exist_ok=True)
        return self.bundles_dir

    # --- listing --------------------------------------------------------------------------------------------------
    def scan(self) -> List[InstalledWorkflowBundle]:
        if not self.bundles_dir.is_dir():
            return []
        out = []
        for path in sorted(self.bundles_dir.glob("*.flow")):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                manifest = open_workflow_bundle(path).manifest
            except Exception as exc:  # best effort: one broken file must not hide the others
                log.warning("bundle_unreadable", path=str(path), error=f"{type(exc).__name__}: {exc}")
                continue
            if not manifest.bundle_id:
                continue
            out.append(InstalledWorkflowBundle(manifest.bundle_id, manifest.bundle_version, path, manifest))
        return out

    def bundles_by_id(self) -> Dict[str, Dict[str, InstalledWorkflowBundle]]:
        out: Dict[str, Dict[str, InstalledWorkflowBundle]] = {}
        for b in self.scan():
            out.setdefault(b.bundle_id, {})[b.bundle_version] = b
        return out

    @staticmethod
    def _latest(versions: Dict[str, InstalledWorkflowBundle]) -> InstalledWorkflowBundle:
        parsed = {v: _int_version(v) for v in versions}
        if all(p is not None for p in parsed.values()):
            return versions[max(versions, key=lambda v: parsed[v])]
        return versions[max(versions, key=lambda v: (versions[v].manifest.created_at or "", v))]

    def resolve_bundle(self, ref: str) -> InstalledWorkflowBundle:
        text = (ref or "").strip()
        if text.endswith(".flow") and "/" not in text and "\\" not in text:
            text = text[:-len(".flow")]
        bundle_id, _, version = text.partition("@")
        by_id = self.bundles_by_id()
        versions = by_id.get(bundle_id)
        if not versions:
            known = ", ".join(sorted(by_id)) or "none installed"
            raise WorkflowBundleRegistryError(f"Unknown bundle {bundle_id!r} (installed: {known})")
        if version:
            if version not in versions:
                raise WorkflowBundleRegistryError(
                    f"Bundle {bundle_id!r} has no version {version!r} (installed: {', '.join(sorted(versions))})")
            return versions[version]
        return self._latest(versions)

    def _refs(self, b: InstalledWorkflowBundle) -> List[WorkflowEntrypointRef]:
        m = b.manifest
        default = m.default_entrypoint or (m.entrypoints[0].flow_id if m.entrypoints else None)
        return [WorkflowEntrypointRef(b.bundle_id, b.bundle_version, ep.flow_id, ep.name or "", ep.description,
                                      list(ep.interfaces), ep.flow_id == default) for ep in m.entrypoints]

    def resolve_entrypoint(self, ref: str, *, interface: Optional[str] = None) -> WorkflowEntrypointRef:
        text = (ref or "").strip()
        if not text:
            raise WorkflowBundleRegistryError("empty entrypoint reference")
        bundle: Optional[InstalledWorkflowBundle] = None
        flow_id: Optional[str] = None
        if text.endswith(".flow") and "/" not in text and (self.bundles_dir / text).is_file():
            path = self.bundles_dir / text
            bundle = next((b for b in self.scan() if b.path.name == path.name), None)
        if bundle is None:
            head, sep, tail = text.partition(":")
            try:
                bundle = self.resolve_bundle(head)
                flow_id = tail if sep else None
            except WorkflowBundleRegistryError:
                matches = [(b, r) for b in (self._latest(v) for v in self.bundles_by_id().values())
                           for r in self._refs(b) if r.name and r.name.lower() == text.lower()]
                if len(matches) != 1:
                    reason = "matches several bundles" if matches else "matches no bundle, version or entrypoint name"
                    raise WorkflowBundleRegistryError(f"Entrypoint reference {ref!r} {reason}") from None
                bundle, chosen = matches[0]
                flow_id = chosen.flow_id
        refs = self._refs(bundle)
        if flow_id:
            match = [r for r in refs if r.flow_id == flow_id]
            if not match:
                raise WorkflowBundleRegistryError(
                    f"Bundle {bundle.bundle_ref} has no entrypoint {flow_id!r} "
                    f"(entrypoints: {', '.join(r.flow_id for r in refs)})")
            chosen = match[0]
        else:
            chosen = next((r for r in refs if r.is_default), refs[0])
        if interface is not None and interface not in chosen.interfaces:
            raise WorkflowBundleRegistryError(
                f"Entrypoint {chosen.workflow_id} does not implement interface {interface!r}")
        return chosen

    def list_entrypoints(self, *, interface: Optional[str] = None, latest_only: bool = True
                         ) -> List[WorkflowEntrypointRef]:
        out = []
        for versions in self.bundles_by_id().values():
            chosen = [self._latest(versions)] if latest_only else list(versions.values())
            for b in chosen:
                out += [r for r in self._refs(b) if interface is None or interface in r.interfaces]
        return sorted(out, key=lambda r: (r.bundle_id, r.bundle_version, r.name or r.flow_id))

    # --- install / remove -----------------------------------------------------------------------------------------
    def _target(self, manifest: WorkflowBundleManifest) -> Path:
        if sanitize_bundle_id(manifest.bundle_id) != manifest.bundle_id:
            raise WorkflowBundleRegistryError(
                f"manifest.bundle_id {manifest.bundle_id!r} is not a safe id (use "
                f"{sanitize_bundle_id(manifest.bundle_id)!r}: letters, digits, '_' and '-')")
        if sanitize_bundle_version(manifest.bundle_version) != manifest.bundle_version:
            raise WorkflowBundleRegistryError(
                f"manifest.bundle_version {manifest.bundle_version!r} is not a safe version (use "
                f"{sanitize_bundle_version(manifest.bundle_version)!r})")
        return self.bundles_dir / f"{manifest.bundle_id}@{manifest.bundle_version}.flow"

    def _commit(self, tmp: Path, manifest: WorkflowBundleManifest, overwrite: bool) -> InstalledWorkflowBundle:
        target = self._target(manifest)
        if target.exists() and not overwrite:
            raise WorkflowBundleRegistryError(f"{manifest.bundle_ref} is already installed ({target}); "
                                              f"pass overwrite=True to replace it")
        digest = _sha256(tmp)
        os.replace(tmp, target)
        fsync_dir(self.bundles_dir)
        return InstalledWorkflowBundle(manifest.bundle_id, manifest.bundle_version, target, manifest, digest)

    def _install_via_temp(self, write: Callable[[IO[bytes]], None], overwrite: bool) -> InstalledWorkflowBundle:
        """``write`` the bundle to a hidden temporary file in the directory (fsynced), validate the bytes written,
        and rename it to its installed name; on any failure the temporary file is removed."""
        self.ensure_dir()
        tmp = temp_path(self.bundles_dir / "install.flow")
        try:
            with open(tmp, "xb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            bundle = open_workflow_bundle(tmp)  # validate the bytes we are about to install
            verify_bundle_contents(bundle)
            return self._commit(tmp, bundle.manifest, overwrite)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def install(self, source: Union[str, Path], *, overwrite: bool = False) -> InstalledWorkflowBundle:
        src = Path(source)
        if not src.is_file():
            raise WorkflowBundleRegistryError(f"bundle file not found: {src}")

        def copy(out: IO[bytes]) -> None:
            with open(src, "rb") as fh:
                shutil.copyfileobj(fh, out)

        return self._install_via_temp(copy, overwrite)

    def install_bytes(self, content: bytes, *, filename_hint: str = "upload.flow", overwrite: bool = False
                      ) -> InstalledWorkflowBundle:
        if not content:
            raise WorkflowBundleRegistryError(f"empty bundle content ({filename_hint})")
        bundle_from_bytes(bytes(content))  # fail fast before touching the directory
        return self._install_via_temp(lambda out: out.write(content), overwrite)

    def remove(self, ref: str) -> int:
        text = (ref or "").strip()
        if text.endswith(".flow") and "/" not in text:
            text = text[:-len(".flow")]
        bundle_id, _, version = text.partition("@")
        count = 0
        for b in self.scan():
            if b.bundle_id == bundle_id and (not version or b.bundle_version == version):
                b.path.unlink(missing_ok=True)
                count += 1
        return count


__all__ = [
    "WorkflowBundleRegistry", "WorkflowBundleRegistryError", "InstalledWorkflowBundle", "WorkflowEntrypointRef",
    "default_workflow_bundles_dir", "sanitize_bundle_id", "sanitize_bundle_version",
]
