"""Plugins and configuration: builtins, store selection, TOML / env / dict, duplicates, block list, isolation."""

from __future__ import annotations

import pytest

from abstractruntime import (
    ConfigurationError,
    Effect,
    EffectOutcome,
    EffectType,
    RunStatus,
    Runtime,
    StepPlan,
    UnknownStoreError,
)
from abstractruntime.errors import DuplicateProviderError
from abstractruntime_inmemory.store import InMemoryLedgerStore, InMemoryRunStore

from kernel_support import HandlerPlugin, effect_node, runtime_on, workflow

WAIT_TYPES = {"ask_user", "wait_event", "wait_until", "answer_user"}


def greet_plugin(name: str, greeting: str = "hello", effect_type: str = "greet_kernel_test") -> HandlerPlugin:
    def handler(call):
        return EffectOutcome.completed({"text": f"{greeting} {call.effect.payload.get('who', '')}".strip(),
                                        "by": name})

    return HandlerPlugin(name, effect_type, handler, side_effects=False)


def run_effect(rt: Runtime, effect: Effect):
    wf = workflow({"n": effect_node("n", effect)})
    run_id = rt.start(workflow=wf)
    return rt.tick(workflow=wf, run_id=run_id)


def test_builtin_plugins_are_listed_as_loaded():
    rt = Runtime.from_config({"store": "memory://"})
    infos = {p.name: p for p in rt.plugins()}
    for name in ("memory", "lmdb", "waits"):
        assert name in infos, infos
        info = infos[name]
        assert info.distribution == "abstractruntime"
        assert info.status == "loaded"
        assert info.builtin is True and info.error is None
        assert info.to_dict()["status"] == "loaded"


def test_effect_handler_types_maps_wait_effects_to_the_waits_plugin():
    rt = Runtime.from_config({"store": "memory://"})
    types = rt.effect_handler_types()
    for etype in WAIT_TYPES:
        assert types[etype] == "waits"
    rt2 = runtime_on(effect_handlers={"custom": lambda run, effect: EffectOutcome.completed({})})
    assert rt2.effect_handler_types()["custom"] == "host"


def test_memory_url_and_bare_name_select_the_in_memory_store():
    for url in ("memory://", "memory", "inmemory://"):
        rt = Runtime.from_config({"store": url})
        assert isinstance(rt.run_store, InMemoryRunStore)
        assert isinstance(rt.ledger_store, InMemoryLedgerStore)
        assert rt.run_store.backend is rt.ledger_store.backend
        state = run_effect(rt, Effect(EffectType.ANSWER_USER, {"message": "hi"}))
        assert state.status is RunStatus.COMPLETED
        rt.close()


def test_each_from_config_memory_store_is_a_fresh_store():
    a = Runtime.from_config({"store": "memory://"})
    b = Runtime.from_config({"store": "memory://"})
    wf = workflow({"n": lambda run, ctx: StepPlan(node_id="n", complete_output={})})
    run_id = a.start(workflow=wf)
    assert a.get_state(run_id).run_id == run_id
    assert b.run_store.load(run_id) is None


def test_unknown_store_name_lists_available_stores():
    with pytest.raises(UnknownStoreError) as exc_info:
        Runtime.from_config({"store": "nosuchstore://somewhere"})
    err = exc_info.value
    assert isinstance(err, ConfigurationError)
    assert "nosuchstore" in str(err)
    assert "memory" in err.available
    assert "memory" in str(err)
    assert "lmdb" in err.available and "lmdb" in str(err)


@pytest.mark.parametrize("url", ["::::", "", "   ", "a/b", "://nothing"])
def test_bad_store_url_is_a_configuration_error(url):
    with pytest.raises(ConfigurationError):
        Runtime.from_config({"store": url})


def test_config_from_a_toml_file(tmp_path):
    path = tmp_path / "abstractruntime.toml"
    path.write_text('[abstractruntime]\nstore = "memory://"\n\n[abstractruntime.plugins]\nblock = ["waits"]\n')
    rt = Runtime.from_config(str(path))
    assert isinstance(rt.run_store, InMemoryRunStore)
    assert rt.settings.store == "memory://"
    assert not WAIT_TYPES & set(rt.effect_handler_types())
    # a Path works as well, and top-level keys without the [abstractruntime] table
    path2 = tmp_path / "flat.toml"
    path2.write_text('store = "memory://"\n')
    rt2 = Runtime.from_config(path2)
    assert isinstance(rt2.run_store, InMemoryRunStore)
    assert rt2.effect_handler_types()["ask_user"] == "waits"


def test_missing_or_invalid_toml_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        Runtime.from_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("store = [unclosed\n")
    with pytest.raises(ConfigurationError, match="TOML"):
        Runtime.from_config(str(bad))


def test_config_from_the_environment(monkeypatch):
    monkeypatch.setenv("ABSTRACTRUNTIME_STORE", "memory://")
    rt = Runtime.from_config()
    assert rt.settings.store == "memory://"
    assert isinstance(rt.run_store, InMemoryRunStore)
    rt2 = Runtime()  # no stores passed: the store comes from configuration
    assert isinstance(rt2.run_store, InMemoryRunStore)


def test_environment_block_list(monkeypatch):
    monkeypatch.setenv("ABSTRACTRUNTIME_STORE", "memory://")
    monkeypatch.setenv("ABSTRACTRUNTIME_PLUGINS_BLOCK", "waits")
    rt = Runtime.from_config()
    assert "ask_user" not in rt.effect_handler_types()


def test_dict_wins_over_environment(monkeypatch):
    monkeypatch.setenv("ABSTRACTRUNTIME_STORE", "nosuchstore://x")
    rt = Runtime.from_config({"store": "memory://"})
    assert rt.settings.store == "memory://"
    assert isinstance(rt.run_store, InMemoryRunStore)


