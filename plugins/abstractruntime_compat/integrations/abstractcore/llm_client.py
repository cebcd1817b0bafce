"""``abstractruntime.integrations.abstractcore.llm_client`` (the LLM clients and their transport types)."""

from abstractruntime_abstractcore.llm_client import (  # noqa: F401
    AbstractCoreLLMClient,
    HttpResponse,
    HttpxRequestSender,
    LocalAbstractCoreLLMClient,
    MultiLocalAbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
    RequestSender,
    _inject_turn_grounding,
    _local_generate_lock,
    _maybe_parse_tool_calls_from_text,
    _normalize_tool_calls,
    logger,
)

__all__ = ["AbstractCoreLLMClient", "HttpResponse", "RequestSender", "HttpxRequestSender",
           "LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient", "RemoteAbstractCoreLLMClient", "logger"]
