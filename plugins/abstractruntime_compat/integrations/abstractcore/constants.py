"""``abstractruntime.integrations.abstractcore.constants`` (timeout fallbacks)."""

from abstractruntime_abstractcore.constants import DEFAULT_LLM_TIMEOUT_S, DEFAULT_TOOL_TIMEOUT_S  # noqa: F401

__all__ = ["DEFAULT_LLM_TIMEOUT_S", "DEFAULT_TOOL_TIMEOUT_S"]
