"""Reference path ``abstractruntime.rendering.json_stringify``."""

from abstractruntime_rendering.json_stringify import JsonStringifyMode, stringify_json

__all__ = ["JsonStringifyMode", "stringify_json"]
