"""The helpers of a compaction: normalise the messages, split them into older and recent ones, describe the span
they make (reference path ``abstractruntime.memory.compaction``; the ``MEMORY_COMPACT`` effect itself is
:mod:`.compaction`)."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, List, Sequence

from attrs import frozen

from abstractruntime.errors import ValidationError


def normalize_messages(messages: Sequence[Any], *, now_iso: Callable[[], str]) -> List[Dict[str, Any]]:
    """Dict entries only, as copies: ``role`` (default ``user``), ``content`` as a string (None: ``""``),
    ``metadata`` a dict with a ``message_id`` (``msg_<uuid hex>`` when missing), ``timestamp`` (``now_iso()`` when
    blank)."""
    out: List[Dict[str, Any]] = []
    for message in messages or []:
        if not isinstance(message, dict):
            continue
        copy = dict(message)
        copy["role"] = str(copy.get("role") or "user")
        content = copy.get("content")
        copy["content"] = "" if content is None else str(content)
        metadata = dict(copy["metadata"]) if isinstance(copy.get("metadata"), dict) else {}
        if not metadata.get("message_id"):
            metadata["message_id"] = f"msg_{uuid.uuid4().hex}"
        copy["metadata"] = metadata
        if not str(copy.get("timestamp") or "").strip():
            copy["timestamp"] = now_iso()
        out.append(copy)
    return out


@frozen
class CompactionSplit:
    """The messages of a compaction: system messages stay, older ones are summarised, recent ones stay."""

    system_messages: List[Dict[str, Any]]
    older_messages: List[Dict[str, Any]]
    recent_messages: List[Dict[str, Any]]

    @property
    def non_system_count(self) -> int:
        return len(self.older_messages) + len(self.recent_messages)


def split_for_compaction(messages: Sequence[Dict[str, Any]], *, preserve_recent: int) -> CompactionSplit:
    """System vs. non-system messages; the last ``preserve_recent`` non-system ones are recent (negative: 0, so
    every non-system message is older; fewer than ``preserve_recent``: all are recent)."""
    keep = max(0, int(preserve_recent))
    system = [m for m in messages if m.get("role") == "system"]
    others = [m for m in messages if m.get("role") != "system"]
    if keep == 0:
        return CompactionSplit(system, others, [])
    if len(others) <= keep:
        return CompactionSplit(system, [], others)
    return CompactionSplit(system, others[:-keep], others[-keep:])


def span_metadata_from_messages(messages: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """``{from_timestamp, to_timestamp, from_message_id, to_message_id, message_count}`` of a non-empty list."""
    if not messages:
        raise ValidationError("span_metadata_from_messages needs at least one message (got an empty list)")
    first, last = messages[0], messages[-1]

    def message_id(m: Dict[str, Any]) -> Any:
        return (m.get("metadata") or {}).get("message_id") if isinstance(m.get("metadata"), dict) else None

    return {"from_timestamp": first.get("timestamp"), "to_timestamp": last.get("timestamp"),
            "from_message_id": message_id(first), "to_message_id": message_id(last),
            "message_count": len(messages)}


__all__ = ["normalize_messages", "CompactionSplit", "split_for_compaction", "span_metadata_from_messages"]
