"""``open_attachment`` over a session's attachments (integration-surface §4.3): which attachment a call names
(id, handle, sha256) and the bounded, line-numbered text window (or the media reference) it returns."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from abstractruntime.errors import ValidationError
from abstractruntime_pluginkit.scope_owners import session_memory_owner_run_id  # noqa: F401 - re-exported

_HEX = re.compile(r"[0-9a-f]{8,64}")
_TEXT_TYPES = ("json", "yaml", "xml", "javascript", "typescript", "x-sh", "toml", "csv", "sql", "ndjson")
DEFAULT_MAX_CHARS = 8000
_WIDE_CAP = 50000
_BINARY_NOTICE = "(binary/media attachment; it will be attached as media for the next LLM call)"

Result = Tuple[bool, Optional[Dict[str, Any]], Optional[str]]


def normalize_sha(value: Any) -> Optional[str]:
    text = str(value or "").strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    return text if _HEX.fullmatch(text) else None


def short_sha(value: Any) -> str:
    sha = normalize_sha(value)
    return sha[:8] if sha else ""


def normalize_handle(value: Any) -> str:
    """A handle as the model may write it (``@a.txt``, ``./a.txt``, ``file:///x/a.txt``, ``a\\b``) -> ``a.txt``."""
    text = str(value or "").strip().replace("\\", "/")
    if text.startswith("file://"):
        text = text[len("file://"):]
    while text.startswith("@"):
        text = text[1:]
    while text.startswith("./"):
        text = text[2:]
    return text.strip()


def display_name(handle: Any) -> str:
    text = normalize_handle(handle)
    return text.rsplit("/", 1)[-1] if text.startswith("/") else text


def session_attachment_metas(store: Any, session_id: str) -> List[Any]:
    """The session's attachment metadata, newest first: artifacts of the owner run with ``kind: attachment``,
    and artifacts tagged ``{kind: attachment, session_id}`` stored elsewhere."""
    owner = session_memory_owner_run_id(session_id)
    seen: Dict[str, Any] = {}
    for meta in list(store.list_by_run(owner)) + list(
            store.search(tags={"kind": "attachment", "session_id": str(session_id).strip()}, limit=0)):
        if (meta.tags or {}).get("kind") == "attachment" and meta.artifact_id not in seen:
            seen[meta.artifact_id] = meta
    return sorted(seen.values(), key=lambda m: (m.created_at or "", m.artifact_id), reverse=True)


def _handle_of(meta: Any) -> str:
    tags = meta.tags or {}
    return normalize_handle(tags.get("path") or tags.get("source_path") or tags.get("filename") or "")


def attachment_entry(meta: Any) -> Dict[str, Any]:
    tags = meta.tags or {}
    handle = _handle_of(meta)
    shown = {k: str(v) for k, v in sorted(tags.items())
             if isinstance(v, str) and v.strip() and k != "session_id"}
    entry: Dict[str, Any] = {"handle": handle, "artifact_id": meta.artifact_id,
                             "filename": tags.get("filename") or handle.rsplit("/", 1)[-1]}
    sha = normalize_sha(tags.get("sha256"))
    if sha:
        entry["sha256"] = sha
    entry.update({"content_type": meta.content_type, "size_bytes": meta.size_bytes, "created_at": meta.created_at,
                  "tags": dict(list(shown.items())[:8])})
    return entry


def _matches(meta: Any, handle: str) -> bool:
    tags = meta.tags or {}
    for raw in (tags.get("path"), tags.get("source_path"), tags.get("filename")):
        tag = normalize_handle(raw or "")
        if not tag:
            continue
        if tag == handle:
            return True
        if handle.startswith("/") and not tag.startswith("/") and handle.endswith("/" + tag):
            return True
        if tag.startswith("/") and not handle.startswith("/") and tag.endswith("/" + handle):
            return True
    return False


def _matches_folded(meta: Any, handle: str) -> bool:
    tags = meta.tags or {}
    wanted = handle.casefold()
    return any(normalize_handle(raw or "").casefold() in (wanted,) for raw in (
        tags.get("path"), tags.get("source_path"), tags.get("filename")) if raw)


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    return base.rsplit(".", 1)[0] if "." in base else base


def _suggestions(metas: List[Any], handle: str) -> List[Dict[str, Any]]:
    query_base = handle.rsplit("/", 1)[-1].lower()
    query_stem = _stem(handle)
    scored = []
    for i, meta in enumerate(metas):
        cand = _handle_of(meta)
        cand_stem = _stem(cand)
        if cand.rsplit("/", 1)[-1].lower() == query_base:
            score = 0
        elif query_stem and query_stem in cand_stem:
            score = 1
        elif cand_stem and cand_stem in query_stem:
            score = 2
        elif query_stem and query_stem in cand.lower():
            score = 3
        else:
            continue
        scored.append((score, i, meta))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [{"handle": _handle_of(m), "artifact_id": m.artifact_id, "sha256": normalize_sha((m.tags or {}).get(
        "sha256"))} for _s, _i, m in scored[:5]]


def _fail(rendered: str, error: str, **more: Any) -> Result:
    return False, {"rendered": rendered, **more}, error


def _is_text(content_type: str) -> bool:
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct.startswith("text/") or any(t in ct for t in _TEXT_TYPES)


def _pdf_text(content: bytes, filename: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """Text of a PDF through AbstractCore's media handler; ``(None, {derived_error})`` when that fails."""
    import tempfile
    from pathlib import Path

    try:
        from ._isolation import import_abstractcore

        handler_cls = import_abstractcore("abstractcore.media").AutoMediaHandler
        with tempfile.TemporaryDirectory(prefix="abstractruntime-pdf-") as tmp:
            path = Path(tmp) / (filename.rsplit("/", 1)[-1] or "attachment.pdf")
            path.write_bytes(content)
            media = handler_cls().process_file(str(path))
        text = getattr(media, "content", None)
        if not isinstance(text, str) or not text.strip():
            raise ValidationError("no text extracted")
        mime = getattr(media, "mime_type", None) or "text/markdown"
        return text, {"derived_from_content_type": "application/pdf", "derived_text_content_type": str(mime)}
    except Exception as exc:
        return None, {"derived_error": f"{type(exc).__name__}: {exc}"}


def _window(text: str, *, display: str, meta: Any, start_line: int, end_line: Optional[int], max_chars: int,
            size: int) -> Dict[str, Any]:
    lines = text.splitlines()
    cap = max_chars
    if max_chars == DEFAULT_MAX_CHARS and (size <= 50000 or len(text) <= 30000):
        if start_line == 1 and end_line is not None and end_line <= 20 and len(lines) > end_line:
            end_line = None  # a "preview" of a small file: show all of it
        if end_line is None:
            cap = _WIDE_CAP
    sha = normalize_sha((meta.tags or {}).get("sha256"))
    sha_part = f", sha={sha}" if sha else ""
    if not lines:
        a = b = 0
    else:
        a = min(max(1, start_line), len(lines))
        b = len(lines) if end_line is None else min(max(end_line, a), len(lines))
    header = f"Attachment: {display} (id={meta.artifact_id}{sha_part}, lines {a}-{b})"
    width = len(str(b))
    shown: List[str] = []
    numbered: List[str] = []
    truncated = False
    room = cap - len(header) - 2 if cap > 0 else None
    used = 0
    for n in range(a, b + 1) if lines else ():
        line = f"{str(n).rjust(width)}: {lines[n - 1]}"
        cost = len(line) + (1 if numbered else 0)
        if room is not None and used + cost > room:
            if not numbered:  # the first line is always shown
                line = line[: max(len(str(n).rjust(width)) + 3, room - 1)] + "…"
                numbered.append(line)
                shown.append(lines[n - 1])
            truncated = True
            break
        numbered.append(line)
        shown.append(lines[n - 1])
        used += cost
    rendered = header + ("\n\n" + "\n".join(numbered) if numbered else "")
    if truncated and (room is None or used + len("\n\n… (truncated)") <= room):
        rendered += "\n\n… (truncated)"
    last = a + len(shown) - 1 if shown else b
    return {"rendered": rendered, "content_text": "\n".join(shown), "start_line": a, "end_line": last,
            "truncated": truncated}


def execute_open_attachment(*, artifact_store: Any, session_id: Any, artifact_id: Any, handle: Any,
                            expected_sha256: Any, start_line: Any, end_line: Any, max_chars: Any) -> Result:
    """``(ok, output, error)`` of ``open_attachment`` in session ``session_id`` (see integration-surface §4.3);
    every failed output has a ``rendered`` text for the model."""
    sid = str(session_id or "").strip()
    if not sid:
        return _fail("Error: session_id is required to open attachments.", "session_id is required")
    if artifact_store is None:
        return _fail("Error: ArtifactStore is not available (cannot open attachments).",
                     "ArtifactStore is not available")
    return open_among(artifact_store, session_attachment_metas(artifact_store, sid), artifact_id=artifact_id,
                      handle=handle, expected_sha256=expected_sha256, start_line=start_line, end_line=end_line,
                      max_chars=max_chars)


def open_among(artifact_store: Any, metas: List[Any], *, artifact_id: Any, handle: Any, expected_sha256: Any,
               start_line: Any, end_line: Any, max_chars: Any) -> Result:
    """:func:`execute_open_attachment` over the attachment metadata ``metas`` (newest first)."""
    aid = str(artifact_id or "").strip()
    wanted = normalize_handle(handle)
    selected = next((m for m in metas if aid and m.artifact_id == aid), None)
    if selected is None and aid and not wanted:
        wanted = normalize_handle(aid)  # models confuse ids and handles
    if selected is None:
        if not wanted:
            return _fail("Error: provide artifact_id or handle.", "missing artifact_id/handle")
        found = [m for m in metas if _matches(m, wanted)]
        if not found:  # ours: a handle in another case (models do that) when it names one attachment only
            folded = [m for m in metas if _matches_folded(m, wanted)]
            found = folded if len(folded) == 1 else []
        sha = normalize_sha(expected_sha256)
        if sha:
            found = [m for m in found if normalize_sha((m.tags or {}).get("sha256")) == sha]
        if not found:
            suggestions = _suggestions(metas, wanted)
            text = f"Error: no attachment matches handle '{wanted}' in this session."
            if suggestions:
                text += "\nDid you mean:\n" + "\n".join(
                    f"- {s['handle']} (id={s['artifact_id']}, sha={short_sha(s['sha256']) or '?'})"
                    for s in suggestions)
            return _fail(text, "attachment not found", suggestions=suggestions)
        if len(found) > 1:
            return _fail(f"Error: multiple attachments match '{wanted}'. Provide expected_sha256 or artifact_id.",
                         "multiple matches", candidates=[
                             {"handle": _handle_of(m), "artifact_id": m.artifact_id,
                              "sha256": normalize_sha((m.tags or {}).get("sha256"))} for m in found])
        selected = found[0]
    artifact = artifact_store.load(selected.artifact_id)
    if artifact is None:
        return _fail(f"Error: attachment {selected.artifact_id} is missing from the artifact store.",
                     "attachment not found")
    meta = selected  # its tags may carry a file name the session knows (a context reference)
    tags = meta.tags or {}
    the_handle = _handle_of(meta)
    display = display_name(the_handle) or tags.get("filename") or meta.artifact_id
    content_type = meta.content_type or "application/octet-stream"
    sha = normalize_sha(tags.get("sha256"))
    base = {"artifact_id": meta.artifact_id, "handle": the_handle, "sha256": sha, "content_type": content_type,
            "size_bytes": len(artifact.content)}
    derived: Dict[str, Any] = {}
    text: Optional[str] = None
    is_pdf = "pdf" in content_type.lower() or the_handle.lower().endswith(".pdf")
    if is_pdf:
        text, derived = _pdf_text(artifact.content, the_handle or "attachment.pdf")
    elif _is_text(content_type):
        try:
            text = artifact.content.decode("utf-8")
        except UnicodeDecodeError:
            return _fail("Error: attachment is not valid UTF-8 text (binary?)", "binary content", **base)
    if text is None:
        media: Dict[str, Any] = {"$artifact": meta.artifact_id}
        if tags.get("filename"):
            media["filename"] = tags["filename"]
        if tags.get("path") or tags.get("source_path"):
            media["source_path"] = tags.get("path") or tags.get("source_path")
        media["content_type"] = content_type
        bits = [f"id={meta.artifact_id}"] + ([f"sha={sha[:8]}…"] if sha else []) + [
            content_type, f"{len(artifact.content)} bytes"]
        rendered = f"Attachment: {display} ({', '.join(bits)})\n\n{_BINARY_NOTICE}"
        return True, {"rendered": rendered, **base, "media": [media],
                      "derived_error": derived.get("derived_error")}, None
    start = int(start_line) if start_line not in (None, "") else 1
    end = int(end_line) if end_line not in (None, "") else None
    cap = int(max_chars) if max_chars not in (None, "") else DEFAULT_MAX_CHARS
    window = _window(text, display=display, meta=meta, start_line=start, end_line=end, max_chars=cap,
                     size=len(artifact.content))
    output = {"rendered": window.pop("rendered"), "content_text": window.pop("content_text"), **base, **derived,
              **window}
    return True, output, None


__all__ = ["execute_open_attachment", "open_among", "session_memory_owner_run_id", "session_attachment_metas",
           "attachment_entry", "normalize_handle", "normalize_sha", "display_name", "short_sha"]
