"""``abstractruntime.integrations.abstractcore.effect_handlers``."""

from abstractruntime_abstractcore.handlers import build_effect_handlers, resolve_tool_approval  # noqa: F401

__all__ = ["build_effect_handlers", "resolve_tool_approval"]
