"""The LMDB store's key layout (the table in store.py's module doc) and the one-cursor-step ledger head lookup."""

from __future__ import annotations

import functools
import re
import struct
from typing import Any

from abstractruntime.models import StepStatus
from abstractruntime_storekit import validate_run_id

_U64 = struct.Struct(">Q")
_SEP = b"\x00"
_META = b"m:schema_version"
_DATA = b"d:"  # d: run_id, then \x00 checkpoint | \x01 seq ledger record | \x02 key idempotency entry
_RUN_TAG, _LEDGER_TAG, _IDEM_TAG = b"\x00", b"\x01", b"\x02"
_TAGS = re.compile(rb"[\x00-\x02]")
_INDEX = b"x:"
_STATUS_BYTE = {s.value: s.value[0].encode() for s in StepStatus}  # s, c, w, f
_COMPLETED = _STATUS_BYTE[StepStatus.COMPLETED.value]
_STATUS_NAME = {b: name for name, b in _STATUS_BYTE.items()}


def _run_key(rid: bytes) -> bytes:
    return _DATA + rid + _RUN_TAG


def _ledger_prefix(rid: bytes) -> bytes:
    return _DATA + rid + _LEDGER_TAG


def _idem_key(rid: bytes, key: str) -> bytes:
    return _DATA + rid + _IDEM_TAG + key.encode("utf-8")


def _rid(run_id: str) -> bytes:
    """The run id's key bytes, once it is checked (a bad one raises ValidationError)."""
    return _checked_rid(run_id) if type(run_id) is str else _check_rid(run_id)


def _check_rid(run_id: str) -> bytes:
    return validate_run_id(run_id, store="the lmdb store").encode("utf-8")


#: an id's validity never changes, and a commit names its run ~5 times (an S2 run: 15 checks of 3 ids, ~1 us each)
_checked_rid = functools.lru_cache(maxsize=4096)(_check_rid)


def _index_key(kind: str, value: str, run_id: str) -> bytes:
    return _INDEX + f"{kind}\x00{value}\x00{run_id}".encode("utf-8")


def last_seq(txn: Any, rid: bytes) -> int:
    """The run's last ledger sequence number: one cursor step back from the end of its key range."""
    prefix = _ledger_prefix(rid)
    cur = txn.cursor()
    if cur.set_range(_DATA + rid + _IDEM_TAG):
        if not cur.prev():
            return 0
    elif not cur.last():
        return 0
    key = cur.key()
    if key.startswith(prefix) and len(key) == len(prefix) + 8:
        return _U64.unpack(key[-8:])[0]
    return 0
