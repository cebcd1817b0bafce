"""Structured-output schemas of the ``llm_call`` and ``agent`` nodes (VAM §2.2).

:func:`response_schema` normalises a node's ``resp_schema`` / ``response_schema`` value and resolves a top-level
``$ref: "abstractsemantics:<name>"`` through the optional ``abstractsemantics`` package
(``abstractsemantics.resolve_schema_ref(schema) -> dict | None``). A reference that cannot be resolved raises a
:class:`SchemaRefError` (a ``RuntimeError``) that names the reference and says what to do -- on the agent node too,
where the reference implementation swallowed it and ran the agent with empty inputs (a defect, not copied).
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional

from abstractruntime.errors import InvalidStateError

from .errors import NodeDependencyError

REF_PREFIX = "abstractsemantics:"


class SchemaRefError(InvalidStateError):
    """A structured-output schema ``$ref`` cannot be resolved (``.ref`` is the reference)."""

    def __init__(self, message: str, *, ref: str) -> None:
        super().__init__(message)
        self.ref = ref


class SchemaRefDependencyError(SchemaRefError, NodeDependencyError):
    """A structured-output schema ``$ref`` needs ``abstractsemantics``, which is not installed."""


def normalize_schema(value: Any) -> Optional[Dict[str, Any]]:
    """None / non-dicts / empty dicts -> None; ``{type: "json_schema", json_schema: {schema: {...}}}`` -> the inner
    schema (a wrapper without a dict ``schema`` -> None); any other dict -> a shallow copy."""
    if not isinstance(value, dict) or not value:
        return None
    if value.get("type") == "json_schema" and "json_schema" in value:
        wrapper = value.get("json_schema")
        inner = wrapper.get("schema") if isinstance(wrapper, dict) else None
        return dict(inner) if isinstance(inner, dict) and inner else None
    return dict(value)


def resolve_schema_ref(schema: Dict[str, Any]) -> Dict[str, Any]:
    """``schema`` itself unless its top-level ``$ref`` starts with ``abstractsemantics:``; then the schema the
    ``abstractsemantics`` package resolves it to (:class:`SchemaRefError` when it cannot)."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.strip().startswith(REF_PREFIX):
        return schema
    try:
        from abstractsemantics import resolve_schema_ref as resolver  # optional dependency
    except ImportError:
        raise SchemaRefDependencyError(
            f"Structured-output schema ref requires the 'abstractsemantics' package in the runtime's Python "
            f"environment to resolve $ref {ref!r} (interpreter: {sys.executable}). Install it there "
            f"(pip install abstractsemantics) or give the node an inline JSON Schema.", ref=ref) from None
    resolved = resolver(dict(schema))
    if not isinstance(resolved, dict) or not resolved:
        raise SchemaRefError(
            f"Unknown structured-output schema ref: {ref} (abstractsemantics does not know it; use a ref it "
            f"provides, e.g. 'abstractsemantics:kg_assertion_schema_v0', or an inline JSON Schema)", ref=ref)
    return dict(resolved)


def response_schema(value: Any) -> Optional[Dict[str, Any]]:
    """The node's structured-output schema (VAM §2.2), or None for no structured output."""
    schema = normalize_schema(value)
    return resolve_schema_ref(schema) if schema is not None else None


__all__ = ["SchemaRefError", "SchemaRefDependencyError", "normalize_schema", "resolve_schema_ref",
           "response_schema"]
