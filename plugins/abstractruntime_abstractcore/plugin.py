"""The plugin's hooks and its per-runtime configuration.

A runtime's LLM client and tool executor come from, in this order:

1. :func:`attach` (what the factories do): ``attach(runtime, llm=..., tools=...)``;
2. the options ``[abstractruntime.plugin_options.abstractcore]``, declared by :class:`AbstractCoreOptions` and read
   with ``abstractruntime_pluginkit.plugin_options`` (checked when the runtime is built; the integration is built
   at the first LLM/tool effect, so building a runtime never imports AbstractCore):

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

Both live in ``runtime.stash`` (keys ``_ATTACHED`` and ``_FROM_SETTINGS``): they go away with the runtime.
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Dict, List, Mapping, Optional, Tuple, Union

from attrs import define, field, frozen

from abstractruntime import EffectCall, EffectHandlerDescriptor, EffectOutcome, EffectType, StashKey, hookimpl
from abstractruntime.descriptors import RuntimeMethodDescriptor
from abstractruntime.errors import ConfigurationError, ValidationError
from abstractruntime_pluginkit import on_host_loop, plugin_options, structure_options
from abstractruntime_pluginkit.lazy import lazy_function

PLUGIN_NAME = "abstractcore"
TOOL_MODES = ("passthrough", "abstractcore", "approval", "none")


def _toolsets(value: Any) -> Optional[Tuple[str, ...]]:
    """``toolsets``: one name or a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValidationError(f"toolsets must be a toolset name or a list of them, got {value!r}")


@frozen
class AbstractCoreOptions:
    """``[abstractruntime.plugin_options.abstractcore]`` (see the module doc); the cross-field rules are in
    :func:`check_options`."""

    provider: Optional[str] = None
    model: Optional[str] = None
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None
    llm_kwargs: Dict[str, Any] = field(factory=dict)
    timeout_s: Optional[float] = None
    server_base_url: Optional[str] = None
    headers: Dict[str, Any] = field(factory=dict)
    tools: Optional[str] = None
    #: one toolset name or a list of them
    toolsets: Union[str, List[str], None] = field(default=None, converter=_toolsets)
    auto_approve: Tuple[str, ...] = ()
    tool_timeout_s: Optional[float] = None
    grounding: bool = True


@define
class Integration:
    """What the LLM_CALL / TOOL_CALLS handlers use for one runtime."""

    llm: Any = None
    tools: Any = None
    journal: Any = None
    grounding: bool = True


#: what :func:`attach` gave the runtime; it wins over the options
_ATTACHED: "StashKey[Integration]" = StashKey()
#: the integration built from the runtime's options (at the first LLM/tool effect)
_FROM_SETTINGS: "StashKey[Integration]" = StashKey()


def attach(runtime: Any, *, llm: Any = None, tools: Any = None, journal: Any = None,
           grounding: bool = True) -> Integration:
    """Give ``runtime`` its LLM client and tool executor (replacing any earlier ones)."""
    integration = Integration(llm=llm, tools=tools, journal=journal, grounding=grounding)
    runtime.stash[_ATTACHED] = integration
    return integration


def _options(runtime: Any) -> AbstractCoreOptions:
    return plugin_options(runtime, PLUGIN_NAME, AbstractCoreOptions)


def _as_options(opts: Union[AbstractCoreOptions, Mapping[str, Any]]) -> AbstractCoreOptions:
    if isinstance(opts, AbstractCoreOptions):
        return opts
    return structure_options(AbstractCoreOptions, opts, where=f"plugin_options.{PLUGIN_NAME}")


def check_options(opts: Union[AbstractCoreOptions, Mapping[str, Any]]) -> str:
    """Check the options that need no AbstractCore import; return the tool mode."""
    opts = _as_options(opts)
    model, provider, server = opts.model, opts.provider, opts.server_base_url
    if server and not model:
        raise ConfigurationError("plugin_options.abstractcore.server_base_url needs 'model'")
    if provider and not server and not model:
        raise ConfigurationError("plugin_options.abstractcore.provider needs 'model'")
    mode = opts.tools or ("passthrough" if server else "abstractcore" if provider else "none")
    if mode not in TOOL_MODES:
        raise ConfigurationError(f"plugin_options.abstractcore.tools must be one of {list(TOOL_MODES)}, got {mode!r}")
    return mode


