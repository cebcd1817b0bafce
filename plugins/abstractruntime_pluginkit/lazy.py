"""Cheap plugin packages: names a plugin package re-exports, imported on first use, and functions whose module is
imported on the first call.

Every installed plugin package is imported when a ``Runtime`` (or the command line) is built, so its ``__init__``
should define its hook implementations and little else (docs/writing-a-plugin.md, "Keep the import cheap")::

    from abstractruntime_pluginkit.lazy import lazy_exports, lazy_function

    __getattr__, __dir__ = lazy_exports(__name__, {"Scheduler": ".scheduler", "create_scheduled_runtime": ".scheduler"})

    @hookimpl
    def abstractruntime_register_effect_handlers():
        return [EffectHandlerDescriptor("ask_user", lazy_function(__name__, ".handlers", "ask_user"))]
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Callable, Dict, List, Tuple


def lazy_exports(package: str, exports: Dict[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for the module ``package``: ``exports`` maps a name to the module that defines it
    (``".store"`` is relative to ``package``; ``".store:Name"`` names a different attribute). A name is imported
    on first access and then kept on the module (PEP 562)."""

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module_name, package), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


def lazy_function(package: str, module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` (relative to ``package``: ``__name__`` in a package's ``__init__``,
    ``__package__`` in one of its modules) on its first call and calls its ``name``: what a descriptor (effect
    handler, runtime method, CLI command) can hold without importing the implementation."""
    target: List[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not target:
            target.append(getattr(importlib.import_module(module, package), name))
        return target[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = importlib.util.resolve_name(module, package) if module.startswith(".") else module
    call.__doc__ = f"{name} of {call.__module__} (imported on the first call)"
    return call


__all__ = ["lazy_exports", "lazy_function"]
