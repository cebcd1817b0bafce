"""What the TOOL_CALLS handler does around ``read_file`` with session attachments (integration-surface §3.1 step 7,
§4.4): a file a successful ``read_file`` returned is registered as a session attachment (and a very large output
is replaced by a stub pointing to it); a ``read_file`` that fails -- or that the workspace policy refuses -- is
answered from a session attachment of the same handle when there is one. Media an ``open_attachment`` returns are
queued in ``vars._runtime.pending_media`` for the next LLM call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from . import attachments
from .attachment_open import short_sha
from .session_attachments import register_read_file_attachment

INLINE_ENV = "ABSTRACTRUNTIME_MAX_INLINE_BYTES"
DEFAULT_MAX_INLINE_BYTES = 262144
_FILE_ARGS = ("file_path", "path", "filename", "file")


def max_inline_bytes() -> int:
    try:
        value = int(os.environ.get(INLINE_ENV, ""))
    except ValueError:
        return DEFAULT_MAX_INLINE_BYTES
    return value if value > 0 else DEFAULT_MAX_INLINE_BYTES


def file_argument(arguments: Any) -> Optional[str]:
    if not isinstance(arguments, Mapping):
        return None
    for key in _FILE_ARGS:
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def queue_pending_media(run: Any, media: Any) -> None:
    """Append ``media`` (de-duplicated) to ``vars._runtime.pending_media``: the next LLM_CALL attaches it."""
    if not isinstance(media, list) or not media:
        return
    runtime_ns = run.vars.get("_runtime")
    if not isinstance(runtime_ns, dict):
        runtime_ns = run.vars["_runtime"] = {}
    pending = runtime_ns.get("pending_media")
    if not isinstance(pending, list):
        pending = runtime_ns["pending_media"] = []
    for item in media:
        if item not in pending:
            pending.append(item)


def _line_count(output: Mapping[str, Any]) -> int:
    a, b = output.get("start_line"), output.get("end_line")
    if isinstance(a, int) and isinstance(b, int) and b >= a > 0:
        return b - a + 1
    text = output.get("content_text")
    return len(text.splitlines()) if isinstance(text, str) else 0


def read_file_from_attachment(runtime: Any, run: Any, store: Any, requested: str,
                              arguments: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """``{ok, output, error, not_found}`` of answering ``read_file(requested)`` from a session attachment."""
    def first(*names: str) -> Any:
        return next((arguments.get(n) for n in names if arguments.get(n)), None)

    ok, output, error = attachments.open_for_run(runtime, run, {
        "handle": requested, "start_line": first("start_line", "startLine", "start_line_one_indexed") or 1,
        "end_line": first("end_line", "endLine", "end_line_one_indexed_inclusive", "end_line_one_indexed"),
        "max_chars": 8000}, store)
    queue_pending_media(run, output.get("media"))
    if not ok:
        return {"ok": False, "output": None, "error": output.get("rendered") or error,
                "not_found": error in ("attachment not found", "session_id is required")}
    rendered = str(output.get("rendered") or "")
    lines = rendered.split("\n\n", 1)[1] if "\n\n" in rendered else ""
    text = (f"File: {requested} ({_line_count(output)} lines)\n(from attachment: @{output.get('handle')}, "
            f"id={output.get('artifact_id')}, sha={short_sha(output.get('sha256'))}…)\n{lines}")
    return {"ok": True, "output": text, "error": None, "not_found": False}


def post_process_read_file(runtime: Any, run: Any, *, store: Any, run_store: Any, workspace_root: Optional[Path],
                           call: Mapping[str, Any], result: Dict[str, Any]) -> Dict[str, Any]:
    """``result`` of a ``read_file`` call after the attachment fallback / registration (see the module doc)."""
    requested = file_argument(call.get("arguments"))
    session_id = attachments.session_id_for(runtime, run)
    if requested is None or store is None:
        return result
    if not result.get("success"):
        if not session_id:
            return result
        answer = read_file_from_attachment(runtime, run, store, requested, call.get("arguments") or {})
        if answer and answer["ok"]:
            return {**result, "success": True, "output": answer["output"], "error": None}
        return result
    output = result.get("output")
    if not isinstance(output, str) or not output.startswith("File:") or not session_id:
        return result
    entry = register_read_file_attachment(artifact_store=store, run_store=run_store, session_id=session_id,
                                          file_path=requested if Path(requested).is_absolute() or
                                          workspace_root is None else str(Path(workspace_root) / requested),
                                          workspace_root=workspace_root)
    if entry is None or len(output.encode("utf-8")) <= max_inline_bytes():
        return result
    shown = entry.get("handle") or Path(requested).name
    stub = (f"[read_file]: (stored as attachment) @{shown} (id={entry['artifact_id']}, "
            f"sha={short_sha(entry.get('sha256'))}…).\nUse open_attachment(artifact_id='{entry['artifact_id']}', "
            f"start_line=1, end_line=200) for bounded excerpts.")
    return {**result, "output": stub}


__all__ = ["post_process_read_file", "read_file_from_attachment", "queue_pending_media", "file_argument",
           "max_inline_bytes", "INLINE_ENV"]
