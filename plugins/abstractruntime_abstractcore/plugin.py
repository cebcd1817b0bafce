"""The plugin's hooks and its per-runtime configuration.

A runtime's LLM client and tool executor come from, in this order:

1. :func:`attach` (what the factories do): ``attach(runtime, llm=..., tools=...)``;
2. the options ``[abstractruntime.plugin_options.abstractcore]`` (resolved at the first LLM/tool effect, so
   building a runtime never imports AbstractCore):

   ==================  =============================================================================================
   ``provider``        AbstractCore provider for in-process calls (``openai-compatible``, ``ollama``, ...)
   ``model``           model name (required with ``provider`` or ``server_base_url``)
   ``base_url``        the provider's base URL (e.g. ``http://127.0.0.1:1234/v1``)
   ``api_key_env``     name of the environment variable holding the provider's API key
   ``llm_kwargs``      extra ``create_llm`` keyword arguments (table)
   ``timeout_s``       request timeout (default: AbstractCore's configured default, else 7200)
   ``server_base_url`` an AbstractCore server: LLM calls go over HTTP instead (remote mode)
   ``headers``         extra HTTP headers for the server (table)
   ``tools``           ``passthrough`` | ``abstractcore`` | ``approval`` | ``none`` (default: ``passthrough`` with
                       ``server_base_url``, ``abstractcore`` with ``provider``)
   ``toolsets``        default toolsets for ``abstractcore``/``approval`` (``files``, ``web``, ``system``,
                       ``comms``); without it, AbstractCore's global tool registry
   ``auto_approve``    tool names that run without approval in ``approval`` mode
   ``tool_timeout_s``  per-call tool timeout
   ``grounding``       prefix prompts with the local date/time (default true)
   ==================  =============================================================================================
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Dict, List, Optional

from attrs import define

from abstractruntime import EffectCall, EffectHandlerDescriptor, EffectOutcome, EffectType, hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor
from abstractruntime.errors import ConfigurationError

from . import handlers

PLUGIN_NAME = "abstractcore"
OPTION_KEYS = ("provider", "model", "base_url", "api_key_env", "llm_kwargs", "timeout_s", "server_base_url",
               "headers", "tools", "toolsets", "auto_approve", "tool_timeout_s", "grounding")
TOOL_MODES = ("passthrough", "abstractcore", "approval", "none")


@define
class Integration:
    """What the LLM_CALL / TOOL_CALLS handlers use for one runtime."""

    llm: Any = None
    tools: Any = None
    journal: Any = None
    grounding: bool = True


_ATTACHED: "weakref.WeakKeyDictionary[Any, Integration]" = weakref.WeakKeyDictionary()
_FROM_SETTINGS: "weakref.WeakKeyDictionary[Any, Integration]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def attach(runtime: Any, *, llm: Any = None, tools: Any = None, journal: Any = None,
           grounding: bool = True) -> Integration:
    """Give ``runtime`` its LLM client and tool executor (replacing any earlier ones)."""
    integration = Integration(llm=llm, tools=tools, journal=journal, grounding=grounding)
    with _LOCK:
        _ATTACHED[runtime] = integration
    return integration


def _options(runtime: Any) -> Dict[str, Any]:
    settings = getattr(runtime, "settings", None)
    opts = settings.options_for(PLUGIN_NAME) if settings is not None else {}
    unknown = sorted(set(opts) - set(OPTION_KEYS))
    if unknown:
        raise ConfigurationError(
            f"Unknown plugin_options.abstractcore key(s) {unknown}; valid keys: {list(OPTION_KEYS)}")
    return opts


def check_options(opts: Dict[str, Any]) -> str:
    """Check the options that need no AbstractCore import; return the tool mode."""
    model, provider, server = opts.get("model"), opts.get("provider"), opts.get("server_base_url")
    if server and not model:
        raise ConfigurationError("plugin_options.abstractcore.server_base_url needs 'model'")
    if provider and not server and not model:
        raise ConfigurationError("plugin_options.abstractcore.provider needs 'model'")
    mode = opts.get("tools") or ("passthrough" if server else "abstractcore" if provider else "none")
    if mode not in TOOL_MODES:
        raise ConfigurationError(f"plugin_options.abstractcore.tools must be one of {list(TOOL_MODES)}, got {mode!r}")
    return mode


def integration_from_options(opts: Dict[str, Any]) -> Integration:
    from .llm_client import MultiLocalAbstractCoreLLMClient, RemoteAbstractCoreLLMClient, default_timeout_s
    from .tool_executor import AbstractCoreToolExecutor, ApprovalToolExecutor, PassthroughToolExecutor

    mode = check_options(opts)
    model = opts.get("model")
    provider = opts.get("provider")
    server = opts.get("server_base_url")
    timeout = opts.get("timeout_s")
    llm = None
    if server:
        llm = RemoteAbstractCoreLLMClient(server_base_url=str(server), model=str(model),
                                          headers=dict(opts.get("headers") or {}),
                                          timeout_s=float(timeout) if timeout is not None else None)
    elif provider:
        kwargs = dict(opts.get("llm_kwargs") or {})
        if opts.get("base_url"):
            kwargs["base_url"] = str(opts["base_url"])
        if opts.get("api_key_env"):
            key = os.environ.get(str(opts["api_key_env"]))
            if key:
                kwargs["api_key"] = key
        kwargs.setdefault("timeout", float(timeout) if timeout is not None else default_timeout_s())
        llm = MultiLocalAbstractCoreLLMClient(provider=str(provider), model=str(model), llm_kwargs=kwargs)
    tool_timeout = opts.get("tool_timeout_s")
    tools: Any = None
    if mode == "passthrough":
        tools = PassthroughToolExecutor()
    elif mode in ("abstractcore", "approval"):
        toolsets = opts.get("toolsets")
        selected = None
        if toolsets:
            from .default_tools import get_default_tools

            names = [toolsets] if isinstance(toolsets, str) else list(toolsets)
            selected = get_default_tools(toolsets=names)
        tools = AbstractCoreToolExecutor(timeout_s=float(tool_timeout) if tool_timeout else None, tools=selected)
        if mode == "approval":
            tools = ApprovalToolExecutor(tools, auto_approve=list(opts.get("auto_approve") or []))
    return Integration(llm=llm, tools=tools, grounding=opts.get("grounding", True) is not False)


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``plugin_options.abstractcore`` fails ``Runtime(...)``; AbstractCore itself is not imported here."""
    check_options(_options(runtime))


