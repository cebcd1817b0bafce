"""Library logging through structlog, without ever configuring it.

If the host has configured structlog (``structlog.configure``), our events go through its configuration. If it
has not, they go to the standard library logger of the same name (``abstractruntime...``) instead of structlog's
print-everything default, so an embedding application sees only warnings (on stderr, via ``logging``'s last
resort) until it opts in -- e.g. ``logging.getLogger("abstractruntime").setLevel(logging.DEBUG)`` plus a handler,
or its own structlog configuration. Per-step events are ``debug``; problems are ``warning``.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog


class _LibraryLogger:
    __slots__ = ("_name", "_stdlib", "_stdlib_logger")

    def __init__(self, name: str) -> None:
        self._name = name
        self._stdlib_logger = logging.getLogger(name)
        self._stdlib = structlog.wrap_logger(
            self._stdlib_logger,
            processors=[
                structlog.stdlib.filter_by_level,
                structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
            ],
            wrapper_class=structlog.stdlib.BoundLogger,
        )

    def _target(self) -> Any:
        return structlog.get_logger(self._name) if structlog.is_configured() else self._stdlib

    def debug(self, event: str, **kw: Any) -> None:
        # The tick loop logs every step at debug: keep the disabled case to two cheap checks.
        if structlog.is_configured():
            structlog.get_logger(self._name).debug(event, **kw)
        elif self._stdlib_logger.isEnabledFor(logging.DEBUG):
            self._stdlib.debug(event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._target().info(event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._target().warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._target().error(event, **kw)


def get_logger(name: str = "abstractruntime") -> _LibraryLogger:
    return _LibraryLogger(name)
