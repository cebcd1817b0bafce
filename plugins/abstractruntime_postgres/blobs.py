"""Artifacts and snapshots in PostgreSQL tables (reference interfaces of the ``artifacts`` / ``snapshots`` plugins).

``backend.artifact_store`` and ``backend.snapshot_store`` give these for a :class:`PostgresBackend`; a host passes
them on like any other store (``Runtime(..., artifact_store=backend.artifact_store)``). Both tables live in the
backend's schema, so every worker sharing the database sees the same artifacts and snapshots.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from abstractruntime import codec
from abstractruntime.models import utc_now_iso
from abstractruntime_artifacts.store import (
    Artifact,
    ArtifactMetadata,
    ArtifactStore,
    compute_artifact_id,
    compute_blob_id,
    validate_artifact_id,
)
from abstractruntime_snapshots.store import Snapshot, SnapshotStore, filter_snapshots, validate_snapshot_id


def _meta_tags(tags: Optional[Dict[str, Any]]) -> Dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items() if v is not None}


class PostgresArtifactStore(ArtifactStore):
    """Artifacts as rows: metadata (JSON) and content (``bytea``) in one row, written in one statement."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._t = f"{backend.schema}.artifacts"

    def store(self, content: bytes, *, content_type: str = "application/octet-stream", run_id: Optional[str] = None,
              tags: Optional[Dict[str, str]] = None, artifact_id: Optional[str] = None) -> ArtifactMetadata:
        content = bytes(content)
        aid = validate_artifact_id(artifact_id if artifact_id is not None
                                   else compute_artifact_id(content, run_id=run_id))
        meta = ArtifactMetadata(artifact_id=aid, content_type=content_type, size_bytes=len(content),
                                created_at=utc_now_iso(), blob_id=compute_blob_id(content), run_id=run_id,
                                tags=_meta_tags(tags))
        self.backend.write(lambda cur: cur.execute(
            f"INSERT INTO {self._t} (artifact_id, run_id, created_at, content_type, size_bytes, blob_id, meta, "
            f"content) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (artifact_id) DO UPDATE SET "
            f"run_id = EXCLUDED.run_id, created_at = EXCLUDED.created_at, content_type = EXCLUDED.content_type, "
            f"size_bytes = EXCLUDED.size_bytes, blob_id = EXCLUDED.blob_id, meta = EXCLUDED.meta, "
            f"content = EXCLUDED.content",
            (aid, run_id, meta.created_at, content_type, len(content), meta.blob_id,
             codec.to_json_bytes(meta.to_dict()), content)))
        return meta.copy()

    @staticmethod
    def _meta(data: Any) -> ArtifactMetadata:
        return ArtifactMetadata.from_dict(codec.from_json_text(bytes(data)))

    def load(self, artifact_id: str) -> Optional[Artifact]:
        row = self.backend.fetchone(f"SELECT meta, content FROM {self._t} WHERE artifact_id = %s", (artifact_id,))
        return Artifact(metadata=self._meta(row[0]), content=bytes(row[1])) if row is not None else None

    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]:
        row = self.backend.fetchone(f"SELECT meta FROM {self._t} WHERE artifact_id = %s", (artifact_id,))
        return self._meta(row[0]) if row is not None else None

    def exists(self, artifact_id: str) -> bool:
        return self.backend.fetchone(f"SELECT 1 FROM {self._t} WHERE artifact_id = %s", (artifact_id,)) is not None

    def delete(self, artifact_id: str) -> bool:
        return self.backend.write(lambda cur: cur.execute(
            f"DELETE FROM {self._t} WHERE artifact_id = %s", (artifact_id,)).rowcount) > 0

    def delete_by_run(self, run_id: str) -> int:
        return int(self.backend.write(lambda cur: cur.execute(
            f"DELETE FROM {self._t} WHERE run_id = %s", (run_id,)).rowcount))

    def list_by_run(self, run_id: str) -> List[ArtifactMetadata]:
        return [self._meta(r[0]) for r in self.backend.fetchall(
            f"SELECT meta FROM {self._t} WHERE run_id = %s ORDER BY created_at, artifact_id", (run_id,))]

    def list_all(self, *, limit: int = 1000) -> List[ArtifactMetadata]:
        """Newest ``created_at`` first; ``limit <= 0``: all."""
        tail, params = ("", ()) if int(limit) <= 0 else (" LIMIT %s", (int(limit),))
        return [self._meta(r[0]) for r in self.backend.fetchall(
            f"SELECT meta FROM {self._t} ORDER BY created_at DESC, artifact_id DESC{tail}", params)]


class PostgresSnapshotStore(SnapshotStore):
    """Snapshots as rows (the snapshot's JSON, indexed by run and creation time)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._t = f"{backend.schema}.snapshots"

    def save(self, snapshot: Snapshot) -> None:
        validate_snapshot_id(snapshot.snapshot_id)
        snapshot.updated_at = utc_now_iso()
        data = codec.to_json_bytes(snapshot.to_dict())
        self.backend.write(lambda cur: cur.execute(
            f"INSERT INTO {self._t} (snapshot_id, run_id, created_at, data) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (snapshot_id) DO UPDATE SET run_id = EXCLUDED.run_id, created_at = EXCLUDED.created_at, "
            f"data = EXCLUDED.data", (snapshot.snapshot_id, snapshot.run_id, snapshot.created_at or "", data)))

    @staticmethod
    def _decode(data: Any) -> Snapshot:
        return Snapshot.from_dict(codec.from_json_text(bytes(data)))

    def load(self, snapshot_id: str) -> Optional[Snapshot]:
        row = self.backend.fetchone(f"SELECT data FROM {self._t} WHERE snapshot_id = %s", (snapshot_id,))
        return self._decode(row[0]) if row is not None else None

    def delete(self, snapshot_id: str) -> bool:
        return self.backend.write(lambda cur: cur.execute(
            f"DELETE FROM {self._t} WHERE snapshot_id = %s", (snapshot_id,)).rowcount) > 0

    def list(self, *, run_id: Optional[str] = None, tag: Optional[str] = None, query: Optional[str] = None,
             limit: int = 100) -> List[Snapshot]:
        """Same filters as the reference (exact run, case-insensitive tag, substring of name/description),
        newest first; the run filter is an index lookup."""
        if run_id is not None:
            rows = self.backend.fetchall(f"SELECT data FROM {self._t} WHERE run_id = %s", (run_id,))
        elif tag is None and query is None and int(limit) > 0:
            rows = self.backend.fetchall(
                f"SELECT data FROM {self._t} ORDER BY created_at DESC, snapshot_id DESC LIMIT %s", (int(limit),))
        else:
            rows = self.backend.fetchall(f"SELECT data FROM {self._t}")
        return filter_snapshots([self._decode(r[0]) for r in rows], run_id=run_id, tag=tag, query=query,
                                limit=limit)


__all__ = ["PostgresArtifactStore", "PostgresSnapshotStore"]
