"""Media and attachment messages of an LLM_CALL (integration spec §2.7 steps 6, 9 and 11).

* :func:`merge_pending_media`: media queued by ``open_attachment`` (``vars._runtime.pending_media``) join the call's
  media, de-duplicated, and the queue is emptied.
* :func:`with_attachment_messages`: the model-visible "Active attachments" / "Stored session attachments" system
  messages (a derived view, never persisted), replacing older injected ones.
* :class:`MediaStage`: a per-call temporary directory (``abstractruntime_media_*``, removed after the call) where
  ``{"$artifact": id}`` refs are written as files; small text artifacts are inlined into the last user message
  instead.
"""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from .errors import MediaError

ATTACHMENT_MESSAGE_PREFIXES = ("Active attachments", "Stored session attachments", "Session attachments")
DEFAULT_MAX_INLINE_BYTES = 120_000
_TEXT_TYPES = {"application/json", "application/x-json", "application/ld+json", "application/yaml",
               "application/x-yaml", "application/xml", "application/javascript", "application/x-javascript",
               "application/ecmascript", "application/typescript", "application/x-typescript"}


def _truthy(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "y", "on")


def boolish(value: Any) -> bool:
    """bool as is; number -> ``!= 0``; string -> a truthy string; anything else -> False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return _truthy(value)


def artifact_id_of(item: Any) -> Optional[str]:
    if not isinstance(item, dict):
        return None
    value = item.get("$artifact", item.get("artifact_id"))
    return value.strip() if isinstance(value, str) and value.strip() else None


def _media_key(item: Any) -> Optional[str]:
    if isinstance(item, str):
        return item.strip() or None
    aid = artifact_id_of(item)
    return f"$artifact:{aid}" if aid else None


def merge_pending_media(media: Any, runtime_ns: Any) -> Any:
    """The call's media plus ``runtime_ns["pending_media"]`` (de-duplicated; entries without a key dropped), the
    queue reset to ``[]`` whenever it is a list. Without pending media, ``media`` is returned unchanged."""
    if not isinstance(runtime_ns, dict) or not isinstance(runtime_ns.get("pending_media"), list):
        return media
    pending = runtime_ns["pending_media"]
    runtime_ns["pending_media"] = []
    if not pending:
        return media
    seen = set()
    merged: List[Any] = []
    for item in (list(media) if isinstance(media, list) else []) + list(pending):
        key = _media_key(item)
        if key is None or key in seen:
            continue
        seen.add(key)
        merged.append(dict(item) if isinstance(item, dict) else item.strip())
    return merged


# --- attachment messages (step 9) ---------------------------------------------------------------------------------
def _tool_names(tools: Any) -> List[str]:
    names = []
    for tool in tools or []:
        if isinstance(tool, dict):
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else {}
            name = tool.get("name") or fn.get("name")
            if isinstance(name, str):
                names.append(name.strip())
    return names


def include_index(*, params: Dict[str, Any], runtime_ns: Dict[str, Any], payload: Dict[str, Any], media: Any,
                  tools: Any) -> bool:
    """Whether the "Stored session attachments" index is shown (params, then ``_runtime.control``, then the
    heuristic: not with media; with tools; else ``include_context``/``use_context``)."""
    if params.get("include_session_attachments_index") is not None:
        return boolish(params["include_session_attachments_index"])
    control = runtime_ns.get("control") if isinstance(runtime_ns.get("control"), dict) else {}
    if control.get("include_session_attachments_index") is not None:
        return boolish(control["include_session_attachments_index"])
    if isinstance(media, list) and media:
        return False
    if tools:
        return True
    context = payload.get("include_context")
    return boolish(context if context is not None else payload.get("use_context"))


def _is_injected(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("role") != "system":
        return False
    content = message.get("content")
    return isinstance(content, str) and content.strip().startswith(ATTACHMENT_MESSAGE_PREFIXES)


def with_attachment_messages(messages: Any, *, media: Any, tools: Any, show_index: bool, artifact_store: Any,
                             session_id: Optional[str]) -> Any:
    """``messages`` led by the attachment system messages (older injected ones removed); unchanged when there
    is nothing to show. A None ``messages`` becomes a list."""
    from .session_attachments import (
        list_session_attachments,
        render_active_attachments_system_message,
        render_session_attachments_system_message,
    )

    active = render_active_attachments_system_message(media) if isinstance(media, list) and media else ""
    stored = ""
    if show_index and artifact_store is not None and session_id:
        entries = list_session_attachments(artifact_store=artifact_store, session_id=session_id, limit=20)
        stored = render_session_attachments_system_message(
            entries, include_open_attachment_hint="open_attachment" in _tool_names(tools))
    if not active and not stored:
        return messages
    lead = [{"role": "system", "content": text} for text in (active, stored) if text]
    rest = [m for m in (messages if isinstance(messages, list) else []) if not _is_injected(m)]
    return lead + rest


# --- media (step 11) ----------------------------------------------------------------------------------------------
def _is_text_type(content_type: str) -> bool:
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    return ct.startswith("text/") or ct in _TEXT_TYPES or ct.endswith(("+json", "+xml", "+yaml"))


def _label(item: Dict[str, Any], aid: str) -> str:
    for key in ("filename",):
        if isinstance(item.get(key), str) and item[key].strip():
            return item[key].strip()
    for key in ("source_path", "path"):
        if isinstance(item.get(key), str) and item[key].strip():
            return os.path.basename(item[key].strip().rstrip("/\\").replace("\\", "/")) or aid
    return aid


def materialized_name(item: Dict[str, Any], aid: str, content_type: str) -> str:
    """``<sanitised stem>__<first 8 chars of the id><ext>`` (at most 220 characters, the extension kept)."""
    desired = None
    for key in ("source_path", "path", "filename", "name"):
        if isinstance(item.get(key), str) and item[key].strip():
            desired = item[key].strip()
            break
    base = os.path.basename((desired or aid).replace("\\", "/").rstrip("/")) or aid
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    stem, suffix = os.path.splitext(safe)
    if not suffix:
        guessed = mimetypes.guess_extension((content_type or "").split(";", 1)[0].strip()) or ""
        suffix = ".jpg" if guessed == ".jpe" else guessed
    stem = stem or "attachment"
    name = f"{stem}__{aid[:8]}{suffix}"
    return name if len(name) <= 220 else name[:220 - len(suffix)] + suffix


def _max_inline_bytes(params: Dict[str, Any]) -> int:
    for key in ("max_inline_attachment_bytes", "max_inline_text_attachment_bytes"):
        value = params.get(key)
        if value is not None and not isinstance(value, bool):
            try:
                return max(0, int(value))
            except (TypeError, ValueError):
                continue
    return DEFAULT_MAX_INLINE_BYTES


class MediaStage:
    """One call's media: inline small text artifacts, write the other artifact refs into a temp directory.
    Use as a context manager: the directory is removed on exit."""

    def __init__(self, artifact_store: Any) -> None:
        self.artifact_store = artifact_store
        self.directory: Optional[str] = None

    def __enter__(self) -> "MediaStage":
        self.directory = tempfile.mkdtemp(prefix="abstractruntime_media_")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def inline_text(self, messages: Any, media: List[Any], params: Dict[str, Any]) -> Tuple[Any, List[Any]]:
        """Append small text artifacts to the last user message with string content; they leave ``media``."""
        if self.artifact_store is None or not isinstance(messages, list):
            return messages, media
        target = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], dict)
                       and messages[i].get("role") == "user" and isinstance(messages[i].get("content"), str)), None)
        if target is None:
            return messages, media
        limit = _max_inline_bytes(params)
        blocks: List[str] = []
        remaining: List[Any] = []
        for item in media:
            aid = artifact_id_of(item)
            text = self._small_text(aid, limit) if aid else None
            if text is None:
                remaining.append(item)
                continue
            label = _label(item, aid or "")
            blocks.append(f"\n\n--- Content from {label} ---\n{text}\n--- End of {label} ---")
        if not blocks:
            return messages, media
        out = list(messages)
        out[target] = {**out[target], "content": out[target]["content"] + "".join(blocks)}
        return out, remaining

    def _small_text(self, aid: str, limit: int) -> Optional[str]:
        try:
            meta = self.artifact_store.get_metadata(aid)
            if meta is None or not _is_text_type(getattr(meta, "content_type", "")):
                return None
            if int(getattr(meta, "size_bytes", 0) or 0) > limit:
                return None
            artifact = self.artifact_store.load(aid)
        except Exception:  # resolution reports a broken artifact
            return None
        content = getattr(artifact, "content", None)
        if not isinstance(content, (bytes, bytearray)) or len(content) > limit:
            return None
        return bytes(content).decode("utf-8", errors="replace")

    def resolve(self, media: List[Any]) -> List[str]:
        """Paths for the client: strings as stripped paths, artifact refs written into the temp directory."""
        paths: List[str] = []
        for item in media:
            if isinstance(item, str):
                if item.strip():
                    paths.append(item.strip())
                continue
            aid = artifact_id_of(item)
            if aid is None:
                raise MediaError(f"Unsupported media item (expected path or artifact ref): {type(item).__name__}")
            paths.append(self._materialize(item, aid))
        return paths

    def _materialize(self, item: Dict[str, Any], aid: str) -> str:
        if self.artifact_store is None:
            raise MediaError("Artifact-backed media requires an ArtifactStore (missing artifact_store)")
        artifact = self.artifact_store.load(aid)
        if artifact is None:
            raise MediaError(f"Artifact '{aid}' not found")
        content = getattr(artifact, "content", None)
        if not isinstance(content, (bytes, bytearray)):
            raise MediaError(f"Artifact '{aid}' content is not bytes")
        try:
            content_type = getattr(getattr(artifact, "metadata", None), "content_type", "") or ""
            assert self.directory is not None, "MediaStage is used as a context manager"
            path = os.path.join(self.directory, materialized_name(item, aid, content_type))
            with open(path, "wb") as fh:
                fh.write(bytes(content))
        except Exception as exc:
            raise MediaError(f"Failed to materialize artifact '{aid}': {exc}") from exc
        return path


__all__ = ["ATTACHMENT_MESSAGE_PREFIXES", "boolish", "artifact_id_of", "merge_pending_media", "include_index",
           "with_attachment_messages", "materialized_name", "MediaStage"]
