"""Attachment-backed stand-ins for ``list_files``, ``skim_folders``, ``skim_files`` and ``search_files`` when the
workspace policy refuses the call's path (integration-surface §4.4; ``read_file`` is in :mod:`.tool_postprocess`).

A model that saw a file in an earlier turn of its session (``read_file`` registered it as a session attachment,
§4.1) may name it again with a path the run's workspace refuses. Instead of the refusal, the TOOL_CALLS handler
answers from the session's attachments: stored artifact bytes, never the file system. No path of the call is ever
opened, listed or stat'ed here; a path is only compared, as a string, with the attachments' handles. That is why
these stand-ins may bypass the workspace's allow/ignore rules: they show the session what it has already been
given, nothing more. When no attachment matches, :func:`stand_in` returns None and the refusal stands.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import unquote

import attrs

from abstractruntime.logs import get_logger

from .attachment_open import _is_text, normalize_handle, open_among, session_attachment_metas
from .tool_arguments import split_path_argument

log = get_logger("abstractruntime.abstractcore")

NAMES = ("list_files", "skim_folders", "skim_files", "search_files")
BLOCKED = "attachments only; filesystem access blocked"
NO_MATCHES = "No matches found in session attachments."
LIST_HEAD_LIMIT = 10
SEARCH_HEAD_LIMIT = 10
SEARCH_MAX_HITS = 8
SKIM_HEAD_LINES = 25
SKIM_MAX_CHARS = 12000
FOLDER_MAX_ENTRIES = 200
_MAX_LINE_CHARS = 500


@attrs.frozen
class Attached:
    """One session attachment as the stand-ins see it: its normalised handle and stored metadata."""

    handle: str
    meta: Any

    @property
    def size(self) -> Optional[int]:
        size = getattr(self.meta, "size_bytes", None)
        return size if isinstance(size, int) and not isinstance(size, bool) else None


def call_handle(value: Any) -> str:
    """A path as a model writes it -> the handle form: ``@`` and ``./`` dropped, ``file://`` URLs decoded,
    backslashes turned into ``/``, repeated and trailing ``/`` removed (``.`` and blank -> ``""``)."""
    text = str(value or "").strip()
    if text.lower().startswith("file://"):
        text = unquote(text[len("file://"):])
        if text.lower().startswith("localhost/"):
            text = text[len("localhost"):]
    text = normalize_handle(text)
    text = re.sub(r"/{2,}", "/", text)
    if len(text) > 1:
        text = text.rstrip("/")
    return "" if text in (".", "./") else text


def session_attachments(store: Any, session_id: str) -> List[Attached]:
    """The session's attachments, newest version per handle, sorted by handle."""
    newest: Dict[str, Attached] = {}
    for meta in session_attachment_metas(store, session_id):  # newest first
        tags = meta.tags or {}
        handle = call_handle(tags.get("path") or tags.get("source_path") or tags.get("filename") or "")
        if handle and handle not in newest:
            newest[handle] = Attached(handle=handle, meta=meta)
    return [newest[h] for h in sorted(newest)]


def _first(arguments: Mapping[str, Any], *names: str) -> Any:
    return next((arguments.get(n) for n in names if arguments.get(n) not in (None, "", [])), None)


def _flag(arguments: Mapping[str, Any], *names: str) -> bool:
    value = _first(arguments, *names)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _limit(arguments: Mapping[str, Any], names: Tuple[str, ...], default: int) -> Optional[int]:
    """A positive limit; an explicit null or a non-positive value means no limit; missing or invalid -> default."""
    present = [n for n in names if n in arguments]
    if not present:
        return default
    value = arguments[present[0]]
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else None


def _globs(pattern: Any) -> List[str]:
    return [p.strip().lower() for p in str(pattern or "*").split("|") if p.strip()] or ["*"]


def _glob_match(name: str, globs: List[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), g) for g in globs)


def _split_paths(value: Any) -> List[str]:
    """A ``paths`` argument as the skim tools read it: a list, a JSON array, or ``|`` / newline / comma separated."""
    items = split_path_argument(value)
    items = [str(v) for v in items if v is not None] if isinstance(items, (list, tuple)) else []
    return [p.strip() for p in items if p.strip()]


