"""Timeout fallbacks of the AbstractCore integration (reference path
``abstractruntime.integrations.abstractcore.constants``)."""

from __future__ import annotations

#: per-LLM-request timeout (seconds) when neither the caller nor AbstractCore's config gives one (one request, not a
#: run's time to live)
DEFAULT_LLM_TIMEOUT_S: float = 7200.0
#: per-tool-call timeout (seconds) when neither the caller nor AbstractCore's config gives one
DEFAULT_TOOL_TIMEOUT_S: float = 7200.0

__all__ = ["DEFAULT_LLM_TIMEOUT_S", "DEFAULT_TOOL_TIMEOUT_S"]
