"""``abstractruntime.integrations.abstractcore.llm_client`` (the LLM clients)."""

from abstractruntime_abstractcore.llm_client import (  # noqa: F401
    AbstractCoreLLMClient,
    LocalAbstractCoreLLMClient,
    MultiLocalAbstractCoreLLMClient,
    RemoteAbstractCoreLLMClient,
)

__all__ = ["AbstractCoreLLMClient", "LocalAbstractCoreLLMClient", "MultiLocalAbstractCoreLLMClient",
           "RemoteAbstractCoreLLMClient"]
