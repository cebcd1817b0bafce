"""How the PostgreSQL store keeps checkpoint and ledger JSON in its ``data`` columns: compressed, so a step writes
about half the WAL (issue 25).

PostgreSQL compresses a value only when its row exceeds about 2 KB (``TOAST_TUPLE_THRESHOLD``; ``toast_tuple_target``
cannot lower that), and a step's rows are smaller: a ledger record is 0.6-0.8 KB of JSON, a checkpoint typically
1-2 KB. So the store compresses them itself, with a preset dictionary of the JSON keys and values every record and
checkpoint repeat (in the benchmark a record shrinks to about 45% of its size, a checkpoint to 30-45%).

Stored forms (the first byte tells which):

* ``{`` ... -- the JSON bytes exactly as the kernel encoded them: rows written before schema version 3, and values
  that compressing would not make smaller;
* ``\\x01`` + raw deflate (RFC 1951) of the JSON bytes with the preset dictionary :data:`DICTIONARY_V1`.

Any other first byte is refused on reading (a newer format, or damage). :data:`DICTIONARY_V1` is part of the stored
format: never change it; a new dictionary needs a new format byte (and the old one kept for reading).
"""

from __future__ import annotations

import zlib
from typing import Any

from abstractruntime.errors import AbstractRuntimeError

#: first byte of a value compressed with :data:`DICTIONARY_V1`
DEFLATE_V1 = 0x01
#: compression level: 6 compresses these small values as well as 9, faster
LEVEL = 6

_STAMP = b'"2026-01-01T00:00:00.000000+00:00"'
#: The preset dictionary: the skeletons of a checkpoint and of a ledger record as the kernel encodes them, most
#: frequent last (the nearest matches are the cheapest). FROZEN: stored values depend on every byte of it.
DICTIONARY_V1 = (
    b'"waiting":{"reason":"user","wait_key":null,"until":null,"resume_to_node":null,"result_key":null,'
    b'"prompt":null,"choices":null,"allow_free_text":true,"details":null},"status":"waiting","status":"failed",'
    b'"status":"cancelled","reason":"event","reason":"until","reason":"job","reason":"subworkflow","error":"'
    b'"_limits":{"max_iterations":25,"current_iteration":0,"max_tokens":32768,"max_output_tokens":null,'
    b'"max_input_tokens":null,"estimated_tokens_used":0,"max_history_messages":-1,"warn_iterations_pct":80,'
    b'"warn_tokens_pct":80},"_runtime":{},'
    b'{"run_id":"","workflow_id":"","status":"running","current_node":"","vars":{},"waiting":null,"output":null,'
    b'"error":null,"created_at":' + _STAMP + b',"updated_at":' + _STAMP + b',"actor_id":null,"session_id":null,'
    b'"parent_run_id":null,"step":0,"revision":0,"workflow_version":null}'
    b'{"run_id":"","step_id":"","node_id":"","status":"started","effect":{"type":"","payload":{},"result_key":""},'
    b'"result":null,"error":null,"started_at":' + _STAMP + b',"ended_at":null,"actor_id":null,"session_id":null,'
    b'"attempt":1,"idempotency_key":"","prev_hash":"","record_hash":"","signature":null}'
    b'"status":"completed","ended_at":' + _STAMP + b',"result":{"'
)


class PackingError(AbstractRuntimeError, ValueError):
    """A stored value that is neither JSON nor a format this code knows (a newer format, or damage); the store
    reports it as a :class:`~abstractruntime.errors.CorruptStoreError` of the row."""


def pack(json_bytes: bytes) -> bytes:
    """The stored form of ``json_bytes``: compressed when that is smaller, else the bytes themselves."""
    deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY_V1)
    packed = b"\x01" + deflate.compress(json_bytes) + deflate.flush()
    return packed if len(packed) < len(json_bytes) else json_bytes


def unpack(data: Any) -> bytes:
    """The JSON bytes of a stored value (``bytes``, ``memoryview`` or ``bytearray``); :class:`PackingError` if it
    cannot be read."""
    raw = bytes(data)
    if not raw or raw[0] != DEFLATE_V1:
        if raw[:1] and raw[0] < 0x09:  # a control byte: a format, never JSON
            raise PackingError(f"unknown stored format {raw[0]:#04x} (written by a newer abstractruntime?)")
        return raw  # JSON as the kernel encoded it (or damage, which the JSON decoder reports)
    inflate = zlib.decompressobj(-15, zdict=DICTIONARY_V1)
    try:
        out = inflate.decompress(raw[1:]) + inflate.flush()
    except zlib.error as exc:
        raise PackingError(f"compressed value is damaged ({exc})") from None
    if not inflate.eof or inflate.unused_data:
        raise PackingError("compressed value is truncated or has trailing bytes")
    return out


__all__ = ["pack", "unpack", "PackingError", "DEFLATE_V1", "DICTIONARY_V1", "LEVEL"]