def integration_from_options(opts: Union[AbstractCoreOptions, Mapping[str, Any]]) -> Integration:
    from .llm_client import MultiLocalAbstractCoreLLMClient, RemoteAbstractCoreLLMClient, default_timeout_s
    from .tool_executor import AbstractCoreToolExecutor, ApprovalToolExecutor, PassthroughToolExecutor

    opts = _as_options(opts)
    mode = check_options(opts)
    model, provider, server, timeout = opts.model, opts.provider, opts.server_base_url, opts.timeout_s
    llm = None
    if server:
        llm = RemoteAbstractCoreLLMClient(server_base_url=str(server), model=str(model), headers=dict(opts.headers),
                                          timeout_s=float(timeout) if timeout is not None else None)
    elif provider:
        kwargs = dict(opts.llm_kwargs)
        if opts.base_url:
            kwargs["base_url"] = str(opts.base_url)
        if opts.api_key_env:
            key = os.environ.get(str(opts.api_key_env))
            if key:
                kwargs["api_key"] = key
        kwargs.setdefault("timeout", float(timeout) if timeout is not None else default_timeout_s())
        llm = MultiLocalAbstractCoreLLMClient(provider=str(provider), model=str(model), llm_kwargs=kwargs)
    tool_timeout = opts.tool_timeout_s
    tools: Any = None
    if mode == "passthrough":
        tools = PassthroughToolExecutor()
    elif mode in ("abstractcore", "approval"):
        selected = None
        if opts.toolsets:
            from .default_tools import get_default_tools

            selected = get_default_tools(toolsets=list(opts.toolsets))
        tools = AbstractCoreToolExecutor(timeout_s=float(tool_timeout) if tool_timeout else None, tools=selected)
        if mode == "approval":
            tools = ApprovalToolExecutor(tools, auto_approve=list(opts.auto_approve))
    return Integration(llm=llm, tools=tools, grounding=opts.grounding)


@hookimpl
def abstractruntime_runtime_created(runtime: Any) -> None:
    """A bad ``plugin_options.abstractcore`` fails ``Runtime(...)``; AbstractCore itself is not imported here."""
    check_options(_options(runtime))


def integration_for(runtime: Any) -> Integration:
    """The runtime's attached integration, else the one built from its options (cached in ``runtime.stash``)."""
    attached = runtime.stash.get(_ATTACHED)
    if attached is not None:
        return attached
    return runtime.stash.setdefault_factory(_FROM_SETTINGS, lambda: integration_from_options(_options(runtime)))


def llm_call_handler(call: EffectCall) -> Union[EffectOutcome, Awaitable[EffectOutcome]]:
    """Under an ``AsyncRuntime`` (awaited on the host's loop) with a client that has ``agenerate`` (the in-process
    AbstractCore clients: the provider's async generation), a coroutine; else the outcome (``generate``)."""
    try:
        integration = integration_for(call.runtime)
    except ConfigurationError as exc:
        return EffectOutcome.failed(f"llm_call: {exc}")
    if on_host_loop(call.runtime) and callable(getattr(integration.llm, "agenerate", None)):
        from .llm_effect import llm_call_async

        return llm_call_async(call, integration.llm, grounding=integration.grounding)
    from .llm_effect import llm_call

    return llm_call(call, integration.llm, grounding=integration.grounding)


def tool_calls_handler(call: EffectCall) -> EffectOutcome:
    try:
        integration = integration_for(call.runtime)
    except ConfigurationError as exc:
        return EffectOutcome.failed(f"tool_calls: {exc}")
    from .tool_effect import tool_calls

    return tool_calls(call, integration.tools, journal=integration.journal)


_RUN_DEFAULTS: "StashKey[Tuple[Tuple[str, Any], ...]]" = StashKey()


def _run_defaults(config: Any) -> Tuple[Tuple[str, Any], ...]:
    """What a new run's ``vars._runtime`` gets from the runtime's (frozen) configuration."""
    out: List[Tuple[str, Any]] = []
    for key in ("provider", "model"):
        value = getattr(config, key)
        if isinstance(value, str) and value.strip():
            out.append((key, value.strip()))
    tool_support = (config.model_capabilities or {}).get("tool_support")
    if isinstance(tool_support, str) and tool_support.strip():
        out += [("tool_support", tool_support), ("supports_native_tools", tool_support == "native")]
    return tuple(out)


@hookimpl
def abstractruntime_prepare_new_run(runtime: Any, run: Any) -> None:
    """Record the configured provider and model (``RuntimeConfig``) in a new run's ``vars._runtime``, as 0.4.2
    does, unless the caller set them; with ``model_capabilities.tool_support``, also whether tools are native."""
    defaults = runtime.stash.get(_RUN_DEFAULTS)  # at every start: worked out once per runtime
    if defaults is None:
        defaults = runtime.stash.setdefault_factory(_RUN_DEFAULTS, lambda: _run_defaults(runtime.config))
    runtime_ns = run.vars.get("_runtime")
    if not isinstance(runtime_ns, dict):
        runtime_ns = run.vars["_runtime"] = {}
    for key, value in defaults:
        runtime_ns.setdefault(key, value)


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
    from .approvals import prepare_resume

    return prepare_resume(wait, payload)


@hookimpl
def abstractruntime_register_runtime_methods() -> List[RuntimeMethodDescriptor]:
    return [RuntimeMethodDescriptor(
        "resolve_tool_approval", lazy_function(__package__, ".approvals", "resolve_tool_approval"),
        "Approve or deny the tool calls a run waits on; approved calls run, decisions go to the ledger")]
