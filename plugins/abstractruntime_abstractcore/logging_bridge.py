"""``get_logger(name)`` of the reference path ``abstractruntime.integrations.abstractcore.logging``.

Returns AbstractCore's structured logger (keyword fields: ``logger.warning("msg", provider=...)``), which this
plugin routes to standard-library loggers named ``abstractcore.<name>`` without touching the host's logging
configuration (see :mod:`._isolation`). Without AbstractCore it returns a structlog logger, which takes keyword
fields too (the reference falls back to ``logging.getLogger(name)``, which does not).
"""

from __future__ import annotations

from typing import Any

import structlog


def get_logger(name: str) -> Any:
    try:
        from ._isolation import import_abstractcore

        module = import_abstractcore("abstractcore.utils.structured_logging")
        return module.get_logger(name)
    except Exception:
        return structlog.get_logger(name)


__all__ = ["get_logger"]
