"""The documentation matches the code: every hook is documented with its real signature, and the getting-started
snippets run as written."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from abstractruntime import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOK_HEADING = re.compile(r"^## `(abstractruntime_\w+)`[ \t]*$", re.M)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


#: hookspecs that plugins own (added through abstractruntime_add_hookspecs), and the page documenting them
PLUGIN_HOOKSPECS = {"abstractruntime_visualflow.hookspecs": "visualflow.md",
                    "abstractruntime_scheduler.hookspecs": "scheduler.md"}


def _hookspecs(module=hookspecs) -> dict:
    return {
        name: fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("abstractruntime_") and fn.__module__ == module.__name__
    }


def _hook_sections(page: str = "hooks.md") -> dict:
    text = (DOCS / page).read_text(encoding="utf-8")
    headings = list(HOOK_HEADING.finditer(text))
    sections = {}
    for i, match in enumerate(headings):
        end = len(text)
        nxt = re.compile(r"^## ", re.M).search(text, match.end())
        if nxt is not None:
            end = nxt.start()
        assert match.group(1) not in sections, f"hook {match.group(1)} is documented twice"
        sections[match.group(1)] = text[match.end():end]
    return sections


def _unquote(annotation: str) -> str:
    """``"'RunState'"`` (a quoted annotation under ``from __future__ import annotations``) -> ``RunState``."""
    text = annotation.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def _documented_signature(name: str, section: str) -> tuple:
    blocks = PYTHON_BLOCK.findall(section)
    assert blocks, f"hooks.md: the section of {name} has no python code block"
    first = blocks[0]
    def_line = next((line for line in first.splitlines() if line.startswith("def ")), None)
    assert def_line is not None, f"hooks.md: the first python block of {name} has no 'def' line"
    source = def_line.rstrip()
    if not source.endswith(":") and not re.search(r":\s*\.\.\.$", source):
        source += ": ..."
    elif source.endswith(":"):
        source += " ..."
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef) and fn.name == name, f"hooks.md: {name}'s def line defines {fn.name}"
    params = [(a.arg, _unquote(ast.unparse(a.annotation)) if a.annotation is not None else None)
              for a in fn.args.args]
    returns = _unquote(ast.unparse(fn.returns)) if fn.returns is not None else None
    return params, returns


def test_every_hookspec_has_exactly_one_section():
    documented = set(_hook_sections())
    specs = set(_hookspecs())
    assert documented == specs, (
        f"undocumented hooks: {sorted(specs - documented)}; documented but not hooks: {sorted(documented - specs)}"
    )


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_documented_signature_matches_the_hookspec(name):
    section = _hook_sections().get(name)
    assert section is not None, f"hooks.md has no section for {name}"
    params, returns = _documented_signature(name, section)
    sig = inspect.signature(_hookspecs()[name])
    expected_params = [(p.name, _unquote(str(p.annotation)) if p.annotation is not inspect.Parameter.empty else None)
                       for p in sig.parameters.values()]
    expected_return = _unquote(str(sig.return_annotation)) if sig.return_annotation is not inspect.Signature.empty \
        else None
    assert [p for p, _ in params] == [p for p, _ in expected_params]
    assert params == expected_params
    assert returns == expected_return


def test_getting_started_snippets_run(tmp_path, monkeypatch, capsys):
    blocks = PYTHON_BLOCK.findall((DOCS / "getting-started.md").read_text(encoding="utf-8"))
    assert blocks, "getting-started.md has no python code blocks"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABSTRACTRUNTIME_HOME", str(tmp_path))
    monkeypatch.delenv("ABSTRACTRUNTIME_STORE", raising=False)
    monkeypatch.delenv("ABSTRACTRUNTIME_CONFIG", raising=False)
    namespace: dict = {"__name__": "getting_started"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"docs/getting-started.md[python block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - report which block failed
            pytest.fail(f"python block {i} of getting-started.md failed: {type(exc).__name__}: {exc}\n{code}")
    out = capsys.readouterr().out
    assert "{'greeting': 'Hello, Ada!'}" in out
    assert (tmp_path / "store").is_dir()  # the default LMDB store went to $ABSTRACTRUNTIME_HOME/store


@pytest.mark.parametrize("module_name, page", sorted(PLUGIN_HOOKSPECS.items()))
def test_plugin_owned_hookspecs_are_documented_on_their_page(module_name, page):
    import importlib

    specs = _hookspecs(importlib.import_module(module_name))
    sections = _hook_sections(page)
    assert specs and set(specs) <= set(sections), f"{page} must document {sorted(specs)}"
    for name, fn in specs.items():
        params, returns = _documented_signature(name, sections[name])
        sig = inspect.signature(fn)
        assert [p for p, _ in params] == [p for p in sig.parameters]
        assert returns == _unquote(str(sig.return_annotation))
