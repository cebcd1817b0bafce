"""Plugin ``abstractcore``: the LLM_CALL and TOOL_CALLS effects through AbstractCore, runtime factories, default
toolsets and the MCP worker (``abstractruntime-mcp-worker``).

Importing this package does not import ``abstractcore``; it is imported on first use (an LLM call, a tool lookup,
``create_local_runtime``), with the host's ``logging``/``structlog`` configuration preserved (see
:mod:`._isolation`). The reference import path is ``abstractruntime.integrations.abstractcore``.

Hooks: effect handlers for ``llm_call`` and ``tool_calls`` (``side_effects=True``), the resume-payload merge of
tool waits, and the runtime method ``resolve_tool_approval``. Configuration: :func:`attach` or
``[abstractruntime.plugin_options.abstractcore]`` (see :mod:`.plugin`). Memory effects are not provided here.
"""

from __future__ import annotations

from abstractruntime_pluginkit.lazy import lazy_exports

from .grounding import abstractruntime_prepare_ledger_records  # noqa: F401 - grounds llm_call ledger rows
from .plugin import (  # the hook implementations must be attributes of the plugin module
    Integration,
    abstractruntime_prepare_new_run,  # noqa: F401
    abstractruntime_prepare_resume_payload,  # noqa: F401
    abstractruntime_register_effect_handlers,  # noqa: F401
    abstractruntime_register_runtime_methods,  # noqa: F401
    abstractruntime_runtime_created,  # noqa: F401
    attach,
    integration_for,
)

# Everything else is imported on first use: every plugin package is imported whenever a runtime is built.
__getattr__, __dir__ = lazy_exports(__name__, {
    "RuntimeConfig": "abstractruntime.models",
    **dict.fromkeys(["build_default_tool_map", "filter_tool_specs", "get_default_tools", "get_default_toolsets",
                     "list_default_tool_specs"], ".default_tools"),
    **dict.fromkeys(["create_hybrid_runtime", "create_local_file_runtime", "create_local_runtime",
                     "create_remote_file_runtime", "create_remote_runtime"], ".factories"),
    **dict.fromkeys(["build_effect_handlers", "resolve_tool_approval"], ".handlers"),
    **dict.fromkeys(["AbstractCoreLLMClient", "LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient",
                     "RemoteAbstractCoreLLMClient"], ".llm_client"),
    **dict.fromkeys(["AbstractCoreEmbeddingsClient", "EmbeddingsResult", "attach_global_event_bus_bridge",
                     "emit_step_record"], ".observability"),
    **dict.fromkeys(["AbstractCoreToolExecutor", "ApprovalToolExecutor", "ArtifactToolResultJournal",
                     "DelegatingMcpToolExecutor", "MappingToolExecutor", "McpToolExecutor", "MemoryToolResultJournal",
                     "PassthroughToolExecutor", "ToolExecutor", "ToolResultJournal"], ".tool_executor"),
})

abstractruntime_requires = ("workspace", "artifacts", "memory", "jsonfiles",  # path policy, artifacts, factories
                            "active_memory")  # input trimming of LLM calls

__all__ = [
    "AbstractCoreLLMClient",
    "AbstractCoreEmbeddingsClient",
    "EmbeddingsResult",
    "attach_global_event_bus_bridge",
    "emit_step_record",
    "LocalAbstractCoreLLMClient",
    "MultiLocalAbstractCoreLLMClient",
    "RemoteAbstractCoreLLMClient",
    "RuntimeConfig",
    "ToolExecutor",
    "MappingToolExecutor",
    "AbstractCoreToolExecutor",
    "PassthroughToolExecutor",
    "ApprovalToolExecutor",
    "McpToolExecutor",
    "DelegatingMcpToolExecutor",
    "ToolResultJournal",
    "ArtifactToolResultJournal",
    "MemoryToolResultJournal",
    "build_effect_handlers",
    "create_local_runtime",
    "create_remote_runtime",
    "create_hybrid_runtime",
    "create_local_file_runtime",
    "create_remote_file_runtime",
    "resolve_tool_approval",
    "attach",
    "integration_for",
    "Integration",
    "get_default_toolsets",
    "get_default_tools",
    "list_default_tool_specs",
    "build_default_tool_map",
    "filter_tool_specs",
]
