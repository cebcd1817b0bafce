"""Artifact stores: large payloads kept beside the run, referenced from JSON by ``{"$artifact": id}``.

Reference API (AbstractRuntime 0.4.2, ``abstractruntime.storage.artifacts``): :class:`ArtifactMetadata`,
:class:`Artifact`, the :class:`ArtifactStore` ABC with its concrete helpers, :class:`InMemoryArtifactStore`,
:class:`FileArtifactStore` and the ``$artifact`` reference helpers.

``FileArtifactStore(base_dir)`` layout::

    base_dir/artifacts/blobs/<blob_id>.bin        content, deduplicated by full sha256 (shared across runs)
    base_dir/artifacts/refs/<artifact_id>.meta    JSON metadata of one artifact (names its blob)
    base_dir/artifacts/<artifact_id>.bin|.meta    legacy layout: read, never written

Every file is written atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves either
the old file or the new one. Deleting an artifact removes its metadata only; :meth:`FileArtifactStore.gc` removes
blobs no metadata names any more. ``store`` holds a shared lock on ``artifacts/.lock`` while it writes a blob and its
metadata and ``gc`` an exclusive one (``flock``, across threads and processes), so a collection never removes the
blob of a ``store`` in progress.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

try:  # POSIX: store/gc exclusion across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: pass gc(grace_seconds=...) instead
    fcntl = None  # type: ignore[assignment]

import attrs
from attrs import define, field

from abstractruntime import codec
from abstractruntime.logs import get_logger
from abstractruntime.errors import InvalidTypeError, ValidationError
from abstractruntime.models import utc_now_iso
from abstractruntime_storekit.files import write_atomic  # re-exported: the one atomic file write

log = get_logger("abstractruntime.artifacts")

_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
ARTIFACT_REF_KEY = "$artifact"


# --- ids and references -------------------------------------------------------------------------------------------
def compute_blob_id(content: bytes) -> str:
    """The full sha256 hex digest of the content (the blob's name in a ``FileArtifactStore``)."""
    return hashlib.sha256(bytes(content)).hexdigest()


def compute_artifact_id(content: bytes, *, run_id: Optional[str] = None) -> str:
    """``sha256(content)[:32]``, or ``sha256(run_id + "\\0" + content)[:32]`` for a non-blank run id."""
    rid = run_id.strip() if isinstance(run_id, str) else ""
    h = hashlib.sha256()
    if rid:
        h.update(rid.encode("utf-8") + b"\0")
    h.update(bytes(content))
    return h.hexdigest()[:32]


def validate_artifact_id(artifact_id: Any) -> str:
    """Return ``artifact_id`` if it matches ``^[A-Za-z0-9_-]+$`` (the whole string); else raise a ``ValueError``
    (:class:`~abstractruntime.errors.ValidationError`, worded as the reference's; blocks traversal), or a
    ``TypeError`` for a value that is not a string."""
    if artifact_id is None or artifact_id == "":
        raise ValidationError("artifact_id cannot be empty")
    if not isinstance(artifact_id, str):
        raise InvalidTypeError(f"artifact_id must be a string, got {type(artifact_id).__name__}")
    if not _ID_RE.fullmatch(artifact_id):
        raise ValidationError(
            f"Invalid artifact_id {artifact_id!r}: must contain only alphanumeric characters, hyphens, and underscores"
        )
    return artifact_id


def artifact_ref(artifact_id: str) -> Dict[str, str]:
    return {ARTIFACT_REF_KEY: artifact_id}


def is_artifact_ref(value: Any) -> bool:
    return isinstance(value, dict) and ARTIFACT_REF_KEY in value


def get_artifact_id(ref: Mapping[str, Any]) -> str:
    """The id of a ``{"$artifact": id}`` reference (``KeyError`` if it is not one)."""
    return ref[ARTIFACT_REF_KEY]


def resolve_artifact(ref: Any, store: "ArtifactStore") -> Optional["Artifact"]:
    """Load the artifact a reference names (None for a value that is not a reference, or a missing artifact)."""
    if not is_artifact_ref(ref):
        return None
    return store.load(get_artifact_id(ref))


def _tags(tags: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items() if v is not None}


# --- models -------------------------------------------------------------------------------------------------------
@define
class ArtifactMetadata:
    artifact_id: str
    content_type: str
    size_bytes: int
    created_at: str
    blob_id: Optional[str] = None
    run_id: Optional[str] = None
    tags: Dict[str, str] = field(factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        data = codec.converter.unstructure(self)
        data["tags"] = dict(self.tags or {})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArtifactMetadata":
        d = dict(data)
        d["tags"] = _tags(d.get("tags") if isinstance(d.get("tags"), Mapping) else None)
        d.setdefault("content_type", "application/octet-stream")
        d.setdefault("size_bytes", 0)
        d.setdefault("created_at", "")
        return codec.converter.structure(d, cls)

    def copy(self) -> "ArtifactMetadata":
        return attrs.evolve(self, tags=dict(self.tags or {}))


@define
class Artifact:
    metadata: ArtifactMetadata
    content: bytes

    @property
    def artifact_id(self) -> str:
        return self.metadata.artifact_id

    @property
    def content_type(self) -> str:
        return self.metadata.content_type

    def as_text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding)

    def as_json(self) -> Any:
        return json.loads(self.content.decode("utf-8"))


# --- the interface ------------------------------------------------------------------------------------------------
class ArtifactStore(abc.ABC):
    """Reference interface. ``store`` with an explicit or repeated ``artifact_id`` overwrites."""

    @abc.abstractmethod
    def store(
        self,
        content: bytes,
        *,
        content_type: str = "application/octet-stream",
        run_id: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
        artifact_id: Optional[str] = None,
    ) -> ArtifactMetadata: ...

    @abc.abstractmethod
    def load(self, artifact_id: str) -> Optional[Artifact]: ...

    @abc.abstractmethod
    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]: ...

    @abc.abstractmethod
    def exists(self, artifact_id: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, artifact_id: str) -> bool: ...

    @abc.abstractmethod
    def list_by_run(self, run_id: str) -> List[ArtifactMetadata]: ...

    @abc.abstractmethod
    def list_all(self, *, limit: int = 1000) -> List[ArtifactMetadata]: ...

    # --- concrete helpers ---------------------------------------------------------------------------------------
    def delete_by_run(self, run_id: str) -> int:
        return sum(1 for meta in self.list_by_run(run_id) if self.delete(meta.artifact_id))

    def search(
        self,
        *,
        run_id: Optional[str] = None,
        content_type: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
        limit: int = 1000,
    ) -> List[ArtifactMetadata]:
        """Exact-match filters (every given tag must match), newest ``created_at`` first."""
        found = self.list_by_run(run_id) if run_id is not None else self.list_all(limit=0)
        wanted = _tags(tags)
        out = [
            m for m in found
            if (content_type is None or m.content_type == content_type)
            and all((m.tags or {}).get(k) == v for k, v in wanted.items())
        ]
        out.sort(key=lambda m: (m.created_at or "", m.artifact_id), reverse=True)
        return out if int(limit) <= 0 else out[: int(limit)]

    def store_text(
        self,
        text: str,
        *,
        content_type: str = "text/plain",
        encoding: str = "utf-8",
        run_id: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
    ) -> ArtifactMetadata:
        return self.store(text.encode(encoding), content_type=content_type, run_id=run_id, tags=tags)

    def store_json(
        self, data: Any, *, run_id: Optional[str] = None, tags: Optional[Dict[str, str]] = None
    ) -> ArtifactMetadata:
        content = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.store(content, content_type="application/json", run_id=run_id, tags=tags)

    def load_text(self, artifact_id: str, encoding: str = "utf-8") -> Optional[str]:
        artifact = self.load(artifact_id)
        return artifact.as_text(encoding) if artifact is not None else None

    def load_json(self, artifact_id: str) -> Any:
        artifact = self.load(artifact_id)
        return artifact.as_json() if artifact is not None else None


