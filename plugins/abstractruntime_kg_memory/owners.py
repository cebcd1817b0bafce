"""Scope owners of KG memory (reference ``resolve_scope_owner_id``).

``run`` -> the run's id; ``session`` -> ``session_memory_<sid>`` (or ``session_memory_sha_<32 hex>``) for a run
with a session id, else the id of the root of its ``parent_run_id`` chain; ``global`` ->
``$ABSTRACTRUNTIME_GLOBAL_MEMORY_RUN_ID`` when safe, else ``global_memory``. The session owner is the same one the
session attachments use, so both share one owner run.
"""

from __future__ import annotations

from typing import Any

from abstractruntime_pluginkit.run_tree import root_of
from abstractruntime_pluginkit.scope_owners import global_memory_owner_run_id, session_memory_owner_run_id

from .errors import UnknownMemoryScopeError

SCOPES = ("run", "session", "global")


def normalize_scope(scope: Any, *, default: str = "run") -> str:
    """Trimmed, lower-cased scope; blank gives ``default``."""
    text = str(scope if scope is not None else "").strip().lower()
    return text or default


def resolve_scope_owner_id(run: Any, *, scope: str, run_store: Any) -> str:
    """The owner id of ``scope`` memory for ``run`` (see the module doc); another scope raises ``ValueError``."""
    name = normalize_scope(scope)
    if name == "run":
        return str(run.run_id)
    if name == "session":
        session_id = str(getattr(run, "session_id", None) or "").strip()
        if session_id:
            return session_memory_owner_run_id(session_id)
        root = root_of(run_store, run) if run_store is not None else run
        return str(root.run_id)
    if name == "global":
        return global_memory_owner_run_id()
    raise UnknownMemoryScopeError(scope)


__all__ = ["resolve_scope_owner_id", "normalize_scope", "SCOPES"]
