"""Errors of the ``kg_memory`` plugin. Each keeps the builtin base the reference raised (``RuntimeError`` when
``abstractmemory`` is missing, ``TypeError`` for a store without ``add``/``query``, ``ValueError`` for an unknown
scope), so existing ``except`` clauses keep working."""

from __future__ import annotations

from abstractruntime.errors import InvalidStateError, InvalidTypeError, ValidationError

INSTALL_HINT = "pip install 'abstractruntime[kg]' (or: pip install abstractmemory abstractsemantics)"


class KgMemoryUnavailableError(InvalidStateError):
    """A package the KG memory needs (``abstractmemory``, ``abstractsemantics``) is not installed (a
    ``RuntimeError``)."""

    def __init__(self, package: str, what: str) -> None:
        super().__init__(f"{what} needs the {package!r} package, which is not installed: {INSTALL_HINT}")
        self.package = package


class KgStoreTypeError(InvalidTypeError):
    """The object given as the KG store has no callable ``add(list)`` / ``query(TripleQuery)`` (a ``TypeError``)."""


class UnknownMemoryScopeError(ValidationError):
    """A memory scope other than ``run``, ``session``, ``global`` (or ``all`` for queries) (a ``ValueError``)."""

    def __init__(self, scope: object) -> None:
        super().__init__(f"Unknown memory scope: {scope}")
        self.scope = scope


__all__ = ["KgMemoryUnavailableError", "KgStoreTypeError", "UnknownMemoryScopeError", "INSTALL_HINT"]