def _newest_first(metas: List[ArtifactMetadata], limit: int) -> List[ArtifactMetadata]:
    metas.sort(key=lambda m: (m.created_at or "", m.artifact_id), reverse=True)
    return metas if int(limit) <= 0 else metas[: int(limit)]


# --- in memory ----------------------------------------------------------------------------------------------------
class InMemoryArtifactStore(ArtifactStore):
    """Artifacts in a dict. Ids are not validated (reference behaviour); returned metadata are copies."""

    def __init__(self) -> None:
        self._items: Dict[str, Artifact] = {}
        self._lock = threading.RLock()

    def store(self, content: bytes, *, content_type: str = "application/octet-stream", run_id: Optional[str] = None,
              tags: Optional[Dict[str, str]] = None, artifact_id: Optional[str] = None) -> ArtifactMetadata:
        content = bytes(content)
        aid = artifact_id if artifact_id is not None else compute_artifact_id(content, run_id=run_id)
        meta = ArtifactMetadata(artifact_id=aid, content_type=content_type, size_bytes=len(content),
                                created_at=utc_now_iso(), blob_id=compute_blob_id(content), run_id=run_id,
                                tags=_tags(tags))
        with self._lock:
            self._items[aid] = Artifact(metadata=meta, content=content)
        return meta.copy()

    def load(self, artifact_id: str) -> Optional[Artifact]:
        with self._lock:
            item = self._items.get(artifact_id)
        return Artifact(metadata=item.metadata.copy(), content=item.content) if item is not None else None

    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]:
        with self._lock:
            item = self._items.get(artifact_id)
        return item.metadata.copy() if item is not None else None

    def exists(self, artifact_id: str) -> bool:
        with self._lock:
            return artifact_id in self._items

    def delete(self, artifact_id: str) -> bool:
        with self._lock:
            return self._items.pop(artifact_id, None) is not None

    def list_by_run(self, run_id: str) -> List[ArtifactMetadata]:
        with self._lock:
            return [a.metadata.copy() for a in self._items.values() if a.metadata.run_id == run_id]

    def list_all(self, *, limit: int = 1000) -> List[ArtifactMetadata]:
        with self._lock:
            metas = [a.metadata.copy() for a in self._items.values()]
        return _newest_first(metas, limit)


