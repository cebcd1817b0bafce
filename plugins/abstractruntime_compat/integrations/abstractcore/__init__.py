"""Reference path ``abstractruntime.integrations.abstractcore`` (the code lives in the ``abstractcore`` plugin,
:mod:`abstractruntime_abstractcore`). Importing it does not import ``abstractcore``; using it needs the
``abstractcore`` extra."""

from abstractruntime_abstractcore import *  # noqa: F401,F403

#: the reference's 18 names (spec: integration-surface §1.1); the plugin's other names stay importable as attributes
__all__ = [
    "AbstractCoreLLMClient", "LocalAbstractCoreLLMClient", "RemoteAbstractCoreLLMClient",
    "AbstractCoreEmbeddingsClient", "EmbeddingsResult", "RuntimeConfig", "ToolExecutor", "MappingToolExecutor",
    "AbstractCoreToolExecutor", "PassthroughToolExecutor", "build_effect_handlers", "create_local_runtime",
    "create_remote_runtime", "create_hybrid_runtime", "create_local_file_runtime", "create_remote_file_runtime",
    "attach_global_event_bus_bridge", "emit_step_record",
]
