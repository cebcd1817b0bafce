"""docs/compatibility.md matches the code.

The root-name table must list exactly the 79 names of the reference's root package (spec §1.1), and the module
table every module path of spec §1.2. A row marked ``available`` must import, from the module named in "Defined
in"; a row marked ``planned`` must *not* import, so the page has to be updated when the name lands.

The spec is read from ``<repo>/../shared/spec/reference-api.md`` when it exists; without it, the tests check the
page against itself (79 distinct root names) and against the code.

Run ``python tests/test_compatibility_doc.py`` to print both tables generated from the code (planned rows get the
plugin names below); paste them into docs/compatibility.md.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "compatibility.md"
SPEC = REPO.parent / "shared" / "spec" / "reference-api.md"

ROOT_HEADER = "| Group | Name | Status | Defined in |"
MODULE_HEADER = "| Module | Status | Not yet |"
ROOT_NAME_COUNT = 79
NONE_CELL = "—"

#: The plugin planned to provide what is not available yet, by spec group (root names) or module path.
PLANNED_BY_GROUP = {
    "Scheduler": "scheduler",
    "Command inbox": "commands",
    "Provenance / observation": "provenance",
    "Offloading": "artifacts",
    "Snapshots": "snapshots",
    "Artifacts": "artifacts",
    "Memory helpers": "active_memory",
    "Workflow bundles": "bundles",
    "History export": "history",
}
PLANNED_BY_MODULE = {
    "abstractruntime.storage.json_files": "jsonfiles",
    "abstractruntime.storage.commands": "commands",
    "abstractruntime.storage.artifacts": "artifacts",
    "abstractruntime.storage.offloading": "artifacts",
    "abstractruntime.storage.ledger_chain": "provenance",
    "abstractruntime.storage.snapshots": "snapshots",
    "abstractruntime.scheduler": "scheduler",
    "abstractruntime.evidence": "evidence",
    "abstractruntime.memory": "active_memory",
    "abstractruntime.history_bundle": "history",
    "abstractruntime.rendering": "rendering",
    "abstractruntime.workflow_bundle": "bundles",
    "abstractruntime.visualflow_compiler": "visualflow",
    "abstractruntime.integrations.abstractcore": "abstractcore",
    "abstractruntime.integrations.abstractcore.default_tools": "abstractcore",
    "abstractruntime.integrations.abstractcore.tool_executor": "abstractcore",
    "abstractruntime.integrations.abstractcore.mcp_worker": "abstractcore",
    "abstractruntime.integrations.abstractmemory": "abstractmemory",
}

_CODE = re.compile(r"`([^`]+)`")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --- the spec -------------------------------------------------------------------------------------------------

def _section(text: str, start: str, end: str) -> str:
    i = text.index(start)
    j = text.index(end, i + len(start))
    return text[i:j]


def _cells(line: str) -> List[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def spec_root_names(text: str) -> List[Tuple[str, str]]:
    """``[(group, name), ...]`` of spec §1.1, in spec order."""
    out = []
    for line in _section(text, "### 1.1", "### 1.2").splitlines():
        if not line.startswith("| ") or line.startswith("| Group") or line.startswith("|---"):
            continue
        group, names = _cells(line)[:2]
        out.extend((group, n) for n in _CODE.findall(names) if _IDENT.fullmatch(n))
    return out


def spec_modules(text: str) -> List[Tuple[str, str]]:
    """``[(module path, names cell), ...]`` of spec §1.2; ``.x`` entries are siblings of the cell's first path."""
    out = []
    for line in _section(text, "### 1.2", "Import forms").splitlines():
        if not line.startswith("| `"):
            continue
        paths_cell, names_cell = _cells(line)[:2]
        paths = _CODE.findall(paths_cell)
        parent = paths[0].rsplit(".", 1)[0]
        for p in paths:
            out.append((parent + p if p.startswith(".") else p, names_cell if len(paths) <= 2 else ""))
    return out


def spec_text() -> Optional[str]:
    return SPEC.read_text(encoding="utf-8") if SPEC.is_file() else None


# --- the code -------------------------------------------------------------------------------------------------

def _root_object(name: str):
    return getattr(importlib.import_module("abstractruntime"), name)


def defined_in(obj) -> str:
    """Where an object is defined: ``__module__`` for classes and functions, else the root package itself."""
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return obj.__module__
    return "abstractruntime"


def root_rows(spec: str) -> List[Tuple[str, str, str, str]]:
    rows = []
    for group, name in spec_root_names(spec):
        try:
            obj = _root_object(name)
        except (AttributeError, ImportError):
            rows.append((group, name, f"planned: {PLANNED_BY_GROUP.get(group, '?')} plugin", NONE_CELL))
        else:
            rows.append((group, name, "available", defined_in(obj)))
    return rows


