"""``abstractruntime.integrations.abstractcore.logging`` (``get_logger``: AbstractCore's structured logger)."""

from abstractruntime_abstractcore.logging_bridge import get_logger  # noqa: F401

__all__ = ["get_logger"]
