"""Reference package ``abstractruntime.rendering`` (the code is the ``abstractruntime_rendering`` library); its
modules ``.json_stringify`` and ``.agent_trace_report`` are importable by path."""

from abstractruntime_rendering import JsonStringifyMode, render_agent_trace_markdown, stringify_json

__all__ = ["JsonStringifyMode", "stringify_json", "render_agent_trace_markdown"]
