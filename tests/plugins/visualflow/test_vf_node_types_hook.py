"""Node types are a hook: the builtin catalogue and third-party packages register through
``abstractruntime_register_visual_node_types``."""

from __future__ import annotations

import types

import pytest

from abstractruntime.errors import PluginError

from abstractruntime import EffectCall, EffectHandlerDescriptor, EffectOutcome, RunStatus, hookimpl
from abstractruntime.plugins import build_plugin_manager
from abstractruntime.settings import PluginSettings
from abstractruntime_visualflow import (
    EffectMapping,
    NodeTypeRegistrationError,
    VisualNodeType,
    compile_visualflow,
    load_node_types,
)

from vf_support import E, N, chain, flow, memory_runtime, run


def _plugin(*node_types, effect_handlers=()):
    mod = types.ModuleType("third_party_nodes")

    @hookimpl
    def abstractruntime_register_visual_node_types():
        return list(node_types)

    @hookimpl
    def abstractruntime_register_effect_handlers():
        return list(effect_handlers)

    mod.abstractruntime_register_visual_node_types = abstractruntime_register_visual_node_types
    mod.abstractruntime_register_effect_handlers = abstractruntime_register_effect_handlers
    return mod


def test_the_builtin_catalogue_comes_through_the_hook():
    import abstractruntime_visualflow

    pm, _ = build_plugin_manager(PluginSettings(autoload=False), [abstractruntime_visualflow])
    names = {t.type for result in pm.hook.abstractruntime_register_visual_node_types() for t in result}
    assert {"on_flow_start", "loop", "ask_user", "subflow", "add", "llm_call", "literal_string"} <= names
    assert {"ask_user", "loop", "concat"} <= set(load_node_types())


def test_a_third_party_handler_node_and_effect_node():
    def greet_effect(call: EffectCall) -> EffectOutcome:
        return EffectOutcome.completed({"text": f"Hello, {call.effect.payload['who']}!"})

    shout = VisualNodeType("shout", handler=lambda d: {"loud": str(d.get("text", "")).upper() + "!"},
                           inputs=["text"], outputs=["loud"], pure=True)
    greet = VisualNodeType("greet", effect=EffectMapping("demo.greet", lambda d, ctx: {"who": d.get("name")},
                                                        main_output="text", resume_to_node=False,
                                                        include_type=False),
                           defaults={"name": "world"})
    plugin = _plugin(shout, greet, effect_handlers=[EffectHandlerDescriptor("demo.greet", greet_effect,
                                                                            side_effects=False)])
    nodes = [N("s", "on_flow_start", outs="exec-out"), N("g", "greet", ins="exec-in name", outs="exec-out text"),
             N("x", "shout"), N("e", "on_flow_end", ins="exec-in out")]
    edges = chain("s", "g", "e") + [E("g.text", "x.text"), E("x.loud", "e.out")]
    spec = compile_visualflow(flow("f", nodes, edges), plugins=[plugin], strict=True)
    rt = memory_runtime(plugins=[plugin])
    assert rt.effect_handler_types()["demo.greet"]
    state = run(rt, spec)
    assert state.status is RunStatus.COMPLETED, state.error
    assert state.output == {"out": "HELLO, WORLD!!", "success": True}
    # a runtime's own plugin set works too
    assert compile_visualflow(flow("f", nodes, edges), runtime=rt, strict=True).entry_node == "s"


def test_duplicate_type_names_need_a_configured_choice():
    a = _plugin(VisualNodeType("concat", handler=lambda d: "mine"))
    with pytest.raises(NodeTypeRegistrationError, match="several plugins"):
        load_node_types(plugins=[a])
    chosen = load_node_types(plugins=[a], choices={"concat": "third_party_nodes"})
    assert chosen["concat"].handler({}) == "mine"


def test_a_plugin_returning_something_else_is_refused():
    # an explicitly passed plugin is the host's own code: the kernel's collect policy raises (a third-party plugin
    # found through its entry point would be disabled and reported instead; see tests/kernel/test_plugin_hygiene.py)
    with pytest.raises(PluginError, match="returned dict, expected VisualNodeType"):
        load_node_types(plugins=[_plugin({"type": "x"})])


def test_descriptor_validation():
    with pytest.raises(ValueError, match="exactly one of"):
        VisualNodeType("x")
    with pytest.raises(ValueError, match="exactly one of"):
        VisualNodeType("x", handler=lambda d: d, step=lambda c: None)
    with pytest.raises(ValueError):
        VisualNodeType("  ", handler=lambda d: d)
    t = VisualNodeType("x", effect=EffectMapping("e", lambda d, c: {}))
    assert t.kind == "effect" and t.base_input == "last_output" and t.error_mode == "raise"
