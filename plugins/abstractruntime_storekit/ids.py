"""The run-id rule every builtin store applies (:func:`validate_run_id`): a run id is 1-200 characters of letters,
digits and ``_ . : -``, and not ``.`` or ``..``. Ids the kernel makes (UUIDs) always pass; an id given by a host is
checked on every read and write, so a run written to one store can always be exported to any other (a file name
in the JSON-files store, a key in LMDB, a row in SQL) and an id such as ``../x`` never reaches a path."""

from __future__ import annotations

import re
from typing import Any

from abstractruntime.errors import ValidationError

MAX_RUN_ID_LENGTH = 200
_RUN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,%d}" % MAX_RUN_ID_LENGTH)


def validate_run_id(run_id: Any, *, store: str = "this store") -> str:
    """``run_id`` if it follows the rule above, else :class:`~abstractruntime.errors.ValidationError` (a
    ``ValueError``) saying what is allowed. Nothing is read or written for a refused id."""
    if type(run_id) is str and _RUN_ID.fullmatch(run_id) and run_id != "." and run_id != "..":
        return run_id
    if isinstance(run_id, str) and len(run_id) > MAX_RUN_ID_LENGTH:
        raise ValidationError(f"run_id of {len(run_id)} characters is too long for {store} "
                              f"(at most {MAX_RUN_ID_LENGTH})")
    raise ValidationError(f"run_id {run_id!r} is not valid for {store}: run ids are made of letters, digits and "
                          f"'_', '.', ':', '-' only (not '.' or '..'), at most {MAX_RUN_ID_LENGTH} characters")


__all__ = ["validate_run_id", "MAX_RUN_ID_LENGTH"]
