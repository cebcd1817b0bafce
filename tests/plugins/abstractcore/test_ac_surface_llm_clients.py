"""Integration spec §1.1-§1.3 and §1.13: every public name of the LLM-client modules, importable at its 0.4.2 path
with the reference's signature (parameter names, kinds and defaults, encoded here from the spec text)."""

from __future__ import annotations

import importlib
import inspect

import pytest

KW = inspect.Parameter.KEYWORD_ONLY
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
REQUIRED = inspect.Parameter.empty
BASE = "abstractruntime.integrations.abstractcore"

#: (module, qualified name) -> [(parameter, kind, default)] without ``self``
SIGNATURES = {
    ("llm_client", "AbstractCoreLLMClient.generate"): [
        ("prompt", KW, REQUIRED), ("messages", KW, None), ("system_prompt", KW, None), ("tools", KW, None),
        ("media", KW, None), ("params", KW, None)],
    ("llm_client", "HttpResponse"): [("body", POS, REQUIRED), ("headers", POS, REQUIRED)],
    ("llm_client", "RequestSender.post"): [("url", POS, REQUIRED), ("headers", KW, REQUIRED), ("json", KW, REQUIRED),
                                          ("timeout", KW, REQUIRED)],
    ("llm_client", "HttpxRequestSender"): [],
    ("llm_client", "HttpxRequestSender.post"): [("url", POS, REQUIRED), ("headers", KW, REQUIRED),
                                               ("json", KW, REQUIRED), ("timeout", KW, REQUIRED)],
    ("llm_client", "LocalAbstractCoreLLMClient"): [("provider", KW, REQUIRED), ("model", KW, REQUIRED),
                                                   ("llm_kwargs", KW, None)],
    ("llm_client", "LocalAbstractCoreLLMClient.get_model_capabilities"): [],
    ("llm_client", "MultiLocalAbstractCoreLLMClient"): [("provider", KW, REQUIRED), ("model", KW, REQUIRED),
                                                        ("llm_kwargs", KW, None)],
    ("llm_client", "MultiLocalAbstractCoreLLMClient.get_model_capabilities"): [],
    ("llm_client", "MultiLocalAbstractCoreLLMClient.get_provider_instance"): [("provider", KW, REQUIRED),
                                                                              ("model", KW, REQUIRED)],
    ("llm_client", "MultiLocalAbstractCoreLLMClient.list_loaded_clients"): [],
    ("llm_client", "RemoteAbstractCoreLLMClient"): [
        ("server_base_url", KW, REQUIRED), ("model", KW, REQUIRED), ("timeout_s", KW, None), ("headers", KW, None),
        ("request_sender", KW, None)],
    ("llm_client", "_maybe_parse_tool_calls_from_text"): [
        ("content", KW, REQUIRED), ("allowed_tool_names", KW, None), ("model_name", KW, None),
        ("tool_handler", KW, None)],
    ("logging", "get_logger"): [("name", POS, REQUIRED)],
    ("embeddings_client", "EmbeddingsResult"): [("provider", POS, REQUIRED), ("model", POS, REQUIRED),
                                                ("embeddings", POS, REQUIRED), ("dimension", POS, REQUIRED)],
    ("embeddings_client", "AbstractCoreEmbeddingsClient"): [("provider", KW, REQUIRED), ("model", KW, REQUIRED),
                                                            ("manager_kwargs", KW, None)],
    ("embeddings_client", "AbstractCoreEmbeddingsClient.embed_texts"): [("texts", POS, REQUIRED)],
}

PACKAGE_ALL = {
    "AbstractCoreLLMClient", "LocalAbstractCoreLLMClient", "RemoteAbstractCoreLLMClient",
    "AbstractCoreEmbeddingsClient", "EmbeddingsResult", "RuntimeConfig", "ToolExecutor", "MappingToolExecutor",
    "AbstractCoreToolExecutor", "PassthroughToolExecutor", "build_effect_handlers", "create_local_runtime",
    "create_remote_runtime", "create_hybrid_runtime", "create_local_file_runtime", "create_remote_file_runtime",
    "attach_global_event_bus_bridge", "emit_step_record",
}
MODULE_NAMES = {
    "constants": ["DEFAULT_LLM_TIMEOUT_S", "DEFAULT_TOOL_TIMEOUT_S"],
    "logging": ["get_logger"],
    "llm_client": ["AbstractCoreLLMClient", "HttpResponse", "RequestSender", "HttpxRequestSender",
                   "LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient", "RemoteAbstractCoreLLMClient",
                   "logger", "_inject_turn_grounding", "_normalize_tool_calls", "_maybe_parse_tool_calls_from_text",
                   "_local_generate_lock"],
    "embeddings_client": ["EmbeddingsResult", "AbstractCoreEmbeddingsClient"],
}