def relative_to(handle: str, prefix: str) -> Optional[str]:
    """``handle`` relative to the folder ``prefix`` (``""``: every handle); a handle equal to the prefix is a file
    named directly (its base name); None when the handle is not under the prefix."""
    if not prefix:
        return handle.lstrip("/") or None
    if handle == prefix:
        return handle.rsplit("/", 1)[-1]
    head = prefix if prefix.endswith("/") else prefix + "/"
    return handle[len(head):] if handle.startswith(head) else None


def same_handle(handle: str, wanted: str) -> bool:
    """The handle the call names: equal, or an absolute path ending with a relative handle (and the reverse)."""
    if not wanted:
        return False
    if handle == wanted:
        return True
    if wanted.startswith("/") and not handle.startswith("/"):
        return wanted.endswith("/" + handle)
    if handle.startswith("/") and not wanted.startswith("/"):
        return handle.endswith("/" + wanted)
    return False


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _sized(name: str, size: Optional[int]) -> str:
    return f"{name} ({size:,} bytes)" if size is not None else name


def _shown(lines: List[str], limit: Optional[int]) -> List[str]:
    if limit is None or len(lines) <= limit:
        return lines
    return lines[:limit] + [f"  ... ({len(lines) - limit} more)"]


# --- the four stand-ins: each returns the tool's text, or None when no attachment matches --------------------------
def list_files_text(items: Iterable[Attached], arguments: Mapping[str, Any]) -> Optional[str]:
    prefix = call_handle(_first(arguments, "directory_path", "path", "directory", "dir", "folder"))
    pattern = str(_first(arguments, "pattern") or "*")
    globs = _globs(pattern)
    recursive = _flag(arguments, "recursive")
    include_hidden = _flag(arguments, "include_hidden", "includeHidden")
    dirs, files = set(), {}
    for item in items:
        rel = relative_to(item.handle, prefix)
        if rel is None or (not include_hidden and _hidden(rel)):
            continue
        parts = rel.split("/")
        if recursive or len(parts) == 1:
            if _glob_match(parts[-1], globs):
                files[rel] = item.size
        elif _glob_match(parts[0], globs):
            dirs.add(parts[0] + "/")
    if not dirs and not files:
        return None
    entries = [f"  {d}" for d in sorted(dirs)] + [f"  {_sized(f, files[f])}" for f in sorted(files)]
    header = (f"Entries in '{prefix or '.'}' matching '{pattern}' (hidden entries "
              f"{'included' if include_hidden else 'excluded'}; {BLOCKED}):")
    return "\n".join([header] + _shown(entries, _limit(arguments, ("head_limit", "headLimit"), LIST_HEAD_LIMIT)))


def skim_folders_text(items: List[Attached], arguments: Mapping[str, Any]) -> Optional[str]:
    prefixes = [call_handle(p) for p in _split_paths(_first(arguments, "paths", "path", "directory_path", "folder"))]
    globs = _globs(_first(arguments, "file_pattern", "filePattern"))
    include_hidden = _flag(arguments, "include_hidden", "includeHidden")
    blocks, matched = [], False
    for prefix in prefixes or [""]:
        folders: Dict[str, List[str]] = {}
        for item in items:
            rel = relative_to(item.handle, prefix)
            if rel is None or (not include_hidden and _hidden(rel)):
                continue
            folder, _, name = rel.rpartition("/")
            if _glob_match(name, globs):
                folders.setdefault(folder, []).append(_sized(name, item.size))
        count = sum(len(v) for v in folders.values())
        if not count:
            blocks.append(f"Folder map for '{prefix or '.'}' (no session attachments under this path; "
                          f"filesystem access blocked)")
            continue
        matched = True
        lines = [f"Folder map for '{prefix or '.'}' ({count} attachment{'s' if count != 1 else ''}; {BLOCKED}):"]
        for folder in sorted(folders):
            names = sorted(folders[folder])
            lines.append(f"{folder + '/' if folder else './'} ({len(names)} file{'s' if len(names) != 1 else ''})")
            lines += _shown([f"  {n}" for n in names], FOLDER_MAX_ENTRIES)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if matched else None