def test_environment_wins_over_config_file(monkeypatch, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[abstractruntime]\nstore = "nosuchstore://x"\n')
    monkeypatch.setenv("ABSTRACTRUNTIME_CONFIG", str(path))
    with pytest.raises(UnknownStoreError):
        Runtime.from_config()
    monkeypatch.setenv("ABSTRACTRUNTIME_STORE", "memory://")
    assert isinstance(Runtime.from_config().run_store, InMemoryRunStore)


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigurationError) as exc_info:
        Runtime.from_config({"store": "memory://", "stroe_options": {}})
    assert "stroe_options" in str(exc_info.value)
    with pytest.raises(ConfigurationError) as exc_info:
        Runtime.from_config({"store": "memory://", "plugins": {"blokc": ["waits"]}})
    assert "blokc" in str(exc_info.value)


def test_invalid_boolean_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="strict"):
        Runtime.from_config({"store": "memory://", "plugins": {"strict": "maybe"}})


def test_passing_only_one_store_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        Runtime(run_store=InMemoryRunStore())


def test_plugin_objects_are_listed_under_their_name():
    rt = runtime_on(plugins=[greet_plugin("plugin_alpha")])
    infos = {p.name: p for p in rt.plugins()}
    assert infos["plugin_alpha"].status == "loaded"
    assert infos["plugin_alpha"].builtin is False
    assert rt.effect_handler_types()["greet_kernel_test"] == "plugin_alpha"
    state = run_effect(rt, Effect("greet_kernel_test", {"who": "Ada"}))
    assert state.output == {"success": True, "result": {"text": "hello Ada", "by": "plugin_alpha"}}


def test_duplicate_effect_handler_names_both_providers():
    a, b = greet_plugin("plugin_alpha"), greet_plugin("plugin_beta", "hi")
    with pytest.raises(DuplicateProviderError) as exc_info:
        runtime_on(plugins=[a, b])
    err = exc_info.value
    assert set(err.providers) == {"plugin_alpha", "plugin_beta"}
    assert "plugin_alpha" in str(err) and "plugin_beta" in str(err)
    assert "greet_kernel_test" in str(err)


def test_configuration_chooses_between_duplicate_providers():
    a, b = greet_plugin("plugin_alpha"), greet_plugin("plugin_beta", "hi")
    rt = runtime_on(plugins=[a, b], settings={"effects": {"greet_kernel_test": "plugin_beta"}})
    assert rt.effect_handler_types()["greet_kernel_test"] == "plugin_beta"
    state = run_effect(rt, Effect("greet_kernel_test", {"who": "Ada"}))
    assert state.output["result"] == {"text": "hi Ada", "by": "plugin_beta"}


def test_a_plugin_duplicating_a_builtin_effect_conflicts_until_chosen():
    mine = greet_plugin("my_asker", effect_type="ask_user")
    with pytest.raises(DuplicateProviderError) as exc_info:
        Runtime.from_config({"store": "memory://"}, plugins=[mine])
    assert set(exc_info.value.providers) == {"waits", "my_asker"}
    rt = Runtime.from_config({"store": "memory://", "effects": {"ask_user": "my_asker"}}, plugins=[mine])
    assert rt.effect_handler_types()["ask_user"] == "my_asker"
    assert rt.effect_handler_types()["wait_event"] == "waits"
    state = run_effect(rt, Effect(EffectType.ASK_USER, {"prompt": "?"}))
    assert state.status is RunStatus.COMPLETED and state.output["result"]["by"] == "my_asker"


def test_choosing_a_provider_that_does_not_provide_the_type_is_an_error():
    with pytest.raises(ConfigurationError, match="plugin_gamma"):
        Runtime.from_config({"store": "memory://", "effects": {"ask_user": "plugin_gamma"}})


def test_block_list_removes_the_waits_plugin():
    rt = Runtime.from_config({"store": "memory://", "plugins": {"block": ["waits"]}})
    assert "ask_user" not in rt.effect_handler_types()
    assert {p.name: p.status for p in rt.plugins()}["waits"] == "blocked"
    state = run_effect(rt, Effect(EffectType.ASK_USER, {"prompt": "?"}))
    assert state.status is RunStatus.FAILED
    assert "No effect handler registered for ask_user" in state.error


def test_two_runtimes_in_one_process_do_not_affect_each_other():
    plugin = greet_plugin("plugin_alpha")
    with_plugin = Runtime.from_config({"store": "memory://", "plugins": {"block": ["waits"]}}, plugins=[plugin])
    plain = Runtime.from_config({"store": "memory://"})
    assert "greet_kernel_test" in with_plugin.effect_handler_types()
    assert "greet_kernel_test" not in plain.effect_handler_types()
    assert "ask_user" not in with_plugin.effect_handler_types()
    assert plain.effect_handler_types()["ask_user"] == "waits"
    assert with_plugin.hooks.plugin_manager is not plain.hooks.plugin_manager

    assert run_effect(with_plugin, Effect("greet_kernel_test")).status is RunStatus.COMPLETED
    failed = run_effect(plain, Effect("greet_kernel_test"))
    assert failed.status is RunStatus.FAILED and "greet_kernel_test" in failed.error
    assert run_effect(plain, Effect(EffectType.ANSWER_USER, {"message": "m"})).status is RunStatus.COMPLETED
    # building a third runtime later does not change the first two
    Runtime.from_config({"store": "memory://"}, plugins=[greet_plugin("plugin_beta")])
    assert with_plugin.effect_handler_types()["greet_kernel_test"] == "plugin_alpha"
    assert "greet_kernel_test" not in plain.effect_handler_types()
