"""Library logging through structlog, never configuring it: through the host's structlog configuration if any, else
to the standard library logger of the same name, so only warnings show until the host opts in (docs/architecture.md,
Logging). Per-step events are ``debug``; problems are ``warning``. structlog is imported on the first event emitted,
not with the library (``import structlog`` loads its console renderer, and ``rich`` with it)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Dict, List

CONTEXT_FIELDS: List[Callable[[], Dict[str, Any]]] = []  # fields added to each event (otel: trace_id, span_id)
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}  # LogRecord's: passed with a "_"


class _LibraryLogger:
    __slots__ = ("_name", "_stdlib", "_stdlib_logger")

    def __init__(self, name: str) -> None:
        self._name, self._stdlib_logger, self._stdlib = name, logging.getLogger(name), None

    def _emit(self, level: int, method: str, event: str, kw: Any) -> None:
        # The tick loop logs every step at debug: keep the disabled case to two cheap checks. A host that configured
        # structlog has imported it, so an unimported structlog means "not configured".
        structlog = sys.modules.get("structlog")
        if structlog is not None and getattr(structlog, "is_configured", bool)():
            return getattr(structlog.get_logger(self._name), method)(event, **kw)
        if not self._stdlib_logger.isEnabledFor(level):
            return None
        if self._stdlib is None:
            import structlog

            render = structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True)
            self._stdlib = structlog.wrap_logger(self._stdlib_logger, processors=[  # fields: LogRecord attributes
                structlog.stdlib.filter_by_level, lambda lg, m, ev: {"msg": render(lg, m, dict(ev)), "extra": {
                    (k + "_" if k in _RESERVED else k): v for fields in (*CONTEXT_FIELDS, lambda: ev)
                    for k, v in fields().items()}}], wrapper_class=structlog.stdlib.BoundLogger)
        return getattr(self._stdlib, method)(event, **kw)

    def enabled(self, level: int = logging.DEBUG) -> bool:
        """Could an event at ``level`` be emitted? (To skip building a per-step event nobody will see.)"""
        structlog = sys.modules.get("structlog")
        configured = structlog is not None and getattr(structlog, "is_configured", bool)()
        return configured or self._stdlib_logger.isEnabledFor(level)

    def debug(self, event: str, **kw: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._emit(logging.INFO, "info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit(logging.WARNING, "warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit(logging.ERROR, "error", event, kw)


def get_logger(name: str = "abstractruntime") -> _LibraryLogger:
    return _LibraryLogger(name)