# --- files --------------------------------------------------------------------------------------------------------
class FileArtifactStore(ArtifactStore):
    """Artifacts as files under ``base_dir/artifacts`` (blobs deduplicated by sha256; see the module docstring)."""

    def __init__(self, base_dir: Union[str, os.PathLike], *, fsync: bool = True) -> None:
        self._base = Path(base_dir).expanduser()
        self._dir = self._base / "artifacts"
        self._blobs = self._dir / "blobs"
        self._refs = self._dir / "refs"
        self._fsync = bool(fsync)
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._refs.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileArtifactStore({str(self._base)!r})"

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """``store`` (shared) and ``gc`` (exclusive) exclude each other, across threads and processes."""
        if fcntl is None:
            yield
            return
        try:
            fd = os.open(str(self._dir / ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only directory: nothing can be stored, nothing to guard
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    @property
    def base_dir(self) -> Path:
        return self._base

    @property
    def artifacts_dir(self) -> Path:
        return self._dir

    # --- paths --------------------------------------------------------------------------------------------------
    def _ref_path(self, artifact_id: str) -> Path:
        return self._refs / f"{validate_artifact_id(artifact_id)}.meta"

    def _blob_path(self, blob_id: str) -> Path:
        return self._blobs / f"{validate_artifact_id(blob_id)}.bin"

    def _legacy_paths(self, artifact_id: str) -> tuple:
        aid = validate_artifact_id(artifact_id)
        return self._dir / f"{aid}.meta", self._dir / f"{aid}.bin"

    # --- reading ------------------------------------------------------------------------------------------------
    @staticmethod
    def _read_meta(path: Path) -> Optional[ArtifactMetadata]:
        try:
            data = json.loads(path.read_bytes())
            meta = ArtifactMetadata.from_dict(data)
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.warning("artifact_meta_unreadable", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return None
        return meta

    def _meta_and_blob(self, artifact_id: str) -> tuple:
        """``(metadata, blob path)`` of an artifact, new layout first; ``(None, None)`` when unknown."""
        meta = self._read_meta(self._ref_path(artifact_id))
        legacy_meta, legacy_bin = self._legacy_paths(artifact_id)
        if meta is None:
            meta = self._read_meta(legacy_meta)
            if meta is None:
                return None, None
            return meta, legacy_bin
        if meta.blob_id:
            return meta, self._blob_path(meta.blob_id)
        return meta, legacy_bin

    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]:
        return self._meta_and_blob(artifact_id)[0]

    def load(self, artifact_id: str) -> Optional[Artifact]:
        meta, blob = self._meta_and_blob(artifact_id)
        if meta is None:
            return None
        try:
            content = blob.read_bytes()
        except FileNotFoundError:
            return None
        return Artifact(metadata=meta, content=content)

    def exists(self, artifact_id: str) -> bool:
        legacy_meta, _ = self._legacy_paths(artifact_id)
        return self._ref_path(artifact_id).is_file() or legacy_meta.is_file()

    def _all_meta_paths(self) -> Iterator[Path]:
        seen = set()
        for directory in (self._refs, self._dir):
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            for name in names:
                if not name.endswith(".meta") or name.startswith("."):
                    continue
                aid = name[: -len(".meta")]
                if aid in seen or not _ID_RE.match(aid):
                    continue
                seen.add(aid)
                yield directory / name

    def _all_metas(self) -> List[ArtifactMetadata]:
        out = []
        for path in self._all_meta_paths():
            meta = self._read_meta(path)
            if meta is not None:
                out.append(meta)
        return out

    def list_by_run(self, run_id: str) -> List[ArtifactMetadata]:
        return [m for m in self._all_metas() if m.run_id == run_id]

    def list_all(self, *, limit: int = 1000) -> List[ArtifactMetadata]:
        return _newest_first(self._all_metas(), limit)

    # --- writing ------------------------------------------------------------------------------------------------
    def store(self, content: bytes, *, content_type: str = "application/octet-stream", run_id: Optional[str] = None,
              tags: Optional[Dict[str, str]] = None, artifact_id: Optional[str] = None) -> ArtifactMetadata:
        content = bytes(content)
        aid = validate_artifact_id(artifact_id if artifact_id is not None
                                   else compute_artifact_id(content, run_id=run_id))
        blob_id = compute_blob_id(content)
        blob = self._blob_path(blob_id)
        meta = ArtifactMetadata(artifact_id=aid, content_type=content_type, size_bytes=len(content),
                                created_at=utc_now_iso(), blob_id=blob_id, run_id=run_id, tags=_tags(tags))
        with self._locked(exclusive=False):  # a gc() waits until the metadata names the blob
            try:
                have = blob.stat().st_size
            except FileNotFoundError:
                have = -1
            if have != len(content):  # missing, or a foreign file: (re)write it
                write_atomic(blob, content, fsync=self._fsync)
            else:  # deduplicated: mark it as in use (for a gc() with grace_seconds where flock is missing)
                try:
                    os.utime(blob)
                except OSError:
                    write_atomic(blob, content, fsync=self._fsync)
            write_atomic(self._ref_path(aid),
                         json.dumps(meta.to_dict(), ensure_ascii=False, indent=2).encode("utf-8"), fsync=self._fsync)
        return meta

    def delete(self, artifact_id: str) -> bool:
        removed = False
        legacy_meta, legacy_bin = self._legacy_paths(artifact_id)
        for path in (self._ref_path(artifact_id), legacy_meta, legacy_bin):
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed

    def gc(self, *, dry_run: bool = True, grace_seconds: float = 0.0) -> Dict[str, Any]:
        """Delete blobs that no metadata names (``dry_run``: only report what would be deleted).

        Returns ``{dry_run, blobs_total, blobs_referenced, blobs_deleted, bytes_reclaimed, errors}``; in a dry run
        ``blobs_deleted`` / ``bytes_reclaimed`` say what a real run would delete / free. It runs under the exclusive
        store lock, so a ``store`` in progress in another thread or process never loses its blob. Our addition:
        blobs written or reused less than ``grace_seconds`` ago count as referenced (for file systems without
        ``flock``). Temporary files are never touched.
        """
        with self._locked(exclusive=True):
            return self._collect(dry_run=dry_run, grace_seconds=grace_seconds)

    def _collect(self, *, dry_run: bool, grace_seconds: float) -> Dict[str, Any]:
        try:
            names = sorted(os.listdir(self._blobs))
        except FileNotFoundError:
            names = []
        referenced = {m.blob_id for m in self._all_metas() if m.blob_id}  # read after listing the blobs
        report: Dict[str, Any] = {"dry_run": bool(dry_run), "blobs_total": 0, "blobs_referenced": 0,
                                  "blobs_deleted": 0, "bytes_reclaimed": 0, "errors": []}
        for name in names:
            if not name.endswith(".bin") or name.startswith(".") or not _ID_RE.match(name[:-4]):
                continue
            path = self._blobs / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                report["errors"].append(f"{name}: {exc}")
                continue
            report["blobs_total"] += 1
            if name[:-4] in referenced or time.time() - st.st_mtime < float(grace_seconds):
                report["blobs_referenced"] += 1
                continue
            if not dry_run:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    report["errors"].append(f"{name}: {exc}")
                    continue
            report["blobs_deleted"] += 1
            report["bytes_reclaimed"] += st.st_size
        return report


__all__ = [
    "ArtifactMetadata",
    "Artifact",
    "ArtifactStore",
    "InMemoryArtifactStore",
    "FileArtifactStore",
    "compute_artifact_id",
    "compute_blob_id",
    "validate_artifact_id",
    "artifact_ref",
    "is_artifact_ref",
    "get_artifact_id",
    "resolve_artifact",
    "write_atomic",
]
