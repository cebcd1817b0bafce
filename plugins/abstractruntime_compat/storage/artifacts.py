"""Reference path ``abstractruntime.storage.artifacts`` (the code lives in the ``artifacts`` plugin)."""

from abstractruntime_artifacts.store import (
    Artifact,
    ArtifactMetadata,
    ArtifactStore,
    FileArtifactStore,
    InMemoryArtifactStore,
    artifact_ref,
    compute_artifact_id,
    compute_blob_id,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
    validate_artifact_id,
)

__all__ = [
    "Artifact",
    "ArtifactMetadata",
    "ArtifactStore",
    "InMemoryArtifactStore",
    "FileArtifactStore",
    "artifact_ref",
    "is_artifact_ref",
    "get_artifact_id",
    "resolve_artifact",
    "compute_artifact_id",
    "compute_blob_id",
    "validate_artifact_id",
]
