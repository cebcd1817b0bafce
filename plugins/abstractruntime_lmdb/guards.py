"""Guards of the LMDB environment: the truncated-file check before opening, and the lock that keeps map resizes
apart from live transactions."""

from __future__ import annotations

import os
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from abstractruntime.errors import CorruptStoreError

_META_LAST_PG = struct.Struct("<QQ")  # MDB_meta.mm_last_pg, mm_txnid (64-bit little-endian builds)
_META_OFFSET = 16 + 4 + 4 + 8 + 8 + 2 * 48  # page header, magic, version, address, mapsize, two MDB_db


def check_data_file(data: Path) -> None:
    """Refuse a truncated ``data.mdb`` with a clear error instead of letting the mmap fault (SIGBUS) later.

    LMDB keeps two meta pages at the start of the file; the newer one says how many pages are in use. A file
    shorter than that (or empty, or without its meta pages) was cut: nothing is opened or changed.
    """
    if not data.exists():
        return
    # The meta pages first, the size second: another process may commit in between, and LMDB writes a commit's
    # pages before its meta page and never shrinks the file, so this order never sees a live file as "truncated".
    with data.open("rb") as fh:
        head = fh.read(2 * 4096 + _META_OFFSET + _META_LAST_PG.size)
        size = os.fstat(fh.fileno()).st_size
    hint = (f"LMDB store file {data} is truncated ({size} bytes); restore it from a backup, or move the "
            f"directory away to start an empty store. Nothing was changed.")
    if size == 0:
        raise CorruptStoreError(hint)
    metas = []
    for page_size in (4096,):
        for page in (0, 1):
            start = page * page_size + _META_OFFSET
            if len(head) >= start + _META_LAST_PG.size:
                metas.append(_META_LAST_PG.unpack_from(head, start))
        if len(metas) < 2:
            raise CorruptStoreError(hint)
        last_pg, _txn = max(metas, key=lambda m: m[1])
        if size < (last_pg + 1) * page_size:
            raise CorruptStoreError(hint)


class SharedExclusiveLock:
    """Many readers or one map resizer (LMDB requires no live transaction in this process during a resize).

    ``with lock.shared():`` around every transaction: the lock itself is the context manager (a generator-based
    one costs several microseconds per transaction, on every read and commit)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._exclusive = False

    def shared(self) -> "SharedExclusiveLock":
        return self

    def __enter__(self) -> None:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0 and self._exclusive:
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["SharedExclusiveLock", "check_data_file", "file_size"]
