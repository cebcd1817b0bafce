"""Modules and names of the ``abstractruntime`` namespace served by *overlays* (packages declared under the
entry-point group ``abstractruntime.namespace``; docs/architecture.md). Lazily, for what the kernel lacks only: a
module ``abstractruntime.<path>`` is ``<overlay>.<path>`` (one object), a missing name is the overlay module's."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

GROUP = "abstractruntime.namespace"
ROOT = "abstractruntime"
_PREFIX = ROOT + "."
_MISSING = object()


@functools.lru_cache(maxsize=1)
def overlays() -> Tuple[str, ...]:
    """The overlay packages declared by installed distributions (entry-point values), by entry-point name."""
    from importlib import metadata  # read on first use (import abstractruntime stays light)

    return tuple(ep.value for ep in sorted(metadata.entry_points(group=GROUP), key=lambda ep: ep.name))


def _overlay_module(overlay: str, package: str) -> Optional[Any]:
    """``<overlay>.<rest of package>`` (``package`` is a kernel package name), or None if the overlay has none."""
    name = overlay + package[len(ROOT):]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None  # the overlay has no such module (a missing dependency of one is a real error)
        raise


class _AliasLoader:  # the importlib.abc.Loader protocol (not subclassed: importlib.abc costs start-up time)
    """Loads ``abstractruntime.<path>`` as the already existing module ``<overlay>.<path>``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: Any) -> None:
        # The import system returns sys.modules[name] after exec_module, so the alias *is* the overlay module.
        sys.modules[module.__name__] = importlib.import_module(self.target)

    def get_code(self, fullname: str) -> Any:  # ``python -m abstractruntime.<path>`` (runpy)
        spec = importlib.util.find_spec(self.target)
        return spec.loader.get_code(self.target) if spec is not None and spec.loader is not None else None


class _OverlayFinder:  # the importlib.abc.MetaPathFinder protocol
    """First on ``sys.meta_path``, for names under ``abstractruntime.`` only."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        if not fullname.startswith(_PREFIX):
            return None
        parent_name, _, child = fullname.rpartition(".")
        parent = sys.modules.get(parent_name)
        real_parent = getattr(parent, "__name__", parent_name)
        if real_parent != parent_name:  # below an aliased overlay package: its own submodule, never a copy
            return self._alias(fullname, f"{real_parent}.{child}")
        for finder in sys.meta_path:  # the kernel's own modules first
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        rest = fullname[len(ROOT):]
        for overlay in overlays():
            try:
                found = importlib.util.find_spec(overlay + rest)
            except ModuleNotFoundError:
                continue
            if found is not None:
                return self._alias(fullname, overlay + rest, found)
        return None

    @staticmethod
    def _alias(fullname: str, target: str, found: Any = None) -> Any:
        if found is None:
            found = importlib.util.find_spec(target)
            if found is None:
                return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(target), origin=found.origin,
                                               is_package=found.submodule_search_locations is not None)


def install() -> None:
    if not any(isinstance(f, _OverlayFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OverlayFinder())


def package_getattr(package: str, own: Sequence[str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for the kernel package ``package`` whose own public names are ``own``."""

    def _from_overlays(name: str) -> Any:
        for overlay in overlays():
            module = _overlay_module(overlay, package)
            if module is not None and hasattr(module, name):
                return getattr(module, name)
        return _MISSING

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            names: Dict[str, None] = dict.fromkeys(own)
            for overlay in overlays():
                module = _overlay_module(overlay, package)
                names.update(dict.fromkeys(getattr(module, "__all__", ()) if module is not None else ()))
            value: Any = list(names)
        elif name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            value = _from_overlays(name)
            if value is _MISSING:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # resolved once
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(__getattr__("__all__")))

    return __getattr__, __dir__


__all__ = ["GROUP", "overlays", "install", "package_getattr"]
