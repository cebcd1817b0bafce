"""View-time de-duplication of file dumps in the messages sent to a model (integration-surface §4.5).

Only ``role: "tool"`` messages whose content reads ``[<tool>]: <body>`` are looked at. A ``read_file`` body is
identified by its ``File: <path> (<n> lines)`` line, its first and last numbered lines and the sha256 of the whole
body; an ``open_attachment`` body by its ``Attachment: ...`` header. The first occurrence is kept and later
identical ones become a short stub that says how to re-open the file. The durable context is never changed: the
function returns new message dicts.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from attrs import frozen

from .attachment_open import normalize_handle, short_sha

_TOOL_MESSAGE = re.compile(r"\A\[([^\]]*)\]:[ \t]?(.*)\Z", re.DOTALL)
_FILE_LINE = re.compile(r"\AFile: (.+?) \((\d+) lines?\)")
_NUMBERED = re.compile(r"^\s*(\d+): ", re.MULTILINE)
_ATTACHMENT = re.compile(r"\AAttachment: (.+?) \(id=([^,)]+)(?:, sha=([0-9a-fA-F]+)…?)?(?:, lines (\d+)-(\d+))?")


@frozen
class ParsedToolMessage:
    tool_name: str
    body: str


def parse_tool_message(text: Any) -> Optional[ParsedToolMessage]:
    """``"[<name>]: <body>"`` -> ``ParsedToolMessage(name, body)`` (name trimmed, non-empty; body may span
    lines); None for anything else."""
    if not isinstance(text, str):
        return None
    match = _TOOL_MESSAGE.match(text)
    if match is None or not match.group(1).strip():
        return None
    return ParsedToolMessage(tool_name=match.group(1).strip(), body=match.group(2))


def _line_range(body: str) -> Tuple[Optional[int], Optional[int]]:
    numbers = [int(n) for n in _NUMBERED.findall(body)]
    return (numbers[0], numbers[-1]) if numbers else (None, None)


def _attachments_for(path: str, attachments: List[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    wanted = normalize_handle(path)
    out = []
    for entry in attachments:
        handle = normalize_handle(entry.get("handle") or "")
        if handle and (handle == wanted or wanted.endswith("/" + handle) or handle.endswith("/" + wanted)):
            out.append(entry)
    return out


def _read_file_stub(path: str, a: Any, b: Any, matches: List[Mapping[str, Any]]) -> str:
    shown = path.rsplit("/", 1)[-1] if path.startswith("/") else path
    text = f"[read_file]: (duplicate) File already shown above: {shown} lines {a}-{b}."
    if len(matches) == 1:
        aid = matches[0].get("artifact_id")
        text += (f"\nRe-open with open_attachment(artifact_id='{aid}', start_line={a}, end_line={b})."
                 f" Attached artifact: id={aid}, sha={short_sha(matches[0].get('sha256')) or '?'}…")
    elif matches:
        listed = "; ".join(f"id={m.get('artifact_id')}, sha={short_sha(m.get('sha256')) or '?'}…" for m in matches)
        text += f" Attached candidates: {listed} (specify expected_sha256)"
    return text


def dedup_messages_view(messages: Any, *, session_attachments: Any = None) -> List[Dict[str, Any]]:
    """A copy of ``messages`` where repeated ``read_file`` / ``open_attachment`` tool outputs are stubs (see the
    module doc). Non-dict messages are dropped."""
    attachments = [e for e in (session_attachments or []) if isinstance(e, Mapping)]
    seen: set = set()
    out: List[Dict[str, Any]] = []
    for message in messages or []:
        if not isinstance(message, Mapping):
            continue
        copy = dict(message)
        parsed = parse_tool_message(copy.get("content")) if copy.get("role") == "tool" else None
        if parsed is None:
            out.append(copy)
            continue
        body = parsed.body
        if parsed.tool_name == "read_file":
            match = _FILE_LINE.match(body)
            if match is None:
                out.append(copy)
                continue
            path = match.group(1).strip()
            matches = _attachments_for(path, attachments) if path.startswith("/") else []
            key_path = normalize_handle(matches[0].get("handle")) if len(matches) == 1 else path
            a, b = _line_range(body)
            key = ("read_file", key_path, a, b, hashlib.sha256(body.encode("utf-8")).hexdigest())
            if key in seen:
                copy["content"] = _read_file_stub(path, a, b, matches or _attachments_for(path, attachments))
            seen.add(key)
        elif parsed.tool_name == "open_attachment":
            match = _ATTACHMENT.match(body)
            if match is None:
                out.append(copy)
                continue
            header = body.split("\n", 1)[0]
            key = ("open_attachment", header)
            if key in seen:
                h, aid, a, b = match.group(1), match.group(2), match.group(4), match.group(5)
                copy["content"] = (f"[open_attachment]: (duplicate) Attachment already shown above: {h} lines "
                                   f"{a}-{b} (id={aid}).\nRe-open with open_attachment(artifact_id='{aid}', "
                                   f"start_line={a}, end_line={b}).")
            seen.add(key)
        out.append(copy)
    return out


__all__ = ["ParsedToolMessage", "parse_tool_message", "dedup_messages_view"]
