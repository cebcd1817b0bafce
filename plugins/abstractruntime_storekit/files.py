"""Durable file writes, the one implementation every plugin that keeps files uses (stores, artifacts, snapshots,
command inbox, history and workflow bundles, VisualFlow's ``write_file`` node).

:func:`write_atomic` writes through a temporary file in the same directory, fsyncs it, renames it over the target
and fsyncs the directory: a reader sees the old file or the new one, never half of one, and after it returns the
new file survives a power loss (with ``fsync=True``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(path: PathLike) -> None:
    """fsync a directory, so a rename or a new file in it is durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def temp_path(path: PathLike) -> Path:
    """A fresh temporary file name beside ``path`` (hidden, unique per call)."""
    p = Path(path)
    return p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")


def write_atomic(path: PathLike, data: bytes, *, fsync: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, fsync, rename, fsync of the directory).

    Nothing is left behind on failure: the temporary file is removed and ``path`` is unchanged.
    """
    target = Path(path)
    tmp = temp_path(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        fsync_dir(target.parent)


__all__ = ["write_atomic", "fsync_dir", "temp_path"]


class FileSiblings:
    """A file-based store's sibling services (``StoreBackend.artifact_store()`` / ``snapshot_store()`` /
    ``command_store()``) as files in one directory, :attr:`sibling_dir`: artifacts in it, snapshots in its
    ``snapshots/``, the command inbox as a JSONL file. Mix in before ``StoreBackend``."""

    @property
    def sibling_dir(self) -> Path:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def artifact_store(self) -> Any:
        from abstractruntime_artifacts.store import FileArtifactStore

        return FileArtifactStore(self.sibling_dir)

    def snapshot_store(self) -> Any:
        from abstractruntime_snapshots.store import JsonSnapshotStore

        return JsonSnapshotStore(self.sibling_dir / "snapshots")

    def command_store(self) -> Any:
        from abstractruntime_commands.store import JsonlCommandStore

        return JsonlCommandStore(self.sibling_dir)