def module_rows(spec: str) -> List[Tuple[str, str, str]]:
    rows = []
    for path, names_cell in spec_modules(spec):
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError:
            rows.append((path, f"planned: {PLANNED_BY_MODULE.get(path, '?')} plugin", NONE_CELL))
            continue
        names_cell = names_cell.split("(not ")[0]
        wanted = [n for n in _CODE.findall(names_cell) if _IDENT.fullmatch(n)]
        missing = [n for n in wanted if not hasattr(module, n)]
        rows.append((path, "available", ", ".join(f"`{n}`" for n in missing) or NONE_CELL))
    return rows


# --- the page -------------------------------------------------------------------------------------------------

def doc_table(header: str) -> List[List[str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert lines.count(header) == 1, f"docs/compatibility.md must contain the table header {header!r} once"
    i = lines.index(header) + 2  # skip the |---| line
    rows = []
    while i < len(lines) and lines[i].startswith("|"):
        rows.append(_cells(lines[i]))
        i += 1
    return rows


def _unquote(cell: str) -> str:
    return cell.strip().strip("`").strip()


def doc_root_rows() -> List[Tuple[str, str, str, str]]:
    rows = [tuple(_unquote(c) for c in r) for r in doc_table(ROOT_HEADER)]
    assert all(len(r) == 4 for r in rows), "every root-name row needs 4 cells"
    return rows  # type: ignore[return-value]


def doc_module_rows() -> List[Tuple[str, str, List[str]]]:
    out = []
    for r in doc_table(MODULE_HEADER):
        assert len(r) == 3, f"module row needs 3 cells: {r}"
        out.append((_unquote(r[0]), r[1].strip(), [n for n in _CODE.findall(r[2])]))
    return out


def _status(cell: str) -> str:
    if cell == "available":
        return "available"
    assert cell.startswith("planned: ") and len(cell) > len("planned: "), (
        f"status must be 'available' or 'planned: <plugin>', got {cell!r}")
    return "planned"


# --- tests ----------------------------------------------------------------------------------------------------

def _params(rows_fn) -> list:
    """Rows for parametrize; a missing or malformed page fails the table tests, not the collection."""
    try:
        return rows_fn()
    except (OSError, AssertionError, ValueError):
        return []


def test_root_table_lists_exactly_the_reference_names():
    rows = doc_root_rows()
    names = [r[1] for r in rows]
    assert len(names) == len(set(names)), f"duplicate names: {sorted(n for n in names if names.count(n) > 1)}"
    spec = spec_text()
    if spec is None:
        assert len(names) == ROOT_NAME_COUNT
        return
    expected = spec_root_names(spec)
    assert len(expected) == ROOT_NAME_COUNT, "the spec's §1.1 should list 79 names"
    assert sorted(names) == sorted(n for _g, n in expected), (
        f"missing: {sorted({n for _g, n in expected} - set(names))}; "
        f"not in the spec: {sorted(set(names) - {n for _g, n in expected})}")
    groups = dict((n, g) for g, n in expected)
    assert [(r[0], r[1]) for r in rows if groups[r[1]] != r[0]] == [], "a name sits in another group than in the spec"


@pytest.mark.parametrize("row", _params(doc_root_rows), ids=lambda r: r[1])
def test_root_name_status_matches_the_code(row):
    _group, name, status, where = row
    if _status(status) == "available":
        obj = _root_object(name)  # raises if the page claims more than the code has
        if inspect.isclass(obj) or inspect.isroutine(obj):
            assert obj.__module__ == where, f"{name} is defined in {obj.__module__}, the page says {where}"
        else:
            assert getattr(importlib.import_module(where), name) is obj
    else:
        with pytest.raises((AttributeError, ImportError)):
            _root_object(name)
        # also the plain import statement form
        with pytest.raises(ImportError):
            exec(f"from abstractruntime import {name}", {})


def test_module_table_lists_every_reference_module():
    paths = [r[0] for r in doc_module_rows()]
    assert len(paths) == len(set(paths)), "a module is listed twice"
    spec = spec_text()
    if spec is None:
        assert paths, "the module table is empty"
        return
    assert sorted(paths) == sorted(p for p, _ in spec_modules(spec))


@pytest.mark.parametrize("row", _params(doc_module_rows), ids=lambda r: r[0])
def test_module_status_matches_the_code(row):
    path, status, not_yet = row
    if _status(status) == "available":
        module = importlib.import_module(path)
        present = [n for n in not_yet if hasattr(module, n)]
        assert present == [], f"{path} has {present} now: remove them from the 'Not yet' cell"
    else:
        assert not_yet == [], "a planned module lists no missing names"
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(path)


def main() -> int:  # pragma: no cover - a maintenance helper
    spec = spec_text()
    if spec is None:
        print(f"spec not found at {SPEC}", file=sys.stderr)
        return 1
    print(ROOT_HEADER)
    print("|---|---|---|---|")
    for group, name, status, where in root_rows(spec):
        where_cell = f"`{where}`" if where != NONE_CELL else where
        print(f"| {group} | `{name}` | {status} | {where_cell} |")
    print()
    print(MODULE_HEADER)
    print("|---|---|---|")
    for path, status, missing in module_rows(spec):
        print(f"| `{path}` | {status} | {missing} |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
