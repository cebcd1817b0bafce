"""Memory spans: where they live, how they are found and filtered.

A *span* is a small JSON index entry for something remembered; its content lives in the artifact store:

* ``conversation_span`` -- messages archived by ``MEMORY_COMPACT`` (the artifact holds the messages; the span
  holds the summary that replaced them in the active context);
* ``memory_note`` -- a note written by ``MEMORY_NOTE`` (the artifact holds the note and its sources);
* ``evidence`` -- tool evidence recorded by the ``evidence`` plugin (read-only here).

Spans of scope ``run`` live in the owning run's ``vars._runtime.memory_spans``; scope ``session`` uses the root run
of the caller's run tree as the owner; scope ``global`` spans have no owning run: the span is kept inside its own
artifact, tagged ``{kind: memory_span, scope: global}``, and found by an artifact search.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from attrs import frozen

from abstractruntime.errors import ValidationError
from abstractruntime.timeutil import parse_instant

SCOPES = ("run", "session", "global")
GLOBAL_TAGS = {"kind": "memory_span", "scope": "global"}


def span_id_of(span: Mapping[str, Any]) -> str:
    return str(span.get("span_id") or span.get("evidence_id") or span.get("artifact_id") or "")


def _nested_list(vars: Dict[str, Any], namespace: str, key: str) -> List[Dict[str, Any]]:
    """The (mutable) list ``vars[namespace][key]``, created (with its namespace) when missing."""
    ns = vars.get(namespace)
    if not isinstance(ns, dict):
        ns = vars[namespace] = {}
    items = ns.get(key)
    if not isinstance(items, list):
        items = ns[key] = []
    return items


def run_spans(vars: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The (mutable) span list of a run's variables, ``vars._runtime.memory_spans``."""
    return _nested_list(vars, "_runtime", "memory_spans")


def context_messages(vars: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The (mutable) active context ``vars.context.messages``."""
    return _nested_list(vars, "context", "messages")


def normalize_tags(tags: Any) -> Dict[str, Any]:
    """Tags as a dict: a dict is kept (keys as strings); ``["k=v", "flag"]`` becomes ``{"k": "v", "flag": True}``;
    a single string is one such item."""
    if isinstance(tags, Mapping):
        return {str(k).strip(): v for k, v in tags.items() if str(k).strip()}
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\n]", tags)]
    out: Dict[str, Any] = {}
    for item in tags or []:
        if not isinstance(item, str) or not item.strip():
            continue
        key, sep, value = item.partition("=")
        out[key.strip()] = value.strip() if sep else True
    return out


def _instant(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_instant(value.strip())
    except ValueError:
        return None


@frozen
class TimeRange:
    """A closed time interval; either end may be open (None). Ends are ISO 8601 instants (any offset, or ``Z``).

    An invalid end raises at construction (the reference raised only in :meth:`contains`)."""

    start: Optional[str] = None
    end: Optional[str] = None

    def __attrs_post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and _instant(value) is None:
                raise ValidationError(f"TimeRange.{name}: {value!r} is not an ISO 8601 timestamp "
                                 f"(e.g. 2026-11-26T10:00:00Z)")

    def overlaps(self, start: Optional[str], end: Optional[str] = None) -> bool:
        """Does ``[start, end]`` (an instant when ``end`` is None) intersect this range? Unparsable -> False."""
        lo, hi = _instant(start), _instant(end if end is not None else start)
        if lo is None or hi is None:
            return self.start is None and self.end is None
        if self.start is not None and hi < _instant(self.start):  # type: ignore[operator]
            return False
        if self.end is not None and lo > _instant(self.end):  # type: ignore[operator]
            return False
        return True


    def contains(self, *, start: Optional[str], end: Optional[str]) -> bool:
        """The reference's test of a span's ``[from_timestamp, to_timestamp]``: an unbounded range contains
        everything; otherwise a missing end never matches, and an unparsable one raises ``ValueError``."""
        if self.start is None and self.end is None:
            return True
        if start is None or end is None:
            return False
        lo, hi = parse_instant(str(start)), parse_instant(str(end))
        if self.start is not None and hi < parse_instant(self.start):
            return False
        return not (self.end is not None and lo > parse_instant(self.end))


def span_interval(span: Mapping[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    created = span.get("created_at")
    return span.get("from_timestamp") or created, span.get("to_timestamp") or created


def tags_match(span_tags: Mapping[str, Any], wanted: Mapping[str, Any], mode: str = "all") -> bool:
    """``wanted`` values: ``True`` = the key is present; a list = any of these values; else equality."""
    if not wanted:
        return True

    def one(key: str, value: Any) -> bool:
        if key not in span_tags:
            return False
        have = span_tags[key]
        if value is True:
            return True
        if isinstance(value, list):
            return have in value or (isinstance(have, list) and any(v in have for v in value))
        return have == value or (isinstance(have, list) and value in have)

    hits = [one(k, v) for k, v in wanted.items()]
    return any(hits) if mode == "any" else all(hits)


def _lower_set(values: Any) -> Optional[set]:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    found = {str(v).strip().lower() for v in values if str(v).strip()}
    return found or None


def spans_of(vars: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The dict entries of ``vars._runtime.memory_spans`` (read only; :func:`run_spans` for the mutable list)."""
    spans = ((vars.get("_runtime") or {}).get("memory_spans")) or []
    return [s for s in spans if isinstance(s, dict)]


def filter_span_list(
    spans: Iterable[Mapping[str, Any]],
    *,
    time_range: Optional[TimeRange] = None,
    tags: Any = None,
    tags_mode: str = "all",
    authors: Any = None,
    locations: Any = None,
    kinds: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    """The spans (copies) that match every given filter: what ``MEMORY_QUERY`` filters by."""
    wanted_tags = normalize_tags(tags)
    wanted_authors, wanted_locations = _lower_set(authors), _lower_set(locations)
    out = []
    for span in spans:
        if kinds and span.get("kind") not in kinds:
            continue
        if time_range is not None and not time_range.overlaps(*span_interval(span)):
            continue
        if not tags_match(span.get("tags") or {}, wanted_tags, tags_mode):
            continue
        if wanted_authors and str(span.get("author") or "").lower() not in wanted_authors:
            continue
        if wanted_locations and str(span.get("location") or "").lower() not in wanted_locations:
            continue
        out.append(dict(span))
    return out


__all__ = ["TimeRange", "SCOPES", "spans_of", "filter_span_list", "GLOBAL_TAGS", "span_id_of", "run_spans",
           "context_messages", "normalize_tags", "span_interval", "tags_match"]
