"""Low-level file handling of the JSON-files store: run-id validation, whole-buffer ``pread`` / ``pwrite``, and
the ``"_ledger_committed"`` count a run file carries first (the store's layout and commit protocol are described in
:mod:`abstractruntime_jsonfiles.backend`)."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Optional, Tuple

import orjson

from abstractruntime.errors import ValidationError
from abstractruntime_storekit import MAX_RUN_ID_LENGTH
from abstractruntime_storekit import validate_run_id as _validate_run_id

FAULT_POINT = "commit:after-checkpoint"
COMMITTED_KEY = "_ledger_committed"

_COUNT_HEAD = re.compile(rb'\A\s*\{\s*"_ledger_committed"\s*:\s*(\d+)\s*,')
_HEAD_BYTES = 128
_PRETTY_OPEN = b"{\n  "


def validate_run_id(run_id: Any) -> str:
    """``run_id`` if it can be used in a file name (the rule of every builtin store,
    :func:`abstractruntime_storekit.validate_run_id`), else a ``ValueError`` (``ValidationError``)."""
    return _validate_run_id(run_id, store="the jsonfiles store")


def _is_valid_id(run_id: str) -> bool:
    try:
        validate_run_id(run_id)
    except ValidationError:
        return False
    return True


# --- small file helpers -----------------------------------------------------------------------------------------
def _sig(st: os.stat_result) -> Tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, min(size, 1 << 30), offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _pretty(doc: Dict[str, Any]) -> bytes:
    """Reference formatting: ``json.dumps(doc, indent=2, ensure_ascii=False)`` (orjson produces the same bytes)."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    except (orjson.JSONEncodeError, TypeError):  # e.g. integers beyond 64 bits
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _with_count(body: bytes, count: int) -> bytes:
    """Put ``"_ledger_committed": count`` first into a pretty-printed, non-empty JSON object."""
    if body.startswith(_PRETTY_OPEN) and not body.startswith(b'{\n  "' + COMMITTED_KEY.encode()):
        return b'{\n  "%s": %d,\n  ' % (COMMITTED_KEY.encode(), count) + body[len(_PRETTY_OPEN):]
    doc = json.loads(body.decode("utf-8"))
    doc.pop(COMMITTED_KEY, None)
    return _pretty({COMMITTED_KEY: count, **doc})


def _count_of(doc: Dict[str, Any]) -> Optional[int]:
    value = doc.get(COMMITTED_KEY)
    return value if type(value) is int and value >= 0 else None



__all__ = ["validate_run_id", "COMMITTED_KEY", "FAULT_POINT", "MAX_RUN_ID_LENGTH"]
