"""Reading ``.flow`` bundles (zip files or unpacked directories) safely.

Safer than the reference (§17 #21): every zip is checked before anything is read -- member names must be safe
relative paths (no absolute paths, drive prefixes, ``..``, links, duplicates), and the number of entries, each
member's size, the total uncompressed size and the compression ratio are bounded. Reads stop at the declared size
even if the zip headers lie. ``unpack_workflow_bundle`` extracts into a temporary directory and renames it into
place: the output directory is never half-written, even if the process is killed.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Union

from abstractruntime_pluginkit.jsonload import JsonTooDeepError, loads_bounded

from .manifest import (
    WorkflowBundleError,
    WorkflowBundleManifest,
    WorkflowBundleNotFoundError,
    check_relpath,
    workflow_bundle_manifest_from_dict,
)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BundleLimits:
    """Limits applied to every zip bundle (defaults are generous for flows, tiny for zip bombs)."""

    max_entries: int = 10_000
    max_member_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0  # uncompressed / compressed, for members larger than 1 MiB
    max_manifest_bytes: int = 4 * 1024 * 1024


DEFAULT_LIMITS = BundleLimits()


def _is_link(info: zipfile.ZipInfo) -> bool:
    mode = (info.external_attr >> 16) & 0xFFFF
    return stat.S_ISLNK(mode) if mode else False


def check_zip(zf: zipfile.ZipFile, limits: BundleLimits = DEFAULT_LIMITS) -> Dict[str, zipfile.ZipInfo]:
    """Validate every member of ``zf``; return the file members by name. Raises :class:`WorkflowBundleError`."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise WorkflowBundleError(f"bundle has {len(infos)} entries; the limit is {limits.max_entries}")
    total = 0
    members: Dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        where = f"bundle member {name!r}"
        if info.is_dir():
            check_relpath(name.rstrip("/"), where)
            continue
        check_relpath(name, where)
        if _is_link(info):
            raise WorkflowBundleError(f"{where}: symbolic links are not allowed")
        if info.flag_bits & 0x1:
            raise WorkflowBundleError(f"{where}: encrypted members are not allowed")
        if name in members:
            raise WorkflowBundleError(f"{where}: duplicate member")
        if info.file_size > limits.max_member_bytes:
            raise WorkflowBundleError(
                f"{where}: {info.file_size} bytes uncompressed exceeds the member limit of {limits.max_member_bytes}")
        if info.file_size > 1024 * 1024 and info.compress_size > 0 and \
                info.file_size / info.compress_size > limits.max_ratio:
            raise WorkflowBundleError(
                f"{where}: compression ratio {info.file_size / info.compress_size:.0f}:1 exceeds "
                f"{limits.max_ratio:.0f}:1 (zip bomb?)")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise WorkflowBundleError(
                f"bundle uncompressed size exceeds the limit of {limits.max_total_bytes} bytes")
        members[name] = info
    return members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: BundleLimits) -> bytes:
    """Read at most the declared size (a lying header cannot make us read more)."""
    cap = min(info.file_size, limits.max_member_bytes)
    with zf.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise WorkflowBundleError(f"bundle member {info.filename!r}: more data than its declared size")
    return data


class WorkflowBundle:
    """An opened bundle: ``source`` (the path), ``manifest``, and ``read_bytes/read_text/read_json(relpath)``."""

    def __init__(self, source: Union[str, Path], manifest: WorkflowBundleManifest, *,
                 limits: BundleLimits = DEFAULT_LIMITS) -> None:
        self.source = Path(source)
        self.manifest = manifest
        self.limits = limits

    @property
    def is_dir(self) -> bool:
        return self.source.is_dir()

    def read_bytes(self, relpath: str) -> bytes:
        if not isinstance(relpath, str) or not relpath:
            raise WorkflowBundleError("relpath must be a non-empty string")
        check_relpath(relpath, f"path {relpath!r}")
        if self.is_dir:
            root = self.source.resolve()
            target = (root / relpath).resolve()
            if target != root and root not in target.parents:
                raise WorkflowBundleError(f"path {relpath!r} resolves outside the bundle")
            if not target.is_file():
                raise WorkflowBundleNotFoundError(f"{relpath} not found in bundle {self.source}")
            if target.stat().st_size > self.limits.max_member_bytes:
                raise WorkflowBundleError(f"{relpath}: larger than the member limit of {self.limits.max_member_bytes}")
            return target.read_bytes()
        with zipfile.ZipFile(self.source) as zf:
            members = check_zip(zf, self.limits)
            info = members.get(relpath.replace("\\", "/"))
            if info is None:
                raise WorkflowBundleNotFoundError(f"{relpath} not found in bundle {self.source}")
            return _read_member(zf, info, self.limits)

    def read_text(self, relpath: str, *, encoding: str = "utf-8") -> str:
        return self.read_bytes(relpath).decode(encoding)

    def read_json(self, relpath: str) -> Any:
        try:
            return loads_bounded(self.read_text(relpath), what=f"{self.source}: {relpath}")
        except JsonTooDeepError as exc:  # refused before parsing
            raise WorkflowBundleError(str(exc)) from None
        except ValueError as exc:
            raise WorkflowBundleError(f"{relpath}: not valid JSON: {exc}") from None

    def flows(self) -> Dict[str, Any]:
        """``{flow_id: VisualFlow JSON}`` for every flow of the manifest."""
        return {fid: self.read_json(rel) for fid, rel in self.manifest.flows.items()}

    def __repr__(self) -> str:
        return f"WorkflowBundle({str(self.source)!r}, {self.manifest.bundle_ref})"


