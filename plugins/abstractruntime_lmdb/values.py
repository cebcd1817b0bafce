"""The stored form of an LMDB checkpoint, with its checksum, and LMDB driver errors as store errors.

A checkpoint value (key ``d:`` run_id ``\\x00``) is, since schema version 2::

    0xC5 (u8)  CRC-32 of everything after it (u32)  revision (u64)  n (u32)  index entries (n bytes JSON)  checkpoint

A value written by schema version 1 has no magic byte and no checksum (``revision, n, entries, checkpoint``; its
first byte is 0 because revisions stay far below 2**56): it is read as before, without a check. Any other first
byte, a length past the end, or a checksum that does not match raises
:class:`~abstractruntime.errors.CorruptStoreError` naming the store and the run.

Every ``lmdb.Error`` that escapes a transaction becomes a store error naming the directory
(:func:`driver_error`): page corruption (``CorruptedError``, ``PageNotFoundError``, ``PanicError``,
``InvalidError``, ``BadChecksumError``) a ``CorruptStoreError``, anything else a ``StoreError``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Optional, Tuple

import lmdb
import orjson

from abstractruntime.errors import CorruptStoreError, StoreError
from abstractruntime.logs import get_logger
from abstractruntime_storekit.integrity import checksum, checksum_mismatch

log = get_logger("abstractruntime.lmdb")

MAGIC = 0xC5
_MAGIC_BYTE = bytes([MAGIC])
_V2 = struct.Struct(">BIQI")  # magic, crc32 of the rest, revision, length of the index-entries JSON
_SUM = struct.Struct(">I")
_V1 = struct.Struct(">QI")  # revision, length of the index-entries JSON (schema version 1)
_CORRUPT = tuple(getattr(lmdb, name) for name in ("CorruptedError", "PageNotFoundError", "PanicError",
                                                 "InvalidError", "BadChecksumError") if hasattr(lmdb, name))


def pack_value(revision: int, index_json: bytes, checkpoint: bytes) -> bytes:
    """The stored value of a checkpoint: header with checksum, index entries, checkpoint JSON."""
    body_head = _V1.pack(revision, len(index_json))
    crc = zlib.crc32(checkpoint, zlib.crc32(index_json, zlib.crc32(body_head)))  # == checksum(all three joined)
    return b"".join((_MAGIC_BYTE, _SUM.pack(crc), body_head, index_json, checkpoint))


def _layout(raw: bytes, where: str, run_id: str, verify: bool) -> Tuple[int, int, int]:
    """``(revision, start of the index entries, their length)`` of a stored value (checksum verified: ``verify``)."""
    first = raw[:1]
    if first == _MAGIC_BYTE and len(raw) >= _V2.size:
        _magic, stored, revision, n = _V2.unpack_from(raw)
        if verify:
            actual = checksum(memoryview(raw)[5:])
            if actual != stored:
                raise checksum_mismatch(where, run_id, stored, actual)
        start = _V2.size
    elif first == b"\x00" and len(raw) >= _V1.size:  # schema version 1: no checksum
        revision, n = _V1.unpack_from(raw)
        start = _V1.size
    else:
        raise CorruptStoreError(f"{where}: checkpoint of run {run_id} has an unreadable header "
                                f"({bytes(raw[:_V2.size]).hex() or 'empty'})", run_id=run_id)
    if start + n > len(raw):
        raise CorruptStoreError(f"{where}: checkpoint of run {run_id} is cut short ({len(raw)} bytes, its header "
                                f"says more)", run_id=run_id)
    return revision, start, n


def split_value(raw: Any, where: str, run_id: str, *, verify: bool = True) -> Tuple[int, bytes, bytes]:
    """``(revision, index_json, checkpoint_json)`` of a stored value; the checksum is verified (``verify``)."""
    revision, start, n = _layout(raw, where, run_id, verify)
    return revision, raw[start:start + n], raw[start + n:]


def revision_of(raw: Any, where: str, run_id: str) -> int:
    """The revision in a stored value's header (the checksum is not verified: a probe stays cheap)."""
    return _layout(raw, where, run_id, False)[0]


def old_entries(raw: Optional[bytes], where: str, run_id: str, new_json: bytes) -> Optional[list]:
    """The index entries stored with a checkpoint ([] for none), or None when they are ``new_json`` byte for byte
    (nothing to change). Entries about to be used are checked first: a damaged value raises CorruptStoreError."""
    if raw is None:
        return []
    _revision, start, n = _layout(raw, where, run_id, False)
    if raw[start:start + n] == new_json:
        return None
    _layout(raw, where, run_id, True)
    try:
        return [tuple(e) for e in orjson.loads(raw[start:start + n])]
    except (ValueError, TypeError) as exc:
        raise CorruptStoreError(f"{where}: index entries of run {run_id} cannot be decoded ({exc})",
                                run_id=run_id) from exc


def purge_index(txn: Any, prefix: bytes, run_id: str, where: str, exc: CorruptStoreError) -> None:
    """Delete every index key (``prefix`` kind \\0 value \\0 run_id) of a run, found by a scan of the whole index:
    a plain ``save`` replaces a checkpoint whose stored index entries are unreadable (logged as a warning)."""
    log.warning("run_checkpoint_replaced", store=where, run_id=run_id, error=exc.message)
    cur, tail, stale = txn.cursor(), b"\x00" + run_id.encode("utf-8"), []
    for key in (cur.iternext(keys=True, values=False) if cur.set_range(prefix) else ()):
        if not key.startswith(prefix):
            break
        if key.endswith(tail):  # run ids hold no \0: the last part is the run id
            stale.append(bytes(key))
    for key in stale:
        txn.delete(key)


def driver_error(where: str, exc: BaseException) -> StoreError:
    """A store error for an ``lmdb.Error`` (see the module doc)."""
    if isinstance(exc, _CORRUPT):
        return CorruptStoreError(
            f"{where} is damaged ({type(exc).__name__}: {exc}); restore it from a backup (`abstractruntime store "
            f"check` lists the damage it can reach while the store still opens).")
    return StoreError(f"{where}: {type(exc).__name__}: {exc}")


__all__ = ["pack_value", "split_value", "revision_of", "old_entries", "purge_index", "driver_error", "MAGIC"]
