"""Instants, not strings: parse ISO-8601 timestamps into timezone-aware datetimes and compare those."""

from __future__ import annotations

from datetime import datetime, timezone

from .errors import ValidationError

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_instant(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (any offset, ``Z``, or naive: taken as UTC) into an aware UTC datetime; raises
    ``ValidationError`` (a ``ValueError``) with the offending text for anything else."""
    if isinstance(value, datetime):
        dt = value
    else:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"Expected an ISO-8601 timestamp string, got {value!r}")
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"Not an ISO-8601 timestamp: {value!r} (expected e.g. '2026-01-31T12:00:00+00:00')") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def instant_micros(value: str) -> int:
    """Microseconds since the Unix epoch of an ISO-8601 timestamp (for ordered indexes)."""
    delta = parse_instant(value) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
