"""Room to grow: ``data.mdb`` is kept zero-filled past LMDB's last page (a quarter of the data's size, 256 KiB to
4 MiB), so that a durable commit's ``fdatasync`` rewrites blocks the file already has instead of growing the file.

A commit whose new pages extend the file changes its size and its block map, and ``fdatasync`` must make that
metadata durable too -- on ext4 and XFS a journal commit: another write and another flush. A commit that overwrites
written blocks syncs its data alone. Measured on the benchmark VM (ext4), 32 KiB written then ``fdatasync``: 91-103
us over written blocks; 143-192 us growing the file, or over ``fallocate``'d or sparse space (whose first write
changes the block map as well: only written zeros help). Databases do the same for their logs (PostgreSQL's
``wal_init_zero``). Pages LMDB's free list hands out again are written blocks already: the room serves the growth
of the data (ledger records, mostly).

Safety: the zeros are written inside a write transaction -- which holds LMDB's writer lock, the lock every writer of
every process holds while LMDB writes pages -- before the transaction has dirtied a page, and only past the file's
end, which lies past LMDB's last page. So they never land on a page in use, and the transaction's own new pages,
written when it commits, overwrite them. A crash midway leaves zeros past the end: LMDB never reads past its last
page. A write that fails (a full disk, a file size limit) fails no commit: the room is given up for this backend, with
a warning. On copy-on-write filesystems (btrfs, ZFS) every write allocates anyway: set ``zero_fill = 0`` there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from abstractruntime.logs import get_logger

log = get_logger(__name__)

#: the most zero-filled room kept past LMDB's last page, in bytes (the ``zero_fill`` store option). The room is a
#: quarter of the data, within [MIN_ROOM, zero_fill] -- a small store stays small (a test suite's hundreds of stores,
#: a store per tenant) -- and is refilled by as much once less than a quarter of it is left. Its size matters little
#: past a few commits' growth: a refill is one write and one slower sync per room's worth of new pages.
DEFAULT_ZERO_FILL = 4 * 1024 * 1024
MIN_ROOM = 256 * 1024
_CHUNK = 1024 * 1024  # zeros written per call: a 4 MiB room costs 1 MiB of memory while it is filled


class ZeroFill:
    """The zero-filled room past ``data_file``'s data, at most ``most`` bytes. Call :meth:`ensure` in a write
    transaction, before it writes: it refills the room when less than a quarter of it is left past ``env``'s last
    page."""

    def __init__(self, data_file: Path, most: int, page_size: int) -> None:
        self._path = data_file
        self._fd: Optional[int] = os.open(data_file, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        self._most, self._page = most, page_size
        self._end = self._low = 0  # the file's end as last seen; the room's low-water mark then

    def ensure(self, env: Any) -> None:
        fd = self._fd
        if fd is None:
            return
        used = (env.info()["last_pgno"] + 1) * self._page
        if used + self._low <= self._end:
            return
        room = min(self._most, max(MIN_ROOM, used // 4))
        try:
            end = os.fstat(fd).st_size  # another process may have filled it meanwhile
            if used + room // 4 > end:
                stop, zeros = end + room, memoryview(bytes(min(room, _CHUNK)))
                while end < stop:
                    written = os.pwrite(fd, zeros[:stop - end], end)
                    if written <= 0:
                        break
                    end += written
        except OSError as exc:
            log.warning("lmdb_zero_fill_stopped", path=str(self._path), error=str(exc),
                        hint="commits that grow the file sync its size too (slower fsyncs); nothing is lost")
            self.close()
            return
        self._end, self._low = end, room // 4

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


__all__ = ["DEFAULT_ZERO_FILL", "MIN_ROOM", "ZeroFill"]
