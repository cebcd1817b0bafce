"""Event wait keys: ``evt:{scope}:{scope_id}:{name}`` (reference format)."""

from __future__ import annotations

from typing import Optional

from abstractruntime.errors import ValidationError

SCOPES = ("session", "workflow", "run", "global")


def build_event_wait_key(
    *,
    scope: Optional[str],
    name: str,
    session_id: Optional[str] = None,
    workflow_id: Optional[str] = None,
    run_id: Optional[str] = None,
) -> str:
    """Scope is lower-cased (blank means ``session``), the name stripped; the scope id comes from the matching
    argument (``global`` uses the literal ``global``). Raises ``ValueError`` for an unknown scope, an empty name or
    a missing scope id."""
    scope_v = (scope or "").strip().lower() or "session"
    if scope_v not in SCOPES:
        raise ValidationError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    name_v = (name or "").strip() if isinstance(name, str) else ""
    if not name_v:
        raise ValidationError("event name must be a non-empty string")
    scope_id = {
        "session": session_id,
        "workflow": workflow_id,
        "run": run_id,
        "global": "global",
    }[scope_v]
    if not scope_id:
        raise ValidationError(f"scope {scope_v!r} needs a {scope_v}_id")
    return f"evt:{scope_v}:{scope_id}:{name_v}"


__all__ = ["SCOPES", "build_event_wait_key"]
