"""docs/cli.md is the reference of the command line: every command the builtin plugins register has a section
(``### `name` ``) that shows how it is called and documents its ``--json`` shape, and every section names a
registered command. Commands are read from the plugins themselves, so a command added by any plugin is checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import pytest

from abstractruntime.plugins import Hooks, build_plugin_manager
from abstractruntime.settings import load_settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _sections() -> Dict[str, str]:
    """``{command name: section text}`` of the level-3 headings made of one code span."""
    text = PAGE.read_text(encoding="utf-8")
    found: Dict[str, str] = {}
    parts = re.split(r"^### `([^`]+)`[ \t]*$", text, flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2]):
        found[name.strip()] = body.split("\n## ", 1)[0]
    return found


def _builtin_commands() -> Dict[str, str]:
    settings = load_settings({})
    pm, infos = build_plugin_manager(settings.plugins)
    builtin = {i.name for i in infos if i.builtin}
    return {d.name: plugin for plugin, d in Hooks(pm, infos=infos).cli_commands() if plugin in builtin}


COMMANDS = _builtin_commands()


def test_every_registered_command_has_a_section():
    missing = sorted(set(COMMANDS) - set(_sections()))
    assert not missing, f"docs/cli.md has no '### `name`' section for: {missing} (plugins: " \
                        f"{sorted({COMMANDS[m] for m in missing})})"


def test_every_section_is_a_registered_command():
    assert sorted(set(_sections()) - set(COMMANDS)) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_section_shows_the_command_and_its_json_shape(name):
    body = _sections().get(name)
    if body is None:
        pytest.skip("reported by test_every_registered_command_has_a_section")
    assert "JSON" in body, f"{name}: document its --json output ('JSON: ...')"
    assert "abstractruntime " in body and name.split()[-1] in body, f"{name}: show how it is called"


def test_the_table_at_a_glance_links_every_section():
    text = PAGE.read_text(encoding="utf-8")
    glance = text.split("## Commands at a glance", 1)[1].split("\n## ", 1)[0]
    for name in COMMANDS:
        first = name.split()[0]
        assert f"`{first}" in glance, f"{name}: not in the table 'Commands at a glance'"
