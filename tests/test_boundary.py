"""The kernel/plugin boundary, checked on the source tree: the kernel never references a plugin package, no module
is over 600 lines, the kernel stays small, every plugin declares the plugins it imports, and every exception the
project raises is one of ours."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ROOT / "kernel" / "abstractruntime"
PLUGINS = ROOT / "plugins"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: 3,500 until 0.5's durability barriers, durable retry parking, workflow versions and async awaitables (the tick loop
#: and the write path: nothing a plugin can own); the docstrings were condensed by 190 lines to make room first
KERNEL_LINE_BUDGET = 3600
MODULE_LINE_LIMIT = 600


def _py_files(root: Path) -> Iterator[Path]:
    yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _plugin_packages() -> List[str]:
    return sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists())


def test_the_kernel_never_references_a_plugin_package():
    """Neither an import statement nor any string (an import string in a lazy map or an importlib call, or a
    docstring) names a package under plugins/."""
    packages = _plugin_packages()
    offenders = []
    for path in _py_files(KERNEL):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]
            for name in names:
                for package in packages:
                    if package in name:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name[:80]!r}")
    assert offenders == [], "the kernel references plugin packages:\n" + "\n".join(offenders)


def test_no_module_is_over_600_lines():
    big = [f"{p.relative_to(ROOT)} ({n})" for p in list(_py_files(KERNEL)) + list(_py_files(PLUGINS))
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINE_LIMIT]
    assert big == [], f"split these by responsibility: {big}"


def test_the_kernel_without_its_test_helpers_is_within_its_line_budget():
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in _py_files(KERNEL)
                if "testing" not in p.relative_to(KERNEL).parts)
    assert lines <= KERNEL_LINE_BUDGET, f"kernel/ (without testing/) is {lines} lines"


# --- plugins declare what they import from other plugins --------------------------------------------------------
LIBRARIES = set(PYPROJECT["tool"]["abstractruntime"]["libraries"]) | set(
    PYPROJECT["project"]["entry-points"]["abstractruntime.namespace"].values())
#: functions whose imports of another plugin do not make a requirement: a store's sibling services are built with
#: the classes of the plugin that asks for them (and only that plugin calls them); the reference's metrics_many
#: uses the abstractcore plugin's pure call-metrics helper.
EXEMPT_FUNCTIONS = {"artifact_store", "snapshot_store", "command_store", "metrics_many"}
#: modules imported only by such functions: the PostgreSQL implementations of the artifacts and snapshots
#: interfaces (PostgresBackend.artifact_store() / snapshot_store(); the package re-exports them lazily)
EXEMPT_MODULES = {"plugins/abstractruntime_postgres/blobs.py"}


def _entry_point_of() -> Dict[str, str]:
    return {package: name for name, package in PYPROJECT["project"]["entry-points"]["abstractruntime"].items()}


def _imports_of_other_plugins(package: str) -> Set[Tuple[str, str]]:
    """``(imported plugin package, where)`` for every import of another plugin package in ``package``."""
    found = set()
    for path in _py_files(PLUGINS / package):
        if str(path.relative_to(ROOT)) in EXEMPT_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            if func.name in EXEMPT_FUNCTIONS or func.name.startswith("_cli") or func.name == "cli_commands":
                for inner in ast.walk(func):
                    inner._exempt = True  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            if getattr(node, "_exempt", False):
                continue
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for module in modules:
                top = module.split(".")[0]
                if top.startswith("abstractruntime_") and top != package and top not in LIBRARIES:
                    found.add((top, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_every_plugin_declares_the_plugins_it_imports():
    entry = _entry_point_of()
    missing = []
    for package, name in sorted(entry.items()):
        declared = set(getattr(importlib.import_module(package), "abstractruntime_requires", ()))
        for imported, where in sorted(_imports_of_other_plugins(package)):
            if entry.get(imported) not in declared:
                missing.append(f"{where}: {package} imports {imported} (plugin {entry.get(imported)!r}) without "
                               f"declaring it in abstractruntime_requires")
    assert missing == [], "\n".join(missing)


def test_declared_requirements_name_real_plugins():
    entry = _entry_point_of()
    for package in entry:
        for required in getattr(importlib.import_module(package), "abstractruntime_requires", ()):
            assert required in entry.values(), f"{package} requires {required!r}, which is no builtin plugin"


# --- errors -----------------------------------------------------------------------------------------------------
BUILTIN_EXCEPTIONS = {name for name, obj in vars(builtins).items()
                      if isinstance(obj, type) and issubclass(obj, BaseException)}
#: builtins that stay builtins: protocol-required or not errors of ours
ALLOWED_BUILTINS = {"NotImplementedError", "StopIteration", "StopAsyncIteration", "SystemExit", "KeyboardInterrupt",
                    "GeneratorExit"}


def test_every_raise_of_the_project_is_one_of_its_errors():
    """No ``raise ValueError(...)`` and the like: an ``AbstractRuntimeError`` subclass (which may also be a
    ValueError) says what was wrong. ``AttributeError`` only from ``__getattr__``-style protocol methods."""
    offenders = []
    for path in list(_py_files(KERNEL)) + list(_py_files(PLUGINS)):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(func):
                node._in = func.name  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else None
            if name not in BUILTIN_EXCEPTIONS or name in ALLOWED_BUILTINS:
                continue
            if name == "AttributeError" and getattr(node, "_in", "").startswith("__"):
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: raise {name}")
    assert offenders == [], "raise an AbstractRuntimeError subclass instead:\n" + "\n".join(offenders)


def _project_modules() -> Iterator[str]:
    roots = [("abstractruntime", KERNEL)] + [(p, PLUGINS / p) for p in _plugin_packages()]
    for package, path in roots:
        yield package
        for info in pkgutil.walk_packages([str(path)], prefix=package + "."):
            yield info.name


def test_every_exception_class_of_the_project_derives_from_the_base_error():
    from abstractruntime.errors import AbstractRuntimeError

    bad = []
    for name in _project_modules():
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for _n, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and issubclass(obj, BaseException) \
                    and not issubclass(obj, AbstractRuntimeError):
                bad.append(f"{obj.__module__}.{obj.__qualname__}")
    assert bad == [], f"derive these from AbstractRuntimeError (keeping their builtin base): {sorted(set(bad))}"
