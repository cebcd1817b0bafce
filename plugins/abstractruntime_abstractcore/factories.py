"""Runtime factories (spec §15.1): local (in-process AbstractCore), remote (an AbstractCore server over HTTP) and
hybrid (remote LLM, local tools).

Differences from the reference, on purpose (spec §17 #22): only a *missing* store is replaced (a default in-memory
pair shares one backend, so each step is one atomic commit); every factory accepts ``config``, ``effect_policy``,
``context`` and ``extra_effect_handlers``; ``create_hybrid_runtime`` accepts a ``tool_executor``. The ledger is
wrapped in ``ObservableLedgerStore`` only when the stores do not share a backend -- wrapping a backend's ledger
would turn its atomic step commit into two writes; ``Runtime.subscribe_ledger`` works with every store.
``create_local_runtime`` wires no ``AbstractCoreChatSummarizer``: ``MEMORY_COMPACT`` summarises through ``LLM_CALL``
(retries, idempotency key, ledger); pass ``chat_summarizer=AbstractCoreChatSummarizer(llm)`` (:mod:`.summarizer`)
for the reference's summariser.
Building a runtime does not import AbstractCore (except ``create_local_runtime``, which asks the provider for the
model's capabilities, as the reference does).
"""

from __future__ import annotations

from pathlib import Path

import attrs
from typing import Any, Dict, Mapping, Optional, Tuple

from abstractruntime import Runtime, RuntimeConfig
from abstractruntime.logs import get_logger
from abstractruntime.storage.base import SplitBackend, backend_for
from abstractruntime_compat.storage.observable import ObservableLedgerStore, ObservableLedgerStoreProtocol

from .llm_client import (
    MultiLocalAbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
    default_timeout_s,
    default_tool_timeout_s,
)
from .plugin import attach
from .tool_executor import AbstractCoreToolExecutor, PassthroughToolExecutor

log = get_logger("abstractruntime.abstractcore")


def _plugin_module() -> Any:
    import abstractruntime_abstractcore

    return abstractruntime_abstractcore


def _stores(run_store: Any, ledger_store: Any) -> Tuple[Any, Any]:
    if run_store is None and ledger_store is None:
        from abstractruntime_inmemory.store import MemoryBackend

        backend = MemoryBackend()
        return backend.run_store, backend.ledger_store
    if run_store is None:
        from abstractruntime_inmemory.store import InMemoryRunStore

        run_store = InMemoryRunStore()
    if ledger_store is None:
        from abstractruntime_inmemory.store import InMemoryLedgerStore

        ledger_store = InMemoryLedgerStore()
    if not isinstance(ledger_store, ObservableLedgerStoreProtocol) and isinstance(
            backend_for(run_store, ledger_store), SplitBackend):
        ledger_store = ObservableLedgerStore(ledger_store)
    return run_store, ledger_store


def _artifact_store(artifact_store: Any) -> Any:
    if artifact_store is not None:
        return artifact_store
    from abstractruntime_artifacts.store import InMemoryArtifactStore

    return InMemoryArtifactStore()


def _runtime(*, run_store: Any, ledger_store: Any, artifact_store: Any, context: Any, effect_policy: Any,
             config: Optional[RuntimeConfig], extra_effect_handlers: Optional[Mapping[Any, Any]],
             llm: Any, tools: Any, settings: Any = None, workflow_registry: Any = None,
             chat_summarizer: Any = None) -> Runtime:
    run_store, ledger_store = _stores(run_store, ledger_store)
    runtime = Runtime(run_store=run_store, ledger_store=ledger_store, effect_handlers=extra_effect_handlers,
                      context=context, artifact_store=_artifact_store(artifact_store), effect_policy=effect_policy,
                      config=config, plugins=[_plugin_module()], settings=settings,
                      workflow_registry=workflow_registry, chat_summarizer=chat_summarizer)
    attach(runtime, llm=llm, tools=tools)
    return runtime


def create_local_runtime(*, provider: str, model: str, llm_kwargs: Optional[Dict[str, Any]] = None,
                         run_store: Any = None, ledger_store: Any = None, tool_executor: Any = None,
                         tool_timeout_s: Optional[float] = None, context: Any = None, effect_policy: Any = None,
                         config: Optional[RuntimeConfig] = None, artifact_store: Any = None,
                         extra_effect_handlers: Optional[Mapping[Any, Any]] = None, settings: Any = None,
                         workflow_registry: Any = None, chat_summarizer: Any = None) -> Runtime:
    """A runtime whose LLM calls run in-process through AbstractCore (one client per provider/model; effects may
    override ``provider``/``model``) and whose tools default to AbstractCore's tool registry."""
    kwargs = dict(llm_kwargs or {})
    kwargs.setdefault("timeout", default_timeout_s())
    llm = MultiLocalAbstractCoreLLMClient(provider=provider, model=model, llm_kwargs=kwargs)
    resolved_tool_timeout = tool_timeout_s if tool_timeout_s is not None else default_tool_timeout_s()
    tools = tool_executor if tool_executor is not None else AbstractCoreToolExecutor(timeout_s=resolved_tool_timeout)
    # as in 0.4.2, whichever executor is used gets the resolved timeout (a caller's own timeout_s is overridden:
    # pass tool_timeout_s= to choose it)
    if callable(getattr(tools, "set_timeout_s", None)):
        tools.set_timeout_s(resolved_tool_timeout)
    try:
        caps = llm.get_model_capabilities()
    except Exception as exc:  # an unreachable server must not prevent building the runtime
        log.warning("model_capabilities_unavailable", provider=provider, model=model,
                    error=f"{type(exc).__name__}: {exc}")
        caps = {}
    if config is None:
        config = RuntimeConfig(provider=provider, model=model, model_capabilities=caps)
    else:  # the reference keeps the config's provider/model even when unset; we fill the blanks
        config = attrs.evolve(config.with_capabilities(caps), provider=config.provider or provider,
                              model=config.model or model)
    runtime = _runtime(run_store=run_store, ledger_store=ledger_store, artifact_store=artifact_store,
                       context=context, effect_policy=effect_policy, config=config,
                       extra_effect_handlers=extra_effect_handlers, llm=llm, tools=tools, settings=settings,
                       workflow_registry=workflow_registry, chat_summarizer=chat_summarizer)
    runtime._abstractcore_llm_client = llm  # the reference's (private) attribute, which some hosts read
    return runtime


