"""The plugin tables of docs/architecture.md and docs/index.md list exactly the plugins pyproject.toml declares,
with the right package and (architecture.md) the requirements each plugin declares; the library table lists the
libraries and the namespace overlay."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENTRY_POINTS: Dict[str, str] = PYPROJECT["project"]["entry-points"]["abstractruntime"]


def _table(page: str, header: str) -> List[List[str]]:
    lines = (ROOT / "docs" / page).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cell: str) -> List[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.mark.parametrize("page", ["architecture.md", "index.md"])
def test_the_plugin_table_matches_the_entry_points(page):
    rows = _table(page, "| Plugin (entry point) | Package |")
    documented = {_names(r[0])[0]: _names(r[1])[0] for r in rows}
    assert documented == ENTRY_POINTS


def test_the_requires_column_is_what_each_plugin_declares():
    for row in _table("architecture.md", "| Plugin (entry point) | Package |"):
        package = _names(row[1])[0]
        declared = tuple(getattr(importlib.import_module(package), "abstractruntime_requires", ()))
        assert sorted(_names(row[3])) == sorted(declared), f"{package}: the table says {row[3]!r}"


def test_the_library_table_lists_the_libraries_and_the_overlay():
    rows = _table("architecture.md", "| Package | Kind | What it is |")
    documented = {_names(r[0])[0]: r[1] for r in rows}
    expected = {name: "library" for name in PYPROJECT["tool"]["abstractruntime"]["libraries"]}
    expected.update({pkg: "namespace overlay"
                     for pkg in PYPROJECT["project"]["entry-points"]["abstractruntime.namespace"].values()})
    assert documented == expected