def integration_for(runtime: Any) -> Integration:
    """The runtime's attached integration, else the one built from its options (cached)."""
    attached = _ATTACHED.get(runtime)
    if attached is not None:
        return attached
    cached = _FROM_SETTINGS.get(runtime)
    if cached is None:
        with _LOCK:
            cached = _FROM_SETTINGS.get(runtime)
            if cached is None:
                cached = integration_from_options(_options(runtime))
                _FROM_SETTINGS[runtime] = cached
    return cached


def llm_call_handler(call: EffectCall) -> EffectOutcome:
    try:
        integration = integration_for(call.runtime)
    except ConfigurationError as exc:
        return EffectOutcome.failed(f"llm_call: {exc}")
    return handlers.llm_call(call, integration.llm, grounding=integration.grounding)


def tool_calls_handler(call: EffectCall) -> EffectOutcome:
    try:
        integration = integration_for(call.runtime)
    except ConfigurationError as exc:
        return EffectOutcome.failed(f"tool_calls: {exc}")
    return handlers.tool_calls(call, integration.tools, journal=integration.journal)


@hookimpl
def abstractruntime_prepare_new_run(runtime: Any, run: Any) -> None:
    """Record the configured provider and model (``RuntimeConfig``) in a new run's ``vars._runtime``, as 0.4.2
    does, unless the caller set them; with ``model_capabilities.tool_support``, also whether tools are native."""
    config = runtime.config
    runtime_ns = run.vars.get("_runtime")
    if not isinstance(runtime_ns, dict):
        runtime_ns = run.vars["_runtime"] = {}
    for key in ("provider", "model"):
        value = getattr(config, key)
        if isinstance(value, str) and value.strip():
            runtime_ns.setdefault(key, value.strip())
    tool_support = (config.model_capabilities or {}).get("tool_support")
    if isinstance(tool_support, str) and tool_support.strip():
        runtime_ns.setdefault("tool_support", tool_support)
        runtime_ns.setdefault("supports_native_tools", tool_support == "native")


@hookimpl
def abstractruntime_register_effect_handlers() -> List[EffectHandlerDescriptor]:
    return [
        EffectHandlerDescriptor(EffectType.LLM_CALL, llm_call_handler, "LLM call through AbstractCore",
                                side_effects=True),
        EffectHandlerDescriptor(EffectType.TOOL_CALLS, tool_calls_handler,
                                "Tool calls (local, passthrough, approval or MCP)", side_effects=True),
    ]


@hookimpl
def abstractruntime_prepare_resume_payload(run: Any, wait: Any, payload: Any) -> Optional[Dict[str, Any]]:
    return handlers.prepare_resume(wait, payload)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [RuntimeMethodDescriptor(
        "resolve_tool_approval", handlers.resolve_tool_approval,
        "Approve or deny the tool calls a run waits on; approved calls run, decisions go to the ledger")]
