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


# --- plugin manager hygiene: misspelled hooks, requirements, plugin-owned hookspecs --------------------------------
MISSPELLED_MARKED = """
from abstractruntime import hookimpl

@hookimpl
def abstractruntime_after_stpe(run, node_id, plan, records):
    pass
"""

MISSPELLED_UNMARKED = """
def abstractruntime_after_stpe(run, node_id, plan, records):  # no @hookimpl: still a hook implementation
    pass
"""


@pytest.mark.parametrize("source", [MISSPELLED_MARKED, MISSPELLED_UNMARKED], ids=["marked", "unmarked"])
def test_a_misspelled_hook_is_a_load_failure_not_a_silent_no_op(site, source):
    _install_fake_dist(site, "arfake-typo", "0.1.0", "typo", "arfake_typo", source)
    rt = Runtime.from_config({"store": "memory://"})
    info = {p.name: p for p in rt.plugins()}["typo"]
    assert info.status == "failed"
    assert "abstractruntime_after_stpe is not a hook of AbstractRuntime" in info.error
    assert not rt.hooks.plugin_manager.has_plugin("typo")  # unregistered: none of its hooks run
    assert "ask_user" in rt.effect_handler_types()  # the runtime went on without it
    with pytest.raises(PluginError, match="abstractruntime_after_stpe is not a hook"):
        Runtime.from_config({"store": "memory://", "plugins": {"strict": True}})


def test_a_misspelled_hook_of_an_explicit_plugin_raises():
    class Typo:
        def abstractruntime_ledger_apended(self, run_id, records):
            pass

    with pytest.raises(PluginError, match="abstractruntime_ledger_apended is not a hook"):
        Runtime.from_config({"store": "memory://"}, plugins=[Typo()])


def test_abstractruntime_plugins_cli_shows_the_failure(site):
    import subprocess

    _install_fake_dist(site, "arfake-typo", "0.1.0", "typo", "arfake_typo", MISSPELLED_MARKED)
    out = subprocess.run([sys.executable, "-m", "abstractruntime_cli", "--store", "memory://", "plugins"],
                         capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(site)})
    assert out.returncode == 1  # a failed plugin
    line = next(line for line in out.stdout.splitlines() if line.startswith("typo "))
    assert "failed" in line and "is not a hook of AbstractRuntime" in line


REQUIRES = """
abstractruntime_requires = ({required!r},)

def abstractruntime_register_effect_handlers():
    from abstractruntime import EffectHandlerDescriptor, EffectOutcome
    return [EffectHandlerDescriptor("needs_it", lambda call: EffectOutcome.completed({{}}))]
"""


def test_a_third_party_plugin_requiring_a_missing_or_blocked_plugin_fails_naming_both(site):
    _install_fake_dist(site, "arfake-needy", "0.1.0", "needy", "arfake_needy", REQUIRES.format(required="ghost"))
    rt = Runtime.from_config({"store": "memory://"})
    info = {p.name: p for p in rt.plugins()}["needy"]
    assert info.status == "failed" and info.requires == ("ghost",)
    assert "requires plugin 'ghost', which is not installed" in info.error
    assert "needs_it" not in rt.effect_handler_types()


def test_a_requirement_chain_fails_in_order(site):
    _install_fake_dist(site, "arfake-needy", "0.1.0", "needy", "arfake_needy", REQUIRES.format(required="ghost"))
    _install_fake_dist(site, "arfake-needier", "0.1.0", "needier", "arfake_needier",
                       REQUIRES.format(required="needy").replace("needs_it", "needs_needy"))
    infos = {p.name: p for p in Runtime.from_config({"store": "memory://"}).plugins()}
    assert infos["needy"].status == "failed" and infos["needier"].status == "failed"
    assert "requires plugin 'needy', which is failed" in infos["needier"].error


def test_blocking_a_plugin_a_builtin_requires_fails_loudly_naming_both():
    blocked = r"Plugin '\w+': requires plugin 'artifacts', which is blocked .*or block '\w+' too"
    with pytest.raises(PluginError, match=blocked):
        Runtime.from_config({"store": "memory://", "plugins": {"block": ["artifacts"]}})
    # blocking both is fine
    rt = Runtime.from_config({"store": "memory://", "plugins": {
        "block": ["artifacts", "evidence", "history", "active_memory", "abstractcore", "postgres", "kg_memory"]}})
    assert {p.name: p.status for p in rt.plugins()}["artifacts"] == "blocked"


OWNS_A_HOOK = """
import pluggy
from abstractruntime import hookimpl

spec = pluggy.HookspecMarker("abstractruntime")

class Specs:
    @spec
    def abstractruntime_register_widgets(self):
        '''Collector: Widget names (str).'''

@hookimpl
def abstractruntime_add_hookspecs(pluginmanager):
    pluginmanager.add_hookspecs(Specs)

@hookimpl
def abstractruntime_register_widgets():
    return ["from-owner"]
"""

USES_THE_HOOK = """
def abstractruntime_register_widgets():
    return ["from-user"]
"""

BAD_WIDGETS = """
def abstractruntime_register_widgets():
    return [42]
"""


def test_a_plugin_adds_hookspecs_that_other_plugins_implement_and_collect_applies_one_policy(site):
    # "awidgets" registers after "auser" (entry points load by name): a historic hook, so order does not matter
    _install_fake_dist(site, "arfake-owner", "0.1.0", "zowner", "arfake_owner", OWNS_A_HOOK)
    _install_fake_dist(site, "arfake-user", "0.1.0", "auser", "arfake_user", USES_THE_HOOK)
    _install_fake_dist(site, "arfake-bad", "0.1.0", "bbad", "arfake_bad", BAD_WIDGETS)
    rt = Runtime.from_config({"store": "memory://"})
    got = rt.hooks.collect("abstractruntime_register_widgets", str)
    assert sorted(got) == [("auser", "from-user"), ("zowner", "from-owner")]
    bad = {p.name: p for p in rt.plugins()}["bbad"]
    assert bad.status == "failed" and "returned int, expected str" in bad.error
    # without the owner, implementing its hook is a misspelling like any other
    rt2 = Runtime.from_config({"store": "memory://", "plugins": {"block": ["zowner"]}})
    assert {p.name: p.status for p in rt2.plugins()}["auser"] == "failed"
