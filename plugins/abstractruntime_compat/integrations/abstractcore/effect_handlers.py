"""``abstractruntime.integrations.abstractcore.effect_handlers``."""

from abstractruntime_abstractcore.handlers import build_effect_handlers, resolve_tool_approval  # noqa: F401
from abstractruntime_abstractcore.handlers import make_tool_calls_handler  # noqa: F401
from abstractruntime_abstractcore.llm_effect import make_llm_call_handler  # noqa: F401
from abstractruntime_abstractcore.llm_pipeline import log as logger  # noqa: F401

__all__ = ["build_effect_handlers", "resolve_tool_approval", "make_llm_call_handler", "logger",
           "make_tool_calls_handler"]
