"""Reference path ``abstractruntime.core.config``."""

from abstractruntime.models import RuntimeConfig

__all__ = ["RuntimeConfig"]
