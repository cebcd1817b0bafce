"""The LLM_CALL part of ``abstractruntime.integrations.abstractcore.effect_handlers`` (integration spec §1.4):
names importable from the 0.4.2 path, with the spec's signatures (parameter names, kinds, defaults)."""

from __future__ import annotations

import importlib
import inspect

import pytest

KW = inspect.Parameter.KEYWORD_ONLY
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
EMPTY = inspect.Parameter.empty

#: name -> [(parameter, kind, default)] from the spec's module map (§1.4)
EXPECTED = {
    "make_llm_call_handler": [("llm", KW, EMPTY), ("artifact_store", KW, None)],
    "build_effect_handlers": [("llm", KW, EMPTY), ("tools", KW, None), ("artifact_store", KW, None),
                              ("run_store", KW, None)],
}


def _module():
    return importlib.import_module("abstractruntime.integrations.abstractcore.effect_handlers")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_signature_matches_the_spec(name):
    fn = getattr(_module(), name)
    params = [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    assert params == EXPECTED[name]


def test_logger_is_exported():
    logger = _module().logger
    assert callable(getattr(logger, "warning", None))


def test_handler_is_three_argument_and_builds_into_a_runtime():
    from abstractruntime import EffectType

    module = _module()
    handler = module.make_llm_call_handler(llm=None)
    params = list(inspect.signature(handler).parameters)
    assert params == ["run", "effect", "default_next_node"]
    handlers = module.build_effect_handlers(llm=None)
    assert set(handlers) == {EffectType.LLM_CALL, EffectType.TOOL_CALLS}