def skim_files_text(store: Any, items: List[Attached],
                    arguments: Mapping[str, Any]) -> Optional[Tuple[str, List[Any]]]:
    """``(text, media)``: each handle opened as ``open_attachment`` would (lines 1..head_lines)."""
    handles = _split_paths(_first(arguments, "paths", "path", "file_path", "filename", "file"))
    try:
        raw = _first(arguments, "head_lines", "headLines")
        head = SKIM_HEAD_LINES if raw is None else int(raw)
    except (TypeError, ValueError):
        head = SKIM_HEAD_LINES
    head = min(max(head, 1), 400)
    metas = [item.meta for item in items]
    parts, media, found = [], [], False
    for raw in handles:
        try:
            ok, output, error = open_among(store, metas, artifact_id=None, handle=call_handle(raw),
                                           expected_sha256=None, start_line=1, end_line=head,
                                           max_chars=SKIM_MAX_CHARS)
        except Exception as exc:  # a damaged artifact is a line of the answer, never a failed step
            ok, output, error = False, {"rendered": f"Error: {type(exc).__name__}: {exc}"}, "open failed"
        output = output or {}
        found = found or error != "attachment not found"
        media += [m for m in output.get("media") or [] if ok]
        parts.append(str(output.get("rendered") or f"Error: {error}"))
    return ("\n\n".join(parts), media) if found else None


def _text_of(store: Any, item: Attached) -> Optional[str]:
    meta = item.meta
    if not _is_text(meta.content_type or "") or "pdf" in (meta.content_type or "").lower():
        return None
    artifact = store.load(meta.artifact_id)
    if artifact is None:
        return None
    try:
        return artifact.content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def search_files_answer(store: Any, items: List[Attached], arguments: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    pattern = _first(arguments, "pattern", "query", "regex")
    if pattern is None:
        return None
    pattern = str(pattern)
    wanted = call_handle(_first(arguments, "path", "directory_path", "file_path", "directory", "dir", "folder"))
    globs = _globs(_first(arguments, "file_pattern", "filePattern"))
    texts = [(item, text) for item in items if _glob_match(item.handle.rsplit("/", 1)[-1], globs)
             for text in [_text_of(store, item)] if text is not None]
    if not texts:
        return None
    chosen = [t for t in texts if same_handle(t[0].handle, wanted)] or [
        t for t in texts if wanted and relative_to(t[0].handle, wanted) is not None] or texts
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        return {"success": False, "output": None, "error": f"Invalid regex pattern '{pattern}': {exc}"}
    per_file = _limit(arguments, ("head_limit", "headLimit"), SEARCH_HEAD_LIMIT)
    max_hits = _limit(arguments, ("max_hits", "maxHits"), SEARCH_MAX_HITS)
    lines = [f"Search results in session attachments for pattern '{pattern}' ({BLOCKED}):"]
    files = 0
    for item, text in chosen:
        hits = [(n, line) for n, line in enumerate(text.splitlines(), 1) if regex.search(line)]
        if not hits:
            continue
        if max_hits is not None and files >= max_hits:
            lines += ["", f"Note: stopped after max_hits={max_hits}; more attachments may match."]
            break
        files += 1
        lines += ["", f"File: {item.handle}"]
        for n, line in hits if per_file is None else hits[:per_file]:
            line = line.rstrip()
            lines.append(f"  {n}: {line if len(line) <= _MAX_LINE_CHARS else line[:_MAX_LINE_CHARS] + '…'}")
    if not files:
        lines += ["", NO_MATCHES]
    return {"success": True, "output": "\n".join(lines), "error": None}


def stand_in(store: Any, session_id: Optional[str], name: str,
             arguments: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """``{success, output, error[, media]}`` answering the refused call ``name(arguments)`` from the session's
    attachments, or None (no store, no session, not one of :data:`NAMES`, or no matching attachment)."""
    if store is None or not session_id or name not in NAMES:
        return None
    try:
        return _answer(store, session_id, name, arguments if isinstance(arguments, Mapping) else {})
    except Exception as exc:  # an unreadable store leaves the refusal standing, never a failed step
        log.warning("attachment_stand_in_failed", tool=name, error=f"{type(exc).__name__}: {exc}")
        return None


def _answer(store: Any, session_id: str, name: str, arguments: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    items = session_attachments(store, session_id)
    if not items:
        return None
    if name == "search_files":
        return search_files_answer(store, items, arguments)
    if name == "skim_files":
        answer = skim_files_text(store, items, arguments)
        return None if answer is None else {"success": True, "output": answer[0], "error": None, "media": answer[1]}
    text = (list_files_text if name == "list_files" else skim_folders_text)(items, arguments)
    return None if text is None else {"success": True, "output": text, "error": None}


__all__ = ["NAMES", "stand_in", "call_handle", "session_attachments", "relative_to", "same_handle"]