def _resolve(module: str, qualname: str):
    obj = importlib.import_module(f"{BASE}.{module}")
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _params(obj):
    sig = inspect.signature(obj)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (inspect.Parameter.VAR_KEYWORD,)]


@pytest.mark.parametrize("module,names", sorted(MODULE_NAMES.items()))
def test_every_listed_name_imports_from_its_reference_path(module, names):
    mod = importlib.import_module(f"{BASE}.{module}")
    assert [n for n in names if not hasattr(mod, n)] == []


@pytest.mark.parametrize("key", sorted(SIGNATURES), ids=lambda k: f"{k[0]}.{k[1]}")
def test_signature_matches_the_spec(key):
    assert _params(_resolve(*key)) == SIGNATURES[key]


@pytest.mark.parametrize("cls", ["LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient",
                                 "RemoteAbstractCoreLLMClient"])
def test_concrete_generate_takes_the_protocol_keywords(cls):
    """The clients accept every keyword of the protocol with its default (``prompt`` may be omitted: ``""``)."""
    expected = [(n, k, d) for n, k, d in SIGNATURES[("llm_client", "AbstractCoreLLMClient.generate")]]
    got = _params(_resolve("llm_client", f"{cls}.generate"))
    assert [(n, k) for n, k, _ in got] == [(n, k) for n, k, _ in expected]
    assert [d for _, _, d in got][1:] == [d for _, _, d in expected][1:]


def test_package_all_is_the_reference_list():
    mod = importlib.import_module(BASE)
    assert set(mod.__all__) == PACKAGE_ALL and len(mod.__all__) == 18


def test_constants_and_logger_accept_keyword_fields():
    from abstractruntime.integrations.abstractcore.constants import DEFAULT_LLM_TIMEOUT_S, DEFAULT_TOOL_TIMEOUT_S
    from abstractruntime.integrations.abstractcore.logging import get_logger

    assert isinstance(DEFAULT_LLM_TIMEOUT_S, float) and DEFAULT_LLM_TIMEOUT_S == 7200.0
    assert isinstance(DEFAULT_TOOL_TIMEOUT_S, float) and DEFAULT_TOOL_TIMEOUT_S == 7200.0
    get_logger("abstractruntime.test").warning("surface_check", provider="x")  # keyword fields accepted


def test_clients_expose_provider_and_model_attributes():
    from abstractruntime.integrations.abstractcore.llm_client import (
        LocalAbstractCoreLLMClient,
        MultiLocalAbstractCoreLLMClient,
        RemoteAbstractCoreLLMClient,
    )

    local = LocalAbstractCoreLLMClient(provider="openai-compatible", model="m1")
    assert (local.provider, local.model) == ("openai-compatible", "m1")
    multi = MultiLocalAbstractCoreLLMClient(provider=" LMStudio ", model=" m2 ")
    assert (multi.provider, multi.model) == ("lmstudio", "m2")
    remote = RemoteAbstractCoreLLMClient(server_base_url="http://h:1/", model="m3")
    assert (remote.model, remote.server_base_url) == ("m3", "http://h:1")


def test_embeddings_client_validates_provider_and_model():
    from abstractruntime.integrations.abstractcore.embeddings_client import AbstractCoreEmbeddingsClient

    with pytest.raises(ValueError, match="^provider is required for embeddings$"):
        AbstractCoreEmbeddingsClient(provider="  ", model="m")
    with pytest.raises(ValueError, match="^model is required for embeddings$"):
        AbstractCoreEmbeddingsClient(provider="openai", model=" ")


def test_embeddings_client_through_the_manager(llm_server, tmp_path):
    from abstractruntime.integrations.abstractcore.embeddings_client import (
        AbstractCoreEmbeddingsClient,
        EmbeddingsResult,
    )

    client = AbstractCoreEmbeddingsClient(provider=" OpenAI-Compatible ", model=" emb ", manager_kwargs={
        "provider_kwargs": {"base_url": llm_server.base_url}, "cache_dir": tmp_path})
    assert (client.provider, client.model) == ("openai-compatible", "emb")
    result = client.embed_texts(["ab", "cde"])
    assert result == EmbeddingsResult(provider="openai-compatible", model="emb",
                                      embeddings=[[2.0, 0.0, 1.0], [3.0, 1.0, 1.0]], dimension=3)
    assert {"input": ["ab", "cde"], "model": "emb"} in [r["body"] for r in llm_server.requests]
