"""Lazy re-exports (PEP 562): the compatibility packages name classes of many plugins; importing them all eagerly
would load every plugin for one name."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict


def lazy_exports(module_name: str, mapping: Dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``mapping[name]`` (a module path) on first use."""

    def __getattr__(name: str) -> Any:
        target = mapping.get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module_path, _, attr = target.partition(":")
        value = getattr(importlib.import_module(module_path), attr or name)
        return value

    return __getattr__
