"""Opening an embedded store's directory or file the same way in every builtin store: the path a URL names
(:func:`store_path`, which refuses ``lmdb://`` with no path), a directory or file that exists or may be created
(:func:`store_directory`, :func:`store_file`), and operating-system errors turned into a
:class:`~abstractruntime.errors.StoreError` that names the path and the fix (:func:`os_error`).

A store opened ``read_only`` (``StoreLocation.read_only``: the CLI's read-only commands, or ``?read_only=true``)
creates nothing: a missing store is an error, never a new empty one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional, Sequence

from abstractruntime.descriptors import StoreLocation
from abstractruntime.errors import ConfigurationError, StoreError


def store_path(location: StoreLocation, default: Path) -> Path:
    """The path of ``location``: its URL path, or ``default`` for a bare store name (``lmdb``). A URL with a
    scheme and no path (``lmdb://``, ``sqlite://``) is a :class:`ConfigurationError`, not the default store."""
    if location.path:
        return Path(location.path).expanduser()
    if "://" in location.url:
        s = location.scheme
        raise ConfigurationError(
            f"Store URL {location.url!r} names no path: use '{s}:///absolute/path' or '{s}://relative/path' "
            f"(or a bare '{s}' for the default, {default})")
    return default


def os_error(exc: OSError, path: os.PathLike | str, store: str, action: str = "open") -> StoreError:
    """A :class:`StoreError` for an ``OSError`` met while opening ``store`` at ``path``, with the likely fix."""
    fixes = {
        errno.EACCES: "permission denied: run as a user who may use it, or fix its permissions",
        errno.EPERM: "operation not permitted: run as a user who may use it, or fix its permissions",
        errno.EEXIST: "a file is in the way where a directory is needed: give a directory path",
        errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
        errno.EISDIR: "it is a directory, not a file: give the path of a file",
        errno.EROFS: "the file system is read-only: use a read-only command or a writable location",
        errno.ENOSPC: "the disk is full: free space and retry",
        errno.ENOENT: "it does not exist: check the path",
    }
    reason = fixes.get(exc.errno or 0, exc.strerror or str(exc))
    return StoreError(f"Cannot {action} the {store} store at {path}: {reason}")


def store_directory(path: Path, *, store: str, read_only: bool, markers: Sequence[str] = ()) -> Path:
    """``path`` as an existing directory (created, with its parents, unless ``read_only``). Read-only, the
    directory must hold one of ``markers`` (file names or glob patterns that only a store of this kind has)."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"Cannot open the {store} store at {path}: it is a file, not a store directory; "
                         f"give the directory of a {store} store (or a new directory to create one)")
    if read_only:
        if not path.is_dir():
            raise StoreError(f"No {store} store at {path} (no such directory). Nothing was created: this command "
                             f"only reads; check the path")
        if markers and not any(next(iter(path.glob(m)), None) is not None for m in markers):
            raise StoreError(f"{path} is not a {store} store (none of {', '.join(markers)} in it). Nothing was "
                             f"created: this command only reads; check the path")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, path, store, "create") from exc
    return path


def store_file(path: Path, *, store: str, read_only: bool) -> Path:
    """``path`` as a store file: an existing non-empty file, or (unless ``read_only``) a missing one whose
    directory is created. A zero-length file or a directory is refused: it is not a store, and it is left as it
    is."""
    try:
        size: Optional[int] = path.stat().st_size if path.exists() else None
    except OSError as exc:
        raise os_error(exc, path, store) from exc
    if path.is_dir():
        raise StoreError(f"Cannot open the {store} store at {path}: it is a directory; give the path of a store "
                         f"file, e.g. {path / 'runtime.sqlite'}")
    if size == 0:
        raise StoreError(f"{path} is an empty (zero-length) file, not a {store} store. Nothing was changed: remove "
                         f"it to start a new store there, or give the path of your store")
    if size is None:
        if read_only:
            raise StoreError(f"No {store} store at {path} (no such file). Nothing was created: this command only "
                             f"reads; check the path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, path.parent, store, "create the directory of") from exc
    return path


__all__ = ["store_path", "store_directory", "store_file", "os_error"]
