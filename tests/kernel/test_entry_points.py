"""Entry-point discovery with real installed distributions (dist-info directories on sys.path)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from abstractruntime import Runtime
from abstractruntime.errors import PluginError
from abstractruntime.plugins import refresh_entry_points


def _install_fake_dist(site: Path, dist: str, version: str, entry_name: str, module: str, source: str) -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[abstractruntime]\n{entry_name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    refresh_entry_points()
    yield d
    refresh_entry_points()
    for name in [m for m in sys.modules if m.startswith("arfake_")]:
        del sys.modules[name]


BROKEN = "raise ImportError('missing dependency: frobnicate')\n"

GOOD = """
from abstractruntime import EffectHandlerDescriptor, EffectOutcome, hookimpl

@hookimpl
def abstractruntime_register_effect_handlers():
    return [EffectHandlerDescriptor("ping", lambda call: EffectOutcome.completed({"pong": True}))]
"""


def test_a_broken_third_party_plugin_is_reported_and_the_runtime_still_starts(site):
    _install_fake_dist(site, "arfake-broken", "0.3.1", "broken", "arfake_broken", BROKEN)
    rt = Runtime.from_config({"store": "memory://"})
    info = {p.name: p for p in rt.plugins()}["broken"]
    assert (info.distribution, info.version, info.status, info.builtin) == ("arfake-broken", "0.3.1", "failed", False)
    assert "ImportError: missing dependency: frobnicate" in info.error
    assert "ask_user" in rt.effect_handler_types()  # the builtins still work


def test_strict_mode_raises_for_a_broken_plugin(site):
    _install_fake_dist(site, "arfake-broken", "0.3.1", "broken", "arfake_broken", BROKEN)
    with pytest.raises(PluginError, match="broken.*arfake-broken.*frobnicate"):
        Runtime.from_config({"store": "memory://", "plugins": {"strict": True}})


def test_a_good_third_party_plugin_is_loaded_without_registration_code(site):
    _install_fake_dist(site, "arfake-good", "1.2.0", "pinger", "arfake_good", GOOD)
    rt = Runtime.from_config({"store": "memory://"})
    assert {p.name: p.status for p in rt.plugins()}["pinger"] == "loaded"
    assert rt.effect_handler_types()["ping"] == "pinger"


@pytest.mark.parametrize(
    "plugins_config, status",
    [
        ({"autoload": False}, "not-autoloaded"),
        ({"allow": ["someone_else"]}, "not-allowed"),
        ({"block": ["pinger"]}, "blocked"),
        ({"allow": ["pinger"]}, "loaded"),
    ],
)
def test_allow_block_and_autoload(site, plugins_config, status):
    _install_fake_dist(site, "arfake-good", "1.2.0", "pinger", "arfake_good", GOOD)
    rt = Runtime.from_config({"store": "memory://", "plugins": plugins_config})
    assert {p.name: p.status for p in rt.plugins()}["pinger"] == status
    assert ("ping" in rt.effect_handler_types()) is (status == "loaded")
    # builtins are not affected by allow lists or autoload
    assert {p.name: p.status for p in rt.plugins()}["waits"] == "loaded"


def test_builtins_are_declared_as_entry_points_of_our_own_distribution():
    from importlib.metadata import entry_points

    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    declared = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    ours = {ep.name: ep.value for ep in entry_points(group="abstractruntime")
            if ep.dist is not None and ep.dist.name == "abstractruntime"}
    assert ours == declared["project"]["entry-points"]["abstractruntime"]
    assert {"memory", "lmdb", "waits"} <= set(ours)


RAISING_COLLECTOR = """
from abstractruntime import hookimpl

@hookimpl
def abstractruntime_register_effect_handlers():
    raise RuntimeError("cannot read my config")
"""


def test_a_plugin_whose_collector_raises_is_recorded_not_fatal(site):
    _install_fake_dist(site, "arfake-raising", "0.1.0", "raiser", "arfake_raising", RAISING_COLLECTOR)
    rt = Runtime.from_config({"store": "memory://"})
    info = {p.name: p for p in rt.plugins()}["raiser"]
    assert info.status == "failed" and "cannot read my config" in info.error
    assert "ask_user" in rt.effect_handler_types()
    with pytest.raises(PluginError, match="cannot read my config"):
        Runtime.from_config({"store": "memory://", "plugins": {"strict": True}})
