"""Helpers shared by the node families of the catalogue: blank/first-given values, deep copies of JSON values,
event scopes."""

from __future__ import annotations

import copy
from typing import Any

SCOPES = ("session", "workflow", "run", "global")


def blank(value: Any) -> bool:
    """None, or a string of whitespace only."""
    return value is None or (isinstance(value, str) and not value.strip())


def first(*values: Any) -> Any:
    """The first value that is not :func:`blank`, else None."""
    for v in values:
        if not blank(v):
            return v
    return None


def normalize_scope(value: Any) -> str:
    """An event scope (``session``, ``workflow``, ``run``, ``global``); anything else is ``session``."""
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if text in SCOPES else "session"


def copy_value(value: Any) -> Any:
    """A deep copy of a dict or list (a default must not be shared between runs); other values as they are."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


__all__ = ["SCOPES", "blank", "first", "normalize_scope", "copy_value"]
