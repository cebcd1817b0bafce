"""Session attachments (integration-surface §4): files a session's model has seen, kept in the artifact store.

An attachment is an artifact stored with ``run_id = session_memory_owner_run_id(session_id)`` (or tagged
``session_id`` = the session) whose tags have ``kind: "attachment"``. The TOOL_CALLS handler registers every file a
successful ``read_file`` returned (:func:`register_read_file_attachment`), answers ``open_attachment`` from them
(:func:`execute_open_attachment`, module :mod:`.attachment_open`) and uses them when a ``read_file`` fails. The
LLM_CALL handler tells the model about them with :func:`render_session_attachments_system_message` /
:func:`render_active_attachments_system_message` and hides repeated file dumps with :func:`dedup_messages_view`
(module :mod:`.attachment_view`).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from abstractruntime.logs import get_logger

from .attachment_open import (
    attachment_entry,
    display_name,
    execute_open_attachment,
    normalize_handle,
    session_attachment_metas,
    session_memory_owner_run_id,
    short_sha,
)
from .attachment_view import ParsedToolMessage, dedup_messages_view, parse_tool_message

log = get_logger("abstractruntime.abstractcore")

SESSION_MEMORY_WORKFLOW_ID = "__session_memory__"
DEFAULT_MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024


def list_session_attachments(*, artifact_store: Any, session_id: str, limit: int = 20) -> List[Dict[str, Any]]:
    """The session's attachments, newest first: ``{handle, artifact_id, filename, sha256?, content_type,
    size_bytes, created_at, tags}`` (at most ``limit``; ``limit <= 0``: all)."""
    sid = str(session_id or "").strip()
    if artifact_store is None or not sid:
        return []
    entries = [attachment_entry(m) for m in session_attachment_metas(artifact_store, sid)]
    return entries if int(limit) <= 0 else entries[: int(limit)]


# --- model-visible messages ---------------------------------------------------------------------------------------
_TRUNCATED = "- … (truncated)"
ACTIVE_HEADER = ("Active attachments are already available in this call. Use their content directly; do not call "
                 "tools to re-open them. Do not mention this list.")
STORED_HEADER = ("Stored session attachments (most recent first; not necessarily active in this call). "
                 "Do not mention this list:")
OPEN_HINT = ("Open text via: open_attachment(artifact_id='…', start_line=..., end_line=...). "
             "Open media via: open_attachment(artifact_id='…').")


def _bounded(head: List[str], lines: List[str], max_chars: int) -> str:
    out = list(head)
    length = len("\n".join(out))
    for line in lines:
        if length + 1 + len(line) <= max_chars:
            out.append(line)
            length += 1 + len(line)
            continue
        if len(out) > len(head) and length + 1 + len(_TRUNCATED) <= max_chars:
            out.append(_TRUNCATED)
        break
    text = "\n".join(out)
    if len(text) > max_chars:
        keep = max(0, max_chars - len(_TRUNCATED) - 1)
        text = (text[:keep] + "\n" + _TRUNCATED)[-max_chars:] if keep else _TRUNCATED[:max_chars]
    return text


def _bits(aid: Any, sha: Any, content_type: Any, size: Any) -> List[str]:
    bits = []
    if aid:
        bits.append(f"id={aid}")
    short = short_sha(sha)
    if short:
        bits.append(f"sha={short}…")
    if content_type:
        bits.append(str(content_type))
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        bits.append(f"{size:,} bytes")
    return bits


def render_active_attachments_system_message(media: Any, *, max_entries: int = 12, max_chars: int = 2000) -> str:
    """The system message naming the media attached to this call (``""`` without media)."""
    if max_entries <= 0 or max_chars <= 0 or not isinstance(media, (list, tuple)) or not media:
        return ""
    lines = []
    for item in list(media)[:max_entries]:
        if isinstance(item, str):
            if not item.strip():
                continue
            lines.append(f"- {display_name(item)}")
            continue
        if not isinstance(item, Mapping):
            continue
        aid = item.get("$artifact") or item.get("artifact_id")
        label = item.get("filename")
        if not label:
            raw = item.get("source_path") or item.get("path") or item.get("filename")
            label = display_name(raw) if raw else (f"id={aid}" if aid else "attachment")
        bits = _bits(aid, item.get("sha256"), item.get("content_type"), item.get("size_bytes"))
        lines.append(f"- {label}" + (f" ({', '.join(bits)})" if bits else ""))
    return _bounded([ACTIVE_HEADER], lines, max_chars)


def render_session_attachments_system_message(entries: Any, *, max_entries: int = 20, max_chars: int = 4000,
                                              include_open_attachment_hint: bool = True) -> str:
    """The system message listing stored session attachments (``entries`` as :func:`list_session_attachments`
    returns them). Always has its header (and hint) when the limits are positive."""
    if max_entries <= 0 or max_chars <= 0:
        return ""
    head = [STORED_HEADER] + ([OPEN_HINT] if include_open_attachment_hint else [])
    lines = []
    for entry in list(entries or [])[:max_entries]:
        if not isinstance(entry, Mapping):
            continue
        label = entry.get("filename") or display_name(entry.get("handle") or "") or "attachment"
        bits = _bits(entry.get("artifact_id"), entry.get("sha256"), entry.get("content_type"),
                     entry.get("size_bytes"))
        if entry.get("created_at"):
            bits.append(f"added {entry['created_at']}")
        lines.append(f"- {label}" + (f" ({', '.join(bits)})" if bits else ""))
    return _bounded(head, lines, max_chars)


# --- the owner run and read_file registration ---------------------------------------------------------------------
def ensure_session_owner_run(run_store: Any, session_id: str) -> Optional[str]:
    """Create the session-memory owner run (``workflow_id "__session_memory__"``, completed) if it is missing;
    returns its id (None without a run store)."""
    owner = session_memory_owner_run_id(session_id)
    if run_store is None:
        return None
    if run_store.load(owner) is not None:
        return owner
    from abstractruntime import RunState, RunStatus

    run = RunState(run_id=owner, workflow_id=SESSION_MEMORY_WORKFLOW_ID, status=RunStatus.COMPLETED,
                   current_node="done", session_id=str(session_id).strip(), output={"messages": []},
                   vars={"context": {"messages": []}, "scratchpad": {}, "_runtime": {"memory_spans": []},
                         "_temp": {}})
    run_store.save(run)
    return owner


def max_attachment_bytes() -> int:
    raw = os.environ.get("ABSTRACTGATEWAY_MAX_ATTACHMENT_BYTES", "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_MAX_ATTACHMENT_BYTES
    return value if value > 0 else DEFAULT_MAX_ATTACHMENT_BYTES


def register_read_file_attachment(*, artifact_store: Any, run_store: Any, session_id: str, file_path: str,
                                  workspace_root: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """Store the file ``read_file`` just read as a session attachment (reusing one with the same handle and
    sha256); returns its :func:`attachment_entry`, or None when it cannot (no store or session, missing or too
    large file). Never raises."""
    try:
        sid = str(session_id or "").strip()
        if artifact_store is None or not sid or not str(file_path or "").strip():
            return None
        path = Path(str(file_path).strip()).expanduser().resolve()
        if not path.is_file() or path.stat().st_size > max_attachment_bytes():
            return None
        content = path.read_bytes()
        handle = path.as_posix()
        if workspace_root is not None:
            try:
                handle = path.relative_to(Path(workspace_root).resolve()).as_posix()
            except ValueError:
                pass
        sha = hashlib.sha256(content).hexdigest()
        for meta in session_attachment_metas(artifact_store, sid):
            tags = meta.tags or {}
            if normalize_handle(tags.get("path") or "") == handle and tags.get("sha256") == sha:
                return attachment_entry(meta)
        owner = ensure_session_owner_run(run_store, sid) or session_memory_owner_run_id(sid)
        content_type = mimetypes.guess_type(path.name)[0] or "text/plain"
        meta = artifact_store.store(content, content_type=content_type, run_id=owner, tags={
            "kind": "attachment", "source": "tool.read_file", "path": handle, "filename": path.name,
            "session_id": sid, "sha256": sha})
        return attachment_entry(meta)
    except Exception as exc:  # registration is best effort: the tool result stands as it is
        log.debug("read_file_attachment_not_registered", error=str(exc))
        return None


__all__ = [
    "session_memory_owner_run_id",
    "list_session_attachments",
    "render_session_attachments_system_message",
    "render_active_attachments_system_message",
    "dedup_messages_view",
    "execute_open_attachment",
]
# public too, outside the reference's __all__: ParsedToolMessage, parse_tool_message; and ours:
# register_read_file_attachment, ensure_session_owner_run, max_attachment_bytes
_PUBLIC = (ParsedToolMessage, parse_tool_message, register_read_file_attachment, ensure_session_owner_run)