def create_remote_runtime(*, server_base_url: str, model: str, headers: Optional[Mapping[str, str]] = None,
                          timeout_s: Optional[float] = None, run_store: Any = None, ledger_store: Any = None,
                          tool_executor: Any = None, context: Any = None, artifact_store: Any = None,
                          effect_policy: Any = None, config: Optional[RuntimeConfig] = None,
                          extra_effect_handlers: Optional[Mapping[Any, Any]] = None, settings: Any = None,
                          workflow_registry: Any = None, chat_summarizer: Any = None) -> Runtime:
    """A runtime whose LLM calls go to an AbstractCore server (``POST {server_base_url}/v1/chat/completions``);
    tools default to passthrough (the step waits; the host runs the tools and resumes)."""
    llm = RemoteAbstractCoreLLMClient(server_base_url=server_base_url, model=model, headers=headers,
                                      timeout_s=timeout_s if timeout_s is not None else default_timeout_s())
    tools = tool_executor if tool_executor is not None else PassthroughToolExecutor()
    config = config if config is not None else RuntimeConfig(model=model)
    return _runtime(run_store=run_store, ledger_store=ledger_store, artifact_store=artifact_store, context=context,
                    effect_policy=effect_policy, config=config, extra_effect_handlers=extra_effect_handlers,
                    llm=llm, tools=tools, settings=settings, workflow_registry=workflow_registry,
                    chat_summarizer=chat_summarizer)


def create_hybrid_runtime(*, server_base_url: str, model: str, headers: Optional[Mapping[str, str]] = None,
                          timeout_s: Optional[float] = None, tool_timeout_s: Optional[float] = None,
                          run_store: Any = None, ledger_store: Any = None, context: Any = None,
                          artifact_store: Any = None, tool_executor: Any = None, effect_policy: Any = None,
                          config: Optional[RuntimeConfig] = None,
                          extra_effect_handlers: Optional[Mapping[Any, Any]] = None, settings: Any = None,
                          workflow_registry: Any = None, chat_summarizer: Any = None) -> Runtime:
    """Remote LLM (an AbstractCore server) with tools executed locally (default: AbstractCore's registry)."""
    llm = RemoteAbstractCoreLLMClient(server_base_url=server_base_url, model=model, headers=headers,
                                      timeout_s=timeout_s if timeout_s is not None else default_timeout_s())
    tools = tool_executor if tool_executor is not None else AbstractCoreToolExecutor(
        timeout_s=tool_timeout_s if tool_timeout_s is not None else default_tool_timeout_s())
    config = config if config is not None else RuntimeConfig(model=model)
    return _runtime(run_store=run_store, ledger_store=ledger_store, artifact_store=artifact_store, context=context,
                    effect_policy=effect_policy, config=config, extra_effect_handlers=extra_effect_handlers,
                    llm=llm, tools=tools, settings=settings, workflow_registry=workflow_registry,
                    chat_summarizer=chat_summarizer)


def _file_stores(base_dir: Any) -> Tuple[Any, Any, Any]:
    from abstractruntime_artifacts.store import FileArtifactStore
    from abstractruntime_jsonfiles.store import JsonFilesBackend

    base = Path(base_dir).expanduser()
    backend = JsonFilesBackend(base)
    return backend.run_store, backend.ledger_store, FileArtifactStore(base)


def create_local_file_runtime(*, base_dir: Any, provider: str, model: str,
                              llm_kwargs: Optional[Dict[str, Any]] = None, context: Any = None,
                              config: Optional[RuntimeConfig] = None, tool_timeout_s: Optional[float] = None,
                              **kwargs: Any) -> Runtime:
    """:func:`create_local_runtime` with JSON-file stores and a ``FileArtifactStore`` under ``base_dir``."""
    run_store, ledger_store, artifacts = _file_stores(base_dir)
    return create_local_runtime(provider=provider, model=model, llm_kwargs=llm_kwargs, run_store=run_store,
                                ledger_store=ledger_store, artifact_store=artifacts, context=context, config=config,
                                tool_timeout_s=tool_timeout_s, **kwargs)


def create_remote_file_runtime(*, base_dir: Any, server_base_url: str, model: str,
                               headers: Optional[Mapping[str, str]] = None, timeout_s: Optional[float] = None,
                               context: Any = None, **kwargs: Any) -> Runtime:
    """:func:`create_remote_runtime` with JSON-file stores and a ``FileArtifactStore`` under ``base_dir``."""
    run_store, ledger_store, artifacts = _file_stores(base_dir)
    return create_remote_runtime(server_base_url=server_base_url, model=model, headers=headers, timeout_s=timeout_s,
                                 run_store=run_store, ledger_store=ledger_store, artifact_store=artifacts,
                                 context=context, **kwargs)
