"""Import AbstractCore lazily, without letting it reconfigure the host's logging.

Importing ``abstractcore`` (2.x) runs ``abstractcore.utils.structured_logging`` at import time, which clears the
root logger's handlers, installs its own stdout handler, changes the root level and calls
``structlog.configure(...)``. A library must not do that to its host. Everything here is about undoing it:

* :func:`import_abstractcore` imports ``abstractcore`` (and any submodule asked for) inside
  :func:`preserve_logging_config`, which snapshots the root logger (handlers, level, filters, disabled),
  ``logging``'s global disable level and structlog's global configuration, and puts them back afterwards;
* AbstractCore's own ``StructuredLogger`` is re-pointed at standard-library loggers named ``abstractcore.<name>``
  (through the host's structlog configuration when the host configured structlog), and the ``abstractcore``
  logger gets a ``NullHandler`` (the standard library-logging practice), so its messages reach the host's
  handlers when the host has some and are silent otherwise.

The same guard wraps provider construction and tool-module imports, in case a lazily imported AbstractCore
module does something similar. Nothing in this package imports ``abstractcore`` at module import time.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from typing import Any, Dict, Iterator, Tuple

from .errors import AbstractCoreNotInstalledError

_LOCK = threading.RLock()
_PATCHED = False
_LOGGER_PREFIX = "abstractcore"

INSTALL_HINT = (
    "The AbstractCore integration needs the 'abstractcore' package: pip install 'abstractruntime[abstractcore]' "
    "(or pip install 'abstractcore>=2.11.8')"
)


def _structlog_snapshot() -> Tuple[str, Any]:
    try:
        import structlog
    except ImportError:  # pragma: no cover - structlog is a kernel dependency
        return ("none", None)
    config = getattr(getattr(structlog, "_config", None), "_CONFIG", None)
    if config is not None and hasattr(config, "__dict__"):
        return ("private", dict(vars(config)))
    return ("public", (structlog.is_configured(), structlog.get_config()))


def _structlog_restore(snapshot: Tuple[str, Any]) -> None:
    kind, data = snapshot
    if kind == "none":
        return
    import structlog

    if kind == "private":
        config = structlog._config._CONFIG  # type: ignore[attr-defined]
        for key in list(vars(config)):
            if key not in data:
                delattr(config, key)
        for key, value in data.items():
            setattr(config, key, value)
        return
    configured, cfg = data  # pragma: no cover - only for a structlog without _CONFIG
    structlog.reset_defaults()
    if configured:
        structlog.configure(**cfg)


@contextlib.contextmanager
def preserve_logging_config() -> Iterator[None]:
    """Restore the root logger, ``logging.disable`` and structlog's configuration on exit."""
    root = logging.getLogger()
    saved: Dict[str, Any] = {
        "handlers": list(root.handlers),
        "level": root.level,
        "filters": list(root.filters),
        "disabled": root.disabled,
        "disable": logging.root.manager.disable,
    }
    structlog_saved = _structlog_snapshot()
    try:
        yield
    finally:
        root.handlers[:] = saved["handlers"]
        root.setLevel(saved["level"])
        root.filters[:] = saved["filters"]
        root.disabled = saved["disabled"]
        if logging.root.manager.disable != saved["disable"]:
            logging.disable(saved["disable"])
        _structlog_restore(structlog_saved)


def _stdlib_name(name: str) -> str:
    name = str(name or "").strip() or _LOGGER_PREFIX
    return name if name == _LOGGER_PREFIX or name.startswith(_LOGGER_PREFIX + ".") else f"{_LOGGER_PREFIX}.{name}"


def _patch_structured_logger() -> None:
    """Route AbstractCore's ``StructuredLogger`` through our library-logging convention (see module doc)."""
    try:
        module = importlib.import_module("abstractcore.utils.structured_logging")
    except Exception:  # pragma: no cover - other abstractcore layouts
        return
    cls = getattr(module, "StructuredLogger", None)
    if cls is None or getattr(cls, "_abstractruntime_patched", False):
        return

    def _log(self: Any, level: str, message: str, **kwargs: Any) -> None:
        data = {**(getattr(self, "_context", None) or {}), **kwargs}
        name = _stdlib_name(getattr(self, "name", ""))
        try:
            import structlog

            if structlog.is_configured():
                getattr(structlog.get_logger(name), level)(message, **data)
                return
        except Exception:
            pass
        logger = logging.getLogger(name)
        lvl = logging.getLevelName(level.upper())
        if not isinstance(lvl, int) or not logger.isEnabledFor(lvl):
            return
        extra = " ".join(f"{k}={v!r}" for k, v in data.items())
        logger.log(lvl, f"{message} {extra}".rstrip())

    cls._log = _log
    cls._abstractruntime_patched = True
    library_logger = logging.getLogger(_LOGGER_PREFIX)
    if not any(isinstance(h, logging.NullHandler) for h in library_logger.handlers):
        library_logger.addHandler(logging.NullHandler())


def import_abstractcore(module: str = "abstractcore") -> Any:
    """Import ``module`` (``abstractcore`` or one of its submodules) with the host's logging preserved.

    Raises :class:`~.errors.AbstractCoreNotInstalledError` (a ``ModuleNotFoundError``) with an installation hint
    when AbstractCore is not installed.
    """
    global _PATCHED
    with _LOCK:
        try:
            with preserve_logging_config():
                mod = importlib.import_module(module)
                if not _PATCHED:
                    importlib.import_module("abstractcore")
                    _patch_structured_logger()
                    _PATCHED = True
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == "abstractcore" or exc.name.startswith("abstractcore.")) and \
                    module.split(".")[0] == "abstractcore" and exc.name.split(".")[0] == "abstractcore" and \
                    not _abstractcore_installed():
                raise AbstractCoreNotInstalledError(f"{INSTALL_HINT} ({exc})", name=exc.name) from exc
            raise
        return mod


def _abstractcore_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("abstractcore") is not None


def abstractcore_version() -> str:
    try:
        from importlib.metadata import version

        return version("abstractcore")
    except Exception:
        return "unknown"


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Run AbstractCore code that may import more of AbstractCore (provider construction) with the host's
    logging configuration preserved."""
    with _LOCK:
        with preserve_logging_config():
            yield
