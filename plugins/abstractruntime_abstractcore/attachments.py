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

* it is an attachment of the session (integration-surface §4.1: stored under the session-memory owner run
  ``session_memory_<sid>`` with ``kind: attachment``; :mod:`.session_attachments`).

A file name comes from the reference's ``filename``/``name`` or the artifact's ``filename``/``name`` tag. The
result is the reference's (:func:`.attachment_open.execute_open_attachment`): a line-numbered, bounded ``rendered``
text and ``content_text`` for text, a ``media`` reference for binary content.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import attrs

from abstractruntime_pluginkit.run_tree import ancestors

from .attachment_open import DEFAULT_MAX_CHARS, open_among, session_attachment_metas
from .errors import AttachmentError

NAME = "open_attachment"


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


def session_id_for(runtime: Any, run: Any) -> Optional[str]:
    """The run's session id, else the nearest ancestor's."""
    if getattr(run, "session_id", None):
        return run.session_id
    return next((r.session_id for r in _run_chain(runtime, run) if r.session_id), None)


def _first(arguments: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = arguments.get(name)
        if value:
            return value
    return None


def open_for_run(runtime: Any, run: Any, arguments: Mapping[str, Any],
                 artifact_store: Any = None) -> Tuple[bool, Dict[str, Any], Optional[str]]:
    """``(ok, output, error)`` of an ``open_attachment`` call of ``run`` (integration-surface §4.3): the session's
    attachments (the reference's registry) plus the artifacts this module's doc lists. Arguments: ``artifact_id``
    | ``$artifact`` | ``id``; ``handle`` | ``path`` | ``filename``; ``expected_sha256`` | ``sha256``;
    ``start_line`` | ``startLine``; ``end_line`` | ``endLine``; ``max_chars`` | ``maxChars``."""
    store = artifact_store if artifact_store is not None else artifact_store_of(runtime)
    if store is None:
        return False, {"rendered": "Error: ArtifactStore is not available (cannot open attachments)."}, \
            "ArtifactStore is not available"
    raw_id = _first(arguments, "artifact_id", "$artifact", "id")
    if isinstance(raw_id, Mapping):  # a {"$artifact": id} reference
        raw_id = raw_id.get("$artifact")
    session = _Session(runtime, run, store)
    metas: List[Any] = session_attachment_metas(store, session.session_id) if session.session_id else []
    known = {m.artifact_id for m in metas}
    for meta in session.candidates():
        if meta.artifact_id in known:
            continue
        known.add(meta.artifact_id)
        name = session.filename(meta)
        if name and not (meta.tags or {}).get("filename"):
            meta = attrs.evolve(meta, tags={**(meta.tags or {}), "filename": name})
        metas.append(meta)
    if not session.session_id and not metas:
        return False, {"rendered": "Error: session_id is required to open attachments."}, "session_id is required"
    max_chars = _first(arguments, "max_chars", "maxChars")
    ok, output, error = open_among(
        store, metas, artifact_id=raw_id, handle=_first(arguments, "handle", "path", "filename"),
        expected_sha256=_first(arguments, "expected_sha256", "sha256"),
        start_line=_first(arguments, "start_line", "startLine") or 1, end_line=_first(arguments, "end_line", "endLine"),
        max_chars=DEFAULT_MAX_CHARS if max_chars is None else max_chars)
    return ok, output or {}, error


__all__ = ["NAME", "open_for_run", "session_id_for", "AttachmentError", "artifact_store_of"]
