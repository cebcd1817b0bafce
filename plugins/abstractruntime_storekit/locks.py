"""Cross-process run locks for embedded stores: "who drives this run" (the ``run_locks`` capability)."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
from typing import Any, Callable, Dict, Optional, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _setlk_keeping_the_gil() -> Optional[Callable[[], Callable[[int, int, int], bool]]]:
    """A factory of ``setlk(fd, lock_type, offset)``: ``fcntl(fd, F_SETLK, {type, SEEK_SET, offset, 1})`` called
    through ctypes' ``PyDLL``, which keeps the GIL. ``fcntl.lockf`` releases it around the call -- which never blocks
    here (``F_SETLK``) -- and under many threads each release is a thread switch: 16 threads driving runs on LMDB,
    ~9 switches per run and ~10% of its CPU (measured, docs/benchmarks.md). Each setter fills one ``struct flock`` of
    its own (building one per call cost more than the call): its caller serializes its calls (a lock file's guard).
    Linux with a 64-bit ``off_t`` only (its ``struct flock``); None elsewhere: ``fcntl.lockf``."""
    if fcntl is None or not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        if ctypes.sizeof(ctypes.c_long) != 8:
            return None

        class Flock(ctypes.Structure):
            _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short), ("l_start", ctypes.c_int64),
                        ("l_len", ctypes.c_int64), ("l_pid", ctypes.c_int)]

        call = ctypes.PyDLL(None).fcntl
        call.argtypes, call.restype = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(Flock)], ctypes.c_int
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no ctypes or no libc symbol
        return None

    def setter() -> Callable[[int, int, int], bool]:
        flock = Flock(fcntl.F_UNLCK, os.SEEK_SET, 0, 1, 0)
        ref, set_lock = ctypes.byref(flock), fcntl.F_SETLK

        def setlk(fd: int, lock_type: int, offset: int) -> bool:
            flock.l_type, flock.l_start = lock_type, offset
            return call(fd, set_lock, ref) != -1

        return setlk

    return setter


def _setlk_by_lockf(fd: int, lock_type: int, offset: int) -> bool:
    """False if the lock is held elsewhere (or the file cannot be locked)."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_UN if lock_type == fcntl.F_UNLCK else fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
    except OSError:
        return False
    return True


_SETTER = _setlk_keeping_the_gil() or (lambda: _setlk_by_lockf)


@functools.lru_cache(maxsize=4096)  # a run's lock is taken and released several times a run: hashed once
def _offset(run_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(run_id.encode("utf-8"), digest_size=7).digest(), "big")


class _LockFile:
    """One lock file's state in this process, shared by every :class:`RunLocks` on that file: POSIX locks belong
    to the process, and closing *any* descriptor of the file drops them all, so there must be one."""

    def __init__(self, path: str) -> None:
        self.guard = threading.Lock()
        self.held: Dict[int, Tuple[int, int]] = {}  # offset -> (owning thread, count)
        self.users = 0
        self.file: Any = open(path, "ab") if fcntl is not None else None
        self.fd = self.file.fileno() if self.file is not None else -1  # (closed under the guard, with held cleared)
        self.setlk = _SETTER() if self.file is not None else None  # called under the guard


_LOCK_FILES: Dict[str, _LockFile] = {}
_LOCK_FILES_GUARD = threading.Lock()


class RunLocks:
    """Cross-process "who drives this run" locks for an embedded store: one byte-range lock (POSIX ``lockf``) per
    run id in one lock file beside the store.

    The kernel holds a run's lock while it ticks the run (:meth:`acquire` is non-blocking: a run another process
    -- or another thread of this process, e.g. a second runtime on the same store -- is driving is left alone).
    The operating system drops the locks of a process that dies, so a ``started`` reservation without a live
    holder is a crash leftover (in doubt), never a step in flight elsewhere. The holding thread may re-acquire
    (counted), so a tick nested in a tick of the same run keeps the lock. Every ``RunLocks`` of this process on one
    file shares that file's state. On a platform without ``fcntl`` only the in-process exclusion applies.
    """

    def __init__(self, path: Any) -> None:
        self.path = os.path.realpath(str(path))
        with _LOCK_FILES_GUARD:
            shared = _LOCK_FILES.get(self.path)
            if shared is None:
                shared = _LOCK_FILES[self.path] = _LockFile(self.path)
            shared.users += 1
        self._shared: Optional[_LockFile] = shared

    @staticmethod
    def _offset(run_id: str) -> int:
        return _offset(run_id)

    def acquire(self, run_id: str) -> bool:
        """Take the run's lock without waiting; False if another process or thread holds it."""
        shared = self._shared
        if shared is None:
            return True  # closed: the store refuses the commit anyway
        offset, me = _offset(run_id), threading.get_ident()
        with shared.guard:
            owner, count = shared.held.get(offset, (me, 0))
            if owner != me:
                return False
            if count == 0 and shared.setlk is not None:
                if not shared.setlk(shared.fd, fcntl.F_WRLCK, offset):
                    return False
            shared.held[offset] = (me, count + 1)
            return True

    def release(self, run_id: str) -> None:
        shared = self._shared
        if shared is None:
            return
        offset = _offset(run_id)
        with shared.guard:
            owner, count = shared.held.get(offset, (None, 0))
            if count > 1:
                shared.held[offset] = (owner, count - 1)
                return
            shared.held.pop(offset, None)
            if count == 1 and shared.setlk is not None:
                shared.setlk(shared.fd, fcntl.F_UNLCK, offset)

    def close(self) -> None:
        """Stop using the lock file; the last user in this process closes it (dropping this process's locks)."""
        with _LOCK_FILES_GUARD:
            shared, self._shared = self._shared, None
            if shared is None:
                return
            shared.users -= 1
            if shared.users == 0:
                _LOCK_FILES.pop(self.path, None)
                with shared.guard:
                    if shared.file is not None:
                        shared.setlk = None
                        shared.file.close()
                    shared.held.clear()


__all__ = ["RunLocks"]