def _manifest_from_bytes(data: bytes, source: Any) -> WorkflowBundleManifest:
    try:
        raw = loads_bounded(data.decode("utf-8"), what=f"{source}: manifest.json")
    except JsonTooDeepError as exc:
        raise WorkflowBundleError(str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkflowBundleError(f"{source}: manifest.json is not valid JSON: {exc}") from None
    return workflow_bundle_manifest_from_dict(raw)


def open_workflow_bundle(source: Union[str, Path], *, limits: BundleLimits = DEFAULT_LIMITS) -> WorkflowBundle:
    """Open a bundle directory or ``.flow`` zip file (missing source or manifest -> ``FileNotFoundError``)."""
    path = Path(source)
    if path.is_dir():
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise WorkflowBundleNotFoundError(f"{path}: no manifest.json")
        if mpath.stat().st_size > limits.max_manifest_bytes:
            raise WorkflowBundleError(f"{mpath}: manifest larger than {limits.max_manifest_bytes} bytes")
        return WorkflowBundle(path, _manifest_from_bytes(mpath.read_bytes(), mpath), limits=limits)
    if not path.is_file():
        raise WorkflowBundleNotFoundError(f"workflow bundle not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = check_zip(zf, limits)
            info = members.get(MANIFEST)
            if info is None:
                raise WorkflowBundleNotFoundError(f"{path}: no manifest.json in bundle")
            if info.file_size > limits.max_manifest_bytes:
                raise WorkflowBundleError(f"{path}: manifest larger than {limits.max_manifest_bytes} bytes")
            data = _read_member(zf, info, limits)
    except zipfile.BadZipFile as exc:
        raise WorkflowBundleError(f"{path}: not a zip file ({exc})") from None
    return WorkflowBundle(path, _manifest_from_bytes(data, path), limits=limits)


def inspect_workflow_bundle(*, bundle_path: Union[str, Path]) -> WorkflowBundleManifest:
    return open_workflow_bundle(bundle_path).manifest


def unpack_workflow_bundle(*, bundle_path: Union[str, Path], out_dir: Union[str, Path],
                           limits: BundleLimits = DEFAULT_LIMITS) -> Path:
    """Extract a ``.flow`` file into ``out_dir`` (created; must not exist or be empty), all or nothing."""
    src = Path(bundle_path)
    if not src.is_file():
        raise WorkflowBundleNotFoundError(f"workflow bundle file not found: {src}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkflowBundleError(f"{out}: exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".unpacking", dir=out.parent))
    try:
        try:
            zf = zipfile.ZipFile(src)
        except zipfile.BadZipFile as exc:
            raise WorkflowBundleError(f"{src}: not a zip file ({exc})") from None
        with zf:
            members = check_zip(zf, limits)
            if MANIFEST not in members:
                raise WorkflowBundleNotFoundError(f"{src}: no manifest.json in bundle")
            _manifest_from_bytes(_read_member(zf, members[MANIFEST], limits), src)
            root = tmp.resolve()
            for name, info in members.items():
                target = (root / name).resolve()
                if root not in target.parents:
                    raise WorkflowBundleError(f"bundle member {name!r} resolves outside the output directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as fh:
                    fh.write(_read_member(zf, info, limits))
        try:
            os.rename(tmp, out)  # POSIX: atomically replaces an empty directory
        except OSError:
            if not out.exists():
                raise
            out.rmdir()
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def bundle_from_bytes(content: bytes, *, limits: BundleLimits = DEFAULT_LIMITS) -> WorkflowBundleManifest:
    """Validate in-memory ``.flow`` bytes and return the manifest."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            members = check_zip(zf, limits)
            info = members.get(MANIFEST)
            if info is None:
                raise WorkflowBundleError("bundle has no manifest.json")
            return _manifest_from_bytes(_read_member(zf, info, limits), "bundle")
    except zipfile.BadZipFile as exc:
        raise WorkflowBundleError(f"not a zip file ({exc})") from None


def verify_bundle_contents(bundle: WorkflowBundle) -> None:
    """Every flow the manifest names is present and is JSON with the right ``id``."""
    for fid, rel in bundle.manifest.flows.items():
        try:
            data = bundle.read_json(rel)
        except FileNotFoundError:
            raise WorkflowBundleError(f"manifest.flows[{fid!r}]: {rel} is missing from the bundle") from None
        if not isinstance(data, dict):
            raise WorkflowBundleError(f"manifest.flows[{fid!r}]: {rel} is not a JSON object")
    for i, ep in enumerate(bundle.manifest.entrypoints):
        if ep.flow_id not in bundle.manifest.flows:
            raise WorkflowBundleError(
                f"manifest.entrypoints[{i}].flow_id: {ep.flow_id!r} has no entry in manifest.flows")


__all__ = [
    "WorkflowBundle", "open_workflow_bundle", "inspect_workflow_bundle", "unpack_workflow_bundle", "BundleLimits",
    "DEFAULT_LIMITS", "check_zip", "bundle_from_bytes", "verify_bundle_contents",
]
