"""Layout rules: every package under kernel/ and plugins/ ships in the wheel, every builtin plugin is an entry point."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _packages(root: str):
    return sorted(p.name for p in (ROOT / root).iterdir() if (p / "__init__.py").exists())


def test_only_packages_sit_directly_in_source_roots():
    for root in ("kernel", "plugins"):
        stray = [p.name for p in (ROOT / root).iterdir()
                 if p.name != "__pycache__" and not (p.is_dir() and (p / "__init__.py").exists())]
        assert stray == [], f"{root}/ must hold only packages, found {stray}"


def test_wheel_contains_exactly_the_kernel_and_plugin_packages():
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    expected = [f"kernel/{p}" for p in _packages("kernel")] + [f"plugins/{p}" for p in _packages("plugins")]
    assert sorted(wheel) == sorted(expected)
    assert _packages("kernel") == ["abstractruntime"]
    assert all(p.startswith("abstractruntime_") for p in _packages("plugins"))


def test_every_builtin_plugin_is_declared_as_an_entry_point():
    """Every package under plugins/ is a plugin (entry point ``abstractruntime``), the namespace overlay (entry point
    ``abstractruntime.namespace``) or a library declared in ``[tool.abstractruntime] libraries``."""
    eps = PYPROJECT["project"]["entry-points"]
    plugins = list(eps["abstractruntime"].values())
    overlays = list(eps["abstractruntime.namespace"].values())
    libraries = PYPROJECT["tool"]["abstractruntime"]["libraries"]
    assert sorted(plugins + overlays + libraries) == _packages("plugins")
    assert len(set(plugins + overlays + libraries)) == len(plugins + overlays + libraries)
