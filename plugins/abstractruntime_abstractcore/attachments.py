"""The runtime-owned tool ``open_attachment`` (spec §15.3): a model reads a file attached to its session.

The TOOL_CALLS handler answers ``open_attachment`` calls itself, from the runtime's artifact store, whatever the
tool executor is (they never reach it, so they need no approval and never make the step wait: the tool only
reads). An artifact is *attached to the session* of the calling run when

* its metadata ``run_id`` is the calling run or one of its ancestors (up to the session's root run) and it is not
  one of the runtime's own artifacts (memory spans, tool-result journal, evidence, snapshots, offloaded values), or
* it is tagged ``{"kind": "attachment", "session_id": <the run's session id>}`` (use this to share a file across
  the turns -- root runs -- of a session), or
* a ``{"$artifact": id}`` reference to it is in ``vars.context.attachments`` of the run or an ancestor (what
  VisualFlow hands to ``llm_call`` as ``media``).

A file name comes from the reference's ``filename``/``name`` or the artifact's ``filename``/``name`` tag.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from abstractruntime_pluginkit.run_tree import ancestors

from .errors import AttachmentError

NAME = "open_attachment"
DEFAULT_MAX_CHARS = 20000
_TEXT_TYPES = {"application/json", "application/xml", "application/javascript", "application/x-javascript",
               "application/yaml", "application/x-yaml", "application/toml", "application/x-ndjson",
               "application/sql", "application/x-sh", "application/csv"}


def artifact_store_of(runtime: Any) -> Any:
    """``runtime.artifact_store``, else the store beside the runtime's persistent store (artifacts plugin)."""
    store = getattr(runtime, "artifact_store", None)
    if store is None and runtime is not None and hasattr(runtime, "run_store"):
        try:
            from abstractruntime_artifacts import artifact_store_for

            store = artifact_store_for(runtime)
        except Exception:
            store = None
    return store


#: ``kind`` tags of the runtime's own artifacts (memory spans, tool-result journal, evidence, snapshots): stored
#: under a run id, but not attachments. Values offloaded from checkpoints and ledger rows carry a ``source`` tag.
INTERNAL_KINDS = frozenset({"memory_span", "tool_result", "evidence", "evidence_content", "workflow_snapshot"})


def _internal(tags: Mapping[str, Any]) -> bool:
    return tags.get("kind") in INTERNAL_KINDS or "source" in tags


def _run_chain(runtime: Any, run: Any) -> List[Any]:
    """The calling run and its ancestors, up to the root."""
    run_store = getattr(runtime, "run_store", None)
    return [run] + (list(ancestors(run_store, run)) if run_store is not None else [])


def _context_refs(chain: List[Any]) -> Dict[str, Optional[str]]:
    """``{artifact id: file name or None}`` of the ``vars.context.attachments`` references of the chain."""
    refs: Dict[str, Optional[str]] = {}
    for run in chain:
        context = run.vars.get("context") if isinstance(run.vars, dict) else None
        items = context.get("attachments") if isinstance(context, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue  # a media path, not an artifact
            aid = item.get("$artifact") or item.get("artifact_id")
            if isinstance(aid, str) and aid and aid not in refs:
                name = item.get("filename") or item.get("name")
                refs[aid] = str(name) if name else None
    return refs


class _Session:
    def __init__(self, runtime: Any, run: Any, store: Any) -> None:
        self.store = store
        self.chain = _run_chain(runtime, run)
        self.run_ids = {r.run_id for r in self.chain}
        self.session_id = next((r.session_id for r in self.chain if r.session_id), None)
        self.refs = _context_refs(self.chain)

    def contains(self, meta: Any) -> bool:
        tags = meta.tags or {}
        if meta.artifact_id in self.refs:
            return True
        if self.session_id is not None and tags.get("kind") == "attachment" \
                and tags.get("session_id") == self.session_id:
            return True
        return meta.run_id in self.run_ids and not _internal(tags)

    def filename(self, meta: Any) -> Optional[str]:
        tags = meta.tags or {}
        return self.refs.get(meta.artifact_id) or tags.get("filename") or tags.get("name")

    def candidates(self) -> Iterator[Any]:
        for aid in self.refs:
            meta = self.store.get_metadata(aid)
            if meta is not None:
                yield meta
        if self.session_id is not None:
            yield from self.store.search(tags={"kind": "attachment", "session_id": self.session_id}, limit=0)
        for run_id in self.run_ids:
            yield from (m for m in self.store.list_by_run(run_id) if not _internal(m.tags or {}))

    def find(self, artifact_id: str, filename: str) -> Tuple[Any, Optional[str]]:
        if artifact_id:
            try:
                artifact = self.store.load(artifact_id)
            except ValueError:  # an id a file store refuses (e.g. path characters)
                artifact = None
            if artifact is None:
                raise AttachmentError(f"attachment {artifact_id} not found")
            if not self.contains(artifact.metadata):
                raise AttachmentError(f"attachment {artifact_id} is not attached to this session")
            return artifact, self.filename(artifact.metadata)
        metas = list(self.candidates())
        for same in (lambda a, b: a == b, lambda a, b: a.casefold() == b.casefold()):
            for meta in metas:
                name = self.filename(meta)
                if name and same(name, filename):
                    artifact = self.store.load(meta.artifact_id)
                    if artifact is not None:
                        return artifact, name
        raise AttachmentError(f"no attachment named {filename!r} in this session")


def _text_of(content: bytes, content_type: str) -> Optional[str]:
    """The content as text when it is text-like; None for binary content."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct.startswith("text/") or ct in _TEXT_TYPES or ct.endswith(("+json", "+xml")):
        return content.decode("utf-8", errors="replace")
    if ct in ("", "application/octet-stream") and b"\0" not in content:  # untyped: text if it is valid UTF-8
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _max_chars(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return DEFAULT_MAX_CHARS
    return n if n > 0 else DEFAULT_MAX_CHARS


def open_attachment(runtime: Any, run: Any, arguments: Mapping[str, Any]) -> Dict[str, Any]:
    """The tool's output for ``arguments`` (``artifact_id`` or ``filename``, ``max_chars``); raises
    :class:`AttachmentError` for a call it cannot answer."""
    raw_id = arguments.get("artifact_id")
    if isinstance(raw_id, Mapping):  # a {"$artifact": id} reference
        raw_id = raw_id.get("$artifact")
    artifact_id = str(raw_id or "").strip()
    filename = str(arguments.get("filename") or "").strip()
    if not artifact_id and not filename:
        raise AttachmentError("open_attachment requires artifact_id or filename")
    store = artifact_store_of(runtime)
    if store is None:
        raise AttachmentError("open_attachment: this runtime has no artifact store")
    artifact, name = _Session(runtime, run, store).find(artifact_id, filename)
    meta = artifact.metadata
    out: Dict[str, Any] = {"artifact_id": meta.artifact_id, "filename": name, "content_type": meta.content_type,
                           "size_bytes": len(artifact.content)}
    text = _text_of(artifact.content, meta.content_type)
    if text is None:
        out["note"] = (f"Binary content ({meta.content_type}) is not returned as text; pass "
                       f'{{"$artifact": "{meta.artifact_id}"}} as media to a model that can read it.')
        return out
    limit = _max_chars(arguments.get("max_chars", DEFAULT_MAX_CHARS))
    out["text"] = text[:limit]
    out["truncated"] = len(text) > limit
    return out


__all__ = ["NAME", "open_attachment", "AttachmentError", "artifact_store_of"]
