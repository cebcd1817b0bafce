"""Reference path ``abstractruntime.core.config``."""

from ..models import RuntimeConfig

__all__ = ["RuntimeConfig"]
