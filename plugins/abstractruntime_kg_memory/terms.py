"""KG terms: the optional packages (imported lazily), predicate normalisation against the ``abstractsemantics``
registry, and ``ex:`` identifiers as kebab-case slugs."""

from __future__ import annotations

import functools
import re
from typing import Any, Dict, Optional, Tuple

from .errors import KgMemoryUnavailableError

#: unknown predicates listed in an error message, at most
MAX_LISTED_UNKNOWN = 12


def abstractmemory_types(what: str = "The KG memory effects") -> Tuple[Any, Any]:
    """``(TripleAssertion, TripleQuery)`` of ``abstractmemory``; :class:`KgMemoryUnavailableError` (a
    ``RuntimeError``) when the package is missing."""
    try:
        from abstractmemory import TripleAssertion, TripleQuery
    except ImportError:
        raise KgMemoryUnavailableError("abstractmemory", what) from None
    return TripleAssertion, TripleQuery


@functools.lru_cache(maxsize=1)
def _predicate_table() -> Dict[str, str]:
    """Case-folded spelling -> canonical registry id, for every registry predicate and known alias."""
    try:
        from abstractsemantics import KG_PREDICATE_ALIAS_MAP_V0, load_semantics_registry
    except ImportError:
        raise KgMemoryUnavailableError("abstractsemantics", "Validating KG predicates") from None
    ids = load_semantics_registry().predicate_ids()
    table = {pid.casefold(): pid for pid in ids}
    for alias, canonical in KG_PREDICATE_ALIAS_MAP_V0.items():
        if canonical in ids:
            table.setdefault(alias.casefold(), canonical)
    return table


def canonical_predicate(predicate: str, *, allow_custom: bool) -> Optional[str]:
    """The registry id of ``predicate`` (case-insensitive, aliases mapped: ``schema:description`` ->
    ``dcterms:description``); an ``ex:`` predicate as given when ``allow_custom``; else None."""
    text = " ".join(predicate.split())
    found = _predicate_table().get(text.casefold())
    if found is not None:
        return found
    if allow_custom and text.casefold().startswith("ex:") and len(text) > 3:
        return text
    return None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slug_term(term: str) -> str:
    """``ex:Alice Smith`` / ``ex:AliceSmith`` / ``ex:alice_smith`` -> ``ex:alice-smith``; other terms unchanged
    (whitespace collapsed). An ``ex:`` term with nothing to slug stays as it is."""
    text = " ".join(term.split())
    if not text[:3].casefold() == "ex:":
        return text
    slug = _NON_SLUG.sub("-", _CAMEL.sub("-", text[3:]).lower()).strip("-")
    return f"ex:{slug}" if slug else text


def text_term(value: Any) -> Optional[str]:
    """A non-blank string (numbers are written as text); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def text_option(payload: Dict[str, Any], *keys: str) -> Optional[str]:
    """The first of ``keys`` that holds a non-blank string, stripped."""
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


__all__ = ["abstractmemory_types", "canonical_predicate", "slug_term", "text_term", "text_option",
           "MAX_LISTED_UNKNOWN"]
