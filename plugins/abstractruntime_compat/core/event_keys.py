"""Reference path ``abstractruntime.core.event_keys``."""

from abstractruntime_pluginkit.event_keys import build_event_wait_key

__all__ = ["build_event_wait_key"]
